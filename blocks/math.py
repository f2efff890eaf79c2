"""Math blocks: Sum, Gain, Product, Function (elementwise f with its derivative), Saturation.

Each block's reciprocal rule (``vjp``), tangent (``jvp``) and parameter gradient sit right
under its forward rule.
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections.abc import Callable

import numpy as np

from blockflow.core import vecmath
from blockflow.core.block import Block, sum_to
from blockflow.core.ccode import DERIVATIVES_C, FUNCTIONS_C, at, each, matvec, outer_add
from blockflow.core.codekey import function_key
from blockflow.core.kernel import (
    Kernel,
    broadcast_at,
    elementwise_into,
    generated_kernel,
    kernel,
    rows_matmul,
    sum_lines,
    sum_np_into,
)
from blockflow.core.types import SignalType, same_type
from blockflow.errors import ParameterError


@functools.cache  # (a block's kernel() is asked for on every run)
def sum_output(signs: str):
    """``y = s_1 u_1 + s_2 u_2 + ...`` as a kernel written out for ``signs``: one array
    operation per input, no multiplications by +-1 (and its element loop, into ``out``)."""
    args = ", ".join(f"u{i}" for i in range(len(signs)))
    src = "\n".join([f"def f({args}):",
                     *sum_lines([(s, f"u{i}") for i, s in enumerate(signs)], "y", "    ",
                                fresh=True), "    return y"]) + "\n"
    def into():  # (made when a compiled loop asks for it)
        return "\n".join([f"def f({args}, out):", "    for i in range(out.size):",
                          *sum_lines([(s, f"u{i}.flat[i]") for i, s in enumerate(signs)],
                                     "acc", "        "),
                          "        out.flat[i] = acc", "    return out"]) + "\n"

    name = signs.replace("+", "p").replace("-", "m") if len(signs) <= 64 else \
        f"{len(signs)}_{hashlib.sha1(signs.encode()).hexdigest()[:12]}"
    key = "blocks.math.sum_" + name
    return generated_kernel(key, src, "f", globals(), into=into,
                            numbers=signs != "+",  # (one "+": a copy, of an array)
                            np_into=sum_np_into(signs))


@functools.cache
def sum_vjp(n: int):
    """The reciprocal rule of an n-input Sum as a kernel: ``(s_1 dy, ..., s_n dy)``."""
    terms = ", ".join(f"signs[{i}] * dy" for i in range(n))
    ret = terms if n == 1 else f"({terms},)"
    outs = ["out"] if n == 1 else [f"out[{i}]" for i in range(n)]
    def into():  # (made when a compiled loop asks for it)
        return "def f(signs, dy, out):\n    for i in range(dy.size):\n" + "".join(
            f"        {o}.flat[i] = signs[{j}] * dy.flat[i]\n"
            for j, o in enumerate(outs)) + "    return out\n"

    def np_into(signs, dy, out):  # signs[i] * dy into each row
        for i, o in enumerate((out,) if n == 1 else out):
            np.multiply(signs[i], dy, out=o)
        return out

    return generated_kernel(f"blocks.math.sum_vjp{n}",
                            f"def f(signs, dy):\n    return {ret}\n", "f", globals(),
                            into=into,
                            numbers=n > 1,  # (one sign: a number, not indexed)
                            np_into=np_into)


class Sum(Block):
    """Summing junction: ``y(k) = s_1 u1(k) + s_2 u2(k) + ...`` with signs ``s_i = +-1``.

    Its reciprocal is a branching point with gains ``s_i``: ``delta_ui(k) = s_i delta_y(k)``.

    Parameters
    ----------
    signs : str, default "++"
        One ``+`` or ``-`` per input; inputs are named ``u1, u2, ...``.

    Examples
    --------
    >>> Sum("+-").output(None, np.array([3.0]), np.array([1.0]))
    array([2.])
    """

    uniform = True  # every input and the output share one type

    linear = True
    symbol = "Σ"
    glyph = "sum"

    def __init__(self, signs: str = "++", **kw):
        if not signs or set(signs) - {"+", "-"}:
            raise ParameterError(f"Sum signs must be a non-empty string of '+'/'-', got {signs!r}")
        kw.setdefault("inputs", tuple(f"u{i + 1}" for i in range(len(signs))))
        super().__init__(**kw)
        self.signs = signs

    def infer(self, *t):
        return (same_type(f"block {self.name!r} (Sum)", *t),)

    def output(self, x, *u):
        return sum_output(self.signs)(*u)

    def vjp(self, u, y, dy):
        out = tuple(dy if s == "+" else -dy for s in self.signs)
        return out[0] if len(out) == 1 else out

    def branches_deltas(self) -> bool:
        return "-" not in self.signs

    def _signs(self):
        return np.array([1.0 if s == "+" else -1.0 for s in self.signs])

    def kernel(self):
        return Kernel(sum_output(self.signs))

    def vjp_kernel(self):
        return Kernel(sum_vjp(len(self.signs)), params=(self._signs(),))

    def c_code(self, c):
        n = c.n_y()
        terms = " ".join(f"{sg} {at(c.u(j), c.n_u(j), n)}" for j, sg in enumerate(self.signs))
        c.output(*each(n, f"{c.y()}[i] = {terms.lstrip('+ ')};"))

    def label(self) -> str:
        return f"Σ {self.signs}"

    def input_signs(self) -> str:
        return self.signs

    def config(self) -> dict:
        return {"signs": self.signs}


@kernel(allocates=False)
def _gain_into(K, u, out):
    for i in range(out.size):
        out.flat[i] = u.flat[i] * broadcast_at(K, out, i)
    return out


def _gain_np_into(K, u, out):
    return np.multiply(u, K, out=out)


@kernel(into=_gain_into, numbers=True, np_into=_gain_np_into)
def gain_elementwise(K, u):
    return u * K


@kernel(allocates=False)
def _matmul_into(M, u, out):  # out = u @ M, row by row
    for i in range(out.size):
        out.flat[i] = 0.0
    return rows_matmul(u, M, out)


def matmul_rows(u: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``u @ M`` over every leading axis of ``u`` as one 2-D product: numpy runs a stacked
    ``(T, B, n) @ (n, m)`` as a product per leading index, up to 2x slower over a whole
    sequence."""
    if u.ndim <= 2:
        return u @ M
    return (u.reshape(-1, u.shape[-1]) @ M).reshape(*u.shape[:-1], M.shape[-1])


