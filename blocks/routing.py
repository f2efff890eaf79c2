"""Routing: Mux (concatenate signals into a vector), Demux (split a vector), Switch."""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np

from blockflow.core.block import Block
from blockflow.core.ccode import at, each
from blockflow.core.kernel import Kernel, generated_kernel, kernel
from blockflow.core.types import SignalType, same_type
from blockflow.errors import ParameterError


def mux_kernel(sizes) -> Callable:
    """``y = [u1; u2; ...]`` on one step's ``(B, ...)`` arrays, for widths ``sizes``."""
    args = [f"u{i}" for i in range(len(sizes))]
    parts = ", ".join(f"{a}.reshape(({a}.shape[0], 1))" if s == 1 else a
                      for a, s in zip(args, sizes, strict=True))
    src = f"def f({', '.join(args)}):\n    return np.concatenate(({parts},), axis=1)\n"
    key = "blocks.routing.mux_" + "_".join(map(str, sizes))
    return generated_kernel(key, src, "f", globals(), into=lambda: _copy_loops(
        f"def f({', '.join(args)}, out):", sizes, [(a, "out") for a in args], "mux"))


def demux_kernel(sizes) -> Callable:
    """``[y1; y2; ...] = u`` on one step's ``(B, n)`` array, for widths ``sizes``."""
    outs, i = [], 0
    for s in sizes:
        outs.append(f"u[:, {i}].copy()" if s == 1 else f"u[:, {i}:{i + s}].copy()")
        i += s
    ret = outs[0] if len(outs) == 1 else f"({', '.join(outs)},)"
    key = "blocks.routing.demux_" + "_".join(map(str, sizes))
    targets = ["out"] if len(sizes) == 1 else [f"out[{i}]" for i in range(len(sizes))]
    return generated_kernel(key, f"def f(u):\n    return {ret}\n", "f", globals(),
                            into=lambda: _copy_loops("def f(u, out):", sizes,
                                                     [("u", t) for t in targets], "demux"))


def _copy_loops(head: str, sizes, pairs, kind: str) -> str:
    """The element loops of a Mux (``pairs``: (part, "out")) or a Demux ((``"u"``, part)):
    row ``r`` of part ``j`` is columns ``offset_j ..`` of row ``r`` of the whole."""
    n, lines, off = sum(sizes), [head, "    for r in range(u_rows):"], 0
    for (src, dst), w in zip(pairs, sizes, strict=True):
        part, whole = (src, dst) if kind == "mux" else (dst, src)
        a, b = (f"{part}.flat[r * {w} + i]", f"{whole}.flat[r * {n} + {off} + i]")
        lines += [f"        for i in range({w}):",
                  f"            {b if kind == 'mux' else a} = {a if kind == 'mux' else b}"]
        off += w
    whole = "out" if kind == "mux" else "u"
    lines.insert(1, f"    u_rows = {whole}.size // {n}")
    return "\n".join(lines) + "\n    return out\n"


def _sizes(kind: str, sizes) -> list[int]:
    """Widths of a Mux/Demux: ``n`` (n scalars) or a sequence of positive integers."""
    try:
        if np.ndim(sizes) == 0:
            n = operator.index(sizes)
            out = [1] * n
        else:
            out = [operator.index(s) for s in sizes]
    except TypeError:
        raise ParameterError(f"{kind} sizes must be an integer or a sequence of integers, got "
                             f"{sizes!r}") from None
    if not out or min(out) < 1:
        raise ParameterError(f"{kind} needs at least one width and every width >= 1, got "
                             f"{sizes!r}")
    return out


class Mux(Block):
    """``y(k) = [u1(k); u2(k); ...]``: scalars and vectors concatenated into one vector.

    Parameters
    ----------
    sizes : int or sequence of int
        ``n`` stacks ``n`` scalars; a sequence gives each input's width (1 = a scalar).
    """

    linear = True
    separable = True  # each input's width is checked on its own

    def __init__(self, sizes=2, **kw):
        sizes = _sizes(type(self).__name__, sizes)
        kw.setdefault("inputs", tuple(f"u{i + 1}" for i in range(len(sizes))))
        super().__init__(**kw)
        self.sizes = sizes

    def check_input(self, port, t):
        s = self.sizes[self.input_index(port)]
        if t.shape != (() if s == 1 else (s,)):
            raise self.type_error(f"expects {'a scalar' if s == 1 else (s,)} here, got "
                                  f"shape {t.shape}", port=port)

    def infer(self, *t):
        for p, x in zip(self.inputs, t, strict=True):
            if x is not None:
                self.check_input(p, x)
        if any(x is None for x in t):
            return (None,)
        return (SignalType((sum(self.sizes),), np.result_type(*(x.dtype for x in t))),)

    def c_code(self, c):
        off = 0
        for j in range(len(self.inputs)):
            n = c.n_u(j)
            c.output(*each(n, f"{c.y()}[{off} + i] = {c.u(j)}[i];"))
            off += n

    def output(self, x, *u):
        return np.concatenate([v[..., None] if s == 1 else v
                               for v, s in zip(u, self.sizes, strict=True)], axis=-1)

    def vjp(self, u, y, dy):
        return Demux.output(self, None, dy)

    def kernel(self):  # compiled form of the same equation, on one step's arrays
        return Kernel(mux_kernel(self.sizes))

    def vjp_kernel(self):
        return Kernel(demux_kernel(self.sizes))

    def config(self) -> dict:
        return {"sizes": self.sizes}


