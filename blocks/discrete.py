"""Discrete-time linear blocks: UnitDelay, Delay, FIR, DiscreteFilter, DiscreteTransferFcn,
StateSpace.

Each is stateful and linear and gives its transposed realisation (``transposed()``); its
reciprocal is that realisation run in reversed time, ``H(q^-1)`` becomes ``H^T(q^+1)``,
and its tangent the transpose of the transpose (:mod:`blockflow.gradient.derive`).  The
reciprocal shares the forward block's parameter arrays, so it stays current as they are
trained in place.  Filters start from zero initial conditions; delays from ``x0``.
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block, sum_to
from blockflow.core.kernel import Kernel, kernel, take_input_into, take_state_into
from blockflow.core.lines import DelayLine, Wire
from blockflow.core.types import SignalType
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


@kernel(into=take_state_into)
def delay_output(x, u):
    return x


@kernel(into=take_input_into)
def delay_update(x, u):
    return u


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


# y = C x + D u and x(k+1) = A x + B u, row by row: a row is a batch member's (m,)
# input and (n,) state, or (SISO, elementwise) one element of a sample and its n states;
# the state updates in place through ``work`` (one row of n), the only buffer it needs
@kernel(allocates=False)
def _ss_rows_y(CT, DT, feed, x, u, y):
    n, m, p = CT.shape[0], DT.shape[0], CT.shape[1]
    for r in range(y.size // p):
        for i in range(p):
            acc = 0.0
            for j in range(n):
                acc += x.flat[r * n + j] * CT[j, i]
            if feed:
                for j in range(m):
                    acc += u.flat[r * m + j] * DT[j, i]
            y.flat[r * p + i] = acc
    return y


@kernel(allocates=False)
def _ss_output_into(AT, BT, CT, DT, feed, work, x, u, out):
    _ss_rows_y(CT, DT, feed, x, u, out[0])
    for i in range(x.size):  # the state, recorded
        out[1].flat[i] = x.flat[i]
    return out


@kernel(allocates=False)
def _ss_output_plain_into(AT, BT, CT, DT, feed, work, x, u, out):
    return _ss_rows_y(CT, DT, feed, x, u, out)


@kernel(allocates=False)
def _ss_update_into(AT, BT, CT, DT, feed, work, x, u, out):  # out is x itself
    n, m = AT.shape[0], BT.shape[0]
    for r in range(x.size // n if n else 0):
        for i in range(n):
            acc = 0.0
            for j in range(n):
                acc += x.flat[r * n + j] * AT[j, i]
            for j in range(m):
                acc += u.flat[r * m + j] * BT[j, i]
            work[i] = acc
        for i in range(n):
            out.flat[r * n + i] = work[i]
    return out


@kernel(into=_ss_output_into)
def ss_output(AT, BT, CT, DT, feed, work, x, u):  # y = C x + D u; the state is recorded
    y = x @ CT
    if feed:
        y = y + u @ DT
    return y, x


@kernel(into=_ss_output_plain_into)
def ss_output_plain(AT, BT, CT, DT, feed, work, x, u):  # transposed realisations: no record
    y = x @ CT
    if feed:
        y = y + u @ DT
    return y


@kernel(into=_ss_update_into)
def ss_update(AT, BT, CT, DT, feed, work, x, u):  # x(k+1) = A x + B u
    return x @ AT + u @ BT


# a SISO system acting elementwise: samples of any shape, a state of n per element
@kernel(into=_ss_output_into)
def siso_output(AT, BT, CT, DT, feed, work, x, u):
    y = x.reshape((-1, x.shape[-1])) @ CT
    if feed:
        y = y + u.reshape((-1, 1)) @ DT
    return y.reshape(x.shape[:-1]), x


@kernel(into=_ss_output_plain_into)
def siso_output_plain(AT, BT, CT, DT, feed, work, x, u):
    y = x.reshape((-1, x.shape[-1])) @ CT
    if feed:
        y = y + u.reshape((-1, 1)) @ DT
    return y.reshape(x.shape[:-1])


@kernel(into=_ss_update_into)
def siso_update(AT, BT, CT, DT, feed, work, x, u):
    n = x.shape[-1]
    return (x.reshape((-1, n)) @ AT + u.reshape((-1, 1)) @ BT).reshape(x.shape)


def _delay_shape(b: Block, shape) -> tuple | None:
    """The sample shape a delay declares (``shape=``, else its x0's), or None."""
    if shape is None:
        return b.x0.shape if b.x0.ndim else None
    t = b.signal_type(shape, b.x0.dtype)
    try:
        fits = np.broadcast_shapes(b.x0.shape, t.shape) == t.shape
    except ValueError:
        fits = False
    if not fits:
        raise ParameterError(f"block {b.name!r} ({type(b).__name__}): initial value of shape "
                             f"{b.x0.shape} does not fit samples of shape {t.shape}")
    return t.shape


class UnitDelay(Block):
    """``y(k) = x(k)``, ``x(k+1) = u(k)``, ``x(0) = x0``: the unit delay ``z^-1``.

    Examples
    --------
    >>> UnitDelay(x0=5.0).sequence(np.array([5.0]), np.array([[1.0], [2.0]]))[:, 0]
    array([5., 1.])
    """

    feedthrough = False
    stateful = True
    linear = True
    symbol = "z⁻¹"
    glyph = "delay"

    def __init__(self, x0=0.0, *, shape: tuple | None = None, train_x0: bool = False, **kw):
        super().__init__(**kw)
        self.param("x0", x0, trainable=train_x0)
        # the signal's shape, when neither x0 nor the input tells it (a loop of delays)
        self.shape = _delay_shape(self, shape)

    def infer(self, t):
        if t is None:
            return (None if self.shape is None else SignalType(self.shape, self.x0.dtype),)
        if np.broadcast_shapes(self.x0.shape, t.shape) != t.shape:
            raise self.type_error(f"initial value of shape {self.x0.shape} does not fit "
                                  f"samples of shape {t.shape}", port="u")
        return (t,)

    def init_state(self, batch, in_types, out_types):
        t = out_types[0]
        return np.broadcast_to(self.x0, (batch, *t.shape)).astype(t.dtype)

    def output(self, x, u):
        return delay_output(x, u)

    def update(self, x, u):
        return delay_update(x, u)

    def kernel(self):
        return Kernel(delay_output, delay_update)

    def sequence(self, x0, U):
        return np.concatenate([x0[None], U[:-1]])

    def param_grads(self, u, y, dy):  # dJ/dx0 = delta_y(0)
        return {"x0": sum_to(dy[0][0], self.x0.shape)} if self._params["x0"] else {}

    def param_jvp(self, u, y, dp):  # dy(0) = dx0
        out = np.zeros_like(y[0])
        out[0] = dp.get("x0", 0.0)
        return (out,)

    def transposed(self) -> Block:  # (zero initial state in the signal's precision)
        return UnitDelay(np.zeros((), self.x0.dtype), name=self.name, shape=self.shape,
                         inputs=self.outputs, outputs=self.inputs)

    memory = 1

    def reversed_taps(self) -> Block:
        return Wire(name=self.name, inputs=self.inputs, outputs=self.outputs)

    def config(self) -> dict:
        return {"x0": self.x0, "shape": self.shape, "train_x0": self._params["x0"]}


class Delay(DelayLine):
    """``y(k) = u(k - n)``, with ``y(k) = x0`` for ``k < n``: the delay ``z^-n``."""

    stateful = True
    linear = True
    glyph = "delay"

    def __init__(self, n: int, x0=0.0, *, shape: tuple | None = None, train_x0: bool = False,
                 **kw):
        super().__init__(n, **kw)  # the delay line's equations, from initial value x0
        self.param("x0", x0, trainable=train_x0)
        self.shape = _delay_shape(self, shape)

    infer = UnitDelay.infer

    def init_state(self, batch, in_types, out_types):
        t = out_types[0]
        return np.broadcast_to(self.x0, (self.n, batch, *t.shape)).astype(t.dtype)

    def param_grads(self, u, y, dy, resets=()):
        # dJ/dx0 = sum_{k<n} delta_y(k), up to the first step whose state is held as data
        n = min(self.n, *resets) if resets else self.n
        return {"x0": sum_to(dy[0][:n], self.x0.shape)} if self._params["x0"] else {}

    def param_jvp(self, u, y, dp):  # dy(k) = dx0 for k < n
        out = np.zeros_like(y[0])
        out[: self.n] = dp.get("x0", 0.0)
        return (out,)

    def transposed(self) -> Block:
        return Delay(self.n, np.zeros((), self.x0.dtype), name=self.name, shape=self.shape,
                     inputs=self.outputs, outputs=self.inputs)

    @property
    def memory(self) -> int:
        return self.n

    def reversed_taps(self) -> Block:
        return Wire(name=self.name, inputs=self.inputs, outputs=self.outputs)

    def label(self) -> str:
        return f"z⁻{self.n}"

    def config(self) -> dict:
        return {"n": self.n, "x0": self.x0, "shape": self.shape,
                "train_x0": self._params["x0"]}


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
    :func:`scipy.signal.lfilter`; zero initial conditions.  The block has direct
    feedthrough only when ``b[0] != 0`` (then ``b[0]`` is held at zero in training).
    ``a[0]`` only scales ``b`` and ``a`` together, so training holds it too (its gradient
    is exact; an identified filter keeps ``a[0] = 1``); ``fix_a0=False`` trains it.

    Its reciprocal is the same filter run backwards in time, and with
    ``g = A(q^+1)^-1 delta_y`` the parameter gradients are
    ``dJ/db[m] = sum_k g(k) u(k-m)`` and ``dJ/da[m] = -sum_k g(k) y(k-m)``.

    Examples
    --------
    >>> f = DiscreteFilter([1.0], [1.0, -0.5])      # y(k) = u(k) + 0.5 y(k-1)
    >>> f.sequence(None, np.array([[1.0], [0.0], [0.0]]))[:, 0]
    array([1.  , 0.5 , 0.25])
    """

    stateful = True
    linear = True

    def __init__(self, b, a=(1.0,), *, trainable: bool = True, fix_a0: bool = True, **kw):
        super().__init__(**kw)
        self.fix_a0 = fix_a0  # a[0] only scales b and a together: hold it in training
        self.param("b", np.atleast_1d(b), trainable=trainable, ndim=1)
        self.param("a", np.atleast_1d(a), trainable=trainable, ndim=1)
        if self.b.size == 0 or self.a.size == 0 or self.a[0] == 0:
            raise ParameterError(f"block {self.name!r} ({type(self).__name__}): b and a must be "
                                 f"non-empty with a[0] != 0, got b={self.b}, a={self.a}")
        self.feedthrough = bool(self.b[0] != 0)

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
        return t.zeros(n - 1, batch), b0, c, an1

    state_batch_axis = 1  # z: (n - 1, B, ...)

    def state_parts(self, x):
        return (x[0],)  # z; b0, c and a carried along are constants

    def with_state_parts(self, x, parts):
        return (parts[0], *x[1:])

    def output(self, x, u):
        return filter_output(self.feedthrough, x, u)

    def update(self, x, u):
        return filter_update(self.feedthrough, x, u)

    def kernel(self):
        return Kernel(filter_output, filter_update, (self.feedthrough,))

    def sequence(self, x0, U):
        import scipy.signal  # (deferred: importing scipy.signal costs 0.2-0.4 s)
        return scipy.signal.lfilter(self.b, self.a, U, axis=0)

    def grads_ba(self, u, y, dy, resets=()):
        """(dJ/db, dJ/da) from whole sequences; the adjoint ``g`` restarts at ``resets``."""
        import scipy.signal  # (deferred: importing scipy.signal costs 0.2-0.4 s)
        g = np.zeros_like(dy)
        edges = [0, *resets, dy.shape[0]]
        for a, b in zip(edges, edges[1:], strict=False):
            g[a:b] = _rev(scipy.signal.lfilter([1.0], self.a, _rev(dy[a:b]), axis=0))
        gb = np.array([_shift_corr(g, u, m) for m in range(self.b.size)])
        ga = -np.array([_shift_corr(g, y, m) for m in range(self.a.size)])
        if not self.feedthrough:
            gb[0] = 0.0
        return gb, ga

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
        return self.b.size - 1 if self.a.size == 1 else None  # FIR when A = a0

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
        return {"b": self.b, "a": self.a, "trainable": self._params["b"],
                "fix_a0": self.fix_a0}


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
        self._params = {"b": False, "a": False, "num": trainable, "den": trainable}

    def astype(self, dtype):
        self.b, self.a = self.b.astype(dtype), self.a.astype(dtype)
        self._expose(self._params["num"])
        return self

    def param_grads(self, u, y, dy, resets=()):
        gb, ga = self.grads_ba(u[0], y[0], dy[0], resets)
        return {"num": gb[self.pad:], "den": ga} if self._params["num"] else {}

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
        return {"num": self.num, "den": self.den, "trainable": self._params["num"]}


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_t a(t) b(t)^T`` over every leading axis (time, batch, elements)."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


class StateSpace(Block):
    """``x(k+1) = A x(k) + B u(k)``, ``y(k) = C x(k) + D u(k)``, ``x(0) = x0``.

    Samples are vectors: ``u`` of shape ``(m,)``, ``y`` of shape ``(p,)``; a SISO system
    made with ``elementwise=True`` acts on each element of samples of any shape (scalar
    signals included).  Without ``D`` the block has no direct feedthrough.  Its reciprocal
    is the adjoint realisation ``(A^T, C^T, B^T, D^T)`` run backwards in time; its final
    state is ``dJ/dx(0)``.

    Examples
    --------
    >>> ss = StateSpace([[0.5]], [[1.0]], [[1.0]], elementwise=True)   # y(k) = x(k)
    >>> ss.sequence(np.zeros((1, 1)), np.array([[1.0], [1.0], [1.0]]))[0][:, 0]
    array([0. , 1. , 1.5])
    """

    stateful = True
    linear = True

    def __init__(self, A, B, C, D=None, x0=None, *, elementwise: bool = False,
                 trainable: bool = True, train_x0: bool = False, **kw):
        super().__init__(**kw)
        self.param("A", np.atleast_2d(A), trainable=trainable, ndim=2)
        self.param("B", np.atleast_2d(B), trainable=trainable, ndim=2)
        self.param("C", np.atleast_2d(C), trainable=trainable, ndim=2)
        n, m, p = self.A.shape[0], self.B.shape[1], self.C.shape[0]
        if self.A.shape != (n, n) or self.B.shape != (n, m) or self.C.shape != (p, n):
            raise ParameterError(f"block {self.name!r}: {type(self).__name__} needs A (n,n), "
                                 f"B (n,m), C (p,n); got {self.A.shape}, {self.B.shape}, "
                                 f"{self.C.shape}")
        self.elementwise = bool(elementwise)
        if self.elementwise and (m, p) != (1, 1):
            raise ParameterError(f"block {self.name!r}: elementwise=True needs a SISO system "
                                 f"(one input, one output), got {m} inputs, {p} outputs")
        self.feedthrough = D is not None and bool(np.any(D))
        self.param("D", np.zeros((p, m)) if D is None else np.atleast_2d(D),
                   trainable=trainable and self.feedthrough)
        if self.D.shape != (p, m):
            raise ParameterError(f"block {self.name!r}: D must be {(p, m)}, got {self.D.shape}")
        self.param("x0", np.zeros(n) if x0 is None else x0, trainable=train_x0)
        self.residuals = ("x",)  # the state x(k), recorded for param_grads
        if self.x0.shape not in ((n,), (), (1,)):
            raise ParameterError(f"block {self.name!r} ({type(self).__name__}): x0 must have "
                                 f"shape ({n},) for {n} states, got {self.x0.shape}")

    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The discrete ``(A, B, C, D)`` the block runs."""
        return self.A, self.B, self.C, self.D

    def infer(self, t):
        m, p = self.B.shape[1], self.C.shape[0]
        if self.elementwise:
            return (t,)
        if t is not None and t.shape != (m,):
            raise self.type_error(f"takes ({m},) samples, got {t.shape}", port=self.inputs[0])
        return (SignalType((p,), t.dtype if t else np.float64),)

    def _state_shape(self, t: SignalType) -> tuple:
        return (*t.shape, self.A.shape[0]) if self.elementwise else (self.A.shape[0],)

    def init_state(self, batch, in_types, out_types):
        shape = self._state_shape(out_types[0])
        return np.broadcast_to(self.x0, (batch, *shape)).astype(out_types[0].dtype)

    def residual_types(self, in_types, out_types):  # the state x(k), for param_grads
        return (SignalType(self._state_shape(out_types[0]), out_types[0].dtype),)

    def _params_t(self, contiguous=lambda a: a):
        # (A^T, B^T, C^T, D^T, feedthrough, work): a row of n for in-place updates
        work = np.zeros(max(self.A.shape[0], 1), self.A.dtype)
        return (*(contiguous(M.T) for M in self.matrices()), self.feedthrough, work)

    def _kernels(self):
        if self.elementwise:
            return (siso_output if self.residuals else siso_output_plain), siso_update
        return (ss_output if self.residuals else ss_output_plain), ss_update

    def output(self, x, u):
        return self._kernels()[0](*self._params_t(), x, u)

    def update(self, x, u):
        return self._kernels()[1](*self._params_t(), x, u)

    def kernel(self):
        out, upd = self._kernels()
        return Kernel(out, upd, self._params_t(np.ascontiguousarray))

    def _vec(self, U):  # samples as (..., m) vectors
        return U[..., None] if self.elementwise else U

    def states(self, x0, U) -> np.ndarray:
        """x(0..T-1) for inputs ``U`` (T, B, m) (or (T, B, ...) elementwise)."""
        A, B, _, _ = self.matrices()
        BU = self._vec(U) @ B.T
        X = np.empty((U.shape[0], *np.broadcast_shapes(BU.shape[1:], x0.shape)),
                     dtype=BU.dtype)
        x, At = x0, A.T
        for k in range(U.shape[0]):
            X[k] = x
            x = x @ At + BU[k]
        return X

    def sequence(self, x0, U):
        _, _, C, D = self.matrices()
        X = self.states(x0, U)
        Y = X @ C.T
        Y = Y + self._vec(U) @ D.T if self.feedthrough else Y
        Y = Y[..., 0] if self.elementwise else Y
        return (Y, X) if self.residuals else Y

    def matrix_grads(self, u, y, dy, resets=()) -> dict:
        """dJ/d(A, B, C, D, x0) of the matrices the block runs, all of them."""
        A, _, C, _ = self.matrices()
        (U,), (_, X), (dY,) = u, y, dy  # X: the states recorded in the forward pass
        U, dY = self._vec(U), self._vec(dY)
        lam = np.zeros_like(X)  # lam[k] = dJ/dx(k+1)
        nxt = np.zeros_like(X[0])
        CtdY = dY @ C
        held = set(resets)  # x(k) held as data there: the adjoint stops
        for k in range(U.shape[0] - 1, -1, -1):
            lam[k] = nxt
            nxt = nxt @ A + CtdY[k]
            if k in held:
                nxt = np.zeros_like(nxt)
        return {"A": _outer(lam, X), "B": _outer(lam, U), "C": _outer(dY, X), "D": _outer(dY, U),
                "x0": sum_to(nxt, self.x0.shape)}  # lambda(0) = dJ/dx(0)

    def param_grads(self, u, y, dy, resets=()):
        grads = self.matrix_grads(u, y, dy, resets)
        return {n: g for n, g in grads.items() if self._params[n]}

    def param_jvp(self, u, y, dp):
        """Forced response: ``e(k+1) = A e + dA x + dB u``, ``e(0) = dx0``,
        ``dy = C e + dC x + dD u``."""
        A, B, C, D = self.matrices()
        (U,), (_, X) = u, y
        U = self._vec(U)
        n = A.shape[0]
        dA, dB = dp.get("A", np.zeros_like(A)), dp.get("B", np.zeros_like(B))
        force = X @ np.transpose(dA) + U @ np.transpose(dB)
        E = np.empty_like(X)
        e = np.broadcast_to(np.asarray(dp.get("x0", np.zeros(n)), float), X[0].shape).copy()
        for k in range(U.shape[0]):
            E[k] = e
            e = e @ A.T + force[k]
        out = E @ C.T + X @ np.transpose(dp.get("C", np.zeros_like(C)))
        if "D" in dp:
            out = out + U @ np.transpose(dp["D"])
        return (out[..., 0] if self.elementwise else out,)

    def _like(self, A, B, C, D, **kw) -> StateSpace:
        r = StateSpace(A, B, C, D if self.feedthrough else None, elementwise=self.elementwise,
                       name=self.name, **kw)
        r.residuals = ()  # transposed realisations record nothing
        r.A, r.B, r.C = A, B, C
        if self.feedthrough:
            r.D = D
        return r

    def transposed(self) -> Block:  # the adjoint realisation (A^T, C^T, B^T, D^T)
        return self._like(self.A.T, self.C.T, self.B.T, self.D.T, inputs=self.outputs,
                          outputs=self.inputs)

    def label(self) -> str:
        return f"SS (n={self.A.shape[0]})"

    def config(self) -> dict:
        cfg = {"A": self.A, "B": self.B, "C": self.C,
               "D": self.D if self.feedthrough else None, "x0": self.x0,
               "trainable": self._params["A"], "train_x0": self._params["x0"]}
        if self.elementwise:
            cfg["elementwise"] = True
        return cfg
