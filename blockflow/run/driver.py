"""One driver for every run of a plan: simulation, the backward sweep and each of its
schedules, the tangent, linearisation.

A run binds what the caller gives (Inports, output deltas) to the plan's slots, reads what
the plan reads from a recorded trace (the reciprocal's and the tangent's time-varying
gains), runs the plan (:func:`blockflow.backends.execute.run_plan`: the backend policy
decides each loop's path) and wraps the signals in a :class:`~blockflow.run.trace.Trace`.
The drivers differ only in what they bind and how they read.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from blockflow.backends.execute import run_plan
from blockflow.run.trace import Trace


def run(plan, T: int, B: int, given: dict[int, np.ndarray] | list,
        read: Callable[[int, str, object], np.ndarray] | None = None, *, reverse: bool = False,
        states: dict | None = None, seeds=None, progress=None, k0: int = 0,
        rows: dict | None = None, start: int = 0, keep=None, dropped: str | None = None
        ) -> Trace:
    """Run ``plan`` for ``T`` steps of ``B`` members and return its Trace.

    ``given``: arrays for slots (``{slot: (T, B, ...)}``, or a list by slot with ``None``
    where nothing is given); ``read(slot, path, read)``: the array of a trace read of the
    plan (``plan.trace_reads``); ``reverse``: run loops from ``T-1`` down (the backward
    sweep); ``states``: the loops' states to continue from (by path); ``seeds``: the
    members' run seeds (random blocks); ``k0``: the step the run starts at (sources
    continue from it); ``rows`` and ``start``: record rows filled before the loops run,
    and the loops' first step; ``keep``: the slots whose records the caller reads, the
    rest of the loops' records not kept (see :func:`~blockflow.backends.execute.run_plan`),
    ``dropped`` what the Trace says when one of those is asked for.
    """
    bufs: list = [None] * len(plan.slot_types)
    items = given.items() if isinstance(given, dict) else enumerate(given)
    for slot, a in items:
        if a is not None:
            bufs[slot] = a
    for slot, path, r in plan.trace_reads:
        bufs[slot] = read(slot, path, r)
    finals = run_plan(plan, T, B, bufs, reverse=reverse, progress=progress, states=states,
                      seeds=seeds, k0=k0, rows=rows, start=start, keep=keep)
    return Trace(plan, bufs, T, B, finals, k0=k0, dropped=dropped)
