"""Compiled feedback loops: a loop of kernels generated as one Python module and compiled
by numba.

A feedback loop whose blocks all have kernels (:mod:`blockflow.core.kernel`) is written
as one module (straight-line calls inside a ``for k`` loop; outputs written into their
record rows, states updated in place; kernels inlined into small loops; no reference
counting when nothing allocates), kept in the private disk cache
(:mod:`blockflow.backends.diskcache`) under a name digested from its source, and
compiled by numba with ``cache=True``: a second process loads the machine code instead
of compiling again, and loops of one structure share one compiled function.  Whether a
loop runs so is decided by :mod:`blockflow.backends.policy`.  Parameters are read when a
loop runs, never baked into the compiled code, so nothing can go stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from blockflow.backends.policy import numba_available
from blockflow.backends.steps import clears_impulses, loop_accumulators, step_args, step_body
from blockflow.core.codekey import function_key
from blockflow.core.kernel import (
    _KERNELS,
    Kernel,
    _text,
    add_into,
    copy_into,
    into_form,
    zero_into,
)
from blockflow.core.rates import HOLD

# numba's compile time grows faster than linearly with the size of one function: ~1 s
# at 10 blocks, 5 s at 60, 12 s at 100 (kernels called), 45 s at 300
MAX_COMPILED_OPS = 120
INLINE_MAX_OPS = 24  # loops up to this size get their kernels inlined (see _source)
#: calls of more arguments are never inlined: CPython passes them as ``*args``, which
#: numba's inlining cannot take (a Mux of 40 inputs); such a kernel is called instead
INLINE_MAX_ARGS = 30
#: a block of more inputs keeps its loop on the numpy path: numba types a call of
#: hundreds of arguments for minutes (a Mux of 100 inputs: 2.7 s, of 300: over a minute)
KERNEL_MAX_INPUTS = 64
INTERP_MIN_OPS = 12  # loops larger than this run through the interpreter where it can
_REGISTERED: set = set()


def loop_kernels(ops) -> tuple[list[Kernel] | None, str | None]:
    """The kernels of a loop's operations, or ``None`` and why not."""
    if not numba_available():
        return None, "numba is not installed"
    out = []
    for op in ops:
        if len(op.ins) > KERNEL_MAX_INPUTS:
            return None, (f"block {op.path!r} ({type(op.block).__name__}) has "
                          f"{len(op.ins)} inputs; numba compiles calls of up to "
                          f"{KERNEL_MAX_INPUTS} in reasonable time (gather the signals "
                          "into vectors to compile the loop)")
        k = op.block.kernel()
        if k is None:
            why = op.block.why_no_kernel()
            return None, (f"block {op.path!r} ({type(op.block).__name__}) has no kernel"
                          + (f": {why}" if why else ""))
        for f in (k.output, k.update):
            if f is not None and getattr(f, "kernel_key", None) not in _KERNELS:
                return None, f"block {op.path!r}: {f.__name__} is not marked @kernel"
        out.append(k)
    return out, None


_INLINED: dict[str, Callable] = {}


def _register_all() -> None:
    """Make every kernel callable from numba: by name from other kernels (an overload),
    and, for the loops, as a function numba inlines before typing: a loop is one
    function, typed once (no kernel is compiled on its own) and with no call per step
    (inlined, a small loop runs 1.5x faster and compiles 2x faster than with calls)."""
    from numba import njit
    from numba.extending import register_jitable

    for key, f in list(_KERNELS.items()):
        if key not in _REGISTERED:
            g = getattr(f, "jit", None)
            if g is None:
                register_jitable(error_model="numpy")(f)
                _INLINED[key] = njit(inline="always")(f)
            else:  # on numbers its form for the compiler (vectorised), else f itself
                _INLINED[key] = _on_numbers(f, g)
            _REGISTERED.add(key)


def _on_numbers(f: Callable, g: Callable):
    """``f`` for numba (an overload, and a function to inline), compiled as ``g`` where
    its arguments are numbers."""
    import inspect

    from numba import njit, types
    from numba.extending import overload, register_jitable

    module = inspect.getmodule(g)  # (g may call the other functions of its module)
    if module.__name__ not in _REGISTERED:
        for h in vars(module).values():
            if inspect.isfunction(h) and h.__module__ == module.__name__:
                register_jitable(error_model="numpy")(h)
        _REGISTERED.add(module.__name__)

    def choose(*args):
        return g if all(isinstance(a, types.Number) for a in args) else f

    overload(f, jit_options={"error_model": "numpy"}, strict=False)(choose)
    names = ", ".join(inspect.signature(f).parameters)
    namespace = {"F": f}
    exec(f"def call({names}):\n    return F({names})\n", namespace)  # noqa: S102
    return njit(inline="always")(namespace["call"])


