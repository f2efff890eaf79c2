"""Neural blocks: Dense, MLP, Softmax (multivariate functions; reciprocal = J(k)^T)."""

from __future__ import annotations

import numpy as np
import scipy.special

from blockflow.core.block import Block
from blockflow.core.kernel import Kernel, fill_rows, generated_kernel, kernel, rows_matmul
from blockflow.core.types import SignalType
from blockflow.errors import ParameterError

from .discrete import _fir_update_into, fir_update
from .math import ELEMENTWISE, _matmul_into, _sigmoid, gain_matrix_t


def _outer_sum(d: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum over leading axes of d a^T``: the dJ/dW = sum_k delta(k) a(k)^T contraction."""
    return d.reshape(-1, d.shape[-1]).T @ a.reshape(-1, a.shape[-1])


@kernel(allocates=False)
def _dense_output_into(WT, b, u, out):
    return rows_matmul(u, WT, fill_rows(b, out))


@kernel(into=_dense_output_into)
def dense_output(WT, b, u):
    return u @ WT + b


@kernel(into=_matmul_into)
def dense_vjp(W, dy):
    return dy @ W


@kernel(allocates=False)
def _rnn_output_into(WT, b, x, h, out):  # tanh([x, h] W^T + b) without the concatenation
    n = x.shape[-1]
    rows_matmul(h, WT[n:], rows_matmul(x, WT[:n], fill_rows(b, out)))
    for i in range(out.size):
        out.flat[i] = np.tanh(out.flat[i])
    return out


@kernel(into=_rnn_output_into)
def rnn_output(WT, b, x, h):
    return np.tanh(np.concatenate((x, h), axis=-1) @ WT + b)


@kernel(allocates=False)
def _rnn_jvp_into(WT, dx, dh, x, h, y, out):  # ([dx, dh] W^T) (1 - y^2), row by row
    n, H = dx.shape[-1], out.shape[-1]
    for r in range(out.size // H):
        for j in range(H):
            acc = 0.0
            for i in range(n):
                acc += dx.flat[r * n + i] * WT[i, j]
            for i in range(H):
                acc += dh.flat[r * H + i] * WT[n + i, j]
            yj = y.flat[r * H + j]
            out.flat[r * H + j] = acc * (1.0 - yj * yj)
    return out


@kernel(into=_rnn_jvp_into)
def rnn_jvp(WT, dx, dh, x, h, y):
    return (np.concatenate((dx, dh), axis=-1) @ WT) * (1.0 - y * y)


@kernel(allocates=False)
def _rnn_vjp_into(W, n, dh, x, h, y, out):  # [dx, dh_prev] = (dh (1 - y^2)) W, split
    dx, dhp = out
    H = W.shape[0]
    for i in range(dx.size):
        dx.flat[i] = 0.0
    for i in range(dhp.size):
        dhp.flat[i] = 0.0
    for r in range(dh.size // H):
        for j in range(H):
            yj = y.flat[r * H + j]
            d = dh.flat[r * H + j] * (1.0 - yj * yj)
            for i in range(n):
                dx.flat[r * n + i] += d * W[j, i]
            for i in range(H):
                dhp.flat[r * H + i] += d * W[j, n + i]
    return out


@kernel(into=_rnn_vjp_into)
def rnn_vjp(W, n, dh, x, h, y):
    dxh = (dh * (1.0 - y * y)) @ W
    return dxh[..., :n], dxh[..., n:]


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


def _mlp_into(L: int) -> str:
    """The MLP's forward rule as element loops into its rows ``(y, s_0, .., s_{L-1})``:
    each activation computed once per element, as the next layer reads it."""
    Ws = [f"W{i}T, b{i}" for i in range(L)]
    w = [f"def f({', '.join(Ws)}, u, out):",
         "    rows_matmul(u, W0T, fill_rows(b0, out[1]))"]
    for i in range(1, L):
        w += [f"    s, prev, WT = out[{i + 1}], out[{i}], W{i}T",
              "    n, m = WT.shape[0], WT.shape[1]",
              f"    fill_rows(b{i}, s)",
              "    for r in range(s.size // m):",
              "        for p in range(n):",
              f"            a = act{i - 1}(prev.flat[r * n + p])",
              "            for j in range(m):",
              "                s.flat[r * m + j] += a * WT[p, j]"]
    w += ["    y, last = out[0], out[" + str(L) + "]",
          "    for e in range(y.size):",
          f"        y.flat[e] = act{L - 1}(last.flat[e])",
          "    return out"]
    return "\n".join(w) + "\n"


def _mlp_back_into(L: int, tangent: bool) -> str:
    """The MLP's reciprocal rule (``tangent=False``: ``du = ..(dy f'(s_{L-1})) W_{L-1}..
    W_0``) or its tangent (``dy = f'(s_{L-1}) W_{L-1}^T .. f'(s_0) W_0^T du``) as element
    loops, row by row, the deltas of one layer in a row of ``work`` (two rows of the
    widest layer, passed as a parameter): nothing allocated."""
    Ws = [f"W{i}T" if tangent else f"W{i}" for i in range(L)]
    ss = ", ".join(f"s{i}" for i in range(L))
    w = [f"def f({', '.join(Ws)}, work, d_in, u, y, {ss}, out):",
         "    for r in range(d_in.shape[0]):"]

    def deriv(i, e):  # f_i'(s_i) at element e of row r (the last layer's output is y)
        a = f"s{i}[r, {e}]"
        return f"dact{i}({a}, {'y[r, ' + e + ']' if i == L - 1 else f'act{i}({a})'})"

    if tangent:  # forward through the layers: d_{i+1} = (d_i @ W_i^T) f_i'(s_i)
        src = "d_in[r, p]"
        for i in range(L):
            dst = "out[r, j]" if i == L - 1 else f"work[{i % 2}, j]"
            w += [f"        for j in range({Ws[i]}.shape[1]):",
                  "            acc = 0.0",
                  f"            for p in range({Ws[i]}.shape[0]):",
                  f"                acc += {src} * {Ws[i]}[p, j]",
                  f"            {dst} = acc * {deriv(i, 'j')}"]
            src = f"work[{i % 2}, p]"
    else:  # back through the layers: d_i = (d_{i+1} f_i'(s_i)) @ W_i
        w += [f"        for j in range(W{L - 1}.shape[0]):",
              f"            work[0, j] = d_in[r, j] * {deriv(L - 1, 'j')}"]
        for i in range(L - 1, -1, -1):
            cur = (L - 1 - i) % 2
            dst = "out[r, p]" if i == 0 else f"work[{1 - cur}, p]"
            scale = "" if i == 0 else f" * {deriv(i - 1, 'p')}"
            w += [f"        for p in range(W{i}.shape[1]):",
                  "            acc = 0.0",
                  f"            for j in range(W{i}.shape[0]):",
                  f"                acc += work[{cur}, j] * W{i}[j, p]",
                  f"            {dst} = acc{scale}"]
    w.append("    return out")
    return "\n".join(w) + "\n"


def mlp_kernels(acts: tuple) -> tuple:
    """An MLP's forward rule (``y``, then the pre-activations) and its reciprocal rule
    as kernels, written out for the layer activations ``acts``."""
    L = len(acts)
    ns = {"np": np}
    for i, a in enumerate(acts):
        ns[f"act{i}"], ns[f"dact{i}"] = ELEMENTWISE[a]
    Ws = [f"W{i}T, b{i}" for i in range(L)]
    fwd = [f"def f({', '.join(Ws)}, u):", "    a = u"]
    for i in range(L):
        fwd += [f"    s{i} = a @ W{i}T + b{i}", f"    a = act{i}(s{i})"]
    fwd.append(f"    return ({', '.join(['a'] + [f's{i}' for i in range(L)])})")
    ss = ", ".join(f"s{i}" for i in range(L))
    back = [f"def f({', '.join(f'W{i}' for i in range(L))}, work, dy, u, y, {ss}):",
            "    d = dy"]
    for i in range(L - 1, -1, -1):
        a = "y" if i == L - 1 else f"act{i}(s{i})"
        # (in W's precision: numba types the derivatives' float literals as float64)
        back += [f"    d = np.asarray(d * dact{i}(s{i}, {a}), W{i}.dtype) @ W{i}"]
    back.append("    return d")
    tan = [f"def f({', '.join(f'W{i}T' for i in range(L))}, work, du, u, y, {ss}):",
           "    d = du"]
    for i in range(L):
        a = "y" if i == L - 1 else f"act{i}(s{i})"
        tan += [f"    d = np.asarray((d @ W{i}T) * dact{i}(s{i}, {a}), W{i}T.dtype)"]
    tan.append("    return d")
    key = "blocks.neural.mlp_" + "_".join(acts)
    ns.update(fill_rows=fill_rows, rows_matmul=rows_matmul)
    return (generated_kernel(key, "\n".join(fwd) + "\n", "f", ns, into=_mlp_into(L)),
            generated_kernel(key + "_vjp", "\n".join(back) + "\n", "f", dict(ns),
                             into=_mlp_back_into(L, tangent=False)),
            generated_kernel(key + "_jvp", "\n".join(tan) + "\n", "f", dict(ns),
                             into=_mlp_back_into(L, tangent=True)))


@kernel(allocates=False)
def _lstm_output_into(WT, b, x, h, c_prev, out):  # rows (h, c, z): the gates from z
    h_out, c_out, z = out
    n, H = x.shape[-1], c_prev.shape[-1]
    rows_matmul(h, WT[n:], rows_matmul(x, WT[:n], fill_rows(b, z)))
    for r in range(z.shape[0]):
        for j in range(H):
            i, f = _sigmoid(z[r, j]), _sigmoid(z[r, H + j])
            g, o = np.tanh(z[r, 2 * H + j]), _sigmoid(z[r, 3 * H + j])
            c = f * c_prev[r, j] + i * g
            c_out[r, j] = c
            h_out[r, j] = o * np.tanh(c)
    return out


@kernel(into=_lstm_output_into)
def lstm_output(WT, b, x, h, c_prev):
    z = np.concatenate((x, h), axis=-1) @ WT + b
    H = c_prev.shape[-1]
    i, f = _sigmoid(z[..., :H]), _sigmoid(z[..., H:2 * H])
    g, o = np.tanh(z[..., 2 * H:3 * H]), _sigmoid(z[..., 3 * H:])
    c = f * c_prev + i * g
    return o * np.tanh(c), c, z


@kernel
def lstm_tangent(dz, dc_prev, c_prev, c_out, z):
    """Output tangents of the cell for a tangent ``dz`` of the gates' pre-activations."""
    H = c_prev.shape[-1]
    i, f = _sigmoid(z[..., :H]), _sigmoid(z[..., H:2 * H])
    g, o = np.tanh(z[..., 2 * H:3 * H]), _sigmoid(z[..., 3 * H:])
    tc = np.tanh(c_out)
    di, df, dg, do = dz[..., :H], dz[..., H:2 * H], dz[..., 2 * H:3 * H], dz[..., 3 * H:]
    dc = df * f * (1 - f) * c_prev + f * dc_prev + di * i * (1 - i) * g + i * dg * (1 - g * g)
    return do * o * (1 - o) * tc + o * (1 - tc * tc) * dc, dc