@kernel
def gain_matrix(K, u):
    return u @ K.T


def _matmul_np_into(M, u, out):
    return np.matmul(u, M, out=out)


@kernel(into=_matmul_into, np_into=_matmul_np_into)
def gain_matrix_t(KT, u):  # the compiled form: K^T stored contiguous
    return u @ KT


@kernel(into=_matmul_into, np_into=_matmul_np_into)
def gain_matrix_vjp(K, dy):
    return dy @ K


class Gain(Block):
    """``y(k) = K u(k)``: elementwise for a scalar or array K, matrix product for a 2-D K.

    Parameters
    ----------
    K : array_like
        The gain.  A 2-D ``K`` of shape ``(m, n)`` maps ``(n,)`` samples to ``(m,)``.
    multiplication : {"auto", "elementwise", "matrix"}
        ``"auto"``: matrix for 2-D K, elementwise otherwise.
    trainable : bool, default True

    Examples
    --------
    >>> Gain(2.0).output(None, np.array([1.5]))
    array([3.])
    """

    linear = True
    grads_read_outputs = False  # (dJ/dK from delta_y and u alone)

    glyph = "gain"

    def __init__(self, K, *, multiplication: str = "auto", trainable: bool = True, **kw):
        super().__init__(**kw)
        self.param("K", K, trainable=trainable)
        if multiplication == "auto":
            multiplication = "matrix" if self.K.ndim == 2 else "elementwise"
        if multiplication not in ("elementwise", "matrix"):
            raise ParameterError(f"block {self.name!r}: multiplication must be 'elementwise' or "
                             f"'matrix', got {multiplication!r}")
        if multiplication == "matrix" and self.K.ndim != 2:
            raise ParameterError(f"block {self.name!r}: a matrix gain needs a 2-D K, "
                             f"got shape {self.K.shape}")
        self.matrix = multiplication == "matrix"

    @property
    def batchable(self) -> frozenset:  # type: ignore[override]
        return frozenset() if self.matrix else frozenset({"K"})

    def infer(self, t):
        if t is None:
            return (None,)
        if self.K.ndim == 0 and t.dtype == self.K.dtype:  # (a scalar gain: the same type)
            return (t,)
        dtype = np.result_type(t.dtype, self.K.dtype)
        if self.matrix:
            if t.shape != (self.K.shape[1],):
                raise self.type_error(f"a {self.K.shape} gain takes ({self.K.shape[1]},) "
                                      f"samples, got {t.shape}", port="u")
            return (SignalType((self.K.shape[0],), dtype),)
        if np.broadcast_shapes(t.shape, self.K.shape) != t.shape:
            raise self.type_error(f"gain of shape {self.K.shape} does not fit samples of shape "
                                  f"{t.shape}", port="u")
        return (SignalType(t.shape, dtype),)

    def output(self, x, u):
        return matmul_rows(u, self.K.T) if self.matrix else gain_elementwise(self.K, u)

    def vjp(self, u, y, dy):
        return matmul_rows(dy, self.K) if self.matrix else gain_elementwise(self.K, dy)

    def kernel(self):
        if self.matrix:
            return Kernel(gain_matrix_t, params=(np.ascontiguousarray(self.K.T),))
        return Kernel(gain_elementwise, params=(self.K,))

    def c_code(self, c):
        K = c.param("K", self.K)
        if self.matrix:  # y = K u
            rows, cols = self.K.shape
            c.output(*matvec(c.y(), K, rows, cols, c.u(0), ctype=c.T))
            return None
        n = c.n_y()
        if self.K.size not in (1, n):
            raise c.refuse(f"a gain of shape {self.K.shape} broadcast over {n} elements")
        c.output(*each(n, f"{c.y()}[i] = {at(K, self.K.size, n)} * "
                          f"{at(c.u(0), c.n_u(0), n)};"))
        return None

    def vjp_kernel(self):
        return Kernel(gain_matrix_vjp if self.matrix else gain_elementwise, params=(self.K,))

    def c_param_grads(self, g):
        if not self._params["K"]:
            return
        dK, dy, u = g.grad("K"), g.dy(), g.u()
        if self.matrix:  # dK += dy u^T
            g.add(*outer_add(dK, dy, self.K.shape[0], u, self.K.shape[1]))
        elif self.K.size == 1:  # dK += sum_i dy[i] u[i]
            n = g.n_y()
            g.add(*each(n, f"{dK}[0] += {dy}[i] * {at(u, g.n_u(), n)};"))
        else:
            g.add(*each(g.n_y(), f"{dK}[i] += {dy}[i] * {at(u, g.n_u(), g.n_y())};"))

    def param_grads(self, u, y, dy):
        (u,), (dy,) = u, dy
        if self.matrix:
            n, m = self.K.shape[1], self.K.shape[0]
            return {"K": dy.reshape(-1, m).T @ u.reshape(-1, n)}
        return {"K": sum_to(dy * u, self.K.shape)}

    def param_jvp(self, u, y, dp):
        (u,) = u
        dK = dp.get("K", 0.0)
        return (u @ np.transpose(dK) if self.matrix else u * dK,)

    def label(self) -> str:
        return f"K={_short(self.K)}"

    def config(self) -> dict:
        return {"K": self.K, "multiplication": "matrix" if self.matrix else "elementwise",
                "trainable": self._params["K"]}


