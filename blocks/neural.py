"""Neural blocks: Dense, MLP, Softmax (multivariate functions; reciprocal = J(k)^T)."""

from __future__ import annotations

import numpy as np

from blockflow.block import Block
from blockflow.types import SignalType

from .math import ELEMENTWISE


def _outer_sum(d: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum over leading axes of d a^T``: the dJ/dW = sum_k delta(k) a(k)^T contraction."""
    return d.reshape(-1, d.shape[-1]).T @ a.reshape(-1, a.shape[-1])


def _glorot(rng, n_in: int, n_out: int) -> np.ndarray:
    return rng.uniform(-1, 1, (n_out, n_in)) * np.sqrt(6.0 / (n_in + n_out))


class Dense(Block):
    """``y(k) = W u(k) + b``: an affine layer, ``u`` of shape ``(n,)``, ``y`` of ``(m,)``.

    ``dJ/dW = sum_k delta_y(k) u(k)^T``, ``dJ/db = sum_k delta_y(k)``, ``delta_u = W^T delta_y``.
    """

    linear = True

    def __init__(self, W, b=None, *, trainable: bool = True, **kw):
        super().__init__(**kw)
        self.param("W", np.atleast_2d(W), trainable=trainable)
        self.param("b", np.zeros(self.W.shape[0]) if b is None else b, trainable=trainable)

    @classmethod
    def random(cls, n_in: int, n_out: int, *, seed: int = 0, **kw) -> Dense:
        """A Dense layer with Glorot-uniform weights and zero bias."""
        return cls(_glorot(np.random.default_rng(seed), n_in, n_out), **kw)

    def infer(self, t):
        if t is None:
            return (None,)
        if t.shape != (self.W.shape[1],):
            raise self.type_error(f"takes ({self.W.shape[1]},) samples, got {t.shape}",
                                  port=self.inputs[0])
        return (SignalType((self.W.shape[0],), np.result_type(t.dtype, self.W.dtype)),)

    def output(self, x, u):
        return u @ self.W.T + self.b

    def vjp(self, u, y, dy):
        return dy @ self.W

    def jvp(self, u, y, du):
        return du @ self.W.T

    def param_grads(self, u, y, dy):
        d = dy[0]
        return {"W": _outer_sum(d, u[0]), "b": d.reshape(-1, d.shape[-1]).sum(0)}

    def param_jvp(self, u, y, dp):
        out = 0.0
        if "W" in dp:
            out = u[0] @ dp["W"].T
        if "b" in dp:
            out = out + dp["b"]
        return (out,)

    def label(self) -> str:
        return f"Dense {self.W.shape[1]}→{self.W.shape[0]}"


class MLP(Block):
    """A multilayer perceptron as one multivariate block.

    ``a_0 = u``, ``s_l = W_l a_{l-1} + b_l``, ``a_l = f(s_l)`` (``f_out`` on the last layer),
    ``y = a_L``.  Parameters are ``W0, b0, W1, b1, ...``.  Its reciprocal is backprop
    (paper eq. 2): ``delta_{l-1} = W_l^T (f'(s_l) delta_l)``.
    """

    def __init__(self, weights, biases, activation: str = "tanh",
                 output_activation: str = "identity", *, trainable: bool = True, **kw):
        super().__init__(**kw)
        if len(weights) != len(biases) or not weights:
            raise ValueError("MLP needs one bias per weight matrix, at least one layer")
        for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
            self.param(f"W{i}", np.atleast_2d(W), trainable=trainable)
            self.param(f"b{i}", b, trainable=trainable)
        self.n_layers = len(weights)
        self.activation, self.output_activation = activation, output_activation
        self._acts = [ELEMENTWISE[activation]] * (self.n_layers - 1) + \
                     [ELEMENTWISE[output_activation]]

    @classmethod
    def random(cls, sizes, *, seed: int = 0, **kw) -> MLP:
        """An MLP with layer widths ``sizes`` (input first), Glorot weights, zero biases."""
        rng = np.random.default_rng(seed)
        Ws = [_glorot(rng, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        return cls(Ws, [np.zeros(n) for n in sizes[1:]], **kw)

    def layers(self):
        return [(getattr(self, f"W{i}"), getattr(self, f"b{i}")) for i in range(self.n_layers)]

    def infer(self, t):
        if t is None:
            return (None,)
        W0 = self.W0
        if t.shape != (W0.shape[1],):
            raise self.type_error(f"takes ({W0.shape[1]},) samples, got {t.shape}", port="u")
        return (SignalType((self.layers()[-1][0].shape[0],), t.dtype),)

    def forward(self, u):
        """All pre-activations ``s_l`` and activations ``a_l`` (``a_0 = u``)."""
        a, S, A = u, [], [u]
        for (W, b), (f, _) in zip(self.layers(), self._acts, strict=True):
            s = a @ W.T + b
            a = f(s)
            S.append(s)
            A.append(a)
        return S, A

    def output(self, x, u):
        return self.forward(u)[1][-1]

    def _backprop(self, u, dy):
        S, A = self.forward(u)
        deltas = []  # delta at each s_l
        d = dy
        for layer in range(self.n_layers - 1, -1, -1):
            d = d * self._acts[layer][1](S[layer], A[layer + 1])
            deltas.append(d)
            d = d @ self.layers()[layer][0]
        return d, deltas[::-1], A

    def vjp(self, u, y, dy):
        return self._backprop(u[0], dy)[0]

    def jvp(self, u, y, du):
        S, A = self.forward(u[0])
        d = du
        for (W, _), (_, df), s, a in zip(self.layers(), self._acts, S, A[1:], strict=True):
            d = (d @ W.T) * df(s, a)
        return d

    def param_grads(self, u, y, dy):
        _, deltas, A = self._backprop(u[0], dy[0])
        g = {}
        for i, (d, a) in enumerate(zip(deltas, A[:-1], strict=True)):
            g[f"W{i}"] = _outer_sum(d, a)
            g[f"b{i}"] = d.reshape(-1, d.shape[-1]).sum(0)
        return g

    def param_jvp(self, u, y, dp):
        S, A = self.forward(u[0])
        d = 0.0
        for i, ((W, _), (_, df), s, a_in, a) in enumerate(
                zip(self.layers(), self._acts, S, A[:-1], A[1:], strict=True)):
            ds = d @ W.T if i else 0.0
            if f"W{i}" in dp:
                ds = ds + a_in @ dp[f"W{i}"].T
            if f"b{i}" in dp:
                ds = ds + dp[f"b{i}"]
            d = ds * df(s, a)
        return (d,)

    def label(self) -> str:
        sizes = [self.W0.shape[1]] + [W.shape[0] for W, _ in self.layers()]
        return f"MLP {'-'.join(map(str, sizes))} {self.activation}"


class Softmax(Block):
    """``y_i(k) = exp(u_i(k)) / sum_j exp(u_j(k))`` over the last axis.

    ``delta_u = y * (delta_y - <delta_y, y>)``.
    """

    def output(self, x, u):
        e = np.exp(u - u.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def vjp(self, u, y, dy):
        y = y[0]
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))

    def jvp(self, u, y, du):
        return self.vjp(u, y, du)  # the softmax Jacobian is symmetric