@kernel(allocates=False)
def _lstm_jvp_into(WT, dx, dh, dc_prev, x, h, c_prev, h_out, c_out, z, out):
    # per unit j: its four gates' tangents from [dx, dh] and W's columns j, H + j, ...
    # (no (B, 4H) buffer), then lstm_tangent's equations
    dh_out, dc_out = out
    n, H = dx.shape[-1], c_prev.shape[-1]
    for r in range(c_prev.shape[0]):
        for j in range(H):
            di, df, dg, do = 0.0, 0.0, 0.0, 0.0
            for q in range(n + H):
                v = dx[r, q] if q < n else dh[r, q - n]
                di += v * WT[q, j]
                df += v * WT[q, H + j]
                dg += v * WT[q, 2 * H + j]
                do += v * WT[q, 3 * H + j]
            i, f = _sigmoid(z[r, j]), _sigmoid(z[r, H + j])
            g, o = np.tanh(z[r, 2 * H + j]), _sigmoid(z[r, 3 * H + j])
            tc = np.tanh(c_out[r, j])
            dc = df * f * (1 - f) * c_prev[r, j] + f * dc_prev[r, j] \
                + di * i * (1 - i) * g + i * dg * (1 - g * g)
            dh_out[r, j] = do * o * (1 - o) * tc + o * (1 - tc * tc) * dc
            dc_out[r, j] = dc
    return out


