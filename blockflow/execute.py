"""Run a compiled plan: one executor for forward simulation and for backward sweeps.

Whole-sequence operations read and write ``(T, B, ...)`` arrays in slots.  A feedback
loop runs as a generated function: straight-line calls of the bound ``output`` and
``update`` methods on local variables, so each step costs the block equations and
nothing else.  ``reverse=True`` runs loops from ``k = T-1`` down to ``0`` (the
backward sweep: advances run in reversed time are delays).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from .block import as_tuple
from .errors import BlockflowError, SimulationError
from .kernels import AUTO_MIN_WORK, compile_loop, run_compiled
from .ops import SegmentKind

log = logging.getLogger(__name__)


def make_loop(ops):
    """Generate the step function of one feedback loop (a list of plan ``Op``)."""
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
    w.append("    for k in ks:")

    def args(op):
        x = f"x{op.state}" if op.state is not None else "None"
        return ", ".join([x] + [f"v{s}" if s in prod else f"e{s}[k]" for s in op.ins])

    for i, op in enumerate(ops):
        if op.outs:
            tgt = ", ".join(f"v{s}" for s in op.outs)
            w.append(f"        {tgt} = f{i}({args(op)})")
            w += [f"        r{s}[k] = v{s}" for s in op.outs]
    for i, op in enumerate(ops):
        if op.state is not None:
            w.append(f"        x{op.state} = g{i}({args(op)})")
    if len(w) and w[-1] == "    for k in ks:":
        w.append("        pass")
    w.append("    return {" + ", ".join(f"{op.state}: x{op.state}" for op in stateful) + "}")
    namespace: dict = {}
    source = "\n".join(w)
    exec(source, namespace)  # noqa: S102 - source built from integers only
    namespace["loop"].source = source  # for inspection: plan.segments[i].loop.source
    return namespace["loop"]


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
    have = available_memory()
    if need + lines > 0.9 * have:
        gib = 1024.0**3
        raise SimulationError(
            f"the run of {plan.model.name!r} needs about {(need + lines) / gib:.3g} GiB "
            f"(T={T}, B={B}, {len(plan.slot_types)} signals: {need / gib:.3g} GiB; delay "
            f"lines: {lines / gib:.3g} GiB) but {have / gib:.3g} GiB are available; run "
            "fewer steps or a smaller batch, or stream it (Streamed schedules)"
        )


def _compiled(plan, seg, T: int) -> bool:
    """Whether a loop runs compiled: it has a compiled form and the backend asks for it
    (``"auto"``: when the loop has enough work to pay for compiling)."""
    if seg.why_numpy is not None:
        return False
    backend = plan.backend
    return backend == "numba" or (backend == "auto" and T * len(seg.ops) >= AUTO_MIN_WORK)


def _run_compiled(seg, ks, bufs, states, rec, st):
    """Run a loop compiled; ``None`` when numba cannot compile it (the loop then stays on
    the numpy path for good, and ``describe()`` says why)."""
    kernels = [op.block.kernel() for op in seg.ops]  # the current parameters
    try:
        if seg.compiled is None:
            seg.compiled = compile_loop(seg.ops, kernels, st)
        return run_compiled(seg, kernels, np.asarray(ks, dtype=np.int64), bufs, states, rec,
                            st)
    except Exception as e:
        from numba.core.errors import NumbaError

        if not isinstance(e, NumbaError | NotImplementedError):  # numba's, not the model's
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        seg.why_numpy, seg.compiled = f"numba could not compile it: {first}", None
        log.warning("loop [%s] runs on the numpy path: %s",
                    ", ".join(op.path for op in seg.ops), seg.why_numpy)
        return None


def run_plan(plan, T: int, B: int, bufs: list, *, reverse: bool = False,
             progress=None, states: dict | None = None) -> dict:
    """Fill ``bufs`` (one array per slot) by running ``plan`` for ``T`` steps.

    External slots (Inports, trace reads) must be filled by the caller.  Returns the
    final state of each stateful block, keyed by path.  ``progress(iterable, total)``
    may wrap the steps of each loop (a progress bar).  ``states`` (by path, as returned)
    continues loops from where an earlier run stopped (streaming, chunk by chunk).
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
            _store(op, op.block.generate(T, B), bufs, T, B, st)
        elif seg.kind is SegmentKind.SEQUENCE:
            op = seg.ops[0]
            x0 = _init_state(op, B, st) if op.block.stateful else None
            _store(op, op.block.sequence(x0, *(bufs[s] for s in op.ins)), bufs, T, B, st)
        else:
            states = {op.state: states_in[op.path] if op.path in states_in
                      else _init_state(op, B, st) for op in seg.ops if op.state is not None}
            rec = {s: st[s].zeros(T, B) for op in seg.ops for s in op.outs}
            ks = range(T - 1, -1, -1) if reverse else range(T)
            try:
                out = None
                if _compiled(plan, seg, T):
                    out = _run_compiled(seg, ks, bufs, states, rec, st)
                if out is None:
                    if progress is not None:
                        ks = progress(ks, T)
                    out = seg.loop(ks, bufs, [op.block.output for op in seg.ops],
                                   [op.block.update if op.state is not None else None
                                    for op in seg.ops], states, rec)
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
                    bufs[s] = rec[s]
    return finals