@functools.cache
def product_kernels(ops: str) -> tuple[Callable, Callable]:
    """``y = prod u_i^(+-1)``, its reciprocal ``(dy dy/du_1, ...)`` and its tangent
    ``sum_i du_i dy/du_i`` as kernels, written out for the operators ``ops`` (``*``
    multiplies, ``/`` divides)."""
    n = len(ops)
    args = ", ".join(f"u{i}" for i in range(n))

    def term(j, at=""):  # (at=".flat[i]": the element form, for the into kernels)
        return f"u{j}{at}" if ops[j] == "*" else f"(1.0 / u{j}{at})"

    def partial(i, at=""):
        if ops[i] == "/":
            return f"-y{at} / u{i}{at}"
        others = [term(j, at) for j in range(n) if j != i]
        return " * ".join(others) if others else ("1.0" if at else "np.ones_like(y)")

    e = ".flat[i]"
    loop = "    for i in range(out.size):\n"
    parts = ", ".join(f"dy * {partial(i)}" for i in range(n))
    ret = parts if n == 1 else f"({parts},)"
    dus = ", ".join(f"du{i}" for i in range(n))
    tangent = " + ".join(f"du{i} * {partial(i)}" for i in range(n))
    key = "blocks.math.product_" + ops.replace("*", "m").replace("/", "d")
    prod = " * ".join(term(j) for j in range(n))
    out = generated_kernel(key, f"def f({args}):\n    return {prod}\n", "f", globals(),
                           numbers=True, into=f"def f({args}, out):\n{loop}        out{e} = "
                           f"{' * '.join(term(j, e) for j in range(n))}\n    return out\n")
    unpack = "(" + ", ".join(f"o{i}" for i in range(n)) + ",) = out\n    " if n > 1 else ""
    vjp_into = (f"def f(dy, {args}, y, out):\n    {unpack}"
                f"for i in range(dy.size):\n"
                + "".join(f"        {'out' if n == 1 else f'o{i}'}{e} = dy{e} * "
                          f"{partial(i, e)}\n" for i in range(n)) + "    return out\n")
    vjp = generated_kernel(key + "_vjp", f"def f(dy, {args}, y):\n    return {ret}\n", "f",
                           globals(), into=vjp_into, numbers=ops != "*")  # (np.ones_like)
    jvp_into = (f"def f({dus}, {args}, y, out):\n{loop}        out{e} = "
                + " + ".join(f"du{i}{e} * {partial(i, e)}" for i in range(n))
                + "\n    return out\n")
    jvp = generated_kernel(key + "_jvp", f"def f({dus}, {args}, y):\n    return {tangent}\n",
                           "f", globals(), into=jvp_into)
    return out, vjp, jvp


