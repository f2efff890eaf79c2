"""The rules a block does not write, derived from the ones it does (one place for all).

- **Reciprocal** (``delta_u = R delta_y``): a block's own ``reciprocal()`` if it gives
  one; else a nondifferentiable block gives zero deltas (:class:`Zero`); an LTI block
  (``transposed()``) runs its transposed realisation in reversed time
  (:class:`Anticausal`: a unit delay becomes a unit advance); a stateless block applies
  its Jacobian transpose (:class:`JacobianT`, from ``vjp``).
- **Tangent** (forward mode): a block's own ``tangent()`` if it gives one; else zero for a
  nondifferentiable block; for an LTI block the transpose of its transpose (the block
  itself from zero state, sharing its parameter arrays); for a stateless block
  :class:`JacobianV` (from ``jvp``, which a linear block derives from ``output``).
- **Reversed taps** (the causal sweep): an anticausal block of finite ``memory`` runs as
  the causal filter with its transposed realisation's taps reversed.

Each derived block is built with the forward block's name and port types, so nothing is
edited after it is made.
"""

from __future__ import annotations

from blockflow.core.block import Block
from blockflow.core.types import PortTypes, delta_type
from blockflow.errors import ReciprocalNotDefinedError
from blockflow.gradient.adjoint import Anticausal, JacobianT, JacobianV, Zero


def _missing(b: Block, what: str, how: str) -> ReciprocalNotDefinedError:
    return ReciprocalNotDefinedError(
        f"block {b.name!r} ({type(b).__name__}) has no {what}: {how}, or set "
        "nondifferentiable = True"
    )


def adopt(rb: Block, name: str, hints: tuple) -> Block:
    """A rule a block supplies itself is built without the model's types: give it the
    forward block's name and the types the transform knows (the one place this is done;
    derived blocks get both at construction)."""
    rb.name = name
    if rb.type_hints is None:
        rb.type_hints = hints
    return rb


def _wrapped(b: Block, types: PortTypes) -> PortTypes:
    """The port types of the block a wrapper runs (its inputs come first)."""
    return PortTypes(types.inputs[:len(b.wraps.inputs)], types.outputs, types.residuals)


def reciprocal_block(b: Block, types: PortTypes) -> Block:
    """The reciprocal of ``b`` (ports kept by name, directions swapped)."""
    hints = tuple(delta_type(t) for t in types.inputs)  # its outputs: the forward inputs
    if b.wraps is not None:  # (a gated block: the wrapped block's rule, gated again)
        return b.wrap_rule(reciprocal_block(b.wraps, _wrapped(b, types)), reciprocal=True)
    rb = b.reciprocal()
    if rb is not None:
        return adopt(rb, b.name, hints)
    if b.nondifferentiable:
        return Zero(b, types)
    if b.stateful:
        lti = b.transposed()
        if lti is None:
            raise _missing(b, "reciprocal rule", "a stateful block defines transposed() "
                           "(its transposed realisation) or reciprocal()")
        return Anticausal(lti, hints)
    return JacobianT(b, types)


def tangent_block(b: Block, types: PortTypes) -> Block:
    """The linearisation of ``b`` used by forward mode (delays stay delays)."""
    hints = tuple(delta_type(t) for t in types.outputs)
    if b.wraps is not None:
        return b.wrap_rule(tangent_block(b.wraps, _wrapped(b, types)), reciprocal=False)
    tb = b.tangent()
    if tb is not None:
        return adopt(tb, b.name, hints)
    if b.nondifferentiable:
        return Zero(b, types, tangent=True)
    if b.stateful:
        lti = b.transposed()
        if lti is None:
            raise _missing(b, "tangent rule", "a stateful block defines transposed() or "
                           "tangent()")
        return adopt(lti.transposed(), b.name, hints)
    return JacobianV(b, types)


def causal_block(b: Anticausal, types: tuple) -> Block:
    """The causal run of an anticausal block of finite memory: its transposed
    realisation with the taps reversed, ``q^-M H^T(q^+1)`` (the online sweep)."""
    return adopt(b.block.reversed_taps(), b.name, types)
