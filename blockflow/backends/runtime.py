"""What running a plan learns, kept beside the plan: the plan stays a description that
running never writes into (as a model is never written into by compiling it).

Per loop: the compiled function last used (a loop compiled whole, or its interpreter),
why numba could not compile it (found when it first ran), the interpreter's layout of
its arrays.  Per plan: memos of its structure (generated module names, the kinds one
interpreter serves, loops of the same structure).  Held weakly: a plan that is dropped
takes its runtime state with it.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LoopState:
    """What running one loop of a plan has learnt."""

    compiled: Callable | None = None  # the compiled loop or interpreter last used
    scalar: Callable | None = None  # the compiled loop of numbers last used (batch of one)
    why_not_scalar: str | None = None  # numba could not compile that one
    why_numpy: str | None = None  # numba could not compile it (the loop stays on numpy)
    layout: Any = None  # the interpreter's layout of its arrays


@dataclass
class PlanState:
    loops: dict[int, LoopState] = field(default_factory=dict)
    memos: dict[str, Any] = field(default_factory=dict)
    records: dict[int, np.ndarray] = field(default_factory=dict)  # see record()
    records_bytes: int = 0  # their sizes, summed


_PLANS: dict[int, PlanState] = {}  # by id(plan), dropped with the plan (plans compare
# by value, so they are not hashable keys)


def _state(plan) -> PlanState:
    st = _PLANS.get(id(plan))
    if st is None:
        st = _PLANS[id(plan)] = PlanState()
        weakref.finalize(plan, _PLANS.pop, id(plan), None)
    return st


def loop_state(plan, seg) -> LoopState:
    """The runtime state of the loop ``seg`` of ``plan`` (made on first use)."""
    loops = _state(plan).loops
    st = loops.get(id(seg))  # (the plan holds its segments: their ids are stable)
    if st is None:
        st = loops[id(seg)] = LoopState()
    return st


def why_numpy(plan, seg) -> str | None:
    """Why a loop runs on the numpy path: its plan says (no compiled form), or running it
    found that numba cannot compile it."""
    if seg.why_numpy is not None:
        return seg.why_numpy
    st = _PLANS.get(id(plan))
    known = st.loops.get(id(seg)) if st is not None else None
    return known.why_numpy if known is not None else None


def memo(plan, key: str, make: Callable[[], Any]) -> Any:
    """A memo of ``plan``'s structure, made once."""
    memos = _state(plan).memos
    if key not in memos:
        memos[key] = make()
    return memos[key]


def forget(plan, key: str) -> None:
    _state(plan).memos.pop(key, None)


#: records kept for the next run of a plan, at most this many bytes per plan
RECORDS_KEPT_BYTES = 64 << 20


def _held(pool: dict, slot: int) -> tuple:
    """The pool's array for ``slot`` and its reference count, taken the one way that
    :data:`_ALONE` was measured (the count an array only the pool holds shows here,
    whatever the interpreter counts: a view or a Trace holding it adds one)."""
    a = pool.get(slot)
    return a, (sys.getrefcount(a) if a is not None else 0)


_ALONE = _held({0: np.zeros(1)}, 0)[1]


def record(plan, slot: int, t, T: int, B: int, zero: bool = True) -> np.ndarray:
    """A zeroed record ``(T, B, *t.shape)`` for ``slot`` of a run of ``plan`` (a reused
    one is left as it is with ``zero=False``: the caller writes every row).

    The record of the plan's last run is reused when nothing else holds it any more (its
    Trace dropped, as in a training loop or a sweep of runs): memory the process already
    has, zeroed in place, where a fresh array costs a page fault per 4 KiB on first write
    (~1.5 us on a virtual machine: more than the compiled loop that fills it).  A record
    anything still refers to (a Trace, a view of it) is never handed out again.
    """
    ps = _state(plan)
    shape, pool = (T, B, *t.shape), ps.records
    a, refs = _held(pool, slot)
    if a is not None and a.shape == shape and a.dtype == t.dtype and refs == _ALONE:
        if zero:
            a.fill(0)
        return a
    a = np.zeros(shape, t.dtype)
    old = pool.pop(slot, None)
    if old is not None:
        ps.records_bytes -= old.nbytes
    if ps.records_bytes + a.nbytes <= RECORDS_KEPT_BYTES:
        pool[slot] = a
        ps.records_bytes += a.nbytes
    return a
