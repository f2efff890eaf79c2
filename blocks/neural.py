"""Feedforward neural blocks: Dense, MLP, Softmax (multivariate functions; reciprocal =
J(k)^T)."""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.ccode import DERIVATIVES_C, FUNCTIONS_C, matvec, matvec_t, outer_add
from blockflow.core.kernel import Kernel, fill_rows, generated_kernel, kernel, rows_matmul
from blockflow.core.types import SignalType
from blockflow.errors import ParameterError

from .math import ELEMENTWISE, _matmul_into, gain_matrix_t, matmul_rows


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
    grads_read_outputs = False  # (dJ/dW from delta_y and u alone)

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

    def c_code(self, c):
        rows, cols = self.W.shape
        c.output(*matvec(c.y(), c.param("W", self.W), rows, cols, c.u(0),
                         add=c.param("b", self.b), ctype=c.T))

    def output(self, x, u):  # (over whole sequences: one 2-D product)
        return matmul_rows(u, self.W.T) + self.b

    def vjp(self, u, y, dy):
        return matmul_rows(dy, self.W)

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

    def c_param_grads(self, g):  # dW += delta_y u^T, db += delta_y
        rows, cols = self.W.shape
        g.add(*outer_add(g.grad("W"), g.dy(), rows, g.u(), cols),
              f"for (int i = 0; i < {rows}; ++i) {g.grad('b')}[i] += {g.dy()}[i];")

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

    def c_code(self, c):
        acts = self._acts_names()
        if any(a not in FUNCTIONS_C for a in acts):
            raise c.refuse(f"activations {acts}: C export writes {sorted(FUNCTIONS_C)}")
        a_in = c.u(0)
        for layer, (W, b) in enumerate(self.layers()):
            rows, cols = W.shape
            s = c.y(1 + layer)  # the pre-activation, recorded
            c.output(*matvec(s, c.param(f"W{layer}", W), rows, cols, a_in,
                             add=c.param(f"b{layer}", b), ctype=c.T))
            out = c.y(0) if layer == self.n_layers - 1 else c.state(f"a{layer}", np.zeros(rows))
            f = FUNCTIONS_C[acts[layer]].format(a=f"{s}[i]")
            c.output(f"for (int i = 0; i < {rows}; ++i) {out}[i] = {f};")
            a_in = out

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

    def _c_backprop(self, ctx) -> tuple[list[str], list[str], list[str]]:
        """C lines of backprop at one step (paper eq. 2): the delta at every
        pre-activation ``s_l`` and the activations ``a_l`` each layer reads (arrays)."""
        acts, L = self._acts_names(), self.n_layers
        if any(a not in DERIVATIVES_C for a in acts):
            raise ctx.refuse(f"activations {acts}: C export writes {sorted(DERIVATIVES_C)}")
        lines, A = [], [ctx.u()]
        for layer in range(L - 1):  # a_{l+1} = f(s_l), from the recorded s_l
            rows = self.layers()[layer][0].shape[0]
            a = ctx.state(f"a{layer}", np.zeros(rows))
            f = FUNCTIONS_C[acts[layer]].format(a=f"{ctx.y(1 + layer)}[i]")
            lines.append(f"for (int i = 0; i < {rows}; ++i) {a}[i] = {f};")
            A.append(a)
        A.append(ctx.y(0))
        D, d = [None] * L, ctx.dy()
        for layer in range(L - 1, -1, -1):
            W = self.layers()[layer][0]
            rows, cols = W.shape
            ds = ctx.state(f"ds{layer}", np.zeros(rows))
            df = DERIVATIVES_C[acts[layer]].format(a=f"{ctx.y(1 + layer)}[i]",
                                                   y=f"{A[layer + 1]}[i]")
            lines.append(f"for (int i = 0; i < {rows}; ++i) {ds}[i] = {d}[i] * {df};")
            D[layer] = ds
            if layer:
                d = ctx.state(f"da{layer}", np.zeros(cols))
                lines += matvec_t(d, ctx.param(f"W{layer}", W), rows, cols, ds, ctx.T)
        return lines, D, A

    def c_vjp(self, v):  # delta_u = W_0^T delta_s0
        lines, D, _ = self._c_backprop(v)
        rows, cols = self.W0.shape
        v.output(*lines, *matvec_t(v.du(), v.param("W0", self.W0), rows, cols, D[0], v.T))

    def c_param_grads(self, g):  # dW_l += delta_s_l a_l^T, db_l += delta_s_l
        lines, D, A = self._c_backprop(g)
        for layer, (W, _) in enumerate(self.layers()):
            rows, cols = W.shape
            lines += outer_add(g.grad(f"W{layer}"), D[layer], rows, A[layer], cols)
            lines.append(f"for (int i = 0; i < {rows}; ++i) {g.grad(f'b{layer}')}[i] += "
                         f"{D[layer]}[i];")
        g.add(*lines)

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
