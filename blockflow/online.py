"""Online temporal backprop: forward and causal reciprocal streamed chunk by chunk.

For a model whose reciprocal has bounded advances (FIR networks, cascaded tapped-delay
networks), :class:`OnlineBackprop` runs the forward model and the retimed, causal
reciprocal (:mod:`blockflow.causal`) side by side, ``chunk`` steps at a time, carrying
their states.  After each chunk it has ``dJ/dw`` contributions ``delta_j(k-D) a_i(k-D)``
for the steps it just completed and can update the weights at once: the paper's eq. 13
as an online algorithm.  Memory is bounded: the forward history kept is ``D`` plus the
longest tapped delay line plus one chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import SimulationError
from .execute import run_plan
from .losses import resolve
from .model import Model
from .plan import _compile, compile


class OnlineBackprop:
    """Stream a model and its causal reciprocal; yield gradient contributions per chunk.

    Parameters
    ----------
    model : Model
    loss : str or callable
        As for :func:`blockflow.grad` (applied chunk by chunk).
    chunk : int
        Steps per chunk: 1 is the pure online algorithm; larger chunks run faster.
    """

    def __init__(self, model: Model, *, loss="sse", chunk: int = 1):
        from .causal import retime
        from .sweep import reciprocal_plan

        if int(chunk) != chunk or chunk < 1:
            raise SimulationError(f"chunk must be a positive integer, got {chunk!r}")
        self.model, self.chunk, self.loss = model, int(chunk), resolve(loss)
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
        self.out_slot = {n: self.cplan.inports[n] for n in self.cplan.inports}

    def run(self, inputs: dict, targets, update: Callable[[dict, int], None] | None = None):
        """Stream one pass over ``inputs``/``targets``; returns ``(loss, summed gradients)``.

        ``update(grads, k)`` is called after each chunk with that chunk's gradient
        contributions (for steps up to ``k - D``), e.g. to take an optimizer step.
        """
        from .simulate import bind_inputs
        from .sweep import block_param_grads

        T, B, xbufs = bind_inputs(self.fplan, inputs, None, None)
        if not isinstance(targets, dict):
            targets = {next(iter(self.fplan.outports)): targets}
        fstates, cstates = {}, {}
        hist = {s: np.zeros((0, B, *t.shape), t.dtype)
                for s, t in enumerate(self.fplan.slot_types)}
        t0, held = 0, 0  # real time of the oldest step held, and how many steps are held
        total_loss, total = 0.0, {}
        for t in range(0, T + self.D, self.chunk):
            C = min(self.chunk, T + self.D - t)
            n_real = max(0, min(C, T - t))  # steps of real data in this chunk
            fb: list = [None] * len(self.fplan.slot_types)
            for slot in self.fplan.inports.values():
                x = xbufs[slot][t:t + n_real]
                fb[slot] = np.concatenate([x, np.zeros((C - n_real, *x.shape[1:]), x.dtype)])
            fstates = run_plan(self.fplan, C, B, fb, states=fstates)
            for s in hist:
                step = fb[s] if fb[s] is not None else np.zeros((C, *hist[s].shape[1:]),
                                                                  hist[s].dtype)
                hist[s] = np.concatenate([hist[s], step])
            held += C
            cb: list = [None] * len(self.cplan.slot_types)
            for name, slot in self.cplan.inports.items():
                y = fb[self.fplan.outports[name]][:n_real]
                d = targets.get(name)
                g = np.zeros((C, B, *y.shape[2:]), y.dtype)
                if d is not None and n_real:
                    d = np.asarray(d)
                    d = d[t:t + n_real]
                    d = d[:, None] if d.ndim == y.ndim - 1 else d
                    value, g[:n_real] = self.loss(y, np.broadcast_to(d, y.shape))
                    if getattr(self.loss, "averaged", False):  # a mean over the whole run
                        value *= n_real / T
                        g[:n_real] *= n_real / T
                    total_loss += value
                cb[slot] = g
            for slot, path, port in self.cplan.trace_reads:
                cb[slot] = self._past(hist, t0, self.fplan.slots[(path, port)],
                                      t - self.lag[path], C)
            cstates = run_plan(self.cplan, C, B, cb, states=cstates)
            grads = {}
            for path, b, lag, mem in self.blocks:
                start = t - lag  # true time of this chunk's deltas
                # deltas before k = 0 belong to initial states, after T to nothing: drop both
                keep = slice(max(0, -start), max(0, min(C, T - start)))
                dy = []
                for p in b.outputs:
                    d = cb[self.cplan.slots[(path, p)]]
                    full = np.zeros((mem + C, *d.shape[1:]), d.dtype)
                    full[mem + keep.start:mem + keep.stop] = d[keep]
                    dy.append(full)
                dy = tuple(dy)
                u = tuple(self._past(hist, t0, self.fplan.slots[(path, p)], start - mem, C + mem)
                          for p in b.inputs)
                y = tuple(self._past(hist, t0, self.fplan.slots[(path, p)], start - mem, C + mem)
                          for p in b.outputs)
                grads.update(block_param_grads(b, path, u, y, dy))
            for k, v in grads.items():
                total[k] = v if k not in total else total[k] + v
            if update is not None:
                update(grads, t + C)
            drop = max(0, held - self.keep)
            if drop:
                hist = {s: h[drop:] for s, h in hist.items()}
                t0, held = t0 + drop, held - drop
        return total_loss, total

    @staticmethod
    def _past(hist: dict, t0: int, slot: int, start: int, n: int) -> np.ndarray:
        """Forward values of ``slot`` at true times ``start .. start+n-1`` (0 before k=0)."""
        h = hist[slot]
        out = np.zeros((n, *h.shape[1:]), h.dtype)
        a, b = max(start, t0), min(start + n, t0 + h.shape[0])
        if b > a:
            out[a - start:b - start] = h[a - t0:b - t0]
        return out