class Product(Block):
    """Elementwise product and quotient: ``y(k) = u1(k)^e1 * u2(k)^e2 ...``, ``e_i = +-1``.

    Parameters
    ----------
    ops : str, default "**"
        One ``*`` (multiply) or ``/`` (divide) per input.
    """

    uniform = True  # every input and the output share one type

    symbol = "Π"

    def __init__(self, ops: str = "**", **kw):
        if not ops or set(ops) - {"*", "/"}:
            raise ParameterError(f"Product ops must be a non-empty string of '*'/'/', got {ops!r}")
        kw.setdefault("inputs", tuple(f"u{i + 1}" for i in range(len(ops))))
        super().__init__(**kw)
        self.ops = ops

    def infer(self, *t):
        return (same_type(f"block {self.name!r} (Product)", *t),)

    def output(self, x, *u):
        return product_kernels(self.ops)[0](*u)

    def vjp(self, u, y, dy):
        return product_kernels(self.ops)[1](dy, *u, y[0])

    def jvp(self, u, y, *du):
        return product_kernels(self.ops)[2](*du, *u, y[0])

    def jvp_kernel(self):
        return Kernel(product_kernels(self.ops)[2])

    def c_code(self, c):
        n = c.n_y()
        expr = "1"
        for j, op in enumerate(self.ops):
            expr += f" {op} {at(c.u(j), c.n_u(j), n)}"
        c.output(*each(n, f"{c.y()}[i] = {expr};"))

    def kernel(self):
        return Kernel(product_kernels(self.ops)[0])

    def c_vjp(self, v):  # delta_u_i = delta_y dy/du_i, as the compiled rule
        n = v.n_y()

        def term(j):
            u = at(v.u(j), v.n_u(j), n)
            return u if self.ops[j] == "*" else f"(1.0 / {u})"

        for i, op in enumerate(self.ops):
            if op == "/":
                partial = f"-{v.y()}[i] / {at(v.u(i), v.n_u(i), n)}"
            else:
                partial = " * ".join(term(j) for j in range(len(self.ops)) if j != i) or "1.0"
            if v.n_u(i) != n:
                raise v.refuse("a product broadcasting an input over the others")
            v.output(*each(n, f"{v.du(i)}[i] = {v.dy()}[i] * {partial};"))

    def vjp_kernel(self):
        return Kernel(product_kernels(self.ops)[1])

    def label(self) -> str:  # u1 × u2 ÷ u3 ...: the operators between the inputs
        return "Π" if set(self.ops) == {"*"} else \
            "Π " + " ".join("×" if o == "*" else "÷" for o in self.ops)

    def config(self) -> dict:
        return {"ops": self.ops}