@kernel(into=_lstm_jvp_into)
def lstm_jvp(WT, dx, dh, dc_prev, x, h, c_prev, h_out, c_out, z):
    return lstm_tangent(np.concatenate((dx, dh), axis=-1) @ WT, dc_prev, c_prev, c_out, z)


@kernel(allocates=False)
def _lstm_vjp_into(W, n, dh, dc, x, h, c_prev, h_out, c_out, z, out):
    # per unit j: the four gates' deltas, spread straight into [dx, dh_prev] through
    # W's rows j, H + j, 2H + j, 3H + j (no (B, 4H) buffer)
    dx, dhp, dcp = out
    H = c_prev.shape[-1]
    for r in range(dx.shape[0]):
        for q in range(n):
            dx[r, q] = 0.0
        for q in range(H):
            dhp[r, q] = 0.0
        for j in range(H):
            i, f = _sigmoid(z[r, j]), _sigmoid(z[r, H + j])
            g, o = np.tanh(z[r, 2 * H + j]), _sigmoid(z[r, 3 * H + j])
            tc = np.tanh(c_out[r, j])
            d = dc[r, j] + dh[r, j] * o * (1.0 - tc * tc)
            di, df = d * g * i * (1 - i), d * c_prev[r, j] * f * (1 - f)
            dg, do = d * i * (1 - g * g), dh[r, j] * tc * o * (1 - o)
            for q in range(n + H):
                v = di * W[j, q] + df * W[H + j, q] + dg * W[2 * H + j, q] \
                    + do * W[3 * H + j, q]
                if q < n:
                    dx[r, q] += v
                else:
                    dhp[r, q - n] += v
            dcp[r, j] = d * f
    return out


