"""blockflow: discrete-time block diagrams with exact gradients by reciprocal networks."""

from . import export as _export  # noqa: F401 - registers Model.draw and notebook display
from .block import Block, PortRef
from .errors import (
    AlgebraicLoopError,
    BlockflowError,
    ModelFileError,
    ParameterError,
    ReciprocalNotDefinedError,
    SignalTypeError,
    SimulationError,
    TraceFileError,
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
    "ParameterError", "TraceFileError",
]
__version__ = "0.1.0"


def _callable_modules(*names: str) -> None:
    """``blockflow.simulate`` (``train``, ``sweep``, ...) is both a function and a module of
    that name.  The package attribute is the module, made callable as the function: so
    ``import blockflow.train as bt`` gives the module (``bt.Adam``) and
    ``blockflow.train(model, ...)`` / ``from blockflow import train`` still train."""
    import inspect
    import sys
    import types

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return self.__dict__[self.__name__.rpartition(".")[2]](*args, **kwargs)

    for name in names:
        module = sys.modules[f"{__name__}.{name}"]
        module.__class__ = CallableModule
        module.__signature__ = inspect.signature(getattr(module, name))
        globals()[name] = module


_callable_modules("simulate", "reciprocal", "tangent", "sweep", "train")
