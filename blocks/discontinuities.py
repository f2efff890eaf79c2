"""Discontinuities: DeadZone, Quantizer, Relay (with hysteresis), Lookup1D.

Each block's reciprocal rule sits under its forward rule: a dead zone passes
``delta_y`` outside the zone, a lookup table scales it by the table's slope (and trains
its values), quantiser and relay are piecewise constant (``nondifferentiable``: zero
gradient wherever it exists).
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.ccode import each
from blockflow.core.kernel import Kernel, kernel
from blockflow.errors import ParameterError


@kernel(allocates=False)
def _dead_zone_into(start, end, u, out):
    for i in range(out.size):
        v = u.flat[i]
        out.flat[i] = v - end if v > end else (v - start if v < start else 0.0 * v)
    return out


@kernel(allocates=False)
def _dead_zone_vjp_into(start, end, dy, u, y, out):
    for i in range(out.size):
        v = u.flat[i]
        out.flat[i] = dy.flat[i] * ((v > end) or (v < start))
    return out


@kernel(into=_dead_zone_into)
def dead_zone(start, end, u):
    return np.where(u > end, u - end, np.where(u < start, u - start, 0.0 * u))


@kernel(into=_dead_zone_vjp_into, numbers=True)
def dead_zone_vjp(start, end, dy, u, y):  # 1 outside the zone, 0 inside
    return dy * ((u > end) | (u < start))


class DeadZone(Block):
    """``y(k) = u - end`` above ``end``, ``u - start`` below ``start``, 0 in between.

    Examples
    --------
    >>> DeadZone(-0.5, 0.5).output(None, np.array([-2.0, 0.2, 1.5]))
    array([-1.5,  0. ,  1. ])
    """

    def __init__(self, start: float = -0.5, end: float = 0.5, **kw):
        super().__init__(**kw)
        self.start = self.scalar("start", start)
        self.end = self.scalar("end", end, minimum=self.start)

    def output(self, x, u):
        return dead_zone(self.start, self.end, u)

    def c_code(self, c):
        a, b = c.param("start", self.start), c.param("end", self.end)
        c.output(*each(c.n_y(), f"{c.y()}[i] = {c.u(0)}[i] > {b}[0] ? {c.u(0)}[i] - {b}[0] : "
                                f"({c.u(0)}[i] < {a}[0] ? {c.u(0)}[i] - {a}[0] : 0.0);"))

    def vjp(self, u, y, dy):
        return dead_zone_vjp(self.start, self.end, dy, u[0], y[0])

    def c_vjp(self, v):  # 1 outside the zone, 0 inside
        a, b = v.param("start", self.start), v.param("end", self.end)
        v.output(*each(v.n_u(), f"{v.du()}[i] = ({v.u()}[i] > {b}[0] || {v.u()}[i] < {a}[0]) "
                                f"? {v.dy()}[i] : 0.0;"))

    def jvp(self, u, y, du):
        return self.vjp(u, y, du)

    def kernel(self):
        return Kernel(dead_zone, params=(self.start, self.end))

    def vjp_kernel(self):
        return Kernel(dead_zone_vjp, params=(self.start, self.end))

    jvp_kernel = vjp_kernel

    def label(self) -> str:
        return f"dead zone [{self.start:g},{self.end:g}]"

    def config(self) -> dict:
        return {"start": self.start, "end": self.end}


@kernel(allocates=False)
def _quantize_into(q, u, out):
    for i in range(out.size):
        out.flat[i] = q * np.round(u.flat[i] / q)
    return out


@kernel(into=_quantize_into)
def quantize(q, u):
    return q * np.round(u / q)


class Quantizer(Block):
    """``y(k) = q round(u(k) / q)``: rounding to multiples of the interval ``q``
    (piecewise constant: nondifferentiable).

    Examples
    --------
    >>> Quantizer(0.5).output(None, np.array([0.2, 0.3, -1.1]))
    array([ 0. ,  0.5, -1. ])
    """

    nondifferentiable = True

    def __init__(self, interval: float = 1.0, **kw):
        super().__init__(**kw)
        self.interval = self.scalar("interval", interval, above=0.0)

    def output(self, x, u):
        return quantize(self.interval, u)

    def c_code(self, c):  # (C99's nearbyint rounds half to even, as numpy's round)
        q = c.param("interval", self.interval)
        c.output(*each(c.n_y(), f"{c.y()}[i] = {q}[0] * nearbyint({c.u(0)}[i] / {q}[0]);"))

    def kernel(self):
        return Kernel(quantize, params=(self.interval,))

    def label(self) -> str:
        return f"quantize {self.interval:g}"

    def config(self) -> dict:
        return {"interval": self.interval}


@kernel(allocates=False)
def _relay_output_into(on_at, off_at, on, off, x, u, out):
    for i in range(out.size):
        v = u.flat[i]
        s = 1.0 if v >= on_at else (0.0 if v <= off_at else x.flat[i])
        out.flat[i] = s * on + (1.0 - s) * off
    return out


@kernel(allocates=False)
def _relay_update_into(on_at, off_at, on, off, x, u, out):  # out is x: switched in place
    for i in range(x.size):
        v = u.flat[i]
        if v >= on_at:
            x.flat[i] = 1.0
        elif v <= off_at:
            x.flat[i] = 0.0
    return x


@kernel(into=_relay_output_into)
def relay_output(on_at, off_at, on, off, x, u):  # x: 1.0 where the relay is on
    state = np.where(u >= on_at, 1.0, np.where(u <= off_at, 0.0, x))
    return state * on + (1.0 - state) * off


@kernel(into=_relay_update_into)
def relay_update(on_at, off_at, on, off, x, u):
    return np.where(u >= on_at, 1.0, np.where(u <= off_at, 0.0, x)).astype(x.dtype)


class Relay(Block):
    """``y(k) = on`` once ``u >= on_at``, ``off`` once ``u <= off_at``, else as before
    (hysteresis; the relay starts off).  Piecewise constant: nondifferentiable.

    Examples
    --------
    >>> r, x, ys = Relay(0.5, -0.5), np.zeros(1), []
    >>> for u in ([0.0], [0.6], [0.2], [-0.6], [0.2]):
    ...     ys.append(r.output(x, np.array(u))[0])
    ...     x = r.update(x, np.array(u))
    >>> np.array(ys)
    array([0., 1., 1., 0., 0.])
    """

    stateful = True
    nondifferentiable = True

    def __init__(self, on_at: float = 0.5, off_at: float = -0.5, on: float = 1.0,
                 off: float = 0.0, **kw):
        super().__init__(**kw)
        self.on_at = self.scalar("on_at", on_at)
        self.off_at = self.scalar("off_at", off_at, below=self.on_at)
        self.on, self.off = self.scalar("on", on), self.scalar("off", off)

    def init_state(self, batch, in_types, out_types):
        t = in_types[0]
        return np.zeros((batch, *t.shape), t.dtype)

    def _levels(self):
        return self.on_at, self.off_at, self.on, self.off

    def output(self, x, u):
        return relay_output(*self._levels(), x, u)

    def c_code(self, c):
        n = c.n_y()
        on_at, off_at, on, off = (c.param(k, getattr(self, k))
                                  for k in ("on_at", "off_at", "on", "off"))
        x = c.state("on", np.zeros(n))  # 1 where the relay is on
        state = (f"({c.u(0)}[i] >= {on_at}[0] ? 1.0 : ({c.u(0)}[i] <= {off_at}[0] ? 0.0 : "
                 f"{x}[i]))")
        c.output(*each(n, f"{{ {c.T} st = {state}; {c.y()}[i] = st * {on}[0] + (1.0 - st) * "
                          f"{off}[0]; }}"))
        c.update(*each(n, f"{x}[i] = {state};"))

    def update(self, x, u):
        return relay_update(*self._levels(), x, u)

    def kernel(self):
        return Kernel(relay_output, relay_update, self._levels())

    def label(self) -> str:
        return f"relay [{self.off_at:g},{self.on_at:g}]"

    def config(self) -> dict:
        return {"on_at": self.on_at, "off_at": self.off_at, "on": self.on, "off": self.off}


@kernel(allocates=False)
def _segment(bp, v):
    """The interval ``i`` (``0 .. n-2``) of breakpoints ``bp`` holding ``v``: the last
    with ``bp[i] <= v``, the end ones beyond the ends (binary search)."""
    lo, hi = 0, bp.size - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bp[mid] <= v:
            lo = mid
        else:
            hi = mid
    return lo


@kernel(allocates=False)
def _lookup_into(bp, table, u, out):  # np.interp's formula, element by element
    n = bp.size
    for e in range(out.size):
        v = u.flat[e]
        if v >= bp[n - 1]:
            out.flat[e] = table[n - 1]
        elif v < bp[0]:
            out.flat[e] = table[0]
        else:
            i = _segment(bp, v)
            slope = (table[i + 1] - table[i]) / (bp[i + 1] - bp[i])
            out.flat[e] = slope * (v - bp[i]) + table[i]
    return out


@kernel(allocates=False)
def _lookup_vjp_into(bp, table, dy, u, y, out):
    n = bp.size
    for e in range(out.size):
        v = u.flat[e]
        i = _segment(bp, v)
        slope = (table[i + 1] - table[i]) / (bp[i + 1] - bp[i])
        out.flat[e] = dy.flat[e] * (slope * ((v >= bp[0]) and (v <= bp[n - 1])))
    return out


@kernel(into=_lookup_into)
def lookup(bp, table, u):
    return np.interp(u, bp, table)


@kernel
def lookup_slope(bp, table, u):
    """The slope of the interpolant at ``u`` (0 beyond the ends, where it is clipped)."""
    i = np.minimum(np.maximum(np.searchsorted(bp, u, side="right") - 1, 0), bp.size - 2)
    slope = (table[i + 1] - table[i]) / (bp[i + 1] - bp[i])
    return slope * ((u >= bp[0]) & (u <= bp[-1]))


@kernel(into=_lookup_vjp_into)
def lookup_vjp(bp, table, dy, u, y):
    return dy * lookup_slope(bp, table, u)


class Lookup1D(Block):
    """``y(k) = table`` interpolated linearly at ``u(k)`` over ``breakpoints`` (held at
    the end values outside them).  Its reciprocal is the time-varying gain
    ``delta_u = slope(u) delta_y``; ``dJ/dtable[i]`` collects ``delta_y`` times each
    sample's interpolation weight on entry ``i``.

    Examples
    --------
    >>> Lookup1D([0.0, 1.0, 2.0], [0.0, 10.0, 0.0]).output(None, np.array([0.5, 1.5, 3.0]))
    array([5., 5., 0.])
    """

    def __init__(self, breakpoints, table, *, trainable: bool = True, **kw):
        super().__init__(**kw)
        self.param("breakpoints", breakpoints, trainable=False, ndim=1)
        self.param("table", table, trainable=trainable, ndim=1)
        bp = self.breakpoints
        if bp.size < 2 or bp.size != self.table.size or np.any(np.diff(bp) <= 0):
            raise ParameterError(f"block {self.name!r} (Lookup1D): breakpoints must be at "
                                 f"least 2, strictly increasing and as many as the table "
                                 f"values; got {bp.size} breakpoints {bp}, "
                                 f"{self.table.size} values")

    def output(self, x, u):
        return lookup(self.breakpoints, self.table, u)

    def _c_segment(self, c, bp: str, v: str) -> list[str]:
        """C lines setting ``int seg`` to the interval holding ``v`` (binary search)."""
        n = self.breakpoints.size
        return [f"int seg = 0, hi = {n - 1};",
                "while (hi - seg > 1) {",
                "    int mid = (seg + hi) / 2;",
                f"    if ({bp}[mid] <= {v}) seg = mid; else hi = mid;", "}"]

    def c_code(self, c):  # np.interp's formula, as the compiled kernel
        n = self.breakpoints.size
        bp, tb = c.param("breakpoints", self.breakpoints), c.param("table", self.table)
        v = f"{c.u(0)}[e]"
        c.output(f"for (int e = 0; e < {c.n_y()}; ++e) {{",
                 f"    if ({v} >= {bp}[{n - 1}]) {c.y()}[e] = {tb}[{n - 1}];",
                 f"    else if ({v} < {bp}[0]) {c.y()}[e] = {tb}[0];",
                 "    else {",
                 *("        " + ln for ln in self._c_segment(c, bp, v)),
                 f"        {c.T} slope = ({tb}[seg + 1] - {tb}[seg]) / ({bp}[seg + 1] - "
                 f"{bp}[seg]);",
                 f"        {c.y()}[e] = slope * ({v} - {bp}[seg]) + {tb}[seg];", "    }", "}")

    def vjp(self, u, y, dy):
        return lookup_vjp(self.breakpoints, self.table, dy, u[0], y[0])

    def c_vjp(self, v):  # delta_u = slope(u) delta_y (0 beyond the ends)
        n = self.breakpoints.size
        bp, tb = v.param("breakpoints", self.breakpoints), v.param("table", self.table)
        x = f"{v.u()}[e]"
        v.output(f"for (int e = 0; e < {v.n_u()}; ++e) {{",
                 *("    " + ln for ln in self._c_segment(v, bp, x)),
                 f"    {v.T} slope = ({tb}[seg + 1] - {tb}[seg]) / ({bp}[seg + 1] - {bp}[seg]);",
                 f"    {v.du()}[e] = ({x} >= {bp}[0] && {x} <= {bp}[{n - 1}]) ? "
                 f"{v.dy()}[e] * slope : 0.0;", "}")

    def c_param_grads(self, g):  # dJ/dtable[i], dJ/dtable[i+1] += delta_y (1-t), delta_y t
        if not self._params["table"]:
            return
        n = self.breakpoints.size
        bp, dt = g.param("breakpoints", self.breakpoints), g.grad("table")
        x = f"{g.u()}[e]"
        g.add(f"for (int e = 0; e < {g.n_u()}; ++e) {{",
              f"    {g.T} w = {x} < {bp}[0] ? {bp}[0] : ({x} > {bp}[{n - 1}] ? "
              f"{bp}[{n - 1}] : {x});",
              *("    " + ln for ln in self._c_segment(g, bp, "w")),
              f"    {g.T} t = (w - {bp}[seg]) / ({bp}[seg + 1] - {bp}[seg]);",
              f"    {dt}[seg] += {g.dy()}[e] * (1.0 - t);",
              f"    {dt}[seg + 1] += {g.dy()}[e] * t;", "}")

    def jvp(self, u, y, du):
        return self.vjp(u, y, du)

    def kernel(self):
        return Kernel(lookup, params=(self.breakpoints, self.table))

    def vjp_kernel(self):
        return Kernel(lookup_vjp, params=(self.breakpoints, self.table))

    jvp_kernel = vjp_kernel

    def weights(self, U) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For inputs ``U``: the left entry ``i`` and the weights on ``i`` and ``i+1``."""
        bp = self.breakpoints
        V = np.clip(U, bp[0], bp[-1])
        i = np.clip(np.searchsorted(bp, V, side="right") - 1, 0, bp.size - 2)
        t = (V - bp[i]) / (bp[i + 1] - bp[i])
        return i, 1.0 - t, t

    def param_grads(self, u, y, dy):
        if not self._params["table"]:
            return {}
        i, w0, w1 = self.weights(u[0])
        g = np.zeros_like(self.table)
        np.add.at(g, i.ravel(), (dy[0] * w0).ravel())
        np.add.at(g, i.ravel() + 1, (dy[0] * w1).ravel())
        return {"table": g}

    def param_jvp(self, u, y, dp):
        i, w0, w1 = self.weights(u[0])
        dt = np.asarray(dp.get("table", np.zeros_like(self.table)))
        return (w0 * dt[i] + w1 * dt[i + 1],)

    def label(self) -> str:
        return f"lookup ({self.table.size})"

    def config(self) -> dict:
        return {"breakpoints": self.breakpoints, "table": self.table,
                "trainable": self._params["table"]}
