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

from .errors import SimulationError
from .execute import run_plan
from .losses import resolve
from .model import Model
from .plan import Plan, compile
from .reciprocal import reciprocal
from .simulate import simulate
from .trace import Trace


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


def reciprocal_plan(model: Model) -> Plan:
    """The compiled reciprocal of ``model``, cached until the model is edited.

    Reciprocal blocks share the forward parameter arrays, so in-place training updates
    need no rebuild.
    """
    cache = model.__dict__.setdefault("_rplan", {})
    key = model.version()
    if key not in cache:
        cache.clear()
        cache[key] = compile(reciprocal(model))
    return cache[key]


def sweep(model: Model, trace: Trace, dL_dy: dict, *, window: int | None = None,
          chunked: bool = False, online: bool = False) -> Gradients:
    """Backward sweep of ``model`` over ``trace`` with output deltas ``dL_dy``.

    Parameters
    ----------
    model : Model
    trace : Trace
        The forward trace of ``model``.
    dL_dy : dict
        ``{outport: (T, B, *shape) array}``; Outports left out get zero.
    window : int, optional
        Truncated BPTT: sweep the last ``window`` steps only (``window >= T``: exact).
    chunked : bool
        With ``window=h``: truncated BPTT over the whole run, in consecutive windows of
        ``h`` steps, each swept from zero terminal state; the gradients add up.
    online : bool
        Run the reciprocal causally, delayed by its bound ``D`` on advances (temporal
        backprop; see :mod:`blockflow.causal`).  Same gradients as the full sweep.

    Returns
    -------
    Gradients
    """
    if online:
        from .causal import causal_sweep

        return causal_sweep(model, trace, dL_dy)
    rplan = reciprocal_plan(model)
    T, B = trace.T, trace.B
    dl = bind_output_deltas(rplan, dL_dy, T, B, model.name)
    if window is None:
        spans = [(0, T)]
    else:
        if isinstance(window, bool) or int(window) != window or window < 1:
            raise SimulationError(f"window must be a positive integer, got {window!r}")
        h = int(window)
        spans = [(a, min(a + h, T)) for a in range(0, T, h)] if chunked else \
            [(max(0, T - h), T)]
    parts = [_sweep_span(rplan, trace, dl, a, b) for a, b in spans]
    if len(parts) == 1:
        deltas = parts[0]
    else:
        bufs = [None if parts[0].bufs[i] is None else
                np.concatenate([p.bufs[i] for p in parts]) for i in range(len(parts[0].bufs))]
        deltas = Trace(rplan, bufs, T, B, parts[-1].final_states)
    grads: dict = {}
    for (a, b), d in zip(spans, parts, strict=True):
        for k, g in param_grads(trace, d, slice(a, b)).items():
            grads[k] = g if k not in grads else grads[k] + g
    return Gradients(grads, {n: deltas[n] for n in rplan.outports}, deltas)


def _sweep_span(rplan: Plan, trace: Trace, dl: dict, start: int, stop: int) -> Trace:
    """The reciprocal run over steps ``start..stop-1`` from zero state at ``stop``."""
    bufs: list = [None] * len(rplan.slot_types)
    for slot, g in dl.items():
        bufs[slot] = g[start:stop]
    for slot, path, port in rplan.trace_reads:
        bufs[slot] = trace[(path, port)][start:stop]
    finals = run_plan(rplan, stop - start, trace.B, bufs, reverse=True)
    return Trace(rplan, bufs, stop - start, trace.B, finals)


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


def param_grads(trace: Trace, deltas: Trace, span: slice = slice(None)) -> dict:
    """``dJ/dw`` for every trainable parameter: one contraction per block over time.

    ``deltas`` covers the forward steps ``span`` of ``trace``.  A block with a tapped
    delay line (finite ``memory``) also sees the inputs recorded just before the span,
    its deltas there being zero: ``sum_k delta(k) u(k-m)`` over the span, exactly.
    """
    start = span.start or 0
    params = {}
    for path, b in trace.plan.flat.blocks.items():
        if not b.parameters():
            continue
        back = min(b.memory or 0, start)
        window = slice(start - back, span.stop)
        u = tuple(trace[(path, p)][window] for p in b.inputs)
        y = tuple(trace[(path, p)][window] for p in b.outputs)
        dy = tuple(_pad_front(deltas[(path, p)], back) for p in b.outputs)
        params.update(block_param_grads(b, path, u, y, dy))
    return params


def _pad_front(a: np.ndarray, n: int) -> np.ndarray:
    return a if not n else np.concatenate([np.zeros((n, *a.shape[1:]), a.dtype), a])


def block_param_grads(b, path: str, u: tuple, y: tuple, dy: tuple) -> dict:
    """One block's ``dJ/dw``, each shaped and typed like its parameter."""
    own = b.parameters()
    out = {}
    for n, g in b.param_grads(u, y, dy).items():
        p = own[n]
        out[f"{path}.{n}"] = np.asarray(g, dtype=p.dtype).reshape(p.shape)
    return out


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
        d = np.asarray(d)
        want = y.shape[:-1] if np.issubdtype(d.dtype, np.integer) else y.shape  # labels
        if d.shape == (want[0], *want[2:]):
            d = np.broadcast_to(d[:, None], want)  # (T, *shape): same for every run
        if d.shape != want:
            raise SimulationError(f"target for Outport {name!r} must have shape {want} or "
                                  f"{(want[0], *want[2:])}, got {d.shape}")
        value, g = f(y, d)
        total += value
        dL[name] = g
    return total, dL


def backward(model: Model, inputs: dict | None = None, *, loss="sse", targets=None,
             dL_dy: dict | None = None, steps: int | None = None, batch: int | None = None,
             window: int | None = None, chunked: bool = False, online: bool = False,
             trace: Trace | None = None) -> Gradients:
    """Simulate ``model``, apply the loss, sweep back: every gradient at once.

    Either ``targets`` (with ``loss``: ``"sse"``, ``"mse"``, ``"cross_entropy"`` or a
    callable ``(y, d) -> (value, dL/dy)``) or ``dL_dy`` directly.
    """
    tr = trace if trace is not None else simulate(model, inputs, steps=steps, batch=batch)
    if dL_dy is None:
        if targets is None and loss == "sum":  # the outputs are losses already
            targets = {n: np.zeros_like(a) for n, a in tr.outputs().items()}
        if targets is None:
            raise SimulationError("give targets (with a loss) or dL_dy")
        value, dL_dy = output_deltas(tr, loss, targets)
    else:
        value = None
    g = sweep(model, tr, dL_dy, window=window, chunked=chunked, online=online)
    g.loss = value
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
