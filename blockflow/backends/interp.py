"""Feedback loops too large to compile well as one function, run by a compiled
interpreter.

numba's compile time grows faster than linearly with a function's size (a generated
loop of 20 blocks takes 1.6-2.4 s, one of 100 blocks 10-20 s, one of 1,000 minutes), so
a loop of more than ``INTERP_MIN_OPS`` blocks is not generated as straight-line code
when the interpreter can run it (:func:`~blockflow.backends.loops.loop_mode`).  It runs instead
through an interpreter generated for the *kinds* of operation it holds: one branch per
distinct (kernel, argument types) pair, over a table of integers that names, for each
operation, where its parameters, state, inputs and outputs are.  A ring of 5,000 gains
and tanh functions has four kinds forward and four back: the interpreter compiles in
about the time of a loop of four blocks, once (cached on disk like every loop), and
runs any loop of those kinds, whatever its length.

The arguments are stacked by type so that the interpreter takes a fixed, small number
of arrays: the records of all signals with one sample shape and dtype as one
``(n, T, B, *shape)`` array (an operation reads ``R[i, k]``), parameters and states of
one shape likewise, scalar parameters as one vector per type.  Every operation must
write into its buffers (kernels' *into* forms); loops with another operation, a tuple
parameter, or blocks off the base rate compile as one function (up to
``MAX_COMPILED_OPS`` blocks) or stay on the numpy path.  Per step the interpreter is
within 1.05-1.5x of a loop compiled whole (a branch and a few index loads per operation:
18 gains 7.8 against 5.9 ns per block-step, gains and tanh 21-39 against 20-26).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from blockflow.backends import loops
from blockflow.backends.loops import (
    INLINE_MAX_ARGS,
    _forms,
    _layout,
    _load_module,
    _register_all,
    kernel_params,
    kernels_digest,
)
from blockflow.core.kernel import _KERNELS


def interp_reason(ops, kernels) -> str | None:
    """Why the interpreter cannot run the loop ``ops`` (``None``: it can)."""
    for op, k in zip(ops, kernels, strict=True):
        name = f"block {op.path!r} ({type(op.block).__name__})"
        if op.multirate:
            return f"{name} runs off the base rate"
        (_, out_into), (_, upd_into) = _forms(op, k)
        if op.outs and not out_into or op.state is not None and not upd_into:
            return f"{name} has no kernel writing into its buffers (an into form)"
        if any(isinstance(p, tuple | list) for p in k.params):
            return f"{name} has a tuple parameter"
    return None


def _state_key(x) -> tuple:
    """A state's stack key; a tuple state's (a filter's: its delay line and constants)
    names each part's."""
    if isinstance(x, tuple):
        return ("t", tuple(_key(np.asarray(v)) for v in x))
    return _key(np.asarray(x))


def _key(x) -> tuple:
    """The stack an argument goes to: arrays by dtype and shape, numbers by type."""
    if isinstance(x, np.ndarray):
        return ("a", x.dtype.str, x.shape)
    if isinstance(x, bool | np.bool_):
        return ("s", "|b1", ())
    if isinstance(x, int | np.integer):
        return ("s", "<i8", ())
    return ("s", np.asarray(x).dtype.str, ())  # a float (a numpy scalar keeps its precision)


class _Groups:
    """Items grouped by a key, in order of first appearance: ``add`` returns the group's
    position and the item's index in it."""

    def __init__(self):
        self.items: dict[tuple, list] = {}
        self.position: dict[tuple, int] = {}

    def add(self, key: tuple, item) -> tuple[int, int]:
        items = self.items.get(key)
        if items is None:
            items = self.items[key] = []
            self.position[key] = len(self.position)
        items.append(item)
        return self.position[key], len(items) - 1


class _Layout(NamedTuple):
    """Where an interpreted loop's arguments go, made once per loop and argument types:
    the code table, the stacks' groups and the interpreter."""

    keys: tuple  # the parameters' and states' keys it was made for
    records: _Groups  # slots by (dtype, sample shape)
    params: _Groups  # (op, parameter index) by key
    states: _Groups  # state ids by key
    where: dict  # slot -> (group, index)
    xpos: dict  # state id -> (tuple or not, [(group, index) of each part])
    code: np.ndarray
    updates: np.ndarray
    fn: object


def _make_layout(ops, kernels, kparams, keys, st, kinds: tuple) -> _Layout:
    produced, external, _ = _layout(ops)
    records, params, xs = _Groups(), _Groups(), _Groups()
    where = {}
    for s in produced + external:
        if s not in where:
            where[s] = records.add((st[s].dtype.str, st[s].shape), s)
    rows, sigs, xpos = [], {}, {}
    for j, (op, k, (_, pkeys, xkey)) in enumerate(zip(ops, kernels, keys, strict=True)):
        ps = [params.add(key, (j, p)) for p, key in enumerate(pkeys)]
        x = None
        if op.state is not None:  # a tuple state (a filter's) goes part by part
            parts = xkey[1] if xkey[0] == "t" else (xkey,)
            x = xpos[op.state] = (xkey[0] == "t", [
                xs.add(key, (op.state, c if xkey[0] == "t" else None))
                for c, key in enumerate(parts)])
        ins = [where[s] for s in op.ins]
        outs = [where[s] for s in op.outs]
        (fo, _), (fu, _) = _forms(op, k)
        groups = (tuple(g for g, _ in ps),
                  None if x is None else (x[0], tuple(g for g, _ in x[1])),
                  tuple(g for g, _ in ins), tuple(g for g, _ in outs))
        codes = [sigs.setdefault(("out", (fo.kernel_key, *groups)), len(sigs))
                 if op.outs else -1,
                 sigs.setdefault(("upd", (fu.kernel_key, *groups)), len(sigs))
                 if op.state is not None else -1]
        rows.append(codes + [i for _, i in ps] + ([i for _, i in x[1]] if x else [])
                    + [i for _, i in ins] + [i for _, i in outs])
    code = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for j, r in enumerate(rows):
        code[j, : len(r)] = r
    updates = np.array([j for j, op in enumerate(ops) if op.state is not None], np.int64)
    fn = _interpreter(list(sigs), len(records.items), len(params.items), len(xs.items),
                      kinds)
    return _Layout(keys, records, params, xs, where, xpos, code, updates, fn)


def run_interpreted(seg, run, kernels, ks: np.ndarray, bufs: list, states: dict, rec: dict,
                    st, kinds: tuple):
    """Run the loop ``seg`` through its interpreter (made on first use); the records
    ``rec`` become views of the stacked records, the returned states copies."""
    ops = seg.ops
    try:
        kparams = [kernel_params(op, k, st) for op, k in zip(ops, kernels, strict=True)]
        keys = tuple((tuple(f.kernel_key for f in k[:2] if f is not None),
                      tuple(_key(p) for p in ps), None if op.state is None
                      else _state_key(states[op.state]))
                     for op, k, ps in zip(ops, kernels, kparams, strict=True))
        lay = run.layout  # (the loop's runtime state: blockflow.backends.runtime)
        if lay is None or lay.keys != keys:  # (first run, or a new batch size or dtype)
            lay = run.layout = _make_layout(ops, kernels, kparams, keys, st, kinds)
        run.compiled = lay.fn
        T, B = next(iter(rec.values())).shape[:2]
        R = [np.zeros((len(slots), T, B, *shape), dtype)
             for (dtype, shape), slots in lay.records.items.items()]
        for s, (g, i) in lay.where.items():
            if s not in rec:  # an input from outside the loop
                R[g][i] = bufs[s]
        P = [np.array([kparams[j][p] for j, p in items], dtype=np.dtype(key[1]))
             for key, items in lay.params.items.items()]
        X = [np.array([states[x] if c is None else states[x][c] for x, c in items],
                      dtype=np.dtype(key[1])) for key, items in lay.states.items.items()]
    except (ValueError, TypeError) as e:  # an argument the stacks cannot hold
        raise NotImplementedError(f"the interpreter cannot stack its arguments ({e})") from e
    lay.fn(ks, lay.code, lay.updates, *R, *P, *X)
    for s in rec:
        g, i = lay.where[s]
        rec[s] = R[g][i]
    finals = {}
    for state, (is_tuple, parts) in lay.xpos.items():
        got = tuple(X[g][i] for g, i in parts)
        finals[state] = got if is_tuple else got[0]
    return finals


_MADE: dict[tuple, object] = {}


def _interpreter(sigs: list, n_r: int, n_p: int, n_x: int, kinds: tuple):
    """The interpreter for the operation kinds ``sigs`` (generated, compiled, cached;
    made once per process for each set of kinds and stacks)."""
    made = _MADE.get((tuple(sigs), n_r, n_p, n_x))
    if made is None:
        made = _MADE[(tuple(sigs), n_r, n_p, n_x)] = _make_interpreter(sigs, n_r, n_p, n_x,
                                                                       kinds)
    return made


def kinds_prefix(kinds: tuple) -> str:
    """The start of the module names of the interpreters for loops of the kernels
    ``kinds`` (one file name family per set of kinds in the disk cache)."""
    return "bf_interp_" + hashlib.sha1(repr(kinds).encode()).hexdigest()[:12]


def _make_interpreter(sigs: list, n_r: int, n_p: int, n_x: int, kinds: tuple):
    _register_all()
    keys = sorted({sig[0] for _, sig in sigs})
    names = {key: f"k{i}" for i, key in enumerate(keys)}
    plain = not any(_KERNELS[key].allocates for key in keys)  # into forms, as a rule
    args = (["ks", "code", "updates"] + [f"R{g}" for g in range(n_r)]
            + [f"P{g}" for g in range(n_p)] + [f"X{g}" for g in range(n_x)])
    w = ["# generated by blockflow.backends.interp: an interpreter for loops of these operations",
         f"# kernels {kernels_digest(keys)}",
         "from numba import njit", "from blockflow.backends.loops import _INLINED, _KERNELS",
         ""]
    # (a call of more arguments than numba inlines calls the kernel: see loops.py)
    called = {sig[0] for _, sig in sigs
              if len(sig[1]) + (sig[2] is not None) + len(sig[3]) + 1 > INLINE_MAX_ARGS}
    w += [f"{n} = {'_KERNELS' if key in called else '_INLINED'}[{key!r}]"
          for key, n in names.items()]
    flags = ", _nrt=False" if plain else ""
    # (numpy's error model: a division by zero gives inf, as on the numpy path, and no
    # check per division keeps the compiler from vectorising an element loop)
    w += ["", "", f"@njit(cache=True, nogil=True{flags}, error_model='numpy')",
          f"def interp({', '.join(args)}):",
          "    n = code.shape[0]",
          "    for i in range(ks.shape[0]):",
          "        k = ks[i]",
          "        for j in range(n):",
          "            c = code[j, 0]"]

    def branch(c, phase, sig, indent):
        key, pg, xg, ig, og = sig
        is_tuple, parts = xg if xg is not None else (False, ())
        # the code row's columns after the two opcodes, in order: parameters, state
        # parts, inputs, outputs (each a group's stack, indexed by its column)
        col = iter(range(2, 2 + len(pg) + len(parts) + len(ig) + len(og)))
        p = [f"P{g}[code[j, {next(col)}]]" for g in pg]
        xs = [f"X{g}[code[j, {next(col)}]]" for g in parts]
        x = [] if xg is None else [f"({', '.join(xs)},)" if is_tuple else xs[0]]
        ins = [f"R{g}[code[j, {next(col)}], k]" for g in ig]
        outs = [f"R{g}[code[j, {next(col)}], k]" for g in og]
        if phase == "out":
            out = outs[0] if len(outs) == 1 else f"({', '.join(outs)},)"
        else:
            out = x[0]
        call = f"{names[key]}({', '.join(p + x + ins + [out])})"
        return [f"{indent}{'if' if c == first[phase] else 'elif'} c == {c}:",
                f"{indent}    {call}"]

    first = {}
    for c, (phase, _) in enumerate(sigs):
        first.setdefault(phase, c)
    for c, (phase, sig) in enumerate(sigs):
        if phase == "out":
            w += branch(c, phase, sig, " " * 12)
    w += ["        for jj in range(updates.shape[0]):",
          "            j = updates[jj]",
          "            c = code[j, 1]"]
    if "upd" not in first:
        w.append("            pass")
    for c, (phase, sig) in enumerate(sigs):
        if phase == "upd":
            w += branch(c, phase, sig, " " * 12)
    source = "\n".join(w) + "\n"
    name = f"{kinds_prefix(kinds)}_{hashlib.sha1(source.encode()).hexdigest()[:16]}"
    fn = _load_module(name, source).interp
    fn.source = source
    return fn


def loop_mode(ops) -> tuple[str | None, bool]:
    """How a loop compiles: ``(why it cannot, None if it can; interpreted)``.

    Loops of up to ``INTERP_MIN_OPS`` blocks compile as one function with their kernels
    inlined (the fastest per step: small loops keep their values in registers).  Larger
    ones run through the interpreter of their operations' kinds (:mod:`blockflow.backends.interp`:
    compiled once per set of kinds in about 0.6-1 s, within 1.05-1.5x of a whole function
    per step, where numba takes 1.4-2.4 s for 12-20 blocks compiled whole and 5.6 s for
    60), if it can run them; else they compile whole, kernels inlined up to
    ``INLINE_MAX_OPS`` blocks and called up to ``MAX_COMPILED_OPS`` (numba's compile
    time grows faster than linearly with a function's size).
    """
    found, why = loops.loop_kernels(ops)
    if found is None or len(ops) <= loops.INTERP_MIN_OPS:
        return why, False
    reason = interp_reason(ops, found)
    if reason is None:
        return None, True
    if len(ops) <= loops.MAX_COMPILED_OPS:
        return None, False
    return (f"a loop of {len(ops)} blocks, too large to compile as one function (limit "
            f"{loops.MAX_COMPILED_OPS}), and the interpreter cannot run it: {reason}"), False