@kernel(into=_lstm_vjp_into)
def lstm_vjp(W, n, dh, dc, x, h, c_prev, h_out, c_out, z):
    H = c_prev.shape[-1]
    i, f = _sigmoid(z[..., :H]), _sigmoid(z[..., H:2 * H])
    g, o = np.tanh(z[..., 2 * H:3 * H]), _sigmoid(z[..., 3 * H:])
    tc = np.tanh(c_out)
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = np.concatenate((dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                         dc * i * (1 - g * g), dh * tc * o * (1 - o)), axis=-1)
    dxh = dz @ W
    return dxh[..., :n], dxh[..., n:], dc * f


def _bias_fits(b: Block, name: str, n: int) -> None:
    shape = getattr(b, name).shape
    if shape != (n,):
        raise ParameterError(f"block {b.name!r} ({type(b).__name__}): bias {name} must have "
                             f"shape ({n},) to match the weights, got {shape}")


def _glorot(rng, n_in: int, n_out: int) -> np.ndarray:
    return rng.uniform(-1, 1, (n_out, n_in)) * np.sqrt(6.0 / (n_in + n_out))


class Dense(Block):
    """``y(k) = W u(k) + b``: an affine layer, ``u`` of shape ``(n,)``, ``y`` of ``(m,)``.

    ``dJ/dW = sum_k delta_y(k) u(k)^T``, ``dJ/db = sum_k delta_y(k)``, ``delta_u = W^T delta_y``.
    """

    linear = True

    def __init__(self, W, b=None, *, trainable: bool = True, **kw):
        super().__init__(**kw)
        self.param("W", np.atleast_2d(W), trainable=trainable, ndim=2)
        self.param("b", np.zeros(self.W.shape[0]) if b is None else b, trainable=trainable)
        _bias_fits(self, "b", self.W.shape[0])

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
        return dense_output(self.W.T, self.b, u)

    def vjp(self, u, y, dy):
        return dense_vjp(self.W, dy)

    def kernel(self):
        return Kernel(dense_output, params=(np.ascontiguousarray(self.W.T), self.b))

    def vjp_kernel(self):
        return Kernel(dense_vjp, params=(self.W,))

    def jvp_kernel(self):  # du W^T: the weights without the bias
        return Kernel(gain_matrix_t, params=(np.ascontiguousarray(self.W.T),))

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

    def config(self) -> dict:
        return {"W": self.W, "b": self.b, "trainable": self._params["W"]}


