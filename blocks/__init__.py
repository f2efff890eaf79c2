"""The standard block library."""

import sys

from blockflow.core.registry import register_library

from .continuous import ContinuousStateSpace, Integrator, TransferFcn
from .delays import Delay, UnitDelay
from .discontinuities import DeadZone, Lookup1D, Quantizer, Relay
from .filters import FIR, DiscreteFilter, DiscreteTransferFcn
from .losses import CrossEntropy, SquaredError
from .math import ELEMENTWISE, Function, Gain, Product, Saturation, Sum
from .multirate import Downsample, RateTransition, Upsample, ZeroOrderHold
from .neural import MLP, Dense, Softmax
from .recurrent import LSTMCell, RNNCell
from .routing import Demux, Mux, Switch
from .sampled import DiscreteDerivative, DiscreteIntegrator, PeriodGain, RateLimiter
from .sinks import Scope, ToArray
from .sources import Constant, FromArray, Noise, Sine, Square, Step
from .statespace import StateSpace
from .temporal import FIRDense

register_library(sys.modules[__name__])  # model files load these blocks by class name

__all__ = [
    "ELEMENTWISE", "FIR", "MLP", "Constant", "ContinuousStateSpace", "CrossEntropy",
    "DeadZone", "Delay", "Demux", "Dense", "DiscreteDerivative", "DiscreteFilter",
    "DiscreteIntegrator", "DiscreteTransferFcn", "Downsample", "FIRDense", "FromArray",
    "Function", "Gain", "Integrator", "LSTMCell", "Lookup1D", "Mux", "Noise", "PeriodGain",
    "Product", "Quantizer", "RNNCell", "RateLimiter", "RateTransition", "Relay", "Saturation",
    "Scope", "Sine", "Softmax", "Square", "SquaredError", "StateSpace", "Step", "Sum",
    "Switch", "ToArray", "TransferFcn", "UnitDelay", "Upsample", "ZeroOrderHold",
]
