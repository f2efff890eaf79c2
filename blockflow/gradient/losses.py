"""Losses: each returns the loss value and ``dL/dy`` (the reciprocal network's inputs).

Conventions: ``e = d - y``.  ``sse`` is the paper's ``J = sum_k ||e(k)||^2`` (so
``dL/dy = -2 e(k)``), summed over time and batch; ``mse`` is its mean over every
element; ``cross_entropy`` treats ``y`` as logits and averages the softmax
cross-entropy (binary cross-entropy for scalar samples) over time and batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from blockflow.errors import SimulationError


def sse(y: np.ndarray, d: np.ndarray) -> tuple[float, np.ndarray]:
    """``J = sum_k ||d(k) - y(k)||^2``, ``dJ/dy(k) = -2 e(k)``."""
    e = d - y
    return float(np.vdot(e, e)), -2.0 * e


def mse(y: np.ndarray, d: np.ndarray) -> tuple[float, np.ndarray]:
    """``J = mean((d - y)^2)`` over every element."""
    e = d - y
    return float(np.vdot(e, e) / e.size), -2.0 * e / e.size


def cross_entropy(y: np.ndarray, d: np.ndarray) -> tuple[float, np.ndarray]:
    """Cross-entropy of logits ``y`` against targets ``d``, averaged over time and batch.

    Vector samples: softmax over the last axis; ``d`` holds class probabilities of ``y``'s
    shape (one-hot or soft, any total) or integer labels of shape ``y.shape[:-1]``;
    ``dJ/dy = (softmax(y) sum(d) - d) / N``.  Scalar samples: ``y`` is the logit of class
    1 (binary cross-entropy, ``-d log s(y) - (1-d) log(1-s(y))`` with ``s`` the logistic
    function); ``d`` holds probabilities or 0/1 labels; ``dJ/dy = (s(y) - d) / N``.
    """
    import scipy.special  # (deferred: importing scipy.special costs 0.2-0.4 s)
    scalar = y.ndim == 2  # (T, B): one logit per sample
    n = int(np.prod(y.shape if scalar else y.shape[:-1]))
    labels = np.issubdtype(d.dtype, np.integer) or d.dtype == bool
    if scalar:
        if labels and ((d < 0) | (d > 1)).any():
            raise SimulationError("binary cross-entropy labels must be 0 or 1, got "
                                  f"{sorted(set(np.unique(d).tolist()) - {0, 1})[:5]}")
        d = d.astype(y.dtype)
        value = float((np.logaddexp(0.0, y) - d * y).sum() / n)  # softplus(y) - d y
        return value, (scipy.special.expit(y) - d) / n
    if labels and d.shape == y.shape[:-1]:
        c = y.shape[-1]
        if ((d < 0) | (d >= c)).any():
            bad = d[(d < 0) | (d >= c)]
            raise SimulationError(f"class labels must lie in 0..{c - 1} for {c} logits, "
                                  f"got {int(bad.flat[0])}")
        d = np.eye(c, dtype=y.dtype)[d]
    logp = y - scipy.special.logsumexp(y, axis=-1, keepdims=True)
    return (float(-(d * logp).sum() / n),
            (np.exp(logp) * d.sum(-1, keepdims=True) - d) / n)


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
