"""Run a compiled plan: one executor for forward simulation and for backward sweeps.

Whole-sequence operations read and write ``(T, B, ...)`` arrays in slots.  A feedback
loop runs as a generated function: straight-line calls of the bound ``output`` and
``update`` methods on local variables, so each step costs the block equations and
nothing else.  ``reverse=True`` runs loops from ``k = T-1`` down to ``0`` (the
backward sweep: advances run in reversed time are delays).
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from functools import partial

import numpy as np

from blockflow.backends.loops import compile_loop, loop_name, run_compiled
from blockflow.backends.ops import SegmentKind
from blockflow.backends.runtime import forget, loop_state, memo, record
from blockflow.backends.scalar import compile_scalar_loop, run_scalar, scalar_forms
from blockflow.backends.steps import clears_impulses, loop_accumulators, step_args, step_body
from blockflow.core.block import as_tuple
from blockflow.core.rates import BASE, HOLD, SUM, interval_sum, n_hits, place, sample
from blockflow.core.streams import random_streams, run_seeds
from blockflow.errors import BlockflowError, SimulationError

log = logging.getLogger(__name__)


def writes_into(op, slot_types, k=None) -> bool:
    """Whether the numpy path's loop has ``op`` write its outputs straight into their
    record rows (its kernel ``k``'s ``np_into``: floating outputs at the base rate)."""
    k = op.block.kernel() if k is None else k
    return (k is not None and getattr(k.output, "np_into", None) is not None
            and bool(op.outs) and not op.multirate
            and all(slot_types[s].dtype.kind == "f" for s in op.outs))


def make_loop(ops, slot_types=None):
    """Generate the step function of one feedback loop (a list of plan ``Op``).

    Each op calls its block's kernel with the parameters bound (:func:`step_functions`)
    or, for a block without one, its ``output``/``update`` methods; a stateless kernel
    takes no state argument.  An op whose kernel has a numpy ``out=`` form
    (:func:`writes_into`) writes into its record row: no result allocated, no copy.
    An op off the base rate runs only on its hits (``if`` on ``k``): between them its
    outputs hold (or stay zero: impulses) and its state waits; an op that sums its
    inputs over the held interval (a reciprocal in reversed time) accumulates them.
    """
    produced = [s for op in ops for s in op.outs]
    prod = set(produced)
    external = sorted({s for op in ops for s in op.ins if s not in prod})
    w = []
    w.append("def loop(ks, ext, fns, ufns, states, rec):")
    for i in range(len(ops)):
        w.append(f"    f{i} = fns[{i}]; g{i} = ufns[{i}]")
    w += [f"    e{s} = ext[{s}]" for s in external]
    w += [f"    v{s} = None; r{s} = rec[{s}]" for s in produced]
    stateful = [op for op in ops if op.state is not None]
    w += [f"    x{op.state} = states[{op.state}]" for op in stateful]
    # a state may be its input's record row itself (a delay's update returns its input):
    # where that row is one row for all steps (a transient record), the next step writes
    # it again while the state lives, so what of the state views it is copied (_owned)
    held = {i: [s for s in op.ins if s in prod] for i, op in enumerate(ops)
            if op.state is not None and any(s in prod for s in op.ins)}
    w += [f"    o{i} = one_rows({', '.join(f'r{s}' for s in ins)},)"
          for i, ins in held.items()]
    w += [f"    a{i}_{j} = 0.0" for i, j, _, _ in loop_accumulators(ops)]
    w.append("    for k in ks:")

    def read(s):
        return f"v{s}" if s in prod else f"e{s}[k]"

    def call(i, op, fn, out=()):
        x = [f"x{op.state}"] if op.state is not None else [] if kernel[i] else ["None"]
        return f"{fn}{i}({', '.join(x + step_args(i, op, read) + list(out))})"

    kernels = [op.block.kernel() for op in ops]
    kernel = [k is not None for k in kernels]
    into = [slot_types is not None and k is not None and writes_into(op, slot_types, k)
            for op, k in zip(ops, kernels, strict=True)]
    index = {id(op): i for i, op in enumerate(ops)}

    def output_call(i, op):
        if not into[i]:
            return call(i, op, "f")
        rows = [f"v{s}" for s in op.outs]  # one row, or a tuple of rows (as into forms)
        return call(i, op, "f", [rows[0] if len(rows) == 1 else f"({', '.join(rows)},)"])

    def store(op, expr):
        if into[index[id(op)]]:  # the rows first, then the kernel writes into them
            return [f"v{s} = r{s}[k]" for s in op.outs] + [expr]
        tgt = ", ".join(f"v{s}" for s in op.outs)
        return [f"{tgt} = {expr}"] + [f"r{s}[k] = v{s}" for s in op.outs]

    def update_call(i, op):
        c = call(i, op, "g")
        return f"owned({c}, o{i}) if o{i} else {c}" if i in held else c

    w += step_body(ops, read, output_call, update_call, store)
    if len(w) and w[-1] == "    for k in ks:":
        w.append("        pass")
    w.append("    return {" + ", ".join(f"{op.state}: x{op.state}" for op in stateful) + "}")
    namespace: dict = {"np": np, "owned": _owned, "one_rows": _one_rows}
    source = "\n".join(w)
    exec(source, namespace)  # noqa: S102 - source built from integers only
    namespace["loop"].source = source  # for inspection: plan.segments[i].loop.source
    namespace["loop"].into = tuple(into)  # (which ops step_functions binds np_into for)
    return namespace["loop"]


def step_functions(ops, into=()) -> tuple[list, list]:
    """The output and update functions of a loop's ops for the numpy path: the block's
    kernel with its current parameters bound (one call, no method layers), its
    ``np_into`` form where ``into`` says so (the loop's ``into``), or its
    ``output``/``update`` methods (see :func:`make_loop` for the call shapes)."""
    outs, upds = [], []
    for i, op in enumerate(ops):
        k = op.block.kernel()
        if k is None:
            outs.append(op.block.output)
            upds.append(op.block.update if op.state is not None else None)
        else:
            f = k.output.np_into if i < len(into) and into[i] else k.output
            outs.append(partial(f, *k.params) if k.params else f)
            upds.append(None if op.state is None else
                        partial(k.update, *k.params) if k.params else k.update)
    return outs, upds


def _store(op, result, bufs, T, B, slot_types):
    for s, arr, port in zip(op.outs, as_tuple(op.block, result), op.block.recorded,
                            strict=True):
        t = slot_types[s]
        arr = np.asarray(arr)
        if arr.shape != (T, B, *t.shape):
            raise BlockflowError(
                f"block {op.path!r} ({type(op.block).__name__}) produced shape {arr.shape} "
                f"at output {port!r}, expected {(T, B, *t.shape)} for signal type {t}; "
                "check its output()/sequence() against its infer()"
            )
        bufs[s] = arr if arr.dtype == t.dtype else arr.astype(t.dtype)


def _gather(op, bufs) -> list:
    """The inputs of an op off the base rate on its hits: sampled, or summed over each
    held interval (reciprocals); trace reads are always sampled."""
    n = len(op.block.inputs)
    summed = op.io[0] == SUM
    return [interval_sum(bufs[s], op.rate) if summed and j < n else sample(bufs[s], op.rate)
            for j, s in enumerate(op.ins)]


def _place(op, bufs, T: int) -> None:
    """Spread an op's outputs from its hits to every step: held, or impulses."""
    for s in op.outs:
        bufs[s] = place(bufs[s], op.rate, T, op.io[1])


def _init_state(op, B, slot_types):
    n = len(op.block.inputs)
    return op.block.init_state(B, tuple(slot_types[s] for s in op.ins[:n]),
                               tuple(slot_types[s] for s in op.outs))


def available_memory() -> int:
    """Bytes of memory available to a run (MemAvailable where the OS tells it)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def check_memory(plan, T: int, B: int) -> None:
    """Refuse a run that cannot fit, before allocating: every signal ``(T, B, *shape)``
    plus the delay lines of blocks with finite memory, against the memory available."""
    need = sum(T * B * t.size * t.dtype.itemsize for t in plan.slot_types)
    lines = 0
    for seg in plan.segments:
        for op in seg.ops:
            b = op.block
            if b.stateful and b.memory and op.ins:
                t = plan.slot_types[op.ins[0]]
                lines += int(b.memory) * B * t.size * t.dtype.itemsize
    if need + lines < 1 << 28:  # under 256 MiB: not worth asking the OS
        return
    have = available_memory()
    if need + lines > 0.9 * have:
        gib = 1024.0**3
        raise SimulationError(
            f"the run of {plan.model.name!r} needs about {(need + lines) / gib:.3g} GiB "
            f"(T={T}, B={B}, {len(plan.slot_types)} signals: {need / gib:.3g} GiB; delay "
            f"lines: {lines / gib:.3g} GiB) but {have / gib:.3g} GiB are available; run "
            "fewer steps or a smaller batch, or stream it (Streamed schedules)"
        )


def _compiled(plan, seg, T: int, B: int) -> bool:
    """Whether a loop runs compiled in this run (:func:`blockflow.backends.policy.loop_compiled`:
    a pure function of the run, never of what the process ran before)."""
    from blockflow.backends.policy import loop_compiled

    return loop_compiled(plan, seg, T, B)


def _interp_kinds(plan, seg, kernels) -> tuple:
    """The kernels of every loop of the plan the interpreter runs (one interpreter serves
    them all); made once per plan, again where a kernel changed (a user's function whose
    globals changed is a new kernel)."""
    mine = {f.kernel_key for k in kernels for f in k[:2] if f is not None}

    def make():
        keys = set(mine)
        for sg in plan.segments:
            if sg.loop is not None and sg.interpreted and sg.why_numpy is None:
                keys |= {f.kernel_key for op in sg.ops for f in op.block.kernel()[:2]
                         if f is not None}
        return ("interpreter", *sorted(keys))

    known = memo(plan, "interp_kinds", make)
    if not mine <= set(known):
        forget(plan, "interp_kinds")
        known = memo(plan, "interp_kinds", make)
    return known


def _loop_names(plan) -> dict:
    """The generated module name of every compilable loop of ``plan`` (made once per
    plan: twins find each other's module)."""
    return memo(plan, "loop_names", lambda: {
        id(seg): loop_name(seg.ops, [op.block.kernel() for op in seg.ops],
                           plan.slot_types)[0]
        for seg in plan.segments if seg.loop is not None and seg.why_numpy is None
        and not seg.interpreted})


def _run_compiled(plan, seg, ks, bufs, states, rec, st):
    """Run a loop compiled; ``None`` when numba cannot compile it (the loop then stays on
    the numpy path for good, and ``describe()`` says why).  A damaged disk-cache entry
    (numba failed reading its own files) is discarded and the loop built again."""
    for attempt in (0, 1, 2):
        try:
            return _try_compiled(plan, seg, ks, bufs, states, rec, st)
        except Exception as e:
            if attempt < 2 and _discard_damaged(plan, seg, e):
                if attempt == 1:  # failed again on its files (a full disk): in memory
                    from blockflow.backends.diskcache import disable

                    disable(f"numba could not use its cache files: {type(e).__name__}: {e}")
                continue
            from numba.core.errors import NumbaError

            # numba's errors (and its recursion on huge functions), not the model's
            if not isinstance(e, NumbaError | NotImplementedError | RecursionError):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            st = loop_state(plan, seg)
            st.why_numpy, st.compiled = f"numba could not compile it: {first}", None
            log.warning("loop [%s] runs on the numpy path: %s",
                        ", ".join(op.path for op in seg.ops), st.why_numpy)
            return None


def _try_compiled(plan, seg, ks, bufs, states, rec, st):
    kernels = [op.block.kernel() for op in seg.ops]  # the current parameters
    steps = np.arange(ks.start, ks.stop, ks.step, dtype=np.int64)  # ks: a range
    run = loop_state(plan, seg)
    # a loop of numbers compiles whole (in a fraction of an array loop's time: 0.9 s at
    # 44 blocks, 1.3 s at 100), where the interpreter would run it 5-6x slower
    out = _try_scalar(seg, run, steps, bufs, states, rec, st)
    if out is not None:
        return out
    if seg.interpreted:
        from blockflow.backends.interp import run_interpreted

        kinds = _interp_kinds(plan, seg, kernels)
        return run_interpreted(seg, run, kernels, steps, bufs, states, rec, st, kinds)
    # the kernels this loop was compiled from (a user function whose globals changed is
    # a new kernel, compiled anew: numba froze the old values)
    sig = tuple(f.kernel_key for k in kernels for f in k[:2] if f is not None)
    if run.compiled is None or getattr(run.compiled, "kernel_sig", None) != sig:
        # a twin's module, loaded already (no source again)
        known = _loop_names(plan).get(id(seg)) if run.compiled is None else None
        module = sys.modules.get(known) if known else None
        fn = module.loop if module else compile_loop(seg.ops, kernels, st)
        fn.kernel_sig = sig
        run.compiled = fn
    return run_compiled(seg, run.compiled, kernels, steps, bufs, states, rec, st)


def _try_scalar(seg, run, steps, bufs, states, rec, st):
    """Run a loop of single numbers (batch of one) with its signals and states in local
    variables (:mod:`blockflow.backends.scalar`); ``None`` where the loop is not one, or
    numba cannot compile it (then the array form runs, and ``describe()`` says why)."""
    B = next(iter(rec.values())).shape[1] if rec else 0
    forms = scalar_forms(seg.ops, st, B) if run.why_not_scalar is None else None
    if forms is None:
        return None
    sig = tuple(f.kernel_key for fo in forms for f in (fo.output, fo.update) if f is not None)
    if run.scalar is None or run.scalar.kernel_sig != sig:
        run.scalar = compile_scalar_loop(seg.ops, forms, st)
        run.scalar.kernel_sig = sig
    from numba.core.errors import NumbaError

    try:  # (compiled, or loaded from the disk cache, on its first call)
        return run_scalar(seg, run.scalar, forms, steps, bufs, states, rec)
    except (NumbaError, NotImplementedError) as e:  # a step on numbers numba refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        run.why_not_scalar = f"numba could not compile its loop of numbers: {first}"
        run.scalar = None
        log.warning("loop [%s] runs in its array form: %s",
                    ", ".join(op.path for op in seg.ops), run.why_not_scalar)
        return None


def _discard_damaged(plan, seg, e: Exception) -> bool:
    """Where numba failed on its cache files (truncated, garbage, not writable), remove
    the loop's entry so that it is compiled again; whether it did."""
    import traceback

    from blockflow.backends.diskcache import discard, forget, loop_dir

    if not any("numba" in f.filename and "caching" in f.filename
               for f in traceback.extract_tb(e.__traceback__)):
        return False
    run = loop_state(plan, seg)
    fn = run.compiled
    names = [getattr(getattr(f, "py_func", None), "__module__", None)
             for f in (run.scalar, fn)]  # (the loop of numbers is tried first)
    names = [n for n in names if n is not None]
    folder = loop_dir()
    if not names:
        return False
    log.warning("the disk cache entry of loop [%s] is damaged (%s: %s): rebuilt",
                ", ".join(op.path for op in seg.ops), type(e).__name__, e)
    for name in names:
        if folder is not None:
            discard(folder, name)
        forget(name)
    run.compiled = run.scalar = run.layout = None
    from blockflow.backends.interp import _MADE

    for k in [k for k, v in _MADE.items() if v is fn]:
        del _MADE[k]
    return True


def _generate(block, T: int, B: int, k0: int, extra: dict):
    """A source's samples for steps ``k0 .. k0+T-1``; a source of the user's whose
    ``generate`` takes no ``k0`` makes ``k0 + T`` samples and drops the first ``k0``."""
    if k0 == 0:
        return block.generate(T, B, **extra)
    if "k0" in inspect.signature(block.generate).parameters:
        return block.generate(T, B, k0=k0, **extra)
    return np.asarray(block.generate(k0 + T, B, **extra))[k0:]


def shifted_records(seg, slot_types) -> dict[int, int]:
    """``{input slot: output slot}`` of the loop's unit shifts (``Block.unit_shift``) whose
    records can be one array: both at the base rate, of one type, the input computed in
    the loop, and no slot in two pairs."""
    made = {s: op for op in seg.ops for s in op.outs}
    pairs: dict[int, int] = {}
    for op in seg.ops:
        if not op.block.unit_shift or op.multirate or len(op.outs) != 1 or not op.ins:
            continue
        u, y = op.ins[0], op.outs[0]
        src = made.get(u)
        if src is None or src.multirate or slot_types[u] != slot_types[y]:
            continue
        if u in pairs or u in pairs.values() or y in pairs:
            continue
        pairs[u] = y
    return pairs


def transient_slots(plan, seg, keep) -> frozenset:
    """The outputs of loop ``seg`` that need no record after the loop: not in ``keep``
    (what the caller reads from the run), no Outport, read by no op outside the loop,
    written at every step (at the base rate); ``keep=None`` keeps every record.  (A
    state that is such an output's row itself, as a delay's is on the numpy path, is
    copied by the loop: :func:`make_loop`.)"""
    if keep is None:
        return frozenset()
    elsewhere = memo(plan, "read_by_segments", lambda: _read_by_segments(plan))
    mine = id(seg)
    outs = set(plan.outports.values())
    return frozenset(s for op in seg.ops if op.rate == BASE for s in op.outs
                     if s not in keep and s not in outs and not elsewhere.get(s, set()) - {mine})


def _read_by_segments(plan) -> dict[int, set]:
    """``{slot: ids of the segments whose ops read it}``."""
    out: dict[int, set] = {}
    for seg in plan.segments:
        for op in seg.ops:
            for s in op.ins:
                out.setdefault(s, set()).add(id(seg))
    return out


def _one_row(plan, s: int, t, T: int, B: int) -> np.ndarray:
    """A record ``(T, B, ...)`` whose rows are all one row (time stride 0): a transient
    signal's, written and read within each step, never after the loop."""
    row = record(plan, s, t, 1, B)
    return np.lib.stride_tricks.as_strided(row, (T, *row.shape[1:]), (0, *row.strides[1:]))


def _loop_records(plan, seg, T: int, B: int, start: int, reverse: bool,
                  clears: bool = False, transient: frozenset = frozenset()) -> dict:
    """The records a loop writes, ``{slot: (T, B, ...)}``.  Run from step 0, a loop writes
    every row of its base-rate outputs (a reused record is not zeroed first), and a unit
    shift's output record is its input's one row on: one array of ``T + 1`` rows holds
    the initial state and the input (``y(k) = u(k-1)``, run forward or in reverse).
    Off the base rate, an output held between hits is zeroed only where it is read before
    the loop writes it (before its first hit, run forward), and an impulse output not at
    all where the loop ``clears`` the rows between its hits itself (compiled loops).
    A ``transient`` output has one row for all steps (:func:`_one_row`)."""
    st = plan.slot_types
    pairs = memo(plan, f"shifted:{id(seg)}", lambda: shifted_records(seg, st)) \
        if start == 0 else {}
    rec = {s: _one_row(plan, s, st[s], T, B) for s in transient}
    if transient:  # (a delay's shared record is read one step on)
        pairs = {u: y for u, y in pairs.items() if u not in rec and y not in rec}
    for u, y in pairs.items():
        both = record(plan, u, st[u], T + 1, B, zero=False)
        rec[u], rec[y] = (both[:T], both[1:]) if reverse else (both[1:], both[:T])
    for op in seg.ops:
        slow = op.rate != BASE  # (at the base rate every row is written, however summed)
        held = slow and op.io[1] == HOLD and not reverse and start == 0
        for s in op.outs:
            if s not in rec:
                rec[s] = record(plan, s, st[s], T, B, zero=start > 0 or (
                    slow and not held and not (clears and clears_impulses(op))))
                if held:
                    rec[s][:op.rate.offset + 1] = 0
    return rec


def _zero_impulses(seg, rec) -> None:
    """Zero the impulse records a compiled loop would have cleared (it could not run)."""
    for op in seg.ops:
        if clears_impulses(op):
            for s in op.outs:
                rec[s].fill(0)


def _owned(x, rows: frozenset | None = None):
    """``x`` (a state: an array or a tuple of them) with no view of a record in it: every
    view copied, or with ``rows`` (:func:`_one_rows`) the views of those records (and of
    memory of unknown provenance, not an array's)."""
    if isinstance(x, np.ndarray):
        return x if _kept(x, rows) else x.copy()
    if isinstance(x, tuple):
        return tuple([a if type(a) is np.ndarray and _kept(a, rows) else _owned(a, rows)
                      for a in x])
    return x


def _kept(a: np.ndarray, rows: frozenset | None) -> bool:
    """Whether ``a`` may stay as it is in a state (see :func:`_owned`)."""
    b = a.base
    return b is None or (rows is not None and id(b) not in rows and type(b) is np.ndarray)


def _one_rows(*recs) -> frozenset:
    """The ids of the one-row records (time stride 0) among ``recs``: a view of one has
    it as its ``base`` (numpy collapses a view's base to the strided record)."""
    return frozenset(id(r) for r in recs if r.strides[0] == 0)


def run_plan(plan, T: int, B: int, bufs: list, *, reverse: bool = False,
             progress=None, states: dict | None = None, seeds=None, k0: int = 0,
             rows: dict | None = None, start: int = 0, keep=None) -> dict:
    """Fill ``bufs`` (one array per slot) by running ``plan`` for ``T`` steps.

    External slots (Inports, trace reads) must be filled by the caller.  Returns the
    final state of each stateful block, keyed by path.  ``progress(iterable, total)``
    may wrap the steps of each loop (a progress bar).  ``states`` (by path, as returned)
    continues loops from where an earlier run stopped (streaming, chunk by chunk).
    ``seeds`` are the members' run seeds (:func:`run_seeds`), which random sources draw
    from.  ``rows`` (``{slot: (step, value)}``) fills record rows of loop outputs before
    the loop runs: the values slow blocks hold from an earlier chunk (a Simulator's);
    ``start`` is the first step the loops run (the rows before it are context only).
    ``keep`` (slots) are the records the caller reads after the run; a loop keeps no
    record of its other outputs that nothing after it reads (:func:`transient_slots`:
    their ``bufs`` are ``None``); ``None`` keeps every record.
    """
    check_memory(plan, T, B)
    states_in = states or {}
    finals = {}
    st = plan.slot_types
    for seg in plan.segments:
        if seg.kind is SegmentKind.EXTERNAL:
            continue
        if seg.kind is SegmentKind.SOURCE:
            op = seg.ops[0]
            extra = {}
            if op.block.random:
                extra["streams"] = random_streams(op.path, run_seeds(seeds, B))
            Ts = n_hits(op.rate, T) if op.multirate else T
            _store(op, _generate(op.block, Ts, B, k0, extra), bufs, Ts, B, st)
            if op.multirate:
                _place(op, bufs, T)
        elif seg.kind is SegmentKind.SEQUENCE:
            op = seg.ops[0]
            x0 = _init_state(op, B, st) if op.block.stateful else None
            if op.multirate:  # on its hits only: sample (or sum) in, hold (or place) out
                ins = _gather(op, bufs)
                Ts = n_hits(op.rate, T)
                _store(op, op.block.sequence(x0, *ins), bufs, Ts, B, st)
                _place(op, bufs, T)
            else:
                _store(op, op.block.sequence(x0, *(bufs[s] for s in op.ins)), bufs, T, B,
                       st)
        else:
            states = {op.state: states_in[op.path] if op.path in states_in
                      else _init_state(op, B, st) for op in seg.ops if op.state is not None}
            compiled = _compiled(plan, seg, T, B)
            transient = transient_slots(plan, seg, keep) if start == 0 else frozenset()
            rec = _loop_records(plan, seg, T, B, start, reverse, clears=compiled,
                                transient=transient)
            for s, (k, value) in (rows or {}).items():
                if s in rec:
                    rec[s][k] = value
            ks = range(T - 1, start - 1, -1) if reverse else range(start, T)
            try:
                out = None
                if compiled:
                    out = _run_compiled(plan, seg, ks, bufs, states, rec, st)
                if out is None:
                    if compiled and start == 0:
                        _zero_impulses(seg, rec)
                    if progress is not None:
                        ks = progress(ks, T)
                    out = seg.loop(ks, bufs, *step_functions(seg.ops, seg.loop.into), states,
                                   rec)
                    # (a state may be an output's record row, written into: its own copy)
                    out = {j: _owned(x) for j, x in out.items()}
            except ValueError as e:
                names = ", ".join(f"{op.path} ({type(op.block).__name__})" for op in seg.ops)
                raise BlockflowError(
                    f"a block of the loop [{names}] produced a value that does not fit its "
                    f"output's signal type: {e}; check its output() against its infer()"
                ) from e
            for op in seg.ops:
                if op.state is not None:
                    finals[op.path] = out[op.state]
                for s in op.outs:
                    bufs[s] = None if s in transient else rec[s]
    return finals