class MLP(Block):
    """A multilayer perceptron as one multivariate block.

    ``a_0 = u``, ``s_l = W_l a_{l-1} + b_l``, ``a_l = f(s_l)`` (``f_out`` on the last layer),
    ``y = a_L``.  Parameters are ``W0, b0, W1, b1, ...``.  Its reciprocal is backprop
    (paper eq. 2): ``delta_{l-1} = W_l^T (f'(s_l) delta_l)``.
    """

    def __init__(self, weights, biases, activation: str = "tanh",
                 output_activation: str = "identity", *, trainable: bool = True, **kw):
        super().__init__(**kw)
        if len(weights) != len(biases) or not len(weights):
            raise ParameterError(f"block {self.name!r} (MLP): needs one bias per weight matrix "
                                 f"and at least one layer, got {len(weights)} weights and "
                                 f"{len(biases)} biases")
        for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
            self.param(f"W{i}", np.atleast_2d(W), trainable=trainable, ndim=2)
            self.param(f"b{i}", b, trainable=trainable)
            _bias_fits(self, f"b{i}", getattr(self, f"W{i}").shape[0])
            if i and getattr(self, f"W{i}").shape[1] != getattr(self, f"W{i - 1}").shape[0]:
                raise ParameterError(
                    f"block {self.name!r} (MLP): layers do not chain: W{i - 1} gives "
                    f"{getattr(self, f'W{i - 1}').shape[0]} outputs but W{i} takes "
                    f"{getattr(self, f'W{i}').shape[1]} inputs")
        for what, fn in (("activation", activation), ("output_activation", output_activation)):
            if fn not in ELEMENTWISE:
                raise ParameterError(f"block {self.name!r} (MLP): unknown {what} {fn!r}; "
                                     f"known: {sorted(ELEMENTWISE)}")
        self.n_layers = len(weights)
        self.residuals = tuple(f"s{i}" for i in range(self.n_layers))
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

    def residual_types(self, in_types, out_types):
        return tuple(SignalType((W.shape[0],), in_types[0].dtype) for W, _ in self.layers())

    def _acts_names(self) -> tuple:
        return (self.activation,) * (self.n_layers - 1) + (self.output_activation,)

    def output(self, x, u):  # y, then the pre-activations s_0 .. s_{L-1} (residuals)
        Ws = [a for W, b in self.layers() for a in (W.T, b)]
        return mlp_kernels(self._acts_names())[0](*Ws, u)

    def kernel(self):
        Ws = [a for W, b in self.layers() for a in (np.ascontiguousarray(W.T), b)]
        return Kernel(mlp_kernels(self._acts_names())[0], params=tuple(Ws))

    def _work(self) -> np.ndarray:  # a row of deltas per layer, two layers at a time
        return np.zeros((2, max(W.shape[0] for W, _ in self.layers())), self.layers()[0][0].dtype)

    def vjp_kernel(self):
        return Kernel(mlp_kernels(self._acts_names())[1],
                      params=(*(W for W, _ in self.layers()), self._work()))

    def _activations(self, u, S):
        """``a_0 = u, a_l = f(s_{l-1})`` from the recorded pre-activations (elementwise)."""
        return [u] + [f(s) for (f, _), s in zip(self._acts, S, strict=True)]

    def _backprop(self, u, S, dy):
        A = self._activations(u, S)
        deltas = []  # delta at each s_l
        d = dy
        for layer in range(self.n_layers - 1, -1, -1):
            d = d * self._acts[layer][1](S[layer], A[layer + 1])
            deltas.append(d)
            d = d @ self.layers()[layer][0]
        return d, deltas[::-1], A

    def vjp(self, u, y, dy):
        return mlp_kernels(self._acts_names())[1](*(W for W, _ in self.layers()), None, dy,
                                                  u[0], *y)

    def jvp(self, u, y, du):
        return mlp_kernels(self._acts_names())[2](*(W.T for W, _ in self.layers()), None, du,
                                                  u[0], *y)

    def jvp_kernel(self):
        Ws = (np.ascontiguousarray(W.T) for W, _ in self.layers())
        return Kernel(mlp_kernels(self._acts_names())[2], params=(*Ws, self._work()))

    def param_grads(self, u, y, dy):
        _, deltas, A = self._backprop(u[0], y[1:], dy[0])
        g = {}
        for i, (d, a) in enumerate(zip(deltas, A[:-1], strict=True)):
            g[f"W{i}"] = _outer_sum(d, a)
            g[f"b{i}"] = d.reshape(-1, d.shape[-1]).sum(0)
        return g

    def param_jvp(self, u, y, dp):
        S = y[1:]
        A = self._activations(u[0], S)
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

    def config(self) -> dict:
        W, b = zip(*self.layers(), strict=True)
        return {"weights": list(W), "biases": list(b), "activation": self.activation,
                "output_activation": self.output_activation, "trainable": self._params["W0"]}


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

    def config(self) -> dict:
        return {}


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

    def output(self, x, u):
        return fir_layer_output(*self._kernel_params(), x, u)

    def update(self, x, u):
        return fir_update(None, x, u)

    def kernel(self):
        return Kernel(fir_layer_output, fir_layer_update,
                      self._kernel_params(np.ascontiguousarray))

    def sequence(self, x0, U):
        T = U.shape[0]
        Y = U @ self.W[0].T
        for m in range(1, min(self.W.shape[0], T)):
            Y[m:] += U[: T - m] @ self.W[m].T
        return Y + self.b if self.bias else Y

    def param_grads(self, u, y, dy):
        (U,), (dY,) = u, dy
        T = U.shape[0]
        gW = np.zeros_like(self.W)
        for m in range(min(self.W.shape[0], T)):
            gW[m] = _outer_sum(dY[m:], U[: T - m])
        g = {"W": gW}
        if self.bias:
            g["b"] = dY.reshape(-1, dY.shape[-1]).sum(0)
        return {n: v for n, v in g.items() if self._params[n]}

    def param_jvp(self, u, y, dp):  # dy(k) = sum_m dW[m] u(k-m) + db
        (U,) = u
        T = U.shape[0]
        out = np.zeros_like(y[0])
        if "W" in dp:
            dW = np.asarray(dp["W"])
            for m in range(min(dW.shape[0], T)):
                out[m:] += U[: T - m] @ dW[m].T
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


