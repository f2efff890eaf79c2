"""Online temporal backprop: forward and causal reciprocal streamed chunk by chunk.

For a model whose reciprocal has bounded advances (FIR networks, cascaded tapped-delay
networks), :class:`OnlineBackprop` runs the forward model and the retimed, causal
reciprocal (:mod:`blockflow.gradient.causal`) side by side, ``chunk`` steps at a time, carrying
their states.  After each chunk it has ``dJ/dw`` contributions ``delta_j(k-D) a_i(k-D)``
for the steps it just completed and can update the weights at once: the paper's eq. 13
as an online algorithm.  Memory is bounded: the forward history kept is ``D`` plus the
longest tapped delay line plus one chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from blockflow.core.model import Model
from blockflow.errors import SimulationError
from blockflow.gradient.causal import retime
from blockflow.gradient.gradients import (
    add_grads,
    block_param_grads,
    broadcast_target,
    reciprocal_plan,
)
from blockflow.gradient.losses import resolve
from blockflow.gradient.schedules import Streamed
from blockflow.plan.cache import cached
from blockflow.plan.compiler import _compile, compile
from blockflow.plan.integrate import param_owner
from blockflow.run.driver import run
from blockflow.run.simulate import bind_inputs
from blockflow.run.trace import read_span


def streamer(model: Model, chunk: int) -> OnlineBackprop:
    """The streaming sweep of ``model`` in chunks of ``chunk`` steps, compiled once
    (cached like every plan: rebuilt when the model or a parameter array is replaced)."""
    return cached(model, f"streamed:{chunk}", lambda: OnlineBackprop(model, chunk=chunk))


class OnlineBackprop:
    """Stream a model and its causal reciprocal; yield gradient contributions per chunk.

    Parameters
    ----------
    model : Model
    loss : str or callable
        As for :func:`blockflow.grad` (applied chunk by chunk); ``run`` may override it.
    chunk : int
        Steps per chunk: 1 is the pure online algorithm; larger chunks run faster.
    """

    def __init__(self, model: Model, *, loss="sse", chunk: int = 1):
        self.model, self.chunk, self.loss = model, Streamed(chunk).chunk, loss
        self.fplan = compile(model, "step")
        rplan = reciprocal_plan(model)
        flat, self.lag, port_lag = retime(rplan.flat, rplan.types)
        self.cplan = _compile(rplan.model, "step", flat)
        self.D = max(self.lag.values(), default=0)
        # where each parameter block's output deltas appear, and how late
        self.blocks = []
        for path, b in self.fplan.flat.blocks.items():
            if b.parameters():
                lag = port_lag[(path, b.outputs[0])]
                self.blocks.append((path, b, lag, b.memory or 0))
        mem = max((m for *_, m in self.blocks), default=0)
        self.keep = self.D + mem + 1  # forward history needed beyond the current chunk

    def run(self, inputs: dict, targets, update: Callable[[dict, int], None] | None = None,
            *, loss=None):
        """Stream one pass over ``inputs``/``targets``; returns ``(loss, summed gradients)``.

        ``update(grads, k)`` is called after each chunk with that chunk's gradient
        contributions (for steps up to ``k - D``), e.g. to take an optimizer step.
        """
        f = resolve(self.loss if loss is None else loss)
        T, B, xbufs = bind_inputs(self.fplan, inputs, None, None)
        if not isinstance(targets, dict):
            targets = {next(iter(self.fplan.outports)): targets}
        unknown = set(targets) - set(self.fplan.outports)
        if unknown:
            raise SimulationError(f"targets name {sorted(unknown)}, which are not Outports; "
                                  f"the Outports are {sorted(self.fplan.outports)}")
        fstates, cstates = {}, {}
        hist = {s: np.zeros((0, B, *t.shape), t.dtype)
                for s, t in enumerate(self.fplan.slot_types)}
        t0, held = 0, 0  # real time of the oldest step held, and how many steps are held
        total_loss, total = 0.0, {}
        for t in range(0, T + self.D, self.chunk):
            C = min(self.chunk, T + self.D - t)
            n_real = max(0, min(C, T - t))  # steps of real data in this chunk
            fwd = run(self.fplan, C, B, {slot: read_span(xbufs[slot], t, C)
                                         for slot in self.fplan.inports.values()},
                      states=fstates)
            fb, fstates = fwd.bufs, fwd.final_states
            for s in hist:
                step = fb[s] if fb[s] is not None else np.zeros((C, *hist[s].shape[1:]),
                                                                  hist[s].dtype)
                hist[s] = np.concatenate([hist[s], step])
            held += C
            cb: dict = {}
            for name, slot in self.cplan.inports.items():
                y = fb[self.fplan.outports[name]][:n_real]
                g = self.cplan.slot_types[slot].zeros(C, B)
                if name in targets and n_real:
                    d = broadcast_target(name, y, read_span(np.asarray(targets[name]), t,
                                                            n_real))
                    value, g[:n_real] = f(y, d)
                    if getattr(f, "averaged", False):  # a mean over the whole run
                        value *= n_real / T
                        g[:n_real] *= n_real / T
                    total_loss += value
                cb[slot] = g
            back = run(self.cplan, C, B, cb, lambda slot, path, read, t=t, t0=t0, hist=hist, C=C:
                       read_span(hist[self.fplan.slots[(path, read.port)]],
                                 t - self.lag[path], C, t0), states=cstates)
            cb, cstates = back.bufs, back.final_states
            grads = {}
            for path, b, lag, mem in self.blocks:
                start = t - lag  # true time of this chunk's deltas
                # deltas before k = 0 belong to initial states, after T to nothing: drop
                # both; the block sees its history back to lo, and time 0 where it begins
                keep = slice(max(0, -start), max(0, min(C, T - start)))
                lo = max(0, start - mem)
                n = start + C - lo
                if n <= 0:  # the deltas have not reached k = 0 yet
                    add_grads(grads, {f"{param_owner(path, b)}.{k}": np.zeros_like(v)
                                      for k, v in b.parameters().items()})
                    continue
                dy = []
                for p in b.outputs:
                    d = cb[self.cplan.slots[(path, p)]]
                    full = np.zeros((n, *d.shape[1:]), d.dtype)
                    full[start - lo + keep.start:start - lo + keep.stop] = d[keep]
                    dy.append(full)
                u = tuple(read_span(hist[self.fplan.slots[(path, p)]], lo, n, t0)
                          for p in b.inputs)
                y = tuple(read_span(hist[self.fplan.slots[(path, p)]], lo, n, t0)
                          for p in b.recorded)
                add_grads(grads, block_param_grads(b, path, u, y, tuple(dy)))
            for k, v in grads.items():
                total[k] = v if k not in total else total[k] + v
            if update is not None:
                update(grads, t + C)
            drop = max(0, held - self.keep)
            if drop:
                hist = {s: h[drop:] for s, h in hist.items()}
                t0, held = t0 + drop, held - drop
        return total_loss, total
