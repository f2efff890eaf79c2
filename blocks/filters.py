"""Discrete filters: FIR, DiscreteFilter(b, a) (ascending powers of z^-1, as
``scipy.signal.lfilter``) and DiscreteTransferFcn(num, den) (descending powers of z, as
``scipy.signal.dlti``), from zero initial conditions.

Each is stateful and linear and gives its transposed realisation (``transposed()``); its
reciprocal is that realisation run in reversed time, ``H(q^-1)`` becomes ``H^T(q^+1)``,
and its tangent the transpose of the transpose (:mod:`blockflow.gradient.derive`).  The
reciprocal shares the forward block's parameter arrays, so it stays current as they are
trained in place.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from blockflow.core.block import Block
from blockflow.core.ccode import each
from blockflow.core.kernel import Kernel, Scalar, generated_kernel, kernel
from blockflow.errors import ParameterError

from .notation import poly_text, zinv_text


def _rev(a: np.ndarray) -> np.ndarray:
    return np.flip(a, 0)


def _shift_corr(g: np.ndarray, v: np.ndarray, m: int) -> float:
    """``sum_k g(k) v(k-m)`` over time and every other axis."""
    T = g.shape[0]
    if m >= T:
        return 0.0
    return float(np.vdot(g[m:], v[: T - m]))


@kernel(allocates=False)
def _fir_output_into(h, x, u, out):  # x: (M, B, ...) past inputs, x[m - 1] = u(k - m)
    n = out.size
    for e in range(n):
        y = h[0] * u.flat[e]
        for m in range(1, h.shape[0]):
            y += h[m] * x.flat[(m - 1) * n + e]
        out.flat[e] = y
    return out


@kernel(allocates=False)
def _fir_update_into(h, x, u, out):  # out is x: the delay line shifts by one, in place
    n = u.size
    for m in range(x.shape[0] - 1, 0, -1):
        for e in range(n):
            x.flat[m * n + e] = x.flat[(m - 1) * n + e]
    if x.shape[0] > 0:
        for e in range(n):
            x.flat[e] = u.flat[e]
    return x


@kernel(into=_fir_output_into)
def fir_output(h, x, u):  # y = h[0] u + sum_m h[m] u(k-m), the past inputs held in x
    y = h[0] * u
    for m in range(1, h.shape[0]):
        y = y + h[m] * x[m - 1]
    return y


@kernel(into=_fir_update_into)
def fir_update(h, x, u):
    if x.shape[0] == 0:
        return x
    return np.concatenate((np.expand_dims(u, 0), x[:-1]))


# z: (n, B, ...) contiguous, so z[i] is z.flat[i m : (i + 1) m] with m = z.size // n
@kernel(allocates=False)
def _filter_output_into(feed, x, u, out):
    z, b0 = x[0], x[1]
    if z.shape[0] == 0:
        for e in range(out.size):
            out.flat[e] = b0 * u.flat[e]
    elif feed:
        for e in range(out.size):
            out.flat[e] = b0 * u.flat[e] + z.flat[e]
    else:  # u is not read: no direct feedthrough
        for e in range(out.size):
            out.flat[e] = z.flat[e]
    return out


@kernel(allocates=False)
def _filter_update_into(feed, x, u, out):  # out is x: z updated in place
    z, b0, c, an1 = x
    n, m = z.shape[0], u.size  # z.size == n m
    if n == 0:
        return x
    for e in range(m):
        z0, ue = z.flat[e], u.flat[e]
        for i in range(n - 1):
            z.flat[i * m + e] = c.flat[i] * ue - an1.flat[i] * z0 + z.flat[(i + 1) * m + e]
        z.flat[(n - 1) * m + e] = c.flat[n - 1] * ue - an1.flat[n - 1] * z0
    return x


@functools.cache
def filter_numbers(n: int, feed: bool) -> tuple:
    """The filter's step on numbers (:class:`Scalar`), written out for ``n`` states and
    its feedthrough: the state ``(z, b0, c, an1)`` with ``z`` a tuple of ``n`` numbers,
    the same operations in the same order as the element loops above (the same results
    to the bit)."""
    z = [f"c[{i}] * u - an1[{i}] * z0" + (f" + z[{i + 1}]" if i + 1 < n else "")
         for i in range(n)]
    y = ("b0 * u + z[0]" if feed else "z[0]") if n else "b0 * u"
    out = f"def f(feed, x, u):\n    z, b0 = x[0], x[1]\n    return {y}\n"
    upd = ("def f(feed, x, u):\n    z, b0, c, an1 = x\n    z0 = z[0]\n"
           f"    return ({', '.join(z)},), b0, c, an1\n" if n else "def f(feed, x, u):\n"
           "    return x\n")
    key = f"blocks.filters.filter_{{}}_numbers{n}{'_feed' if feed and n else ''}"
    return (generated_kernel(key.format("output"), out, "f", {}, numbers=True),
            generated_kernel(key.format("update"), upd, "f", {}, numbers=True))


def _pack_filter(x) -> tuple:
    """A filter's state ``(z, b0, c, an1)`` (batch of one, one element) as tuples of
    numbers (the coefficients too: values the compiler keeps in registers, where an
    array's elements would be loaded again after every store it cannot prove apart)."""
    z, b0, c, an1 = x
    return (tuple(z.ravel()), z.dtype.type(b0), tuple(c.ravel()), tuple(an1.ravel()))


def _unpack_filter(x, xs) -> tuple:
    return (np.array(xs[0], x[0].dtype).reshape(x[0].shape), *x[1:])


@kernel(into=_filter_output_into)
def filter_output(feed, x, u):
    z, b0 = x[0], x[1]
    if z.shape[0] == 0:
        return b0 * u
    if feed:
        return b0 * u + z[0]
    return z[0]  # u is not read: no direct feedthrough


@kernel(into=_filter_update_into)
def filter_update(feed, x, u):
    z, b0, c, an1 = x
    if z.shape[0] == 0:
        return x
    z_next = c * u - an1 * z[0]
    z_next[:-1] += z[1:]
    return z_next, b0, c, an1


@functools.cache
def filter_update_kernel(n: int):
    """:func:`filter_update` for ``n`` states, its ``into`` form written out: one
    statement per state in the element loop, straight-line code the compiler vectorises
    across the batch (the loop over the states inside the loop over the elements is
    not: ~2.5 ns per element against ~0.25 at B = 2,000); the same operations in the
    same order as :func:`_filter_update_into` (the same results to the bit)."""
    if n == 0:
        return filter_update
    body = [f"        z.flat[{i} * m + e] = c{i} * ue - a{i} * z0"
            + (f" + z.flat[{i + 1} * m + e]" if i + 1 < n else "") for i in range(n)]
    into = "\n".join(["def f(feed, x, u, out):  # out is x: z updated in place",
                      "    z, b0, c, an1 = x", "    m = u.size"]
                     + [f"    c{i}, a{i} = c.flat[{i}], an1.flat[{i}]" for i in range(n)]
                     + ["    for e in range(m):", "        z0, ue = z.flat[e], u.flat[e]"]
                     + body + ["    return x", ""])
    # its numpy form: filter_update's own text (no copy), as a kernel of its own name
    text = inspect.getsource(filter_update)
    text = text[text.index("def "):].replace("def filter_update(", "def f(", 1)
    return generated_kernel(f"blocks.filters.filter_update{n}", text, "f", {"np": np},
                            into=into)


class FIR(Block):
    """``y(k) = sum_m h[m] u(k - m)``: a finite impulse response filter (elementwise).

    Its reciprocal is the same filter run backwards in time,
    ``delta_u(k) = sum_m h[m] delta_y(k + m)``, and ``dJ/dh[m] = sum_k delta_y(k) u(k-m)``.
    """

    stateful = True
    linear = True
    state_batch_axis = 1  # the past inputs: (M, B, ...)

    def __init__(self, h, *, trainable: bool = True, **kw):
        super().__init__(**kw)
        self.param("h", h, trainable=trainable)
        if self.h.ndim != 1 or self.h.size < 1:
            raise ParameterError(f"block {self.name!r}: FIR taps h must be a non-empty 1-D array")

    def init_state(self, batch, in_types, out_types):
        t = in_types[0]
        return t.zeros(self.h.size - 1, batch)

    def c_code(self, c):
        n, M = c.n_y(), self.h.size - 1  # past inputs, newest first: x[m - 1] = u(k - m)
        h = c.param("h", self.h)
        lines = [f"{c.T} acc = {h}[0] * {c.u(0)}[i];"]
        if M:
            x = c.state("past", np.zeros((M, n)))
            lines.append(f"for (int m = 1; m <= {M}; ++m) acc += {h}[m] * {x}[(m - 1) * {n} + i];")
            c.update(f"memmove({x} + {n}, {x}, sizeof({c.T}) * {(M - 1) * n});",
                     *each(n, f"{x}[i] = {c.u(0)}[i];"))
        c.output(f"for (int i = 0; i < {n}; ++i) {{", *("    " + ln for ln in lines),
                 f"    {c.y()}[i] = acc;", "}")

    def output(self, x, u):
        return fir_output(self.h, x, u)

    def update(self, x, u):
        return fir_update(self.h, x, u)

    def kernel(self):
        return Kernel(fir_output, fir_update, (self.h,))

    def sequence(self, x0, U):
        import scipy.signal  # (deferred: importing scipy.signal costs 0.2-0.4 s)
        return scipy.signal.lfilter(self.h, [1.0], U, axis=0)

    def param_grads(self, u, y, dy):
        (dy,) = dy
        return {"h": np.array([_shift_corr(dy, u[0], m) for m in range(self.h.size)])}

    def c_param_grads(self, g):  # dJ/dh[m] += sum_i delta_y(k)[i] u(k-m)[i]
        if not self._params["h"]:
            return
        dh, n = g.grad("h"), g.n_y()
        g.add(f"for (int m = 0; m < {self.h.size}; ++m) if ({g.valid('m')})",
              f"    for (int i = 0; i < {n}; ++i) {dh}[m] += {g.dy()}[i] * {g.u(0, 'm')}[i];")

    def param_jvp(self, u, y, dp):  # dy = FIR(dh) u
        import scipy.signal  # (deferred: importing scipy.signal costs 0.2-0.4 s)
        return (scipy.signal.lfilter(dp["h"], [1.0], u[0], axis=0) if "h" in dp
                else np.zeros_like(y[0]),)

    def transposed(self) -> Block:
        r = FIR(self.h, name=self.name, inputs=self.outputs, outputs=self.inputs)
        r.h = self.h  # shared: training in place reaches the reciprocal
        return r

    @property
    def memory(self) -> int:
        return self.h.size - 1

    def reversed_taps(self) -> Block:
        r = FIR(self.h, name=self.name, inputs=self.inputs, outputs=self.outputs)
        r.h = self.h[::-1]
        return r

    def label(self) -> str:
        return f"FIR({self.h.size} taps)"

    def fraction(self):
        return (zinv_text(self.h), "1") if self.h.size <= 5 else None

    def config(self) -> dict:
        return {"h": self.h, "trainable": self._params["h"]}


class DiscreteFilter(Block):
    """``a[0] y(k) = sum_m b[m] u(k-m) - sum_{m>=1} a[m] y(k-m)`` (elementwise).

    ``b`` and ``a`` are in ascending powers of ``z^-1``, exactly as
    :func:`scipy.signal.lfilter`; ``x0`` is the initial state of its transposed direct
    form II realisation (scipy's ``zi``: ``max(len(a), len(b)) - 1`` values, default
    zero; a scalar fills every entry).  The block has direct
    feedthrough only when ``b[0] != 0`` (then ``b[0]`` is held at zero in training).
    ``a[0]`` only scales ``b`` and ``a`` together, so training holds it too (its gradient
    is exact; an identified filter keeps ``a[0] = 1``); ``fix_a0=False`` trains it.

    Its reciprocal is the same filter run backwards in time, and with
    ``g = A(q^+1)^-1 delta_y`` the parameter gradients are
    ``dJ/db[m] = sum_k g(k) u(k-m)`` and ``dJ/da[m] = -sum_k g(k) y(k-m)`` (the initial
    state adds ``sum_k g(k) x0[k]`` to ``dJ/da[0]``: it is stored divided by ``a[0]``).

    Examples
    --------
    >>> f = DiscreteFilter([1.0], [1.0, -0.5])      # y(k) = u(k) + 0.5 y(k-1)
    >>> f.sequence(None, np.array([[1.0], [0.0], [0.0]]))[:, 0]
    array([1.  , 0.5 , 0.25])
    """

    stateful = True
    linear = True

    def __init__(self, b, a=(1.0,), *, x0=0.0, trainable: bool = True, fix_a0: bool = True,
                 **kw):
        super().__init__(**kw)
        self.fix_a0 = fix_a0  # a[0] only scales b and a together: hold it in training
        self.param("b", np.atleast_1d(b), trainable=trainable, ndim=1)
        self.param("a", np.atleast_1d(a), trainable=trainable, ndim=1)
        if self.b.size == 0 or self.a.size == 0 or self.a[0] == 0:
            raise ParameterError(f"block {self.name!r} ({type(self).__name__}): b and a must be "
                                 f"non-empty with a[0] != 0, got b={self.b}, a={self.a}")
        self.feedthrough = bool(self.b[0] != 0)
        n = max(self.a.size, self.b.size) - 1
        self.param("x0", x0, trainable=False)
        if self.x0.shape not in ((), (n,)):
            raise ParameterError(f"block {self.name!r} ({type(self).__name__}): x0 is the "
                                 f"initial state, {n} values (or one for all), got shape "
                                 f"{self.x0.shape}")

    def _z0(self) -> np.ndarray:
        """The initial state as ``(n - 1,)`` values."""
        return np.broadcast_to(self.x0, (max(self.a.size, self.b.size) - 1,))

    def init_state(self, batch, in_types, out_types):
        n = max(self.a.size, self.b.size)
        t = out_types[0]
        bn = np.zeros(n, t.dtype)
        an = np.zeros(n, t.dtype)
        bn[: self.b.size] = self.b / self.a[0]
        an[: self.a.size] = self.a / self.a[0]
        shape = (n - 1,) + (1,) * (1 + len(t.shape))
        b0 = bn[0] if self.feedthrough else bn.dtype.type(0)
        # transposed direct form II with y = b0 u + z[0] folded into the state update:
        # z'(i) = (b(i+1) - a(i+1) b0) u - a(i+1) z(0) + z(i+1)
        c, an1 = (bn[1:] - an[1:] * b0).reshape(shape), an[1:].reshape(shape)
        z = t.zeros(n - 1, batch)
        if np.any(self.x0):
            z[...] = self._z0().reshape(shape)
        return z, b0, c, an1

    state_batch_axis = 1  # z: (n - 1, B, ...)

    def state_parts(self, x):
        return (x[0],)  # z; b0, c and a carried along are constants

    def with_state_parts(self, x, parts):
        return (parts[0], *x[1:])

    def c_code(self, c):
        # transposed direct form II, coefficients divided by a[0]: y = b0 u + z0,
        # z_i <- b_{i+1} u - a_{i+1} y + z_{i+1}
        n, N = c.n_y(), max(self.a.size, self.b.size)
        b, a = np.zeros(N), np.zeros(N)
        b[:self.b.size], a[:self.a.size] = self.b / self.a[0], self.a / self.a[0]
        if not self.feedthrough:
            b[0] = 0.0
        bc, ac = c.param("b", b), c.param("a", a)
        if N == 1:
            c.output(*each(n, f"{c.y()}[i] = {bc}[0] * {c.u(0)}[i];"))
            return None
        z = c.state("z", np.repeat(self._z0(), n))  # z_i of element e at [i n + e]
        u = f"{c.u(0)}[i]" if self.feedthrough else "0"
        c.output(*each(n, f"{c.y()}[i] = {bc}[0] * {u} + {z}[i];"))
        c.update(f"for (int i = 0; i < {n}; ++i) {{",
                 f"    for (int j = 0; j < {N - 1}; ++j)",
                 f"        {z}[j * {n} + i] = {bc}[j + 1] * {c.u(0)}[i] - {ac}[j + 1] * "
                 f"{c.y()}[i] + (j + 1 < {N - 1} ? {z}[(j + 1) * {n} + i] : 0);",
                 "}")
        return None

    def output(self, x, u):
        return filter_output(self.feedthrough, x, u)

    def update(self, x, u):
        return filter_update(self.feedthrough, x, u)

    def kernel(self):
        n = max(self.a.size, self.b.size) - 1
        return Kernel(filter_output, filter_update_kernel(n), (self.feedthrough,))

    def scalar_kernel(self):
        n = max(self.a.size, self.b.size) - 1
        return Scalar(*filter_numbers(n, self.feedthrough), (self.feedthrough,), _pack_filter,
                      _unpack_filter)

    def sequence(self, x0, U):
        import scipy.signal  # (deferred: importing scipy.signal costs 0.2-0.4 s)
        z = None if x0 is None else x0[0]
        if z is None or not np.any(z):
            return scipy.signal.lfilter(self.b, self.a, U, axis=0)
        # scipy's zi is the same transposed direct form II state (coefficients / a[0])
        return scipy.signal.lfilter(self.b, self.a, U, axis=0,
                                    zi=np.broadcast_to(z, (z.shape[0], *U.shape[1:])))[0]

    def _initial_term(self, T: int) -> np.ndarray:
        """``x0[k]`` for the first steps (0 after): what the initial state adds to the
        recursion, ``a[0] y(k) + ... = ... + a[0] x0[k]``."""
        z = self._z0()
        out = np.zeros(T)
        out[:min(T, z.size)] = z[:T]
        return out

    def grads_ba(self, u, y, dy, resets=()):
        """(dJ/db, dJ/da) from whole sequences; the adjoint ``g`` restarts at ``resets``."""
        import scipy.signal  # (deferred: importing scipy.signal costs 0.2-0.4 s)
        g = np.zeros_like(dy)
        edges = [0, *resets, dy.shape[0]]
        for a, b in zip(edges, edges[1:], strict=False):
            g[a:b] = _rev(scipy.signal.lfilter([1.0], self.a, _rev(dy[a:b]), axis=0))
        gb = np.array([_shift_corr(g, u, m) for m in range(self.b.size)])
        ga = -np.array([_shift_corr(g, y, m) for m in range(self.a.size)])
        if np.any(self.x0):  # the initial state is stored divided by a[0]
            z = self._initial_term(g.shape[0]).reshape((-1,) + (1,) * (g.ndim - 1))
            ga[0] += float(np.sum(g * z))
        if not self.feedthrough:
            gb[0] = 0.0
        return gb, ga

    def _c_grad_names(self) -> tuple[str, str, int]:
        """The names of the b and a gradients, and how many leading b are not one."""
        return "b", "a", 0

    def c_param_grads(self, g):
        # g(k) = (delta_y(k) - sum_{m>=1} a[m] g(k+m)) / a[0], run back in time; then
        # dJ/db[m] += g(k) u(k-m), dJ/da[m] -= g(k) y(k-m), dJ/da[0] += g(k) x0[k]
        nb, na = self.b.size, self.a.size
        bname, aname, pad = self._c_grad_names()
        n = g.n_y()
        ac = g.param("a", self.a)
        G = g.state("g", np.zeros((max(na - 1, 1), n)))  # g(k+m) of element i at (m-1) n + i
        db = g.grad(bname) if self._params[bname] else None
        da = g.grad(aname) if self._params[aname] else None
        body = [f"{g.T} gk = {g.dy()}[i];"]
        if na > 1:
            body.append(f"for (int m = 1; m < {na}; ++m) gk -= {ac}[m] * {G}[(m - 1) * {n} + i];")
        body.append(f"gk /= {ac}[0];")
        if db is not None:
            first = max(pad, 0 if self.feedthrough else 1)
            if first < nb:
                body.append(f"for (int m = {first}; m < {nb}; ++m) if ({g.valid('m')}) "
                            f"{db}[m - {pad}] += gk * {g.u(0, 'm')}[i];")
        if da is not None:
            body.append(f"for (int m = 0; m < {na}; ++m) if ({g.valid('m')}) "
                        f"{da}[m] -= gk * {g.y(0, 'm')}[i];")
            if np.any(self.x0):
                z = g.param("x0", self._z0())
                hit = f"(k - {g.offset}) / {g.n_hit}"
                body.append(f"if ({hit} < {self._z0().size}) {da}[0] += gk * {z}[{hit}];")
        if na > 2:
            body.append(f"for (int m = {na - 1}; m > 1; --m) "
                        f"{G}[(m - 1) * {n} + i] = {G}[(m - 2) * {n} + i];")
        if na > 1:
            body.append(f"{G}[i] = gk;")
        g.add(f"for (int i = 0; i < {n}; ++i) {{", *("    " + ln for ln in body), "}")

    def held(self):
        if not (self.fix_a0 and self._params["a"]):
            return {}
        return {"a": np.arange(self.a.size) == 0}

    def param_grads(self, u, y, dy, resets=()):
        gb, ga = self.grads_ba(u[0], y[0], dy[0], resets)
        return {n: g for n, g in (("b", gb), ("a", ga)) if self._params[n]}

    def jvp_ba(self, u, y, db, da):
        """``dy = A^-1 (dB u - dA y)``: the output change for coefficient directions."""
        import scipy.signal  # (deferred: importing scipy.signal costs 0.2-0.4 s)
        db = np.zeros_like(self.b) if db is None else np.array(db, dtype=float)
        da = np.zeros_like(self.a) if da is None else np.array(da, dtype=float)
        if not self.feedthrough:
            db[0] = 0.0
        w = scipy.signal.lfilter(db, [1.0], u, axis=0) - scipy.signal.lfilter(da, [1.0], y, axis=0)
        if np.any(self.x0) and da[0]:
            w = w + da[0] * self._initial_term(w.shape[0]).reshape((-1,) + (1,) * (w.ndim - 1))
        return scipy.signal.lfilter([1.0], self.a, w, axis=0)

    def param_jvp(self, u, y, dp):
        return (self.jvp_ba(u[0], y[0], dp.get("b"), dp.get("a")),)

    def _like(self, **kw) -> DiscreteFilter:
        r = DiscreteFilter(self.b, self.a, name=self.name, **kw)
        r.b, r.a = self.b, self.a
        return r

    def transposed(self) -> Block:  # a scalar filter is its own transpose
        return self._like(inputs=self.outputs, outputs=self.inputs)

    @property
    def memory(self) -> int | None:
        # FIR when A = a0; an initial state reaches the first outputs from before any
        # input (a window of history could not hold it): unbounded then
        return self.b.size - 1 if self.a.size == 1 and not np.any(self.x0) else None

    def reversed_taps(self) -> Block:
        if self.memory is None:
            return super().reversed_taps()
        r = self._like(inputs=self.inputs, outputs=self.outputs)
        r.b = self.b[::-1]
        r.feedthrough = True
        return r

    def label(self) -> str:
        return f"B/A ({self.b.size - 1},{self.a.size - 1})"

    def fraction(self):  # b(z^-1) / a(z^-1)
        return zinv_text(self.b), zinv_text(self.a)

    def config(self) -> dict:
        cfg = {"b": self.b, "a": self.a, "trainable": self._params["b"], "fix_a0": self.fix_a0}
        if np.any(self.x0):
            cfg["x0"] = self.x0
        return cfg


def _refuse_lti_object(num, kind: str) -> None:
    """A python-control or scipy system passed where coefficients go: say what to do."""
    if hasattr(num, "num") and hasattr(num, "den"):
        raise ParameterError(f"{kind} takes num and den coefficient arrays, got a "
                             f"{type(num).__name__}; convert a python-control system with "
                             "blockflow.control.lti.from_control(sys)")


class DiscreteTransferFcn(DiscreteFilter):
    """``Y(z) = num(z) / den(z) U(z)``, ``num`` and ``den`` in descending powers of ``z``.

    Exactly :class:`scipy.signal.dlti` ``(num, den)``: a strictly proper transfer function
    (``len(num) < len(den)``) has no direct feedthrough and breaks feedback loops.  It is a
    :class:`DiscreteFilter` with ``b`` = ``num`` padded in front to ``len(den)``; the
    trainable parameters are ``num`` and ``den`` (views into ``b`` and ``a``).
    """

    def __init__(self, num, den=None, *, trainable: bool = True, **kw):
        _refuse_lti_object(num, "DiscreteTransferFcn")
        try:
            num, den = (np.atleast_1d(np.asarray(num, float)),
                        np.atleast_1d(np.asarray(den, float)))
        except (TypeError, ValueError) as e:
            raise ParameterError(f"DiscreteTransferFcn: num and den must be arrays of numbers "
                                 f"({e})") from None
        if num.ndim != 1 or den.ndim != 1 or num.size == 0 or den.size == 0:
            raise ParameterError(f"DiscreteTransferFcn: num and den must be non-empty 1-D, "
                                 f"got shapes {num.shape}, {den.shape}")
        pad = den.size - num.size
        if pad < 0:
            raise ParameterError(f"transfer function num={num}, den={den} is improper "
                             "(more zeros than poles); it cannot run causally")
        super().__init__(np.concatenate([np.zeros(pad), num]), den, trainable=False, **kw)
        self.pad = pad
        self._expose(trainable)

    def _expose(self, trainable: bool) -> None:
        self.num, self.den = self.b[self.pad:], self.a
        self._params = {"b": False, "a": False, "num": trainable, "den": trainable,
                        "x0": False}

    def astype(self, dtype):
        self.b, self.a = self.b.astype(dtype), self.a.astype(dtype)
        self.x0 = self.x0.astype(dtype)
        self._expose(self._params["num"])
        return self

    def param_grads(self, u, y, dy, resets=()):
        gb, ga = self.grads_ba(u[0], y[0], dy[0], resets)
        return {"num": gb[self.pad:], "den": ga} if self._params["num"] else {}

    def _c_grad_names(self) -> tuple[str, str, int]:
        return "num", "den", self.pad

    def param_jvp(self, u, y, dp):
        db = None
        if "num" in dp:
            db = np.concatenate([np.zeros(self.pad), np.asarray(dp["num"], float)])
        return (self.jvp_ba(u[0], y[0], db, dp.get("den")),)

    def label(self) -> str:
        return f"TF ({self.num.size - 1}/{self.den.size - 1})"

    def fraction(self):  # num(z) / den(z)
        return poly_text(self.num, "z"), poly_text(self.den, "z")

    def config(self) -> dict:
        cfg = {"num": self.num, "den": self.den, "trainable": self._params["num"]}
        if np.any(self.x0):
            cfg["x0"] = self.x0
        return cfg