# name -> (f(a), f'(a) given a and the recorded output y)
def _elementwise_kernels(f, df, keys: tuple[str, str, str], sources=None, jit=None) -> tuple:
    """``(f, df, rule)``: ``f`` and ``df`` as kernels, and the reciprocal rule
    ``dy f'(a)`` built from ``df``, ``f`` and the rule with their element loops, under
    the kernel names ``keys`` (``sources``: the texts standing for ``f``'s and ``df``'s
    in the loops' digests, where their source cannot be read; ``jit``: ``f`` on numbers
    as compiled code computes it, :mod:`blockflow.core.vecmath`)."""
    # (the element loops call f on numbers: it works on numbers)
    f, df = kernel(f, name=keys[0], numbers=True, jit=jit), kernel(df, name=keys[1])
    if sources is not None:
        f.kernel_source, df.kernel_source = sources
    f.into = elementwise_into(f, 1, f"{keys[0]}.into")

    def vjp(dy, a, y):
        return dy * df(a, y)

    rule = kernel(vjp, name=keys[2], numbers=True)
    rule.into = elementwise_into(rule, 3, f"{keys[2]}.into")
    return f, df, rule


def _pair(name: str, f, df, np_into: tuple = (None, None), jit=None):
    """``(f, df)`` as kernels, with the reciprocal rule ``dy f'(a)`` built from ``df``.

    ``f`` and ``df`` work on numbers as well as on arrays (and keep an array's dtype):
    the compiled loops apply them element by element, into the signal's record row.
    ``np_into``: ``f`` and the rule with numpy's ``out=`` (see :func:`kernel`); ``jit``:
    ``f`` on numbers as compiled loops compute it (vectorised: :mod:`blockflow.core.vecmath`).
    """
    keys = (f"blocks.math.{name}", f"blocks.math.d{name}", f"blocks.math.{name}_vjp")
    f, df, _VJP[name] = _elementwise_kernels(f, df, keys, jit=jit)
    for k, g in zip((f, _VJP[name]), np_into, strict=True):
        if g is not None:
            k.np_into = g
    return f, df


def _tanh_np_into(a, out):
    return np.tanh(a, out=out)


_VJP: dict[str, Callable] = {}


def _user_kernels(f: Callable, df: Callable) -> tuple[tuple | None, str | None]:
    """Kernels for a user's ``f`` and ``df``: ``((f, its reciprocal rule), None)``, or
    ``(None, why)`` where what they compute from cannot be known (a builtin, a ufunc, a
    global or closure value that is not data).

    They are keyed by everything their results depend on (:func:`function_key`: code,
    defaults, closure cells, the globals they read and the helpers they call, read again
    at every run), so two functions made by one factory never share a kernel, a changed
    global makes a new one, and a second process finds its loops in the disk cache only
    where all of that agrees.  numba compiles them when a loop first runs compiled (the
    values they read become constants of that loop); where it cannot type them (an ``f``
    that works on arrays only), the loop stays on the numpy path and says why."""
    fns = (f, df)
    if not all(isinstance(g, types.FunctionType) for g in fns):
        return None, ("its f or df is not a plain Python function (a builtin, a ufunc or "
                      "a callable object): the numpy path calls it as it is")
    code, why = function_key(fns)
    if code is None:
        return None, f"what its f or df computes from cannot be keyed ({why})"
    key = f"blocks.math.user_{code}"
    if key not in _USER:
        # copies (the user's functions are not marked), named by what they compute from
        copies = []
        for g in fns:
            c = types.FunctionType(g.__code__, g.__globals__, g.__name__, g.__defaults__,
                                   g.__closure__)
            c.__kwdefaults__ = g.__kwdefaults__
            copies.append(c)
        fk, _, rule = _elementwise_kernels(
            *copies, (f"{key}.f", f"{key}.df", f"{key}.vjp"),
            sources=tuple(f"{g.__module__}.{g.__qualname__} {code}" for g in fns))
        _USER[key] = (fk, rule)
    return _USER[key], None


_USER: dict[str, tuple[Callable, Callable]] = {}  # by what the functions compute from


@kernel
def _zero(a):  # 0 in a's type, also for a = +-inf (a number or an array)
    return a**0 - 1


def _sigmoid(a):
    return 0.5 + 0.5 * np.tanh(0.5 * a)  # the logistic function, without overflow


