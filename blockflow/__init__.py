"""blockflow: discrete-time block diagrams with exact gradients by reciprocal networks."""

from blockflow.backends.denormals import flush_denormals
from blockflow.core.block import Block, PortRef
from blockflow.core.gated import EnablePort, TriggerPort
from blockflow.core.model import Model
from blockflow.core.ports import Inport, Outport
from blockflow.core.types import SignalType
from blockflow.errors import (
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
from blockflow.gradient.reciprocal import reciprocal
from blockflow.gradient.sweep import (
    Gradients,
    backward,
    backward_checkpointed,
    backward_chunk,
    grad,
    output_gradient,
    sweep,
)
from blockflow.gradient.tangent import directional, tangent
from blockflow.io import export as _export  # noqa: F401 - registers Model.draw
from blockflow.io.modelfile import load, register_block, save
from blockflow.plan.compiler import Plan, compile
from blockflow.run.simulate import simulate
from blockflow.run.simulator import Simulator
from blockflow.run.trace import Trace
from blockflow.train import train

__all__ = [
    "AlgebraicLoopError", "Block", "BlockflowError", "Inport", "Model", "ModelFileError",
    "Outport", "Plan", "PortRef", "ReciprocalNotDefinedError", "SignalType",
    "SignalTypeError", "SimulationError", "Trace", "WiringError", "compile", "simulate",
    "Gradients", "backward", "directional", "grad", "reciprocal", "sweep", "tangent",
    "load", "register_block", "save", "TrainingError", "train", "output_gradient",
    "ParameterError", "TraceFileError", "Simulator", "EnablePort", "TriggerPort",
    "backward_chunk", "backward_checkpointed", "flush_denormals",
]
__version__ = "0.1.0"


def _callable_modules(**modules: str) -> None:
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

    for name, path in modules.items():
        module = sys.modules[path]
        module.__class__ = CallableModule
        module.__signature__ = inspect.signature(getattr(module, name))
        globals()[name] = module


_callable_modules(simulate="blockflow.run.simulate", reciprocal="blockflow.gradient.reciprocal",
                  tangent="blockflow.gradient.tangent", sweep="blockflow.gradient.sweep",
                  train="blockflow.train")