class Demux(Block):
    """``[y1(k); y2(k); ...] = u(k)``: split a vector; widths of 1 give scalar outputs.

    Parameters
    ----------
    sizes : int or sequence of int
        ``n`` splits an ``(n,)`` vector into ``n`` scalars; a sequence gives the widths.
    """

    linear = True

    def __init__(self, sizes=2, **kw):
        sizes = _sizes(type(self).__name__, sizes)
        kw.setdefault("outputs", tuple(f"y{i + 1}" for i in range(len(sizes))))
        super().__init__(**kw)
        self.sizes = sizes

    def infer(self, t):
        if t is None:
            return tuple(None for _ in self.outputs)
        if t.shape != (sum(self.sizes),):
            raise self.type_error(f"splits ({sum(self.sizes)},) vectors into {self.sizes}, "
                                  f"got shape {t.shape}", port="u")
        return tuple(SignalType(() if s == 1 else (s,), t.dtype) for s in self.sizes)

    def c_code(self, c):
        off = 0
        for j in range(len(self.outputs)):
            n = c.n_y(j)
            c.output(*each(n, f"{c.y(j)}[i] = {c.u(0)}[{off} + i];"))
            off += n

    def output(self, x, u):
        out, i = [], 0
        for s in self.sizes:
            out.append(u[..., i] if s == 1 else u[..., i:i + s])
            i += s
        return out[0] if len(out) == 1 else tuple(out)

    def vjp(self, u, y, *dy):
        return Mux.output(self, None, *dy)

    def kernel(self):
        return Kernel(demux_kernel(self.sizes))

    def vjp_kernel(self):
        return Kernel(mux_kernel(self.sizes))

    def config(self) -> dict:
        return {"sizes": self.sizes}




@kernel(allocates=False)
def _switch_into(threshold, strict, u1, u2, u3, out):
    for i in range(out.size):
        c = u2.flat[i]
        out.flat[i] = u1.flat[i] if (c > threshold if strict else c >= threshold) \
            else u3.flat[i]
    return out


@kernel(allocates=False)
def _switch_vjp_into(threshold, strict, dy, u1, u2, u3, y, out):
    d1, d2, d3 = out
    for i in range(dy.size):
        c, d = u2.flat[i], dy.flat[i]
        on = c > threshold if strict else c >= threshold
        d1.flat[i] = d if on else 0.0 * d
        d2.flat[i] = 0.0 * d
        d3.flat[i] = 0.0 * d if on else d
    return out


@kernel(into=_switch_into)
def switch(threshold, strict, u1, u2, u3):
    on = u2 > threshold if strict else u2 >= threshold
    return np.where(on, u1, u3)


@kernel(into=_switch_vjp_into)
def switch_vjp(threshold, strict, dy, u1, u2, u3, y):  # the control input gets none
    on = u2 > threshold if strict else u2 >= threshold
    return dy * on, 0.0 * dy, dy * ~on


class Switch(Block):
    """``y(k) = u1(k)`` where ``u2(k) >= threshold`` (``>`` with ``strict=True``), else
    ``u3(k)``, elementwise.  Its reciprocal routes ``delta_y`` back to the input that was
    passed; the control input ``u2`` gets no gradient (the switch is piecewise constant
    in it).

    Examples
    --------
    >>> Switch(0.0).output(None, np.array([1.0, 2.0]), np.array([0.5, -0.5]),
    ...                    np.array([7.0, 8.0]))
    array([1., 8.])
    """

    inputs = ("u1", "u2", "u3")

    def __init__(self, threshold: float = 0.0, *, strict: bool = False, **kw):
        super().__init__(**kw)
        self.threshold = self.scalar("threshold", threshold)
        if not isinstance(strict, bool | np.bool_):
            raise ParameterError(f"block {self.name!r} (Switch): strict must be True or False, "
                                 f"got {strict!r:.40}")
        self.strict = bool(strict)

    def infer(self, *t):
        return (same_type(f"block {self.name!r} (Switch)", *t),)

    def c_code(self, c):
        n, cmp = c.n_y(), ">" if self.strict else ">="
        thr = c.param("threshold", self.threshold)
        c.output(*each(n, f"{c.y()}[i] = {at(c.u(1), c.n_u(1), n)} {cmp} {thr}[0] ? "
                          f"{at(c.u(0), c.n_u(0), n)} : {at(c.u(2), c.n_u(2), n)};"))

    def output(self, x, u1, u2, u3):
        return switch(self.threshold, self.strict, u1, u2, u3)

    def vjp(self, u, y, dy):
        return switch_vjp(self.threshold, self.strict, dy, *u, y[0])

    def c_vjp(self, v):  # the delta goes to the input passed; the control input gets none
        n, cmp = v.n_y(), ">" if self.strict else ">="
        thr = v.param("threshold", self.threshold)
        v.output(f"for (int i = 0; i < {n}; ++i) {{",
                 f"    int on = {v.u(1)}[i] {cmp} {thr}[0];",
                 f"    {v.du(0)}[i] = on ? {v.dy()}[i] : 0.0;",
                 f"    {v.du(1)}[i] = 0.0;",
                 f"    {v.du(2)}[i] = on ? 0.0 : {v.dy()}[i];", "}")

    def jvp(self, u, y, du1, du2, du3):
        on = u[1] > self.threshold if self.strict else u[1] >= self.threshold
        return np.where(on, du1, du3)

    def kernel(self):
        return Kernel(switch, params=(self.threshold, self.strict))

    def vjp_kernel(self):
        return Kernel(switch_vjp, params=(self.threshold, self.strict))

    def label(self) -> str:
        return f"switch u2 {'>' if self.strict else '≥'} {self.threshold:g}"

    def config(self) -> dict:
        return {"threshold": self.threshold, "strict": self.strict}
