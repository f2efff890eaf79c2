"""Loss blocks: the loss drawn as part of the diagram.

Wire the model's output and the desired signal into a loss block, its output into an
Outport, and take ``grad(model, inputs, loss="sum")``: the reciprocal network then starts
from ``dJ/dl(k) = 1`` at the loss block, as in the paper's figures.  Samples are scalars
or vectors (the loss sums over the vector).
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.types import SignalType, same_type


class _Loss(Block):
    vector = True  # set from the input type: scalar samples are not summed over

    def infer(self, a, b):
        t = same_type(f"block {self.name!r} ({type(self).__name__})", a, b)
        if t is None:
            return (None,)
        if len(t.shape) > 1:
            raise self.type_error(f"takes scalar or vector samples, got shape {t.shape}")
        self.vector = len(t.shape) == 1
        return (SignalType((), t.dtype),)

    def _sum(self, a):
        return a.sum(-1) if self.vector else a

    def _spread(self, g):
        return g[..., None] if self.vector else g

    def config(self) -> dict:
        return {}


class SquaredError(_Loss):
    """``l(k) = ||d(k) - y(k)||^2``; its reciprocal: ``delta_y = -2 e(k) delta_l``."""

    inputs, outputs = ("y", "d"), ("l",)

    def output(self, x, y, d):
        e = d - y
        return self._sum(e * e)

    def vjp(self, u, y, dl):
        e = u[1] - u[0]
        g = self._spread(dl)
        return -2.0 * e * g, 2.0 * e * g

    def jvp(self, u, y, dy, dd):
        return self._sum(2.0 * (u[1] - u[0]) * (dd - dy))


class CrossEntropy(_Loss):
    """``l(k) = -sum_i d_i(k) log softmax(z(k))_i`` for logits ``z`` and target
    probabilities ``d``; its reciprocal: ``delta_z = (softmax(z) sum(d) - d) delta_l``."""

    inputs, outputs = ("z", "d"), ("l",)

    def infer(self, a, b):
        out = super().infer(a, b)
        if out[0] is not None and not self.vector:
            raise self.type_error("takes vectors of logits, got scalars", port="z")
        return out

    @staticmethod
    def _logp(z):
        import scipy.special  # (deferred: importing scipy.special costs 0.2-0.4 s)
        return z - scipy.special.logsumexp(z, axis=-1, keepdims=True)

    def output(self, x, z, d):
        return -(d * self._logp(z)).sum(-1)

    def vjp(self, u, y, dl):
        z, d = u
        logp = self._logp(z)
        g = dl[..., None]
        return (np.exp(logp) * d.sum(-1, keepdims=True) - d) * g, -logp * g

    def jvp(self, u, y, dz, dd):
        z, d = u
        logp = self._logp(z)
        return ((np.exp(logp) * d.sum(-1, keepdims=True) - d) * dz).sum(-1) - (logp * dd).sum(-1)
