"""What every gradient schedule shares: the result type, the compiled reciprocal, the
binding of output deltas and targets, and the parameter-gradient contraction
``dJ/dw = sum_k delta_j(k) a_i(k)`` (one per block, never step by step)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blockflow.backends.policy import resolve_backend
from blockflow.core.model import Model
from blockflow.core.rates import interval_sum, sample
from blockflow.errors import SimulationError
from blockflow.gradient.reciprocal import reciprocal
from blockflow.plan.cache import cached
from blockflow.plan.compiler import Plan, compile
from blockflow.plan.integrate import param_owner
from blockflow.run.trace import Trace


@dataclass
class Gradients:
    """What a backward sweep gives.

    Attributes
    ----------
    params : dict
        ``dJ/dw`` for every trainable parameter, keyed like ``model.parameters()``.
    inputs : dict
        ``dJ/dx(k)`` for every Inport, ``(T, B, *shape)``.
    deltas : Trace
        ``dJ/ds(k)`` for every signal ``s``, addressed like the forward trace
        (``deltas["tanh.u"]``).
    loss : float or None
    """

    params: dict
    inputs: dict
    deltas: Trace
    loss: float | None = None
    #: a chunk's sweep (:func:`~blockflow.gradient.sweep.backward_chunk`): the reciprocal
    #: model's state at the chunk's first step, for the chunk before it
    adjoint_state: dict | None = None


def reciprocal_plan(model: Model) -> Plan:
    """The compiled reciprocal of ``model``, cached until the model is edited or a
    parameter array is replaced.

    Reciprocal blocks share the forward parameter arrays, so in-place training updates
    need no rebuild.
    """
    backend = resolve_backend(None)
    return cached(model, f"reciprocal:{backend}",
                  lambda: compile(reciprocal(model), backend=backend))


def bind_output_deltas(rplan: Plan, dL_dy: dict, T: int, B: int, name: str) -> dict:
    """``{slot: (T, B, ...) array}`` for the reciprocal's Inports; zero where not given."""
    unknown = set(dL_dy) - set(rplan.inports)
    if unknown:
        raise SimulationError(f"dL_dy names {sorted(unknown)}, which are not Outports of "
                              f"{name!r} (its outputs are {sorted(rplan.inports)})")
    out = {}
    for port, slot in rplan.inports.items():
        t = rplan.slot_types[slot]
        g = dL_dy.get(port)
        g = t.zeros(T, B) if g is None else np.asarray(g, dtype=t.dtype)
        if g.shape != (T, B, *t.shape):
            raise SimulationError(f"dL_dy[{port!r}] must have shape {(T, B, *t.shape)}, "
                                  f"got {g.shape}")
        out[slot] = g
    return out


def needed_deltas(plan: Plan, rplan: Plan) -> frozenset:
    """The reciprocal's slots the gradients read: the deltas at the outputs of every
    block with parameters (:func:`param_grads`) and the input gradients (its
    Outports)."""
    need = set(rplan.outports.values())
    for path, b in plan.flat.blocks.items():
        if b.parameters():
            need.update(s for p in b.outputs if (s := rplan.slots.get((path, p))) is not None)
    return frozenset(need)


def swept_signals(plan: Plan, rplan: Plan) -> list[tuple[str, str]]:
    """The forward signals a sweep over windows reads, as ``(path, port)``: what the
    reciprocal's blocks read at every step (``trace_reads``) and the inputs and recorded
    outputs of every block with parameters (:func:`param_grads`).  The Outports (the
    loss) are recorded by every run."""
    need = {(r.path, r.read.port) for r in rplan.trace_reads}
    for path, b in plan.flat.blocks.items():
        if b.parameters():
            need.update((path, p) for p in b.inputs)
            if b.grads_read_outputs:
                need.update((path, p) for p in b.recorded)
    return sorted(need)


def param_grads(trace: Trace, deltas: Trace, *, resets: tuple = (), start: int = 0) -> dict:
    """``dJ/dw`` for every trainable parameter: one contraction per block over time.

    ``deltas`` covers the steps of ``trace`` and is zero before ``start`` (the first
    swept step).  A block sees its recorded inputs and outputs from as far back as its
    memory reaches (everything, for a recursive block) and the steps ``resets`` at which
    a truncated sweep holds its state as data (see :mod:`blockflow.gradient.schedules`).
    """
    params = {}
    for path, b in trace.plan.flat.blocks.items():
        if not b.parameters():
            continue
        mem = b.memory if b.stateful else 0
        lo = 0 if mem is None else max(0, start - mem)
        u = tuple(trace[(path, p)][lo:] for p in b.inputs)
        y = tuple(trace[(path, p)][lo:] if b.grads_read_outputs else None
                  for p in b.recorded)
        dy = tuple(deltas[(path, p)][lo:] for p in b.outputs)
        if path in trace.plan.rates:  # on its hits: sampled signals, deltas summed (H^T)
            rate = trace.plan.rates[path][0]
            u, y = (tuple(sample(a, rate) for a in u),
                    tuple(None if a is None else sample(a, rate) for a in y))
            dy = tuple(interval_sum(a, rate) for a in dy)
        add_grads(params, block_param_grads(b, path, u, y, dy,
                                            tuple(k - lo for k in resets if k > lo)))
    return params


def add_grads(total: dict, more: dict) -> dict:
    """Add ``more`` into ``total`` by key (a solver's stage copies add to their block's)."""
    for k, g in more.items():
        total[k] = total[k] + g if k in total else g
    return total


def block_param_grads(b, path: str, u: tuple, y: tuple, dy: tuple, resets: tuple = ()
                      ) -> dict:
    """One block's ``dJ/dw``, each shaped and typed like its parameter and keyed by the
    block that owns it (:func:`~blockflow.plan.integrate.param_owner`)."""
    own = b.parameters()
    owner = param_owner(path, b)
    out = {}
    for n, g in b.param_grads(u, y, dy, resets=resets).items():
        p = own[n]
        out[f"{owner}.{n}"] = np.asarray(g, dtype=p.dtype).reshape(p.shape)
    return out


def broadcast_target(name: str, y: np.ndarray, d) -> np.ndarray:
    """Target ``d`` for output ``y`` (T, B, *shape): given per run, or as (T, *shape) for
    every run alike; integer class labels drop the class axis."""
    d = np.asarray(d)
    labels = np.issubdtype(d.dtype, np.integer) and y.ndim > 2  # class labels
    want = y.shape[:-1] if labels else y.shape
    if d.shape == (want[0], *want[2:]):
        d = np.broadcast_to(d[:, None], want)  # (T, *shape): same for every run
    elif d.ndim == len(want) and d.shape[1] == 1 and d.shape[2:] == want[2:] \
            and d.shape[0] == want[0]:
        d = np.broadcast_to(d, want)  # one run's target, shared by every batch member
    if d.shape != want:
        raise SimulationError(f"target for Outport {name!r} must have shape {want} or "
                              f"{(want[0], *want[2:])}, got {d.shape}")
    return d
