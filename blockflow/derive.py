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

from .adjoint import Anticausal, JacobianT, JacobianV, Zero
from .block import Block
from .errors import ReciprocalNotDefinedError
from .types import PortTypes


def _missing(b: Block, what: str, how: str) -> ReciprocalNotDefinedError:
    return ReciprocalNotDefinedError(
        f"block {b.name!r} ({type(b).__name__}) has no {what}: {how}, or set "
        "nondifferentiable = True"
    )


def reciprocal_block(b: Block, types: PortTypes) -> Block:
    """The reciprocal of ``b`` (ports kept by name, directions swapped)."""
    rb = b.reciprocal()
    if rb is not None:
        return rb
    if b.nondifferentiable:
        return Zero(b, types)
    if b.stateful:
        lti = b.transposed()
        if lti is None:
            raise _missing(b, "reciprocal rule", "a stateful block defines transposed() "
                           "(its transposed realisation) or reciprocal()")
        return Anticausal(lti)
    return JacobianT(b, types)


def tangent_block(b: Block, types: PortTypes) -> Block:
    """The linearisation of ``b`` used by forward mode (delays stay delays)."""
    tb = b.tangent()
    if tb is not None:
        return tb
    if b.nondifferentiable:
        return Zero(b, types, tangent=True)
    if b.stateful:
        lti = b.transposed()
        if lti is None:
            raise _missing(b, "tangent rule", "a stateful block defines transposed() or "
                           "tangent()")
        return lti.transposed()
    return JacobianV(b, types)
