"""Losses: each returns the loss value and ``dL/dy`` (the reciprocal network's inputs).

Conventions: ``e = d - y``.  ``sse`` is the paper's ``J = sum_k ||e(k)||^2`` (so
``dL/dy = -2 e(k)``), summed over time and batch; ``mse`` is its mean over every
element; ``cross_entropy`` treats ``y`` as logits and averages the softmax
cross-entropy over time and batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.special

from .errors import SimulationError


def sse(y: np.ndarray, d: np.ndarray) -> tuple[float, np.ndarray]:
    """``J = sum_k ||d(k) - y(k)||^2``, ``dJ/dy(k) = -2 e(k)``."""
    e = d - y
    return float(np.vdot(e, e)), -2.0 * e


def mse(y: np.ndarray, d: np.ndarray) -> tuple[float, np.ndarray]:
    """``J = mean((d - y)^2)`` over every element."""
    e = d - y
    return float(np.vdot(e, e) / e.size), -2.0 * e / e.size


def cross_entropy(y: np.ndarray, d: np.ndarray) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy of logits ``y`` (last axis) against targets ``d``.

    ``d`` holds class probabilities (one-hot) of ``y``'s shape, or integer labels of
    shape ``y.shape[:-1]``.  Averaged over time and batch: ``dJ/dy = (softmax(y) - d)/N``.
    """
    if d.shape == y.shape[:-1] and np.issubdtype(d.dtype, np.integer):
        d = np.eye(y.shape[-1], dtype=y.dtype)[d]
    n = int(np.prod(y.shape[:-1]))
    logp = y - scipy.special.logsumexp(y, axis=-1, keepdims=True)
    return float(-(d * logp).sum() / n), (np.exp(logp) - d) / n


mse.averaged = cross_entropy.averaged = True  # means over time: streaming rescales them


def total(y: np.ndarray, d=None) -> tuple[float, np.ndarray]:
    """``J = sum_k y(k)``: for a model whose output is already a loss (a loss block)."""
    return float(y.sum()), np.ones_like(y)


LOSSES: dict[str, Callable] = {"sse": sse, "mse": mse, "cross_entropy": cross_entropy,
                               "sum": total}


def resolve(loss) -> Callable:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise SimulationError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a "
                              "callable (y, target) -> (value, dL/dy)")
    return LOSSES[loss]
