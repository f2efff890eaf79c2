"""Recurrent cells: RNNCell and LSTMCell (a hidden state fed back through a delay inside
the cell; the reciprocal runs their Jacobians transposed backwards in time)."""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.kernel import Kernel, fill_rows, kernel, rows_matmul
from blockflow.core.types import SignalType
from blockflow.errors import ParameterError

from .math import _sigmoid
from .neural import _bias_fits, _glorot, _outer_sum


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


def _c_affine(c, W: str, rows: int, n: int, H: int, b: str, out: str) -> list[str]:
    """``out = W [x; h_prev] + b`` in C (``W`` of ``rows`` x ``(n + H)``)."""
    return [f"for (int r = 0; r < {rows}; ++r) {{",
            f"    {c.T} acc = {b}[r];",
            f"    for (int j = 0; j < {n}; ++j) acc += {W}[r * {n + H} + j] * {c.u(0)}[j];",
            f"    for (int j = 0; j < {H}; ++j) acc += {W}[r * {n + H} + {n} + j] * "
            f"{c.u(1)}[j];",
            f"    {out}[r] = acc;", "}"]


def _c_back_affine(W: str, rows: int, n: int, H: int, dz: str, dx: str, dh: str,
                   ctype: str) -> list[str]:
    """``[dx; dh] = W^T dz`` in C: the reciprocal of :func:`_c_affine`."""
    return [f"for (int j = 0; j < {n + H}; ++j) {{",
            f"    {ctype} acc = 0;",
            f"    for (int r = 0; r < {rows}; ++r) acc += {W}[r * {n + H} + j] * {dz}[r];",
            f"    if (j < {n}) {dx}[j] = acc; else {dh}[j - {n}] = acc;", "}"]


def _c_cell_grads(g, dz: str, rows: int, n: int, H: int) -> list[str]:
    """``dW += dz [x; h_prev]^T``, ``db += dz``: a cell's weight gradients in C."""
    dW, x, h = g.grad("W"), g.u(0), g.u(1)
    return [f"for (int r = 0; r < {rows}; ++r) {{",
            f"    for (int j = 0; j < {n}; ++j) {dW}[r * {n + H} + j] += {dz}[r] * {x}[j];",
            f"    for (int j = 0; j < {H}; ++j) {dW}[r * {n + H} + {n} + j] += {dz}[r] * "
            f"{h}[j];",
            f"    {g.grad('b')}[r] += {dz}[r];", "}"]


#: rows (steps x members) of a cell's parameter-gradient contraction made at a time: its
#: pre-activation deltas (H or 4H numbers a row) are never made for a whole long run
GRAD_ROWS = 4096


def by_slices(part, *arrays) -> dict:
    """``part``'s gradients (a dict, from 2-D arrays of rows) summed over slices of
    :data:`GRAD_ROWS` rows of ``arrays`` (their leading axes taken as rows): the memory
    of the contraction's temporaries is bounded, whatever the run's length."""
    rows = [a.reshape(-1, a.shape[-1]) for a in arrays]
    total: dict = {}
    for a in range(0, max(len(rows[0]), 1), GRAD_ROWS):
        for k, g in part(*(r[a:a + GRAD_ROWS] for r in rows)).items():
            total[k] = total[k] + g if k in total else g
    return total


