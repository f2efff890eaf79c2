"""Testing helpers for your own blocks and models.

:func:`check_grads` checks a block's (or a model's) gradient rules the way autograd's and
JAX's ``check_grads`` do: every parameter and input gradient of the reciprocal sweep
against central finite differences, and the dot-product test ``<T v, w> == <v, R w>``
between the tangent and the reciprocal model.  A block is wrapped in a model (an Inport
per input, an Outport per output) and driven by seeded random inputs.

>>> from blocks import Function
>>> check_grads(Function("tanh", name="f"), in_shapes=[(3,)])
GradCheck(block 'f' (Function): 1 gradient(s) by finite differences, dot-product test passed)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blockflow.core.block import Block
from blockflow.core.model import Model
from blockflow.core.ports import Inport, Outport
from blockflow.errors import BlockflowError, ReciprocalNotDefinedError
from blockflow.gradient.check import dot_check, fd_check

__all__ = ["GradCheck", "GradientCheckError", "check_grads", "wrap"]


class GradientCheckError(BlockflowError, AssertionError):
    """A gradient rule disagrees with finite differences or with the tangent model."""


@dataclass
class GradCheck:
    """What :func:`check_grads` checked."""

    what: str
    checked: int
    dot: str = "dot-product test passed"

    def __repr__(self) -> str:
        return f"GradCheck({self.what}: {self.checked} gradient(s) by finite differences, " \
               f"{self.dot})"


def wrap(block: Block, in_shapes: Sequence[tuple] | None = None, dtype=np.float64) -> Model:
    """A model around one block: an Inport ``in_<port>`` per input (of the given sample
    shapes, scalars by default) and an Outport ``out_<port>`` per output."""
    m = Model(f"check_{block.name}")
    m.add(block)
    shapes = list(in_shapes) if in_shapes is not None else [()] * len(block.inputs)
    if len(shapes) != len(block.inputs):
        raise BlockflowError(f"block {block.name!r} has inputs {list(block.inputs)}: give one "
                             f"sample shape each in in_shapes, got {len(shapes)}")
    for port, shape in zip(block.inputs, shapes, strict=True):
        m.connect(m.add(Inport(f"in_{port}", shape=tuple(shape), dtype=dtype)), block[port])
    for port in block.outputs:
        m.connect(block[port], m.add(Outport(f"out_{port}")))
    return m


def check_grads(obj: Block | Model, in_shapes: Sequence[tuple] | None = None, *,
                inputs: dict | None = None, T: int = 8, B: int = 2, seed: int = 0,
                scale: float = 1.0, eps: float = 1e-6, rtol: float = 1e-6,
                tol: float = 1e-10, params: bool = True) -> GradCheck:
    """Check the gradient rules of a block or a model; raise :class:`GradientCheckError`
    naming the first gradient that is wrong.

    Parameters
    ----------
    obj : Block or Model
        A block is wrapped in a model (:func:`wrap`); a block already in a model is
        copied first.
    in_shapes : list of tuple, optional
        Sample shape of each input of a block (scalars by default).
    inputs : dict, optional
        Inport data ``(T, B, *shape)``; default seeded standard normal times ``scale``.
    eps, rtol : float
        Finite-difference step and relative tolerance.
    tol : float
        Relative tolerance of the dot-product test.
    """
    if isinstance(obj, Model):
        model, what = obj, f"model {obj.name!r}"
    elif isinstance(obj, Block):
        block = obj.copy() if obj.__dict__.get("_model") is not None else obj
        model, what = wrap(block, in_shapes), f"block {obj.name!r} ({type(obj).__name__})"
    else:
        raise BlockflowError(f"check_grads takes a Block or a Model, got {type(obj).__name__}")
    if inputs is None:
        from blockflow.plan.compiler import compile

        plan = compile(model)
        rng = np.random.default_rng(seed)
        inputs = {n: scale * rng.standard_normal((T, B, *plan.slot_types[s].shape))
                  for n, s in plan.inports.items()}
    dot = "dot-product test passed"
    try:
        n = fd_check(model, inputs, seed=seed, eps=eps, rtol=rtol, params=params)
        try:
            dot_check(model, inputs, seed=seed, tol=tol)
        except ReciprocalNotDefinedError as e:  # only the reverse rule is defined
            dot = f"dot-product test skipped ({e})"
    except AssertionError as e:
        raise GradientCheckError(f"{what}: {e}") from None
    return GradCheck(what, n, dot)