def _with_helpers(keys) -> list:
    """The kernels ``keys`` and every kernel they call, found through their globals and
    closures: the cached machine code of a loop depends on all of their texts."""
    seen: dict[str, Callable] = {}
    todo = [_KERNELS[k] for k in keys]
    while todo:
        f = todo.pop()
        if f.kernel_key in seen:
            continue
        seen[f.kernel_key] = f
        refs = [f.__globals__.get(n) for n in f.__code__.co_names]
        refs += [_cell(c) for c in f.__closure__ or ()]
        todo += [g for g in refs if callable(g) and getattr(g, "kernel_key", None) in _KERNELS]
    return [seen[k] for k in sorted(seen)]


def _cell(c):
    try:
        return c.cell_contents
    except ValueError:  # an empty cell
        return None


_DIGESTS: dict[tuple, str] = {}


def kernels_digest(keys) -> str:
    """A digest of the texts of the kernels ``keys`` and of every kernel they call (the
    cached machine code of a loop depends on all of them); made once per process."""
    keys = tuple(sorted(keys))
    d = _DIGESTS.get(keys)
    if d is None:
        # their texts, and the values they read (codekey: globals, defaults, closures)
        fs = _with_helpers(keys)
        text = "".join(_text(f) + str(function_key(f)[0]) for f in fs)
        if any(hasattr(f, "jit") for f in fs):  # (and how such a kernel is compiled)
            import inspect

            text += inspect.getsource(_on_numbers)
        d = _DIGESTS[keys] = hashlib.sha1(text.encode()).hexdigest()[:16]
    return d


def _layout(ops) -> tuple[list, list, list]:
    """The loop's argument order, for the generator and the caller alike: the slots it
    produces, the slots it reads from outside, and its stateful operations."""
    produced = [s for op in ops for s in op.outs]
    prod = set(produced)
    external = sorted({s for op in ops for s in op.ins if s not in prod})
    return produced, external, [op for op in ops if op.state is not None]


def _forms(op, k) -> tuple:
    """The output and update functions a compiled loop calls for one op, and whether
    each writes into a buffer (``into``): outputs into their record rows, updates into
    the state, in place."""
    out = into_form(k.output) if op.outs else None
    upd = into_form(k.update) if op.state is not None else None
    return (out or k.output, out is not None), (upd or k.update, upd is not None)


def _local(ops, slot_types) -> tuple[list, dict]:
    """The ops with slots and states numbered within the loop (produced slots in step
    order, then the external ones in the plan's order; states in step order), so that
    loops of the same structure (repeated subsystems) have one source, compiled once.
    Argument positions are unchanged (:func:`_layout` orders both alike)."""
    produced, external, stateful = _layout(ops)
    slot = {s: i for i, s in enumerate(produced + external)}
    state = {op.state: i for i, op in enumerate(stateful)}
    local = [replace(op, ins=tuple(slot[s] for s in op.ins),
                     outs=tuple(slot[s] for s in op.outs),
                     state=None if op.state is None else state[op.state]) for op in ops]
    return local, {slot[s]: slot_types[s] for s in slot}