class RNNCell(Block):
    """``h(k) = tanh(W [x(k); h_prev(k)] + b)``: an Elman cell (wire ``h_prev`` from a delay)."""

    inputs, outputs = ("x", "h_prev"), ("h",)

    def __init__(self, W, b, **kw):
        super().__init__(**kw)
        self.param("W", W, ndim=2)
        self.param("b", b)
        H = self.W.shape[0]
        if self.W.shape[1] <= H:
            raise ParameterError(f"block {self.name!r} (RNNCell): W must be (H, n + H) with "
                                 f"n >= 1 inputs, got {self.W.shape}")
        _bias_fits(self, "b", H)

    @classmethod
    def random(cls, n_in: int, hidden: int, *, seed: int = 0, **kw) -> RNNCell:
        return cls(_glorot(np.random.default_rng(seed), n_in + hidden, hidden),
                   np.zeros(hidden), **kw)

    def infer(self, tx, th):
        H = self.W.shape[0]
        if th is not None and th.shape != (H,):
            raise self.type_error(f"takes ({H},) states, got {th.shape}", port="h_prev")
        if tx is not None and tx.shape != (self.W.shape[1] - H,):
            raise self.type_error(f"takes ({self.W.shape[1] - H},) inputs, got {tx.shape}",
                                  port="x")
        return (SignalType((H,), tx.dtype if tx else np.float64),)

    def output(self, s, x, h):
        return rnn_output(self.W.T, self.b, x, h)

    def vjp(self, u, y, dh):
        return rnn_vjp(self.W, u[0].shape[-1], dh, *u, *y)

    def kernel(self):
        return Kernel(rnn_output, params=(np.ascontiguousarray(self.W.T), self.b))

    def vjp_kernel(self):
        H = self.W.shape[0]
        return Kernel(rnn_vjp, params=(self.W, self.W.shape[1] - H))

    def jvp(self, u, y, dx, dh):
        return rnn_jvp(self.W.T, dx, dh, *u, *y)

    def jvp_kernel(self):
        return Kernel(rnn_jvp, params=(np.ascontiguousarray(self.W.T),))

    def param_grads(self, u, y, dy):
        dz = y[0] * y[0]
        np.subtract(1.0, dz, out=dz)
        dz *= dy[0]  # delta at the pre-activation, f'(a(k)) delta_y(k)
        n = u[0].shape[-1]
        gW = np.empty_like(self.W)
        gW[:, :n], gW[:, n:] = _outer_sum(dz, u[0]), _outer_sum(dz, u[1])
        return {"W": gW, "b": dz.reshape(-1, dz.shape[-1]).sum(0)}

    def param_jvp(self, u, y, dp):
        dz = np.concatenate(u, -1) @ dp.get("W", np.zeros_like(self.W)).T + dp.get("b", 0.0)
        return (dz * (1.0 - y[0] ** 2),)

    def config(self) -> dict:
        return {"W": self.W, "b": self.b}


