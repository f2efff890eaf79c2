"""Parameters along the batch axis: one vectorised run for many parameter values.

``simulate(model, inputs, params={"kc.K": values})`` gives batch member ``b`` the value
``values[b]`` (shape ``(B, *param.shape)``).  A block says which of its parameters may
carry a batch axis (``Block.batchable``: those its equations broadcast, such as an
elementwise gain or a constant); for the run the parameter is replaced by the batched
array, shaped to broadcast against the block's ``(B, *sample)`` signals, and put back
afterwards, so the model is unchanged.  ``backward(..., params=...)`` returns the
gradients of batched parameters per member, ``(B, *param.shape)`` (``.sum(0)`` is the
gradient of the summed loss).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from blockflow.errors import ParameterError
from blockflow.plan.integrate import param_owner


def _split(key: str) -> tuple[str, str]:
    path, _, name = key.rpartition(".")
    if not path:
        raise ParameterError(f"batched parameter {key!r}: name it 'block.param' (a path "
                             "into subsystems with '/')")
    return path, name


def check_batched(plan, params: dict, B: int | None) -> tuple[int, dict]:
    """Validate batched parameters against ``plan``; returns ``B`` and, by key, the
    block, the parameter name and the value shaped for broadcasting."""
    out = {}
    sizes = set()
    for key, values in params.items():
        path, name = _split(key)
        b = plan.flat.blocks.get(path)
        if b is None:
            raise ParameterError(f"batched parameter {key!r}: model {plan.model.name!r} has "
                                 f"no block {path!r}")
        own = b.parameters(trainable_only=False)
        if name not in own:
            raise ParameterError(f"batched parameter {key!r}: block {path!r} "
                                 f"({type(b).__name__}) has parameters {sorted(own)}")
        if name not in b.batchable:
            raise ParameterError(
                f"batched parameter {key!r}: block {path!r} ({type(b).__name__}) cannot take "
                f"{name!r} per batch member (it can: {sorted(b.batchable) or 'none'}); run "
                "one simulation per value (parameter_sweep does this for you)")
        p = own[name]
        v = np.asarray(values, dtype=p.dtype)
        if v.ndim < 1 or v.shape[1:] != p.shape:
            raise ParameterError(f"batched parameter {key!r}: give one value per batch member, "
                                 f"shape (B, *{p.shape}), got {v.shape}")
        if not np.all(np.isfinite(v)) and not b.allow_nonfinite:
            raise ParameterError(f"batched parameter {key!r} holds NaN or infinite values")
        sizes.add(v.shape[0])
        sample = plan.types[(path, b.outputs[0])].shape
        pad = max(0, len(sample) - p.ndim)
        # a solver's stage copies share the block's arrays: they take the values too
        family = (b, *(c for q, c in plan.flat.blocks.items()
                       if q != path and param_owner(q, c) == path))
        out[key] = (family, name, v.reshape(v.shape[0], *(1,) * pad, *p.shape))
    if B is not None:
        sizes.add(B)
    if len(sizes) > 1:
        raise ParameterError(f"batched parameters and inputs disagree on the batch size: "
                             f"{sorted(sizes)}")
    return (sizes.pop() if sizes else B), out


@contextmanager
def batched(checked: dict) -> Iterator[None]:
    """Swap the batched values in for the run; put the parameters back after it."""
    saved = []
    try:
        for family, name, v in checked.values():
            for b in family:
                saved.append((b, name, getattr(b, name)))
                setattr(b, name, v)
        yield
    finally:
        for b, name, p in reversed(saved):
            setattr(b, name, p)


def per_member(grads: dict, checked: dict) -> dict:
    """Gradients of batched parameters as ``(B, *param.shape)``."""
    out = dict(grads)
    for key, (family, name, v) in checked.items():
        if key in out:
            p = getattr(family[0], name)
            out[key] = np.asarray(out[key]).reshape(v.shape[0], *p.shape)
    return out