#: name -> (f(a), f'(a) given a and the recorded output y): one line each
ELEMENTWISE: dict[str, tuple[Callable, Callable]] = {
    "tanh": _pair("tanh", lambda a: np.tanh(a), lambda a, y: 1.0 - y * y,
                  (_tanh_np_into, None), jit=vecmath.tanh),
    "sigmoid": _pair("sigmoid", _sigmoid, lambda a, y: y * (1.0 - y), jit=vecmath.sigmoid),
    "relu": _pair("relu", lambda a: np.maximum(a, _zero(a)), lambda a, y: (a > 0) * a**0),
    "identity": _pair("identity", lambda a: +a, lambda a, y: a**0),
    "exp": _pair("exp", lambda a: np.exp(a), lambda a, y: +y),
    "sin": _pair("sin", lambda a: np.sin(a), lambda a, y: np.cos(a)),
    "cos": _pair("cos", lambda a: np.cos(a), lambda a, y: -np.sin(a)),
    "square": _pair("square", lambda a: a * a, lambda a, y: 2.0 * a),
    "softplus": _pair("softplus", lambda a: np.logaddexp(_zero(a), a),
                      lambda a, y: 0.5 + 0.5 * np.tanh(0.5 * a)),
}


#: the functions of ELEMENTWISE compiled loops evaluate by libm, one element per call (tanh
#: and sigmoid are arithmetic the compiler vectorises: :mod:`blockflow.core.vecmath`)
TRANSCENDENTAL = frozenset({"exp", "sin", "cos", "softplus"})


class Function(Block):
    """A univariate function applied elementwise: ``y(k) = f(u(k))``.

    Its reciprocal is the time-varying gain ``delta_u(k) = f'(u(k)) delta_y(k)``.

    Parameters
    ----------
    f : str or callable
        A name from :data:`ELEMENTWISE` (tanh, sigmoid, relu, identity, exp, sin, cos,
        square, softplus) or a callable, then with ``df``.
    df : callable, optional
        ``df(a, y)``: the derivative at ``a``, given the output ``y = f(a)`` too.

    Examples
    --------
    >>> Function("tanh").vjp((np.array([0.0]),), (np.array([0.0]),), np.array([2.0]))
    array([2.])
    """

    def __init__(self, f: str | Callable = "tanh", df: Callable | None = None, **kw):
        if isinstance(f, str):
            if f not in ELEMENTWISE:
                raise ParameterError(f"unknown function {f!r}; known: {sorted(ELEMENTWISE)}, or "
                                     "pass a callable f with its derivative df(a, y)")
            if df is not None:
                raise ParameterError(f"Function({f!r}) has its derivative already; pass df "
                                     "only with a callable f")
            self.fname = f
            f, df = ELEMENTWISE[f]
        else:
            if not callable(f) or not callable(df):
                raise ParameterError("Function(f, df) takes a callable f and its derivative "
                                     f"df(a, y), got f={f!r:.40}, df={df!r:.40}")
            self.fname = getattr(f, "__name__", "f")
        super().__init__(**kw)
        self.f, self.df = f, df

    @property
    def libm(self) -> float:  # type: ignore[override]
        return 1.0 if self.fname in TRANSCENDENTAL else 0.0

    def c_code(self, c):
        named = ELEMENTWISE.get(self.fname, (None,))[0] is self.f
        if not named or self.fname not in FUNCTIONS_C:
            raise c.refuse(f"its function {self.fname!r} is Python; C export writes the "
                           f"library's named ones ({', '.join(sorted(FUNCTIONS_C))})")
        expr = FUNCTIONS_C[self.fname].format(a=f"{c.u(0)}[i]")
        c.output(*each(c.n_y(), f"{c.y()}[i] = {expr};"))

    def output(self, x, u):
        return self.f(u)

    def vjp(self, u, y, dy):
        return dy * self.df(u[0], y[0])

    def c_vjp(self, v):  # delta_u = f'(u) delta_y
        if self.fname not in DERIVATIVES_C or ELEMENTWISE.get(self.fname) != (self.f, self.df):
            raise v.refuse(f"its derivative {self.fname!r} is Python")
        d = DERIVATIVES_C[self.fname].format(a=f"{v.u()}[i]", y=f"{v.y()}[i]")
        v.output(*each(v.n_u(), f"{v.du()}[i] = {v.dy()}[i] * {d};"))

    def jvp(self, u, y, du):
        return du * self.df(u[0], y[0])

    def _user(self) -> tuple | None:
        """Kernels for a user's ``(f, df)`` (looked up by their key at every call, not
        kept on the block: it pickles as its functions)."""
        if ELEMENTWISE.get(self.fname) == (self.f, self.df):
            return None
        return _user_kernels(self.f, self.df)[0]

    def why_no_kernel(self) -> str | None:
        if ELEMENTWISE.get(self.fname) == (self.f, self.df):
            return None
        return _user_kernels(self.f, self.df)[1]

    def kernel(self):
        if (user := self._user()) is not None:
            return Kernel(user[0])
        return Kernel(self.f) if ELEMENTWISE.get(self.fname, (None,))[0] is self.f else None

    def vjp_kernel(self):
        if (user := self._user()) is not None:
            return Kernel(user[1])
        rule = _VJP.get(self.fname)
        return None if rule is None or ELEMENTWISE[self.fname][0] is not self.f else Kernel(rule)

    jvp_kernel = vjp_kernel  # f'(a) du: the same time-varying gain

    def label(self) -> str:
        return self.fname

    def reciprocal_label(self) -> str:  # the paper's time-varying gain
        return f"× {self.fname}′(u(k))"

    def config(self) -> dict:
        if ELEMENTWISE.get(self.fname) != (self.f, self.df):
            raise ParameterError("a Function with a user callable cannot be saved as data; "
                             "add (f, df) to blocks.math.ELEMENTWISE under a name")
        return {"f": self.fname}


