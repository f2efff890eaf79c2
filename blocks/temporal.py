"""FIR (tapped-delay) layers: FIRDense, the FIR network's synapse ``y(k) = sum_m W[m]
u(k-m) + b`` (Wan's temporal backprop runs its reciprocal causally, D steps late)."""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.ccode import matvec, outer_add
from blockflow.core.kernel import Kernel, fill_rows, kernel, rows_matmul
from blockflow.core.types import SignalType
from blockflow.errors import ParameterError

from .filters import _fir_update_into, fir_update
from .neural import _bias_fits


@kernel(allocates=False)
def _fir_layer_output_into(WT, b, x, u, out):  # out = u W0^T + b + sum_m x[m-1] Wm^T
    rows_matmul(u, WT[0], fill_rows(b, out))
    for m in range(1, WT.shape[0]):
        rows_matmul(x[m - 1], WT[m], out)
    return out


@kernel(into=_fir_layer_output_into)
def fir_layer_output(WT, b, x, u):  # y = sum_m W[m] u(k-m) + b, past inputs held in x
    y = u @ WT[0] + b
    for m in range(1, WT.shape[0]):
        y = y + x[m - 1] @ WT[m]
    return y


@kernel(allocates=False)
def _fir_layer_update_into(WT, b, x, u, out):
    return _fir_update_into(WT, x, u, out)


@kernel(into=_fir_layer_update_into)
def fir_layer_update(WT, b, x, u):
    return fir_update(WT, x, u)


#: elements of the lagged-input matrix built at once (time x batch x inputs x taps)
LAG_ELEMENTS = 1 << 20


def _lagged(U: np.ndarray, M: int, a: int, b: int) -> np.ndarray:
    """``L[k - a, ..., i * M + m] = U[k - m, ..., i]`` for steps ``a <= k < b`` (zero
    before step 0): the inputs of ``M`` taps side by side, one contiguous matrix (a
    window view along time, copied once)."""
    lo = a - (M - 1)
    part = U[max(lo, 0):b]
    if lo < 0:
        part = np.concatenate([np.zeros((-lo, *U.shape[1:]), U.dtype), part])
    win = np.lib.stride_tricks.sliding_window_view(part, M, axis=0)  # [j, ..., w]: part[j + w]
    return np.ascontiguousarray(win[..., ::-1]).reshape(b - a, *U.shape[1:-1], -1)