def _source(ops, kernels, slot_types) -> tuple[str, list[str]]:
    """The loop module's source and its argument names (in call order).

    Kernels are inlined into loops of up to ``INLINE_MAX_OPS`` blocks (no call per step);
    numba's compile time grows quadratically with an inlined loop's size, so larger loops
    call them (each kernel compiled once, the loop's compile time linear in its size).
    """
    table = "_INLINED" if len(ops) <= INLINE_MAX_OPS else "_KERNELS"
    ops, slot_types = _local(ops, slot_types)
    produced, external, _ = _layout(ops)
    prod = set(produced)
    forms = [_forms(op, k) for op, k in zip(ops, kernels, strict=True)]
    held = {copy_into.kernel_key} if any(op.io[1] == HOLD for op in ops) else set()
    if any(clears_impulses(op) for op in ops):  # zero rows between an impulse's hits
        held.add(zero_into.kernel_key)
    accs = loop_accumulators(ops)
    # a loop of functions that allocate nothing runs without reference counting; its
    # inputs summed over held intervals (multirate reciprocals) go into buffers it is
    # given, by element loops (its outputs are record rows: nothing aliases a buffer)
    plain = _allocation_free(forms)
    summing = {add_into.kernel_key, zero_into.kernel_key} if plain and accs else set()
    keys = sorted({f.kernel_key for fo in forms for f, _ in fo if f is not None} | held
                  | summing)
    names = {key: f"k{i}" for i, key in enumerate(keys)}
    called = set()  # kernels called, not inlined: those of too many arguments
    for i, (op, fo) in enumerate(zip(ops, forms, strict=True)):
        for fn, into in fo:
            if fn is not None and (len(kernels[i].params) + (op.state is not None)
                                   + len(op.ins) + bool(into)) > INLINE_MAX_ARGS:
                called.add(fn.kernel_key)
    args = ["ks"] + [f"e{s}" for s in external]
    args += [f"p{i}_{j}" for i, k in enumerate(kernels) for j in range(len(k.params))]
    stateful = [(i, op) for i, op in enumerate(ops) if op.state is not None]
    args += [f"x{op.state}" for _, op in stateful] + [f"r{s}" for s in produced]
    if summing:
        args += [f"a{i}_{j}" for i, j, _, _ in accs]
    w = ["# generated by blockflow.backends.loops: one feedback loop, compiled by numba",
         f"# kernels {kernels_digest(keys)}",
         "import numpy as np", "from numba import njit",
         "from blockflow.backends.loops import _INLINED, _KERNELS", ""]
    w += [f"{n} = {'_KERNELS' if key in called else table}[{key!r}]"
          for key, n in names.items()]
    flags = ", _nrt=False" if plain else ""
    # (numpy's error model: a division by zero gives inf, as on the numpy path, and no
    # check per division keeps the compiler from vectorising an element loop)
    w += ["", "", f"@njit(cache=True, nogil=True{flags}, error_model='numpy')",
          f"def loop({', '.join(args)}):",
          "    for i in range(ks.shape[0]):", "        k = ks[i]"]

    def read(s):
        return f"v{s}" if s in prod else f"e{s}[k]"

    # an input not computed yet in this step is one the block does not read in output()
    # (no feedthrough): it gets the last value bound to it, first this step's (still
    # empty) record row, of the same type
    # (only those: a variable bound before the loop too is one more phi for numba's SSA
    # pass, whose cost grows quickly with a function's size)
    done, early = set(), []
    for op in ops:
        early += [s for s in op.ins if s in prod and s not in done and s not in early]
        done.update(op.outs)
    w[-2:-2] = [f"    q{s} = r{s}.shape[0] - 1" for s in produced]
    w[-2:-2] = [f"    v{s} = r{s}[0]" for s in early]
    if not summing:
        w[-2:-2] = [f"    a{i}_{j} = np.zeros_like({read(s) if s not in prod else f'r{s}'}[0])"
                    .replace("[k][0]", "[0]") for i, j, s, _ in accs]

    def call(i, op, which, out=None):
        fn, into = forms[i][which]
        p = [f"p{i}_{j}" for j in range(len(kernels[i].params))]
        x = [f"x{op.state}"] if op.state is not None else []
        o = [out] if into and out is not None else []
        return f"{names[fn.kernel_key]}({', '.join(p + x + step_args(i, op, read) + o)})"

    def rows(op):
        r = [f"v{s}" for s in op.outs]
        return r[0] if len(r) == 1 else f"({', '.join(r)},)"

    index = {id(op): i for i, op in enumerate(ops)}

    def row(s, k="k"):  # (a transient record is one row, C-contiguous: q{s} is 0)
        return f"r{s}[min({k}, q{s})]"

    def store(op, expr):
        if forms[index[id(op)]][0][1]:  # written into the record rows: no allocation
            return [f"v{s} = {row(s)}" for s in op.outs] + [expr]
        # results in the signal's precision (a float literal in a kernel would make
        # float32 signals float64 under numba's typing, and states could not unify)
        # (and contiguous, so that every signal has one array type in the loop)
        lines = [f"{', '.join(f't{s}' for s in op.outs)} = {expr}"]
        for s in op.outs:
            d = slot_types[s].dtype
            lines.append(f"v{s} = np.ascontiguousarray(t{s})" if d == np.float64
                         else f"v{s} = t{s}.astype(np.{d.name})")
        return lines + [f"{row(s)} = v{s}" for s in op.outs]

    sums = {}
    if summing:
        sums = {"accumulate": lambda acc, src: f"{names[add_into.kernel_key]}({src}, {acc})",
                "reset": lambda acc: f"{names[zero_into.kernel_key]}({acc})"}
    w += step_body(ops, read, lambda i, op: call(i, op, 0, rows(op)),
                   lambda i, op: call(i, op, 1, f"x{op.state}"), store,
                   lambda src, dst: f"{names.get(copy_into.kernel_key)}({src}, {dst})", **sums,
                   clear=lambda s: [f"v{s} = {row(s)}", f"{names[zero_into.kernel_key]}(v{s})"],
                   row=row)
    states = ", ".join(f"x{op.state}" for _, op in stateful)
    w.append(f"    return ({states}{',' if len(stateful) == 1 else ''})")
    return "\n".join(w) + "\n", args


