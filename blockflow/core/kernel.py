"""Kernels: a block's step equations written once, run by numpy or compiled by numba.

A block's step equations are plain functions of ``(parameters..., [state,] inputs...)``
with no attribute access inside, marked with :func:`kernel`.  The block's ``output`` /
``update`` call them on numpy arrays (the numpy path), and ``Block.kernel()`` hands the
same functions and the current parameter values to the engine.  A kernel may carry an
``into`` form, the same equation writing into a given buffer (an element loop that
allocates nothing), which compiled loops call.  This module is what blocks import; how
loops of kernels are generated, compiled and cached is :mod:`blockflow.backends`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

_KERNELS: dict[str, Callable] = {}
def kernel(fn: Callable | None = None, *, name: str | None = None,
           into: Callable | None = None, allocates: bool = True, numbers: bool = False,
           np_into: Callable | None = None, jit: Callable | None = None):
    """Mark a step-equation function as a kernel: plain Python for numpy, compiled by
    numba inside generated loops.  ``name`` gives closures a stable key.

    ``into`` is the same equation writing its result into a given buffer, the form the
    compiled loops call (no array is allocated per step): ``into(*args, out)`` fills
    ``out`` (an output's record row, a tuple of rows for several outputs, or the state
    itself for an update, which it then changes in place) and returns it.

    ``allocates=False`` promises that the function creates no array (element loops over
    ``.flat``, no ufuncs, no views kept): a loop calling only such functions is compiled
    without numba's reference counting, which is most of a small loop's cost.  Array
    parameters reach compiled kernels as arrays of at least one dimension (a 0-d one as
    one element: read it as ``p.flat[0]``).

    ``numbers=True`` promises that the function works on numbers as well: given numbers
    for its inputs (and its state), and numbers for its parameters of one element, it
    returns numbers (one per output) and allocates nothing.  Loops of single numbers
    then run it with their signals and states in local variables
    (:class:`Scalar`).

    ``np_into`` is the same equation for the numpy path, writing into ``out`` with
    numpy's ``out=`` (``np_into(*args, out)``, the same operations in the same order, so
    the same bits): a loop on the numpy path writes a floating output straight into its
    record row instead of allocating a result and copying it there.

    ``jit`` is the same function on numbers as compiled code computes it (for a
    ``numbers=True`` kernel): called on a float, numba compiles ``jit`` in its place,
    on arrays the function itself (:mod:`blockflow.core.vecmath`: a ``tanh`` the compiler
    vectorises, where numpy's would be a libm call per element).
    """

    def mark(f):
        key = name or f"{f.__module__}.{f.__qualname__}"
        _KERNELS[key] = f
        f.kernel_key = key
        f.allocates = allocates
        f.numbers = numbers
        if into is not None:
            f.into = into if hasattr(into, "kernel_key") else kernel(into, name=key + ".into")
        if np_into is not None:
            f.np_into = np_into
        if jit is not None:  # (its module's text, constants too, keys the compiled loops)
            f.jit = jit
            f.kernel_source = (_text(f) + "\n# compiled on numbers as:\n"
                               + inspect.getsource(inspect.getmodule(jit)))
        return f

    return mark(fn) if fn is not None else mark


@kernel(allocates=False)
def copy_into(src, out):
    """``out[...] = src`` element by element (a held record row; numba's slice
    assignment may copy through a temporary)."""
    for i in range(out.size):
        out.flat[i] = src.flat[i]
    return out


# into forms shared by the delays (UnitDelay, the engine's DelayLine), each a loop of its
# own: a kernel calling another is compiled as a function of its own, not inlined
@kernel(allocates=False)
def add_into(src, out):
    """``out += src`` element by element (an input summed over a held interval)."""
    for i in range(out.size):
        out.flat[i] += src.flat[i]
    return out


@kernel(allocates=False)
def zero_into(out):
    """``out[...] = 0`` element by element."""
    for i in range(out.size):
        out.flat[i] = 0
    return out


@kernel(allocates=False)
def take_state_into(x, u, out):
    """``out`` = the state's first ``out.size`` elements (a delay's output)."""
    for i in range(out.size):
        out.flat[i] = x.flat[i]
    return out


@kernel(allocates=False)
def take_input_into(x, u, out):
    """``out`` (the state itself) = the input (a unit delay's update)."""
    for i in range(out.size):
        out.flat[i] = u.flat[i]
    return out


@kernel(allocates=False)
def broadcast_at(p, out, i):
    """The element of ``p`` that numpy's broadcasting puts at ``out.flat[i]`` (``p`` at
    least 1-D, broadcastable to ``out``): element loops over parameters of any shape."""
    n = p.size
    if n == 1:
        return p.flat[0]
    if n == out.size:  # then p's shape is out's, less leading ones
        return p.flat[i]
    off = out.ndim - p.ndim
    j, stride, rem = 0, 1, i
    for d in range(out.ndim - 1, off - 1, -1):
        dim, pd = out.shape[d], p.shape[d - off]
        if pd != 1:
            j += (rem % dim) * stride
            stride *= pd
        rem //= dim
    return p.flat[j]


@kernel(allocates=False)
def rows_matmul(u, M, out):
    """``out[r] += u[r] @ M`` for every row ``r`` of ``u`` (B, n) and ``out`` (B, m): the
    matrix product of the compiled forms, in place (no allocation; ``M`` is (n, m))."""
    n, m = M.shape[0], M.shape[1]
    for r in range(out.shape[0]):
        if m < 16:  # narrow: one sum in a register per output element
            for j in range(m):
                s = out[r, j]
                for i in range(n):
                    s += u[r, i] * M[i, j]
                out[r, j] = s
        else:  # wide: along M's rows (contiguous, vectorised)
            for i in range(n):
                ui = u[r, i]
                for j in range(m):
                    out[r, j] += ui * M[i, j]
    return out


@kernel(allocates=False)
def fill_rows(b, out):
    """``out[r] = b`` for every row ``r`` (the last axis) of ``out``."""
    m = b.size
    for r in range(out.size // m):
        for j in range(m):
            out.flat[r * m + j] = b.flat[j]
    return out


def into_form(f: Callable | None) -> Callable | None:
    """The kernel's form that writes into ``out`` (see :func:`kernel`), if it has one."""
    if f is None:
        return None
    return getattr(f, "into", None) or _made_into(f)


class Kernel(NamedTuple):
    """What a block gives the compiled path: its step functions and their parameters.

    ``output(*params, [x,] *inputs)`` returns one array or a tuple (outputs, then
    residuals); ``update(*params, x, *inputs)`` the next state (stateful blocks);
    ``params`` are read when the loop runs.
    """

    output: Callable
    update: Callable | None = None
    params: tuple = ()


def _first_number(x):
    """A state of one number per batch member, as the number of the first member."""
    return x.dtype.type(x.flat[0])


def _fill(x, xs):
    """``x`` (a state of one number per member) filled with the number ``xs``."""
    return np.full_like(x, xs)


class Scalar(NamedTuple):
    """A block's step equations on numbers: the form a loop of single numbers runs
    (every signal one float64 per step, one batch member), with its signals and states
    in local variables, which the compiler keeps in registers.

    ``output(*params, [xs,] *inputs)`` returns a number (a tuple of them for several
    outputs); ``update(*params, xs, *inputs)`` the next ``xs``; both ``@kernel``
    functions with ``numbers=True``.  ``pack(x)`` turns the block's state (as
    ``init_state`` makes it, batch of one) into ``xs``, numbers or a tuple of numbers
    and constants; ``unpack(x, xs)`` turns ``xs`` back into such a state.  The default
    is a state of one number.
    """

    output: Callable
    update: Callable | None = None
    params: tuple = ()
    pack: Callable = _first_number
    unpack: Callable = _fill


def scalar_of(k: Kernel | None) -> Scalar | None:
    """The :class:`Scalar` form of a kernel whose functions all work on numbers (a
    stateful one's state being one number), else ``None``."""
    if k is None:
        return None
    fs = [f for f in (k.output, k.update) if f is not None]
    return Scalar(k.output, k.update, k.params) if all(
        getattr(f, "numbers", False) for f in fs) else None


def generated_kernel(key: str, source: str, fname: str, namespace: dict,
                     into: str | None = None, numbers: bool = False,
                     np_into: Callable | None = None) -> Callable:
    """A kernel written for one configuration (an arity, a list of widths) from source,
    made once per process under the stable name ``key``; ``into`` is the source of its
    form writing into ``out`` (an element loop, which allocates nothing), or a function
    giving that source.  The ``into`` form is made when a compiled loop first asks for
    it (:func:`into_form`): a run on the numpy path never needs it, and for a sum of
    thousands of inputs its source takes as long to compile as the run."""
    f = _KERNELS.get(key)
    if f is None:
        exec(source, namespace)  # noqa: S102 - source built by the library from integers
        f = namespace.pop(fname)
        pending = None
        if isinstance(into, str) or (callable(into) and not hasattr(into, "kernel_key")):
            pending, into = (into, namespace, fname, key + ".into"), None
        f = kernel(f, name=key, into=into, numbers=numbers, np_into=np_into)
        f.kernel_source = source
        f.into_pending = pending
    return f


def _made_into(f: Callable) -> Callable | None:
    """Make the pending ``into`` form of a generated kernel (see generated_kernel)."""
    pending = getattr(f, "into_pending", None)
    if pending is None:
        return None
    source, namespace, fname, key = pending
    source = source if isinstance(source, str) else source()
    exec(source, namespace)  # noqa: S102 - source built by the library from integers
    g = kernel(namespace.pop(fname), name=key, allocates=False)
    g.kernel_source = source
    f.into, f.into_pending = g, None
    return g


def elementwise_into(f: Callable, nargs: int, key: str) -> Callable:
    """The form of an elementwise kernel ``f(a_1, ..., a_n)`` (written so that it works on
    numbers as well as arrays) that writes ``out[i] = f(a_1[i], ..., a_n[i])`` over every
    element: the arguments have the output's shape, so nothing is allocated."""
    args = [f"a{i}" for i in range(nargs)]
    src = [f"def f({', '.join(args)}, out):", "    for i in range(out.size):",
           f"        out.flat[i] = F({', '.join(a + '.flat[i]' for a in args)})",
           "    return out"]
    namespace = {"F": f}
    exec("\n".join(src) + "\n", namespace)  # noqa: S102 - source built from integers
    g = kernel(namespace.pop("f"), name=key, allocates=False)
    g.kernel_source = "\n".join(src) + "\n# F:\n" + _text(f)
    return g


def _text(f) -> str:
    return getattr(f, "kernel_source", None) or inspect.getsource(f)


#: sums of more terms than this are written one statement per term (a single expression
#: of thousands of terms nests too deeply for Python's compiler)
SUM_EXPRESSION_MAX = 32


def sum_np_into(signs: str) -> Callable:
    """``out = s_1 u_1 + s_2 u_2 + ...`` with numpy's ``out=``, term by term in the order
    of :func:`sum_lines` (the same bits): a Sum's or a junction's ``np_into``."""
    negate = signs[0] == "-"
    rest = [np.add if s == "+" else np.subtract for s in signs[1:]]
    if len(signs) == 2 and not negate:  # (the common case: one ufunc call)
        op = rest[0]
        return lambda a, b, out: op(a, b, out=out)

    def many(*args):
        *u, out = args
        if negate:
            np.negative(u[0], out=out)
        else:
            np.copyto(out, u[0])
        for f, a in zip(rest, u[1:], strict=True):
            f(out, a, out=out)
        return out
    return many


def sum_lines(terms: list[tuple[str, str]], target: str, indent: str,
              fresh: bool = False) -> list[str]:
    """The statements ``target = t_1 +- t_2 +- ...`` for ``terms`` of ``(sign, expr)``: one
    expression for a few terms, one statement each for many.  ``fresh``: the first term
    must be copied (the result may not alias an input)."""
    def term(i, sign, expr):
        if i == 0:
            return f"-{expr}" if sign == "-" else expr
        return f" {'-' if sign == '-' else '+'} {expr}"

    if len(terms) <= SUM_EXPRESSION_MAX:
        body = "".join(term(i, s, e) for i, (s, e) in enumerate(terms))
        if fresh and len(terms) == 1 and terms[0][0] != "-":
            body += ".copy()"
        return [f"{indent}{target} = {body}"]
    (s0, e0), (s1, e1) = terms[0], terms[1]
    lines = [f"{indent}{target} = {term(0, s0, e0)}{term(1, s1, e1)}"]
    lines += [f"{indent}{target} {'-' if s == '-' else '+'}= {e}" for s, e in terms[2:]]
    return lines