def _blocks(U: np.ndarray, M: int):
    """Spans of time whose lagged inputs stay within :data:`LAG_ELEMENTS`."""
    T = U.shape[0]
    per = max(1, LAG_ELEMENTS // max(1, (U[:1].size or 1) * M))
    return [(a, min(T, a + per)) for a in range(0, T, per)]


def fir_apply(W: np.ndarray, U: np.ndarray) -> np.ndarray:
    """``Y(k) = sum_m W[m] U(k - m)`` over a whole sequence ``U (T, ..., n_in)`` with
    ``W (M, n_out, n_in)`` (zero before step 0): one matrix product of the lagged inputs
    per span of time, where a product per tap made ``M`` passes over the sequence."""
    M, n_out, n_in = W.shape
    W2 = np.transpose(W, (2, 0, 1)).reshape(n_in * M, n_out)  # rows (i, m)
    Y = np.empty((*U.shape[:-1], n_out), np.result_type(U, W))
    for a, b in _blocks(U, M):
        Y[a:b] = _lagged(U, M, a, b) @ W2
    return Y


def fir_grad(dY: np.ndarray, U: np.ndarray, M: int) -> np.ndarray:
    """``dJ/dW[m] = sum_k dY(k) U(k - m)^T`` (over the batch too): ``(M, n_out, n_in)``."""
    n_in, n_out = U.shape[-1], dY.shape[-1]
    g = np.zeros((n_in * M, n_out), np.result_type(U, dY))
    for a, b in _blocks(U, M):
        L = _lagged(U, M, a, b)
        g += L.reshape(-1, L.shape[-1]).T @ dY[a:b].reshape(-1, n_out)
    return np.ascontiguousarray(g.reshape(n_in, M, n_out).transpose(1, 2, 0))


class FIRDense(Block):
    """``y(k) = sum_m W[m] u(k-m) + b``: a layer of FIR synapses (paper Case II).

    ``W`` has shape ``(M+1, n_out, n_in)``.  Its reciprocal is the FIR layer with
    transposed taps run backwards in time, ``delta_u(k) = sum_m W[m]^T delta_y(k+m)``
    (temporal backpropagation, paper eq. 13); ``dJ/dW[m] = sum_k delta_y(k) u(k-m)^T``.
    """

    stateful = True
    linear = True

    state_batch_axis = 1  # the past inputs: (M, B, n_in)

    def __init__(self, W, b=None, *, bias: bool = True, trainable: bool = True, **kw):
        super().__init__(**kw)
        self.param("W", W, trainable=trainable)
        if self.W.ndim != 3:
            raise ParameterError(f"block {self.name!r}: FIRDense taps W must be (M+1, n_out, n_in),"
                             f" got shape {self.W.shape}")
        self.bias = bias
        if bias:
            self.param("b", np.zeros(self.W.shape[1]) if b is None else b, trainable=trainable)
            _bias_fits(self, "b", self.W.shape[1])

    @classmethod
    def random(cls, n_in: int, n_out: int, taps: int, *, seed: int = 0, **kw) -> FIRDense:
        rng = np.random.default_rng(seed)
        W = rng.uniform(-1, 1, (taps, n_out, n_in)) * np.sqrt(6.0 / ((n_in + n_out) * taps))
        return cls(W, **kw)

    def infer(self, t):
        if t is None:
            return (None,)
        if t.shape != (self.W.shape[2],):
            raise self.type_error(f"takes ({self.W.shape[2]},) samples, got {t.shape}",
                                  port=self.inputs[0])
        return (SignalType((self.W.shape[1],), t.dtype),)

    def init_state(self, batch, in_types, out_types):
        return in_types[0].zeros(self.W.shape[0] - 1, batch)

    def _kernel_params(self, contiguous=lambda a: a):
        b = self.b if self.bias else np.zeros(self.W.shape[1], self.W.dtype)
        return contiguous(np.transpose(self.W, (0, 2, 1))), b

    def c_code(self, c):
        taps, n_out, n_in = self.W.shape
        W = c.param("W", self.W)  # W[m] at m * n_out * n_in
        b = c.param("b", self.b) if self.bias else None
        c.output(*matvec(c.y(), W, n_out, n_in, c.u(0), add=b, ctype=c.T))
        if taps > 1:  # past inputs, newest first: x[m - 1] = u(k - m)
            x = c.state("past", np.zeros((taps - 1, n_in)))
            for m in range(1, taps):
                c.output(*matvec(c.y(), f"({W} + {m * n_out * n_in})", n_out, n_in,
                                 f"({x} + {(m - 1) * n_in})", accumulate=True, ctype=c.T))
            c.update(f"memmove({x} + {n_in}, {x}, sizeof({c.T}) * {(taps - 2) * n_in});",
                     f"for (int i = 0; i < {n_in}; ++i) {x}[i] = {c.u(0)}[i];")

    def output(self, x, u):
        return fir_layer_output(*self._kernel_params(), x, u)

    def update(self, x, u):
        return fir_update(None, x, u)

    def kernel(self):
        return Kernel(fir_layer_output, fir_layer_update,
                      self._kernel_params(np.ascontiguousarray))

    def sequence(self, x0, U):
        Y = fir_apply(self.W, U)
        return Y + self.b if self.bias else Y

    def param_grads(self, u, y, dy):
        (U,), (dY,) = u, dy
        g = {"W": fir_grad(dY, U, self.W.shape[0]).astype(self.W.dtype, copy=False)}
        if self.bias:
            g["b"] = dY.reshape(-1, dY.shape[-1]).sum(0)
        return {n: v for n, v in g.items() if self._params[n]}

    def c_param_grads(self, g):  # dW[m] += delta_y(k) u(k-m)^T, db += delta_y(k)
        taps, n_out, n_in = self.W.shape
        dW, dy = g.grad("W"), g.dy()
        for m in range(taps):
            lines = outer_add(f"({dW} + {m * n_out * n_in})", dy, n_out, g.u(0, m), n_in)
            g.add(*(lines if m == 0 else [f"if ({g.valid(m)}) {{", *lines, "}"]))
        if self.bias:
            g.add(f"for (int i = 0; i < {n_out}; ++i) {g.grad('b')}[i] += {dy}[i];")

    def param_jvp(self, u, y, dp):  # dy(k) = sum_m dW[m] u(k-m) + db
        (U,) = u
        out = fir_apply(np.asarray(dp["W"]), U).astype(y[0].dtype, copy=False) \
            if "W" in dp else np.zeros_like(y[0])
        return (out + dp["b"] if "b" in dp else out,)

    def _like(self, W, **kw) -> FIRDense:
        r = FIRDense(W, bias=False, name=self.name, **kw)
        r.W = W
        return r

    def transposed(self) -> Block:  # taps W[m]^T, no bias
        return self._like(np.swapaxes(self.W, 1, 2), inputs=self.outputs, outputs=self.inputs)

    @property
    def memory(self) -> int:
        return self.W.shape[0] - 1

    def reversed_taps(self) -> Block:
        return self._like(self.W[::-1], inputs=self.inputs, outputs=self.outputs)

    def label(self) -> str:
        M1, o, i = self.W.shape
        return f"FIR layer {i}→{o} ({M1} taps)"

    def config(self) -> dict:
        return {"W": self.W, "b": self.b if self.bias else None, "bias": self.bias,
                "trainable": self._params["W"]}