def _allocation_free(forms) -> bool:
    """Whether every function a loop calls writes into a buffer and allocates nothing."""
    return all(into and not f.allocates for fo in forms for f, into in fo if f is not None)


def module_name(prefix: str, source: str) -> tuple[str, str]:
    """A generated module's name (``prefix`` and a digest of its source) and its source."""
    return prefix + hashlib.sha1(source.encode()).hexdigest()[:20], source


def compiled(name: str, source: str):
    """The generated module's ``loop``, compiled by numba (cached on disk), its source
    kept on it."""
    _register_all()
    fn = _load_module(name, source).loop
    fn.source = source
    return fn


def loop_name(ops, kernels, slot_types) -> tuple[str, str]:
    """The generated module's name (a digest of its source) and its source."""
    return module_name("bf_loop_", _source(ops, kernels, slot_types)[0])


def compile_loop(ops, kernels, slot_types):
    """The numba-compiled loop function (generated module, cached on disk)."""
    return compiled(*loop_name(ops, kernels, slot_types))


def _load_module(name: str, source: str):
    """The generated module ``name`` (see :func:`blockflow.backends.diskcache.load_generated`)."""
    from blockflow.backends.diskcache import load_generated

    return load_generated(name, source)


def kernel_params(op, k: Kernel, st) -> list:
    """The parameters of ``op``'s kernel as a compiled loop takes them: floating ones in
    the signals' precision (float32 runs stay so), 0-d arrays as one element."""
    dtype = st[op.outs[0]].dtype if op.outs else None
    out = []
    for p in k.params:
        if isinstance(p, np.ndarray) and p.dtype.kind == "f" and dtype is not None \
                and p.dtype != dtype:
            p = p.astype(dtype)
        elif isinstance(p, float) and dtype is not None and dtype.kind == "f":
            p = dtype.type(p)
        if isinstance(p, np.ndarray) and p.ndim == 0:  # element loops index p.flat
            p = p.reshape(1)
        out.append(p)
    return out


def _own(x):
    """A writable, contiguous copy of a state (an array or a tuple of them)."""
    if isinstance(x, tuple):
        return tuple(_own(v) for v in x)
    return np.array(x, order="C", copy=True) if isinstance(x, np.ndarray) else x


def _contiguous(x):
    """A state as C-contiguous arrays (copied only where it is not)."""
    if isinstance(x, tuple):
        return tuple(_contiguous(v) for v in x)
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x


def run_compiled(seg, fn, kernels, ks: np.ndarray, bufs: list, states: dict, rec: dict, st):
    """Call a compiled loop with the current parameters, states and buffers."""
    ops = seg.ops
    produced, external, stateful = _layout(ops)
    # inputs shared by the batch arrive as (read-only) broadcast views: one array type
    # (C-contiguous, writable) per signal
    args = [ks] + [np.require(bufs[s], requirements=("C", "W")) for s in external]
    for op, k in zip(ops, kernels, strict=True):
        args += kernel_params(op, k, st)
    for op, k in zip(ops, kernels, strict=True):
        if op.state is not None:  # changed in place: a copy; else contiguous (one type
            # per state in the loop: a block's init_state may return any layout)
            x = states[op.state]
            states[op.state] = _own(x) if _forms(op, k)[1][1] else _contiguous(x)
    args += [states[op.state] for op in stateful]
    # a transient record (one row for every step, time stride 0) as that row: the
    # loop indexes it at min(k, 0), and numba types it C-contiguous (element loops over
    # rows of a strided array are not vectorised)
    args += [rec[s][:1] if rec[s].strides[0] == 0 else rec[s] for s in produced]
    accs = loop_accumulators(ops)
    if accs and _allocation_free([_forms(op, k) for op, k in zip(ops, kernels, strict=True)]):
        B = next(iter(rec.values())).shape[1]  # the summing buffers the loop fills in place
        args += [np.zeros((B, *st[s].shape), st[s].dtype) for _, _, s, _ in accs]
    out = fn(*args)
    return dict(zip((op.state for op in stateful), out, strict=True))
