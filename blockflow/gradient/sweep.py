"""The backward sweep: run the reciprocal model over reversed time on a forward Trace.

In reversed time an advance is a delay, so the sweep is the ordinary executor run from
``k = T-1`` down to ``0`` with zero terminal state, its trace-reading blocks fed from the
forward Trace.  Loop-free parts sweep whole sequences at once.  Parameter gradients are
then one contraction over time per parameter, ``dJ/dw = sum_k delta_j(k) a_i(k)``, never
accumulated step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blockflow.core.model import Model
from blockflow.errors import SimulationError
from blockflow.gradient.causal import causal_sweep
from blockflow.gradient.gradients import (
    Gradients,
    bind_output_deltas,
    broadcast_target,
    needed_deltas,
    param_grads,
    reciprocal_plan,
    swept_signals,
)
from blockflow.gradient.losses import resolve
from blockflow.gradient.online import streamer
from blockflow.gradient.schedules import Causal, Schedule, as_schedule
from blockflow.plan.compiler import Plan, compile
from blockflow.run.driver import run
from blockflow.run.simulate import simulate
from blockflow.run.trace import Trace, check_finite_data


def sweep(model: Model, trace: Trace, dL_dy: dict, schedule: Schedule | None = None, *,
          window: int | None = None, chunked: bool = False, online: bool = False,
          keep_deltas: bool = True) -> Gradients:
    """Backward sweep of ``model`` over ``trace`` with output deltas ``dL_dy``.

    Parameters
    ----------
    model : Model
    trace : Trace
        The forward trace of ``model``.
    dL_dy : dict
        ``{outport: (T, B, *shape) array}``; Outports left out get zero.
    schedule : Schedule, default Full()
        How the sweep covers time (:mod:`blockflow.gradient.schedules`).
    window, chunked, online
        Shorthands: ``window=h`` is ``Window(h)``, with ``chunked=True`` ``Chunked(h)``;
        ``online=True`` is ``Causal()``.
    keep_deltas : bool, default True
        Keep the delta of every signal; ``False`` keeps only those the parameter
        gradients and the input gradients need (less memory per step; the others raise
        when asked for).

    Returns
    -------
    Gradients
        Deltas cover all ``T`` steps (zero outside the swept windows).
    """
    schedule = as_schedule(schedule, window=window, chunked=chunked, online=online)
    return schedule.apply(_Sweeper(model, trace, dL_dy, keep_deltas))


@dataclass
class _Sweeper:
    """The ways a backward sweep covers a recorded run; a schedule picks one."""

    model: Model
    trace: Trace
    dL_dy: dict
    keep_deltas: bool = True

    @property
    def T(self) -> int:
        return self.trace.T

    def streamed(self, chunk: int) -> Gradients:
        raise SimulationError("a Streamed schedule runs beside the forward model: call "
                              "backward(model, inputs, ..., schedule=Streamed(chunk))")

    def causal(self) -> Gradients:
        return causal_sweep(self.model, self.trace, self.dL_dy)

    def windows(self, spans: list) -> Gradients:
        """The reciprocal run over each window ``[a, b)`` from zero state at ``b``; the
        deltas side by side, the parameter gradients contracted once."""
        model, trace = self.model, self.trace
        rplan = reciprocal_plan(model)
        T, B = trace.T, trace.B
        dl = bind_output_deltas(rplan, self.dL_dy, T, B, model.name)
        keep = None if self.keep_deltas else needed_deltas(trace.plan, rplan)
        bufs: list = [None] * len(rplan.slot_types)
        finals = {}
        for a, b in spans:
            part = _sweep_span(rplan, trace, dl, a, b, keep)
            finals = part.final_states
            if len(spans) == 1 and (a, b) == (0, T):
                bufs = part.bufs
                break
            for i, arr in enumerate(part.bufs):
                if arr is None:
                    continue
                if bufs[i] is None:
                    bufs[i] = np.zeros((T, *arr.shape[1:]), arr.dtype)
                bufs[i][a:b] = arr
        deltas = Trace(rplan, bufs, T, B, finals, dropped=None if keep is None else DROPPED)
        resets = tuple(a for a, _ in spans if a > 0)
        grads = param_grads(trace, deltas, resets=resets, start=spans[0][0])
        return Gradients(grads, {n: deltas[n] for n in rplan.outports}, deltas)


#: what the deltas of a sweep that kept only what its gradients need say of the others
DROPPED = ("backward(..., keep_deltas=False) keeps the deltas the parameter and input "
           "gradients need; run it with keep_deltas=True for every signal's")


def _sweep_span(rplan: Plan, trace: Trace, dl: dict, start: int, stop: int,
                keep: frozenset | None = None) -> Trace:
    """The reciprocal run over steps ``start..stop-1`` from zero state at ``stop``;
    ``keep``: the deltas to record (``None``: all)."""
    return run(rplan, stop - start, trace.B, {slot: g[start:stop] for slot, g in dl.items()},
               lambda slot, path, read: trace[(path, read.port)][start:stop], reverse=True,
               keep=keep)


def output_deltas(trace: Trace, loss, targets) -> tuple[float, dict]:
    """Loss value and ``dL/dy`` for each Outport with a target."""
    outs = trace.plan.outports
    if not isinstance(targets, dict):
        if len(outs) != 1:
            raise SimulationError(f"model has Outports {sorted(outs)}: give targets as a dict")
        targets = {next(iter(outs)): targets}
    f = resolve(loss)
    total, dL = 0.0, {}
    for name, d in targets.items():
        if name not in outs:
            raise SimulationError(f"targets name {name!r}, which is not an Outport; the "
                                  f"Outports are {sorted(outs)}")
        y = trace[name]
        value, g = f(y, broadcast_target(name, y, d))
        total += value
        dL[name] = g
    return total, dL


def backward(model: Model, inputs: dict | None = None, *, loss="sse", targets=None,
             dL_dy: dict | None = None, steps: int | None = None, batch: int | None = None,
             schedule: Schedule | None = None, window: int | None = None,
             chunked: bool = False, online: bool = False, trace: Trace | None = None,
             update=None, check_finite: bool = True, params: dict | None = None,
             keep_deltas: bool = True) -> Gradients:
    """Simulate ``model``, apply the loss, sweep back: every gradient at once.

    Either ``targets`` (with ``loss``: ``"sse"``, ``"mse"``, ``"cross_entropy"`` or a
    callable ``(y, d) -> (value, dL/dy)``) or ``dL_dy`` directly.  ``schedule`` (or the
    shorthands ``window``, ``chunked``, ``online``) picks the gradient mode
    (:mod:`blockflow.gradient.schedules`).  ``Streamed(chunk)`` runs the forward model and the
    causal reciprocal side by side from ``inputs`` and calls ``update(grads, k)`` after
    each chunk; it gives parameter gradients and the loss (no input deltas).
    ``check_finite`` refuses inputs, targets and output deltas holding NaN or infinity,
    and a forward run producing one (see :func:`~blockflow.run.simulate`).
    ``keep_deltas=False`` records only the deltas the parameter and input gradients need
    (a training loop's memory per step: the rest of ``.deltas`` raises when asked for),
    and the forward run it makes only the signals the sweep reads
    (:func:`~blockflow.gradient.gradients.swept_signals`).
    """
    if params:  # parameters per batch member: gradients per member
        from blockflow.plan.cache import pinned
        from blockflow.run.batched import batched, check_batched, per_member

        if update is not None:
            raise SimulationError("backward(params=...) gives per-member gradients of "
                                  "batched parameters; it cannot apply an update to them")
        if as_schedule(schedule, window=window, chunked=chunked, online=online).streams:
            raise SimulationError("backward(params=...) takes the Full, Truncated or "
                                  "Chunked schedule: Streamed(chunk) updates shared weights "
                                  "online and has no per-member gradients of batched "
                                  "parameters; run one backward per parameter set instead")
        plan = compile(model)
        reciprocal_plan(model)  # built before the parameters are swapped
        batch, checked = check_batched(plan, params, batch)
        with pinned(model), batched(checked):
            g = backward(model, inputs, loss=loss, targets=targets, dL_dy=dL_dy, steps=steps,
                         batch=batch, schedule=schedule, window=window, chunked=chunked,
                         online=online, trace=trace, check_finite=check_finite,
                         keep_deltas=keep_deltas)
        g.params = per_member(g.params, checked)
        return g
    schedule = as_schedule(schedule, window=window, chunked=chunked, online=online)
    if not schedule.multirate and compile(model).multirate:
        raise SimulationError(
            f"model {model.name!r} runs blocks at several rates "
            f"({', '.join(sorted(compile(model).rates))} off the base rate); its gradient "
            f"takes the Full schedule, not {type(schedule).__name__}")
    if check_finite:
        for what, data in (("target", targets), ("dL_dy", dL_dy)):
            items = data.items() if isinstance(data, dict) else [("", data)]
            for name, a in items:
                if a is not None:
                    check_finite_data(what, name, a)
    if schedule.streams:  # beside the forward model, from the inputs
        if targets is None or trace is not None or dL_dy is not None:
            raise SimulationError("Streamed(chunk) runs from inputs and targets: give "
                                  "inputs= and targets=, not trace= or dL_dy=")
        value, params = streamer(model, schedule.chunk).run(inputs, targets, loss=loss,
                                                            update=update)
        return Gradients(params, {}, None, value)
    signals = None
    if trace is None and not keep_deltas and not isinstance(schedule, Causal):
        # (a sweep over windows reads these alone: the run records only them, and of its
        # loops' other signals one row each)
        signals = swept_signals(compile(model), reciprocal_plan(model))
    tr = trace if trace is not None else simulate(model, inputs, steps=steps, batch=batch,
                                                  check_finite=check_finite, signals=signals)
    if dL_dy is None:
        if targets is None and loss == "sum":  # the outputs are losses already
            targets = {n: np.zeros_like(a) for n, a in tr.outputs().items()}
        if targets is None:
            raise SimulationError("give targets (with a loss) or dL_dy")
        value, dL_dy = output_deltas(tr, loss, targets)
    else:
        value = None
    g = sweep(model, tr, dL_dy, schedule, keep_deltas=keep_deltas)
    g.loss = value
    if update is not None:
        update(g.params, tr.T)
    return g


def grad(model: Model, inputs: dict | None = None, *, loss="sse", targets=None,
         dL_dy: dict | None = None, **kw) -> tuple[float | None, dict]:
    """``(loss value, dJ/dw)`` with gradients keyed like ``model.parameters()``.

    Examples
    --------
    >>> from models.closed_loop import tanh_loop
    >>> m = tanh_loop()
    >>> J, g = grad(m, {"r": np.ones((20, 1))}, targets=np.zeros((20, 1)))
    >>> sorted(g)
    ['kc.K', 'plant.a', 'plant.b']
    """
    kw.setdefault("keep_deltas", False)  # (only the parameter gradients are returned)
    g = backward(model, inputs, loss=loss, targets=targets, dL_dy=dL_dy, **kw)
    return g.loss, g.params


def output_gradient(model: Model, inputs: dict | None = None, *, output: str | None = None,
                    step: int = -1, index: tuple = (), **kw) -> Gradients:
    """Gradients of one output sample, ``y(step)[index]``, instead of a loss.

    The reciprocal network fed with a unit impulse at that output: ``.inputs[x][j]`` is
    ``dy(step)/dx(j)`` for every step ``j`` (zero after ``step``: the model is causal), and
    ``.params`` is ``dy/dw``, summed over the batch.
    """
    tr = simulate(model, inputs, **kw)
    outs = tr.plan.outports
    if output is None:
        if len(outs) != 1:
            raise SimulationError(f"model has Outports {sorted(outs)}: say which output=")
        output = next(iter(outs))
    if output not in outs:
        raise SimulationError(f"{output!r} is not an Outport of {model.name!r}; its Outports "
                              f"are {sorted(outs)}")
    seed = np.zeros_like(tr[output])
    try:
        seed[(step, slice(None), *index)] = 1.0
    except IndexError:
        raise SimulationError(f"no sample {(step, *index)} in output {output!r} of shape "
                              f"{tr[output].shape[:1] + tr[output].shape[2:]}") from None
    return sweep(model, tr, {output: seed})


def backward_chunk(model: Model, trace: Trace, *, loss="sse", targets=None,
                   dL_dy: dict | None = None, adjoint_state: dict | None = None
                   ) -> Gradients:
    """The backward sweep over one chunk of a run split into chunks (the traces of a
    :class:`~blockflow.run.simulator.Simulator`), from the adjoint state the later chunk
    handed back (``None`` for the last chunk: zero).

    Sweep the chunks from the last to the first, each from the previous call's
    ``.adjoint_state`` (the reciprocal model's state at the chunk's first step); the
    deltas then equal those of one sweep over the whole run and the chunks' parameter
    gradients add up to its gradients: BPTT over a run that is never held in memory
    whole.  The chunks' parameter gradients are contractions over the chunk alone, so
    the trained blocks must be stateless (a Dense, an MLP, a gain; a recurrent network
    built with delays); a block that computes its gradient by its own recursion over the
    whole run (a filter, a state-space block) is refused, naming it.

    Returns
    -------
    Gradients
        With ``adjoint_state`` set, to hand to the earlier chunk.
    """
    from blockflow.gradient.reciprocal import reciprocal
    from blockflow.plan.cache import cached
    from blockflow.plan.integrate import param_owner

    plan = trace.plan
    if plan.multirate:
        raise SimulationError(f"backward_chunk: {model.name!r} runs blocks at several rates; "
                              "sweep its whole run with backward()")
    recursive = [param_owner(p, b) for p, b in plan.flat.blocks.items()
                 if b.stateful and b.parameters()]
    if recursive:
        raise SimulationError(
            f"backward_chunk: block(s) {sorted(set(recursive))} of {model.name!r} have "
            "trainable parameters and a state, and compute their gradients by their own "
            "recursion over the whole run; sweep the whole run with backward() (or fix "
            "their parameters: trainable=False)")
    if dL_dy is None:
        if targets is None:
            raise SimulationError("backward_chunk: give targets (with a loss) or dL_dy")
        value, dL_dy = output_deltas(trace, loss, targets)
    else:
        value = None
    # step mode: every reciprocal block's state in the loop, so that it carries over
    rplan = cached(model, "reciprocal:step", lambda: compile(reciprocal(model), mode="step",
                                                             backend=plan.backend))
    T, B = trace.T, trace.B
    dl = bind_output_deltas(rplan, dL_dy, T, B, model.name)
    part = run(rplan, T, B, dl, lambda slot, path, read: trace[(path, read.port)],
               reverse=True, states=adjoint_state)
    deltas = Trace(rplan, part.bufs, T, B, part.final_states)
    g = Gradients(param_grads(trace, deltas), {n: deltas[n] for n in rplan.outports}, deltas,
                  value)
    g.adjoint_state = dict(part.final_states)
    return g


def backward_checkpointed(model: Model, inputs: dict | None = None, *, loss="sse",
                          targets=None, dL_dy: dict | None = None, steps: int | None = None,
                          batch: int | None = None, segment: int | None = None,
                          backend: str | None = None) -> Gradients:
    """BPTT in bounded memory: the forward run keeps only the state at the start of each
    segment of ``segment`` steps (default ``ceil(sqrt(T))``: ``O(sqrt T)`` memory), then
    each segment, last to first, is run again from its saved state and swept back from
    the adjoint state the later one handed back (:func:`backward_chunk`).  The gradients
    are those of one sweep over the whole run (to rounding), at about twice the forward
    cost; the same models as :func:`backward_chunk` (trained blocks stateless).

    Returns
    -------
    Gradients
        ``params``, ``inputs`` (the input deltas, ``(T, B, ...)``: as large as the
        inputs) and ``loss``; no per-signal deltas (they are what is not kept).
    """
    import math

    from blockflow.gradient.losses import resolve
    from blockflow.run.simulator import Simulator

    inputs = {} if inputs is None else {k: np.asarray(v) for k, v in inputs.items()}
    T = steps if steps is not None else next(iter(inputs.values())).shape[0]
    if batch is None:
        batch = next((v.shape[1] for v in inputs.values() if v.ndim >= 2), 1)
    L = segment or max(1, math.ceil(math.sqrt(T)))
    if targets is None and dL_dy is None:
        raise SimulationError("backward_checkpointed: give targets (with a loss) or dL_dy")

    def part(data, a, b):
        if data is None:
            return None
        if isinstance(data, dict):
            return {k: np.asarray(v)[a:b] for k, v in data.items()}
        return np.asarray(data)[a:b]

    sim = Simulator(model, backend=backend, batch=batch)
    saved = []
    for a in range(0, T, L):  # forward: the state at each segment's start, nothing else
        b = min(T, a + L)
        saved.append((a, b, sim.state))
        sim.run(part(inputs, a, b) or None, steps=None if inputs else b - a)
    f = resolve(loss)
    scale = getattr(f, "averaged", False)

    def segment_loss(y, d, n=None):
        value, g = f(y, d)
        if scale:  # a mean over the whole run, not over the segment
            value, g = value * y.shape[0] / T, g * y.shape[0] / T
        return value, g

    total, grads, deltas, adjoint = 0.0, {}, [], None
    for a, b, state in reversed(saved):
        sim.reset(state)
        sim.k = a
        tr = sim.run(part(inputs, a, b) or None, steps=None if inputs else b - a)
        g = backward_chunk(model, tr, loss=segment_loss, targets=part(targets, a, b),
                           dL_dy=part(dL_dy, a, b), adjoint_state=adjoint)
        adjoint = g.adjoint_state
        total += g.loss or 0.0
        grads = {k: grads[k] + v if k in grads else v for k, v in g.params.items()}
        deltas.insert(0, g.inputs)
    inputs_delta = {n: np.concatenate([d[n] for d in deltas]) for n in deltas[0]} \
        if deltas else {}
    return Gradients(grads, inputs_delta, None, total if dL_dy is None else None)