class RNNCell(Block):
    """``h(k) = tanh(W [x(k); h_prev(k)] + b)``: an Elman cell (wire ``h_prev`` from a delay)."""

    inputs, outputs = ("x", "h_prev"), ("h",)
    libm = 1  # one tanh per element of h

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

    def c_code(self, c):
        H = self.W.shape[0]
        n = self.W.shape[1] - H
        W, b = c.param("W", self.W), c.param("b", self.b)
        c.output(*_c_affine(c, W, H, n, H, b, c.y()),
                 f"for (int r = 0; r < {H}; ++r) {c.y()}[r] = tanh({c.y()}[r]);")

    def _c_dz(self, ctx) -> tuple[str, list[str]]:  # delta at the pre-activation
        H = self.W.shape[0]
        dz = ctx.state("dz", np.zeros(H))
        return dz, [f"for (int r = 0; r < {H}; ++r) {dz}[r] = {ctx.dy()}[r] * "
                    f"(1.0 - {ctx.y()}[r] * {ctx.y()}[r]);"]

    def c_vjp(self, v):
        H = self.W.shape[0]
        dz, lines = self._c_dz(v)
        v.output(*lines, *_c_back_affine(v.param("W", self.W), H, self.W.shape[1] - H, H, dz,
                                         v.du(0), v.du(1), v.T))

    def c_param_grads(self, g):
        H = self.W.shape[0]
        dz, lines = self._c_dz(g)
        g.add(*lines, *_c_cell_grads(g, dz, H, self.W.shape[1] - H, H))

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
        n = u[0].shape[-1]

        def part(x, h_prev, h, d):
            dz = h * h
            np.subtract(1.0, dz, out=dz)
            dz *= d  # delta at the pre-activation, f'(a(k)) delta_y(k)
            gW = np.empty_like(self.W)
            gW[:, :n], gW[:, n:] = dz.T @ x, dz.T @ h_prev
            return {"W": gW, "b": dz.sum(0)}

        return by_slices(part, u[0], u[1], y[0], dy[0])

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
    libm = 5  # three sigmoids and two tanh per element of h

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
        import scipy.special  # (deferred: importing scipy.special costs 0.2-0.4 s)
        i, f, g, o = np.split(z, 4, axis=-1)
        i, f, o = scipy.special.expit(i), scipy.special.expit(f), scipy.special.expit(o)
        g = np.tanh(g)
        c = f * c_prev + i * g
        return i, f, g, o, c, np.tanh(c)

    def c_code(self, c):
        H4 = self.W.shape[0]
        H, n = H4 // 4, self.W.shape[1] - H4 // 4
        W, b = c.param("W", self.W), c.param("b", self.b)
        z, h, cell = c.y(2), c.y(0), c.y(1)  # gates' pre-activations i, f, g, o

        def sig(a):
            return f"(1.0 / (1.0 + exp(-({a}))))"

        c.output(*_c_affine(c, W, H4, n, H, b, z),
                 f"for (int r = 0; r < {H}; ++r) {{",
                 f"    {c.T} i = {sig(f'{z}[r]')}, f = {sig(f'{z}[{H} + r]')};",
                 f"    {c.T} g = tanh({z}[{2 * H} + r]), o = {sig(f'{z}[{3 * H} + r]')};",
                 f"    {cell}[r] = f * {c.u(2)}[r] + i * g;",
                 f"    {h}[r] = o * tanh({cell}[r]);", "}")

    def _c_dz(self, ctx) -> tuple[str, str, list[str]]:
        """The deltas at the gates' pre-activations and at ``c_prev`` (C arrays) and the
        lines computing them (seed 002's graphical rules, as :meth:`_dz`)."""
        H = self.W.shape[0] // 4
        dz, dcp = ctx.state("dz", np.zeros(4 * H)), ctx.state("dc_prev", np.zeros(H))
        z, cp, cell = ctx.y(2), ctx.u(2), ctx.y(1)

        def sig(a):
            return f"(1.0 / (1.0 + exp(-({a}))))"

        return dz, dcp, [
            f"for (int r = 0; r < {H}; ++r) {{",
            f"    {ctx.T} i = {sig(f'{z}[r]')}, f = {sig(f'{z}[{H} + r]')};",
            f"    {ctx.T} g = tanh({z}[{2 * H} + r]), o = {sig(f'{z}[{3 * H} + r]')};",
            f"    {ctx.T} tc = tanh({cell}[r]), dh = {ctx.dy(0)}[r];",
            f"    {ctx.T} dc = {ctx.dy(1)}[r] + dh * o * (1.0 - tc * tc);",
            f"    {dz}[r] = dc * g * i * (1.0 - i);",
            f"    {dz}[{H} + r] = dc * {cp}[r] * f * (1.0 - f);",
            f"    {dz}[{2 * H} + r] = dc * i * (1.0 - g * g);",
            f"    {dz}[{3 * H} + r] = dh * tc * o * (1.0 - o);",
            f"    {dcp}[r] = dc * f;", "}"]

    def c_vjp(self, v):
        H4 = self.W.shape[0]
        dz, dcp, lines = self._c_dz(v)
        v.output(*lines, *_c_back_affine(v.param("W", self.W), H4, self.W.shape[1] - H4 // 4,
                                         H4 // 4, dz, v.du(0), v.du(1), v.T),
                 f"for (int r = 0; r < {H4 // 4}; ++r) {v.du(2)}[r] = {dcp}[r];")

    def c_param_grads(self, g):
        H4 = self.W.shape[0]
        dz, _, lines = self._c_dz(g)
        g.add(*lines, *_c_cell_grads(g, dz, H4, self.W.shape[1] - H4 // 4, H4 // 4))

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
        def part(x, h_prev, c_prev, z, dh, dc):
            dz, _ = self._dz((x, h_prev, c_prev), z, dh, dc)
            return {"W": _outer_sum(dz, np.concatenate((x, h_prev), -1)), "b": dz.sum(0)}

        return by_slices(part, *u[:3], y[2], *dy)

    def param_jvp(self, u, y, dp):
        dz = np.concatenate(u[:2], -1) @ dp.get("W", np.zeros_like(self.W)).T + dp.get("b", 0.0)
        return lstm_tangent(dz, np.zeros_like(u[2]), u[2], y[1], y[2])

    def label(self) -> str:
        return f"LSTM H={self.W.shape[0] // 4}"

    def config(self) -> dict:
        return {"W": self.W, "b": self.b}
