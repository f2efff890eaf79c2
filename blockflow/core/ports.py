"""Boundary blocks: a model's external signals.

``Inport`` and ``Outport`` name a model's inputs and outputs.  Inside a subsystem they
become pass-throughs when the model is flattened; at the top level an Inport is fed by
``simulate(inputs=...)`` and an Outport is what a loss is applied to.
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.types import SignalType, delta_type


class Inport(Block):
    """An external input of a model: ``y(k) = x(k)``, supplied by the caller.

    Parameters
    ----------
    name : str
        The model's input name.
    shape : tuple of int, optional
        Shape of one sample; inferred from the parent model when omitted (subsystems).
    dtype : dtype, default float64
    """

    inputs, outputs = (), ("y",)
    external = True
    linear = True

    def __init__(self, name: str, shape: tuple | None = (), dtype=np.float64, **kw):
        super().__init__(name=name, **kw)
        self.type = None if shape is None else self.signal_type(shape, dtype)

    def infer(self):
        return (self.type,)

    def astype(self, dtype) -> Inport:
        if self.type is not None:
            self.type = SignalType(self.type.shape, dtype)
        return self

    def reciprocal(self) -> Block:
        return Outport(self.name, inputs=self.outputs)

    def tangent(self) -> Block:
        t = delta_type(self.type)
        return Inport(self.name, shape=None if t is None else t.shape,
                      dtype=np.float64 if t is None else t.dtype, outputs=self.outputs)

    def label(self) -> str:
        return f"In {self.name}"

    def config(self) -> dict:
        return {"shape": None if self.type is None else self.type.shape,
                "dtype": (self.type.dtype if self.type else np.dtype(np.float64)).name}


class Outport(Block):
    """An external output of a model: ``y(k) = u(k)``, read by the caller."""

    inputs, outputs = ("u",), ()
    alias = True
    linear = True

    def __init__(self, name: str, **kw):
        super().__init__(name=name, **kw)

    def infer(self, t):
        return ()

    def reciprocal(self) -> Block:  # its type comes from the transform's type hints
        return Inport(self.name, shape=None, outputs=self.inputs)

    def tangent(self) -> Block:
        return Outport(self.name, inputs=self.inputs)

    def label(self) -> str:
        return f"Out {self.name}"

    def config(self) -> dict:
        return {}


class Passthrough(Block):
    """``y(k) = u(k)``: a subsystem's boundary once flattened (costs nothing at run time)."""

    alias = True
    linear = True

    def __init__(self, *, declared: SignalType | None = None, **kw):
        super().__init__(**kw)
        self.declared = declared

    def infer(self, t):
        if t is not None and self.declared is not None and t.shape != self.declared.shape:
            raise self.type_error(f"declared shape {self.declared.shape} but fed {t.shape}")
        return (t or self.declared,)

    def output(self, x, u):
        return u

    def vjp(self, u, y, dy):
        return dy

    def config(self) -> dict:
        return {"declared": self.declared}


