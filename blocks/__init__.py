"""The standard block library."""

import sys

from blockflow.modelfile import register_library

from .continuous import ContinuousStateSpace, Integrator, TransferFcn
from .discrete import FIR, Delay, DiscreteFilter, DiscreteTransferFcn, StateSpace, UnitDelay
from .losses import CrossEntropy, SquaredError
from .math import ELEMENTWISE, Function, Gain, Product, Saturation, Sum
from .neural import MLP, Dense, FIRDense, LSTMCell, RNNCell, Softmax
from .routing import Demux, Mux
from .sinks import Scope, ToArray
from .sources import Constant, FromArray, Noise, Sine, Square, Step

register_library(sys.modules[__name__])  # model files load these blocks by class name

__all__ = [
    "Constant", "ContinuousStateSpace", "CrossEntropy", "Delay", "Demux", "Dense",
    "DiscreteFilter", "DiscreteTransferFcn", "ELEMENTWISE", "FIR", "FIRDense", "FromArray",
    "Function", "Gain", "Integrator", "LSTMCell", "MLP", "Mux", "Noise", "Product", "RNNCell",
    "Saturation", "Scope", "Sine", "Softmax", "Square", "SquaredError", "StateSpace", "Step",
    "Sum", "ToArray", "TransferFcn", "UnitDelay",
]