@kernel(allocates=False)
def _saturation_into(lower, upper, u, out):
    for i in range(out.size):
        out.flat[i] = np.minimum(np.maximum(u.flat[i], lower), upper)
    return out


@kernel(into=_saturation_into, numbers=True)
def saturation(lower, upper, u):
    return np.minimum(np.maximum(u, lower), upper)


@kernel(allocates=False)
def _saturation_vjp_into(lower, upper, dy, u, y, out):
    for i in range(out.size):
        out.flat[i] = dy.flat[i] * ((u.flat[i] > lower) and (u.flat[i] < upper))
    return out


@kernel(into=_saturation_vjp_into, numbers=True)
def saturation_vjp(lower, upper, dy, u, y):  # 1 inside the limits, 0 outside
    return dy * ((u > lower) & (u < upper))


class Saturation(Block):
    """``y(k) = min(max(u(k), lower), upper)``; its derivative is 1 inside, 0 outside."""

    def __init__(self, lower: float = -1.0, upper: float = 1.0, **kw):
        super().__init__(**kw)
        self.lower = self.scalar("lower", lower, finite=False)
        self.upper = self.scalar("upper", upper, finite=False, above=self.lower)

    def c_code(self, c):
        lo, hi = c.param("lower", self.lower), c.param("upper", self.upper)
        c.output(*each(c.n_y(), f"{c.y()}[i] = fmin(fmax({c.u(0)}[i], {lo}[0]), {hi}[0]);"))

    def output(self, x, u):
        return saturation(self.lower, self.upper, u)

    def vjp(self, u, y, dy):
        return saturation_vjp(self.lower, self.upper, dy, u[0], y[0])

    def c_vjp(self, v):  # 1 inside the limits, 0 outside
        lo, hi = v.param("lower", self.lower), v.param("upper", self.upper)
        v.output(*each(v.n_u(), f"{v.du()}[i] = ({v.u()}[i] > {lo}[0] && {v.u()}[i] < "
                                f"{hi}[0]) ? {v.dy()}[i] : 0.0;"))

    def kernel(self):
        return Kernel(saturation, params=(self.lower, self.upper))

    def vjp_kernel(self):
        return Kernel(saturation_vjp, params=(self.lower, self.upper))

    def jvp(self, u, y, du):
        return self.vjp(u, y, du)

    def label(self) -> str:
        return f"sat[{self.lower:g},{self.upper:g}]"

    def config(self) -> dict:
        return {"lower": self.lower, "upper": self.upper}


def _short(a: np.ndarray) -> str:
    if a.size == 1:
        return f"{float(a):.4g}"
    return f"{a.shape}"