class LSTMCell(Block):
    """A long short-term memory cell (gates ``i, f, g, o`` stacked in ``W``, ``b``)::

        z = W [x; h_prev] + b,  i = sig(z_i),  f = sig(z_f),  g = tanh(z_g),  o = sig(z_o)
        c = f * c_prev + i * g,  h = o * tanh(c)

    Wire ``h`` and ``c`` back to ``h_prev`` and ``c_prev`` through unit delays.  The
    reciprocal applies ``J(k)^T`` by the graphical rules (split, add, product, function,
    weight matrix) of seed 002.
    """

    inputs, outputs = ("x", "h_prev", "c_prev"), ("h", "c")

    def __init__(self, W, b, **kw):
        super().__init__(**kw)
        self.param("W", W, ndim=2)
        self.param("b", b)
        if self.W.shape[0] % 4 or not self.W.shape[0] or self.b.shape != (self.W.shape[0],) \
                or self.W.shape[1] <= self.W.shape[0] // 4:
            raise ParameterError(f"block {self.name!r} (LSTMCell): W must be (4H, n + H) with "
                                 f"n >= 1 and b (4H,), got W {self.W.shape}, b {self.b.shape}")

    @classmethod
    def random(cls, n_in: int, hidden: int, *, seed: int = 0, forget_bias: float = 1.0,
               **kw) -> LSTMCell:
        W = _glorot(np.random.default_rng(seed), n_in + hidden, 4 * hidden)
        b = np.zeros(4 * hidden)
        b[hidden:2 * hidden] = forget_bias
        return cls(W, b, **kw)

    def infer(self, tx, th, tc):
        H = self.W.shape[0] // 4
        for p, t in (("h_prev", th), ("c_prev", tc)):
            if t is not None and t.shape != (H,):
                raise self.type_error(f"takes ({H},) states, got {t.shape}", port=p)
        if tx is not None and tx.shape != (self.W.shape[1] - H,):
            raise self.type_error(f"takes ({self.W.shape[1] - H},) inputs, got {tx.shape}",
                                  port="x")
        t = SignalType((H,), tx.dtype if tx else np.float64)
        return t, t

    residuals = ("z",)  # the gates' pre-activations W [x; h_prev] + b

    def residual_types(self, in_types, out_types):
        return (SignalType((self.W.shape[0],), out_types[0].dtype),)

    @staticmethod
    def gates(z, c_prev):
        """The gates and the new cell state from the pre-activations ``z``."""
        i, f, g, o = np.split(z, 4, axis=-1)
        i, f, o = scipy.special.expit(i), scipy.special.expit(f), scipy.special.expit(o)
        g = np.tanh(g)
        c = f * c_prev + i * g
        return i, f, g, o, c, np.tanh(c)

    def output(self, s, x, h, c_prev):
        return lstm_output(self.W.T, self.b, x, h, c_prev)

    def kernel(self):
        return Kernel(lstm_output, params=(np.ascontiguousarray(self.W.T), self.b))

    def vjp_kernel(self):
        return Kernel(lstm_vjp, params=(self.W, self.W.shape[1] - self.W.shape[0] // 4))

    def _dz(self, u, z, dh, dc):
        i, f, g, o, c, tc = self.gates(z, u[2])
        dc = dc + dh * o * (1.0 - tc * tc)
        dz = np.concatenate([dc * g * i * (1 - i), dc * u[2] * f * (1 - f),
                             dc * i * (1 - g * g), dh * tc * o * (1 - o)], -1)
        return dz, dc * f

    def vjp(self, u, y, dh, dc):
        return lstm_vjp(self.W, u[0].shape[-1], dh, dc, *u, *y)

    def jvp(self, u, y, dx, dh, dc_prev):
        return lstm_jvp(self.W.T, dx, dh, dc_prev, *u, *y)

    def jvp_kernel(self):
        return Kernel(lstm_jvp, params=(np.ascontiguousarray(self.W.T),))

    def param_grads(self, u, y, dy):
        dz, _ = self._dz(u, y[2], *dy)
        return {"W": _outer_sum(dz, np.concatenate(u[:2], -1)),
                "b": dz.reshape(-1, dz.shape[-1]).sum(0)}

    def param_jvp(self, u, y, dp):
        dz = np.concatenate(u[:2], -1) @ dp.get("W", np.zeros_like(self.W)).T + dp.get("b", 0.0)
        return lstm_tangent(dz, np.zeros_like(u[2]), u[2], y[1], y[2])

    def label(self) -> str:
        return f"LSTM H={self.W.shape[0] // 4}"

    def config(self) -> dict:
        return {"W": self.W, "b": self.b}


