"""The one place that decides how a feedback loop runs: numpy path or compiled (numba).

The compiled and numpy paths agree to rounding, not to the bit (numba's ``tanh`` and
numpy's, an element loop's sum and BLAS's), so the decision is part of what a run's
numbers are.  It is therefore a **pure function of the run**: the backend asked for, the
loop's structure, ``T``, ``B``, the signals' sizes, whether numba is installed, and the
number of runs the caller announces (:func:`expected_runs`: a training's epochs, a
sweep's runs).  Never of what the process ran before, which loops are loaded, or what
the disk cache holds: a training killed and resumed, a sweep split into chunks or run on
other workers, and a script run twice give the same numbers.

``"auto"`` compiles a loop when its work pays for compiling it,
``runs x T x blocks (x loops of its structure) >= AUTO_MIN_WORK`` (larger loops need
proportionally more, loops the interpreter runs count with every loop of their kinds),
and keeps loops over large signals (``B x samples per step >= AUTO_MAX_ELEMENTS``) on
numpy's array operations (BLAS products amortise their calls there), and loops whose
batch makes many transcendental evaluations per step (``B x libm >= LIBM_PER_OP x
blocks``, ``Block.libm``): a compiled loop calls libm's ``exp`` or ``sin`` for each
element (~14 ns; numba has no vector math library from pip), numpy's ufuncs run them
vectorised (~1 ns) for one call's overhead (~1 us) per block and step.  ``Function``'s
tanh and sigmoid are not counted: compiled loops evaluate them by arithmetic the
compiler vectorises (:mod:`blockflow.core.vecmath`, ~3 ns per element).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from blockflow.backends.runtime import memo, why_numpy
from blockflow.errors import SimulationError

BACKENDS = ("auto", "numpy", "numba")
AUTO_MIN_WORK = 200_000  # block-steps (over the announced runs) from which a loop compiles
AUTO_MAX_ELEMENTS = 4096  # batch x samples per step from which "auto" keeps numpy's arrays
#: batch x transcendental evaluations per step, per block of the loop, from which "auto"
#: keeps numpy's vectorised ufuncs (a closed loop through libm's tanh: numpy faster from
#: B ~ 450)
LIBM_PER_OP = 80

_RUNS: ContextVar[int] = ContextVar("blockflow_expected_runs", default=1)


def numba_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def resolve_backend(backend: str | None) -> str:
    """The backend asked for (``BLOCKFLOW_BACKEND`` when ``None``), checked."""
    backend = backend or os.environ.get("BLOCKFLOW_BACKEND", "auto")
    if backend not in BACKENDS:
        raise SimulationError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numba" and not numba_available():
        raise SimulationError("backend='numba' needs numba: pip install 'blockflow[fast]'")
    return backend


@contextmanager
def expected_runs(n: int) -> Iterator[None]:
    """Announce that the runs inside this block are ``n`` runs of the same shape (a
    training's epochs x mini-batches): ``"auto"`` weighs compiling against all of them.
    Part of the run's settings, so a resumed training announces its whole length."""
    token = _RUNS.set(max(1, int(n)))
    try:
        yield
    finally:
        _RUNS.reset(token)


def wide(plan, seg, B: int) -> bool:
    """Whether a loop's signals are large enough for numpy's arrays (per step), or its
    transcendental functions over the batch many enough for numpy's vectorised ones."""
    st = plan.slot_types
    if B * max(st[s].size for op in seg.ops for s in op.ins + op.outs) >= AUTO_MAX_ELEMENTS:
        return True
    libm = sum(op.block.libm * st[op.outs[0]].size for op in seg.ops if op.outs)
    return B * libm >= LIBM_PER_OP * len(seg.ops)


def loop_compiled(plan, seg, T: int, B: int, runs: int | None = None) -> bool:
    """Whether the loop ``seg`` of ``plan`` runs compiled in a run of ``T`` steps and
    ``B`` members (a pure function of these, the plan and ``runs``)."""
    if why_numpy(plan, seg) is not None or plan.backend == "numpy":
        return False
    if plan.backend == "numba":
        return True
    if wide(plan, seg, B):
        return False
    runs = _RUNS.get() if runs is None else runs
    n = len(seg.ops)
    if seg.interpreted:  # one interpreter serves every loop of the plan of those kinds
        need, blocks = AUTO_MIN_WORK, interpreted_blocks(plan)
    else:  # one compiled function serves every loop of the same structure
        need, blocks = AUTO_MIN_WORK * max(1.0, n / 20), n * twins(plan, seg)
    return runs * T * blocks >= need


def plan_backend(plan, T: int, B: int, runs: int = 1) -> str:
    """One backend for many runs of ``plan`` (a sweep's chunks, wherever they run):
    ``"numba"`` if ``"auto"`` would compile any of its loops, else ``"numpy"``."""
    if plan.backend != "auto":
        return plan.backend
    loops = [sg for sg in plan.segments if sg.loop is not None]
    return "numba" if any(loop_compiled(plan, sg, T, B, runs) for sg in loops) else "numpy"


def twins(plan, seg) -> int:
    """How many loops of ``plan`` share ``seg``'s structure (and compiled function)."""
    def make():
        sig = {id(sg): _structure(sg) for sg in plan.segments if sg.loop is not None}
        per = Counter(sig.values())
        return {k: per[v] for k, v in sig.items()}

    return memo(plan, "twins", make)[id(seg)]


def interpreted_blocks(plan) -> int:
    """Blocks in all the loops of ``plan`` the interpreter runs."""
    return memo(plan, "interpreted_blocks", lambda: sum(
        len(sg.ops) for sg in plan.segments
        if sg.loop is not None and sg.interpreted and sg.why_numpy is None))


def _structure(seg) -> tuple:
    return tuple((type(op.block).__name__, len(op.ins), len(op.outs), op.state is None,
                  op.rate, op.io) for op in seg.ops)


def explain(plan, seg) -> str:
    """How a loop runs under ``plan``'s backend, and why (``describe()``)."""
    why = why_numpy(plan, seg)
    if why is not None:
        return f"numpy path ({why})"
    if plan.backend == "numpy":
        return "numpy path (backend='numpy')"
    n = len(seg.ops)
    how = "compiled (numba)"
    if seg.interpreted:
        how += (f": by the interpreter of its operations' kinds (a loop of {n} blocks: "
                "compiled whole it would take numba seconds)")
    if plan.backend == "numba":
        return how
    need = AUTO_MIN_WORK if seg.interpreted else int(AUTO_MIN_WORK * max(1.0, n / 20))
    blocks = (f"{interpreted_blocks(plan)} interpreted blocks" if seg.interpreted
              else f"{n} blocks x {twins(plan, seg)} loops of its structure")
    libm = sum(op.block.libm * plan.slot_types[op.outs[0]].size for op in seg.ops if op.outs)
    many = (f" and batch x {libm:g} transcendental evaluations per step < "
            f"{LIBM_PER_OP * n}" if libm else "")
    return (f"{how} when runs x T x {blocks} >= {need} and batch x samples per step < "
            f"{AUTO_MAX_ELEMENTS}{many}; else numpy path (decided from the run alone)")
