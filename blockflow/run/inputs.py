"""Binding a run's inputs: each Inport's data checked against the plan (shape, dtype,
finite values) and laid out ``(T, B, *shape)`` by slot."""

from __future__ import annotations

import numbers

import numpy as np

from blockflow.errors import SimulationError
from blockflow.plan.compiler import Plan
from blockflow.run.trace import check_finite_data


def check_steps(steps, what: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise SimulationError(f"{what} must be a positive integer, got {steps!r}")
    return int(steps)


def bind_inputs(plan: Plan, inputs, steps, batch, *, what: str = "Inport",
                check_finite: bool = True) -> tuple[int, int, list]:
    """Validate external inputs against the plan's Inports; return ``T, B`` and slot buffers.

    Each input is ``(T, B, *shape)`` or ``(T, *shape)`` (the same for every batch member).
    """
    inputs = {} if inputs is None else inputs
    if not isinstance(inputs, dict):
        raise SimulationError(f"inputs must be a dict {{inport name: array}}, got "
                              f"{type(inputs).__name__}")
    model = plan.model.name
    unknown = sorted(set(inputs) - set(plan.inports))
    if unknown:
        raise SimulationError(f"model {model!r} has no {what} {unknown[0]!r}; its inputs are "
                              f"{sorted(plan.inports)}")
    arrays, Ts, Bs = {}, set(), set()
    for name, slot in plan.inports.items():
        t = plan.slot_types[slot]
        if name not in inputs:
            raise SimulationError(
                f"{what} {name!r} of model {model!r} (port 'y') has no data; pass "
                f"inputs={{{name!r}: array of shape (T, B, *{t.shape})}}"
            )
        try:
            a = np.asarray(inputs[name])
        except Exception as e:
            raise SimulationError(f"{what} {name!r}: cannot read the data as an array: {e}") \
                from None
        if a.dtype.kind not in "biuf" or not np.can_cast(a.dtype, t.dtype, "safe"):
            raise SimulationError(
                f"{what} {name!r} (port 'y') takes {t.dtype} samples, got {a.dtype}; "
                f"convert with .astype({t.dtype.name!r}) or change the Inport's dtype"
            )
        n = len(t.shape)
        if a.ndim not in (n + 1, n + 2) or a.shape[a.ndim - n:] != t.shape:
            raise SimulationError(
                f"{what} {name!r} (port 'y') takes samples of shape {t.shape}: give an "
                f"array of shape (T, B, *{t.shape}) or (T, *{t.shape}), got {a.shape}"
            )
        if check_finite:
            check_finite_data(what, name, a)
        Ts.add(a.shape[0])
        if a.ndim == n + 2:
            Bs.add(a.shape[1])
        arrays[name] = a.astype(t.dtype, copy=False)
    if len(Ts) > 1:
        raise SimulationError(f"inputs of model {model!r} disagree on the number of steps: "
                              f"{sorted(Ts)}")
    if len(Bs) > 1:
        raise SimulationError(f"inputs of model {model!r} disagree on the batch size: "
                              f"{sorted(Bs)}")
    T = Ts.pop() if Ts else None
    if steps is not None:
        steps = check_steps(steps)
        if T is not None and steps != T:
            raise SimulationError(f"steps={steps} but the inputs have {T} steps")
        T = steps
    if T is None:
        raise SimulationError(f"model {model!r} has no inputs: say how long to run with "
                              "steps=...")
    check_steps(T, "the number of steps")
    B = Bs.pop() if Bs else None
    if B == 0:
        raise SimulationError(f"inputs of model {model!r} have batch size 0: give at least "
                              "one run, (T, B, ...) with B >= 1")
    if batch is not None:
        batch = check_steps(batch, "batch")
        if B is not None and batch != B and B != 1:
            raise SimulationError(f"batch={batch} but the inputs have batch size {B}")
        B = batch
    B = B or 1
    bufs: list = [None] * len(plan.slot_types)
    for name, a in arrays.items():
        t = plan.slot_types[plan.inports[name]]
        if a.ndim == len(t.shape) + 1:
            a = np.broadcast_to(a[:, None], (T, B, *t.shape))
        elif a.shape[1] != B:  # one run's inputs, shared by every batch member
            a = np.broadcast_to(a, (T, B, *t.shape))
        bufs[plan.inports[name]] = a
    return T, B, bufs
