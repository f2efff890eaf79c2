"""blockflow: discrete-time block diagrams with exact gradients by reciprocal networks."""

from .block import Block, PortRef
from .errors import (
    AlgebraicLoopError,
    BlockflowError,
    ModelFileError,
    ParameterError,
    ReciprocalNotDefinedError,
    SignalTypeError,
    SimulationError,
    TrainingError,
    WiringError,
)
from .model import Model
from .modelfile import load, register_block, save
from .plan import Plan, compile
from .ports import Inport, Outport
from .reciprocal import reciprocal
from .simulate import simulate
from .sweep import Gradients, backward, grad, output_gradient, sweep
from .tangent import directional, tangent
from .trace import Trace
from .train import train
from .types import SignalType

__all__ = [
    "AlgebraicLoopError", "Block", "BlockflowError", "Inport", "Model", "ModelFileError",
    "Outport", "Plan", "PortRef", "ReciprocalNotDefinedError", "SignalType",
    "SignalTypeError", "SimulationError", "Trace", "WiringError", "compile", "simulate",
    "Gradients", "backward", "directional", "grad", "reciprocal", "sweep", "tangent",
    "load", "register_block", "save", "TrainingError", "train", "output_gradient",
    "ParameterError",
]
__version__ = "0.1.0"
