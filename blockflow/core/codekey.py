"""What a function's results depend on, as a digest: the key of its compiled kernels.

A compiled loop freezes everything a kernel reads: its code, its default arguments, its
closure cells, the globals it names and the functions it calls (numba types globals and
closure values as constants).  Two functions that agree on all of that compute the same
numbers; two that differ anywhere must never share a kernel, in this process or through
the disk cache.  :func:`function_key` digests all of it, following helper functions,
and refuses (says why) where a value cannot be known from data: an object of a class it
cannot read, a mutable container, a cycle of references it cannot follow.
"""

from __future__ import annotations

import hashlib
import os
import types
from collections.abc import Callable

import numpy as np

#: modules whose attributes are library code, named by their qualified names (numpy's
#: ``np.tanh`` is the same function in every process with that version)
_LIBRARIES = ("numpy", "math", "cmath", "scipy", "numba", "operator", "builtins")


class Unknowable(Exception):
    """A value a kernel reads that cannot be turned into a key."""


def function_key(fns: Callable | tuple) -> tuple[str | None, str | None]:
    """``(digest, None)`` of everything ``fns`` (a function or a tuple of them) compute
    from, or ``(None, why)`` where that cannot be known."""
    try:
        text = repr(_token(fns, set()))
    except Unknowable as e:
        return None, str(e)
    except RecursionError:
        return None, "its references nest too deeply to be read"
    return hashlib.sha1(text.encode()).hexdigest()[:16], None


def _library(obj) -> bool:
    mod = getattr(obj, "__module__", None) or ""
    return mod.split(".")[0] in _LIBRARIES


_INSTALLED: dict[str, bool] = {}


def _installed(module: types.ModuleType) -> bool:
    """A module of Python itself or an installed package (its attributes are library
    code, named by its name), not the user's own (whose attributes are read)."""
    name = module.__name__
    known = _INSTALLED.get(name)
    if known is None:
        import sysconfig

        path = getattr(module, "__file__", None)
        roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib",
                                                      "platlib")}
        known = _INSTALLED[name] = name.split(".")[0] in _LIBRARIES or path is None or any(
            os.path.abspath(path).startswith(os.path.abspath(r) + os.sep) for r in roots)
    return known


def _token(v, seen: set):
    if v is None or v is Ellipsis or isinstance(v, bool | int | float | complex | str | bytes):
        return (type(v).__name__, v)
    if isinstance(v, slice):
        return ("slice", _token(v.start, seen), _token(v.stop, seen), _token(v.step, seen))
    if isinstance(v, np.generic):
        return ("np", v.dtype.str, v.tobytes())
    if isinstance(v, np.ndarray):
        if v.dtype.hasobject:
            raise Unknowable("it reads an array of Python objects")
        return ("array", v.dtype.str, v.shape, hashlib.sha1(
            np.ascontiguousarray(v).tobytes()).hexdigest())
    if isinstance(v, tuple | frozenset):
        items = sorted(v, key=repr) if isinstance(v, frozenset) else v
        return (type(v).__name__, tuple(_token(x, seen) for x in items))
    if isinstance(v, types.ModuleType):
        return ("module", v.__name__)
    if isinstance(v, types.CodeType):
        return _code(v, seen)
    if isinstance(v, types.FunctionType):
        return _function(v, seen)
    if hasattr(v, "py_func") and isinstance(v.py_func, types.FunctionType):  # numba's
        return ("jit", _function(v.py_func, seen))
    if isinstance(v, types.BuiltinFunctionType | np.ufunc | type) or (
            callable(v) and _library(v) and hasattr(v, "__qualname__" if not isinstance(
                v, np.ufunc) else "__name__")):
        name = getattr(v, "__qualname__", None) or getattr(v, "__name__", repr(v))
        return ("lib", getattr(v, "__module__", None), name)
    raise Unknowable(f"it reads a {type(v).__name__} ({v!r:.40}), whose value cannot be "
                     "keyed")


def _code(c: types.CodeType, seen: set) -> tuple:
    return ("code", c.co_code, c.co_names, c.co_varnames, c.co_freevars, c.co_argcount,
            c.co_kwonlyargcount, tuple(_token(k, seen) for k in c.co_consts))


def _names(c: types.CodeType) -> set:
    """Every name the code (and the functions defined inside it) reads."""
    out = set(c.co_names)
    for k in c.co_consts:
        if isinstance(k, types.CodeType):
            out |= _names(k)
    return out


def _function(f: types.FunctionType, seen: set) -> tuple:
    if id(f) in seen:  # recursion (a function calling itself): its name stands for it
        return ("self", f.__qualname__)
    seen = seen | {id(f)}
    if _library(f) and f.__module__.split(".")[0] != "numba":
        return ("lib", f.__module__, f.__qualname__)
    g = f.__globals__
    builtins = g.get("__builtins__", {})
    builtins = builtins if isinstance(builtins, dict) else vars(builtins)
    reads = []
    for n in sorted(_names(f.__code__)):
        if n in g:
            v = g[n]
            if isinstance(v, types.ModuleType) and not _installed(v):
                # a module of the user's: the attributes the code may read from it
                attrs = tuple((a, _token(getattr(v, a), seen)) for a in sorted(_names(
                    f.__code__)) if hasattr(v, a) and not a.startswith("__"))
                reads.append((n, ("module", v.__name__, attrs)))
            else:
                reads.append((n, _token(v, seen)))
        elif n in builtins:
            reads.append((n, ("builtin", n)))
    cells = tuple(_token(_cell(c), seen) for c in f.__closure__ or ())
    kwd = tuple(sorted((k, _token(v, seen)) for k, v in (f.__kwdefaults__ or {}).items()))
    return ("function", f.__qualname__, _code(f.__code__, seen),
            _token(f.__defaults__, seen), kwd, cells, tuple(reads))


def _cell(c):
    try:
        return c.cell_contents
    except ValueError:  # an empty cell (a name bound later)
        raise Unknowable("it reads a closure variable that is not bound yet") from None
