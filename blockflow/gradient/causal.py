"""The online (causal) sweep: the reciprocal run forward in time, delayed.

Where every path through the reciprocal model carries a bounded number of advances (FIR
networks, cascaded tapped-delay networks: no feedback loop, no IIR filter), the
reciprocal can run causally.  Each reciprocal block ``v`` gets a lag ``L(v)``: at real
time ``k`` it produces its deltas for time ``k - L(v)``.  A block with advances up to
``a`` (a unit advance: 1; an anticausal FIR of ``M+1`` taps: ``M``) needs
``L(v) = max L(inputs) + a`` and becomes the causal filter with its taps reversed
(``q^-a H(q^+1)``: a unit advance becomes a wire); inputs arriving early wait in delay
lines; each trace read is delayed by ``L(v)``.  ``D = max L`` is the whole delay: the
weight update for time ``k`` can be made at ``k + D`` (temporal backprop, paper eq. 13),
with memory bounded by ``D`` steps.  The gradients equal the full sweep's.
"""

from __future__ import annotations

import networkx as nx

from blockflow.core.lines import DelayLine
from blockflow.core.model import Model, propagate_types
from blockflow.errors import SimulationError
from blockflow.gradient.adjoint import Anticausal
from blockflow.gradient.derive import causal_block
from blockflow.gradient.gradients import Gradients, bind_output_deltas, param_grads, reciprocal_plan
from blockflow.plan.cache import cached
from blockflow.plan.compiler import FlatModel, _compile
from blockflow.run.driver import run
from blockflow.run.trace import Trace, read_span


def retime(rflat: FlatModel, rtypes: dict) -> tuple[FlatModel, dict, dict]:
    """The causal version of a flattened reciprocal: (flat model, block lags, port lags)."""
    g = nx.DiGraph()
    g.add_nodes_from(rflat.blocks)
    g.add_edges_from((s, t) for s, t in rflat.graph.edges())
    try:
        order = list(nx.topological_sort(g))
    except nx.NetworkXUnfeasible:
        cycle = [s for s, _ in nx.find_cycle(g)]
        raise SimulationError(
            f"the reciprocal has a feedback loop through advances ({' -> '.join(cycle)}): "
            "its delay is unbounded, so it cannot run causally; use the full sweep"
        ) from None
    adv, lag = {}, {}
    for v in order:
        b = rflat.blocks[v]
        a = 0
        if isinstance(b, Anticausal):
            a = b.block.memory
            if a is None:
                raise SimulationError(
                    f"block {v!r} ({type(b.block).__name__}) has an unbounded impulse "
                    "response: its reciprocal needs unbounded advances; use the full sweep"
                )
        adv[v] = a
        lag[v] = max((lag[s] for s in g.predecessors(v)), default=0) + a
    causal = FlatModel(rflat.name)
    for v, b in rflat.blocks.items():
        if isinstance(b, Anticausal):
            causal.add(v, causal_block(b, tuple(rtypes[(v, p)] for p in b.outputs)))
        else:
            causal.add(v, b)
    port_lag = {}
    for v, b in rflat.blocks.items():
        for p in b.outputs:
            port_lag[(v, p)] = lag[v]
        for p in b.inputs:
            port_lag[(v, p)] = lag[v] - adv[v]
    for s, t, d in rflat.graph.edges(data=True):
        src, dst = (s, d["src_port"]), (t, d["dst_port"])
        need = port_lag[dst] - lag[s]
        if need:
            name = f"{t}.{d['dst_port']}<{need}"
            causal.add(name, DelayLine(need, name="lag"))
            causal.connect(src, (name, "u"))
            src = (name, "y")
            port_lag[src] = port_lag[dst]
        causal.connect(src, dst)
    return causal, lag, port_lag


def causal_sweep(model: Model, trace: Trace, dL_dy: dict):
    """The online sweep (see module docs); returns Gradients with ``.delay = D``."""
    rplan = reciprocal_plan(model)

    def build():
        flat, lag, port_lag = retime(rplan.flat, rplan.types)
        propagate_types(flat)
        return _compile(rplan.model, "auto", flat), lag, port_lag

    cplan, lag, port_lag = cached(model, "causal", build)
    D = max(lag.values(), default=0)
    T, B = trace.T, trace.B

    given = {}
    for slot, g in bind_output_deltas(rplan, dL_dy, T, B, model.name).items():
        port = next(n for n, s in rplan.inports.items() if s == slot)
        given[cplan.inports[port]] = read_span(g, 0, T + D)
    bufs = run(cplan, T + D, B, given, lambda slot, path, read: read_span(
        trace[(path, read.port)], -lag[path], T + D)).bufs
    # undo each signal's lag: deltas for true times 0..T-1
    slot_lag = {}
    for (path, port), s in cplan.slots.items():
        if (path, port) in port_lag and port in cplan.flat.blocks[path].outputs:
            slot_lag[s] = port_lag[(path, port)]
    aligned = [None if b is None else b[slot_lag.get(s, 0):slot_lag.get(s, 0) + T]
               for s, b in enumerate(bufs)]
    deltas = Trace(cplan, aligned, T, B)
    g = Gradients(param_grads(trace, deltas), {n: deltas[n] for n in cplan.outports}, deltas)
    g.delay = D
    return g
