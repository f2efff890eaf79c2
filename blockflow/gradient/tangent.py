"""Forward mode: the tangent (linearised) model, run forward in time.

``tangent(model)`` keeps the flow direction and replaces each block by its
linearisation: a stateless block by ``J(k)`` (reading the forward trace), a stateful
linear block by itself from zero initial state (delays stay delays), a source by zeros.
Running it on a forward trace with input directions ``dx`` (and parameter directions)
gives directional derivatives ``dy = (dy/dx) dx + (dy/dw) dw``; carried for every
parameter this is RTRL.  It and the reciprocal are two orders of one product:
``<T v, w> == <v, R w>``.
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.model import Model
from blockflow.errors import ReciprocalNotDefinedError
from blockflow.gradient.adjoint import Forced
from blockflow.gradient.derive import tangent_block
from blockflow.gradient.reciprocal import port_types
from blockflow.plan.compiler import compile
from blockflow.plan.expand import expanded
from blockflow.plan.integrate import param_owner
from blockflow.run.driver import run
from blockflow.run.simulate import bind_inputs
from blockflow.run.trace import Trace


def tangent(model: Model, dparams: dict | None = None) -> Model:
    """The tangent model; ``dparams`` are parameter directions keyed like
    ``model.parameters()`` (each block adds the output change they cause)."""
    plan = compile(model)
    dparams = dparams or {}
    known = set(model.parameters())
    unknown = set(dparams) - known
    if unknown:
        raise ReciprocalNotDefinedError(f"parameter directions for unknown parameters "
                                        f"{sorted(unknown)}; the model has {sorted(known)}")
    return _tangent(model, "", plan.types, dparams, plan.rates)


def _tangent_block(b: Block, path: str, types: dict, dparams: dict, rates: dict) -> Block:
    fwd = port_types(b, path, types)
    tb = tangent_block(b, fwd)
    owner = param_owner(path, b)  # (a solver stage moves with its block's parameters)
    mine = {k.rpartition(".")[2]: np.asarray(v) for k, v in dparams.items()
            if k.rpartition(".")[0] == owner}
    tb = Forced(tb, b, mine, fwd) if mine else tb
    if path in rates:  # runs on the forward block's hits
        tb.rate_hint = rates[path]
    return tb


def _tangent(m: Model, prefix: str, types: dict, dparams: dict, rates: dict) -> Model:
    m = expanded(m)
    tm = Model(m.name, dt=m._dt)
    for name, b in m.blocks.items():
        tm.add(_tangent(b, f"{prefix}{name}/", types, dparams, rates) if isinstance(b, Model)
               else _tangent_block(b, prefix + name, types, dparams, rates))
    for s, d, data in m.graph.edges(data=True):
        tm.connect(tm.blocks[s][data["src_port"]], tm.blocks[d][data["dst_port"]])
    return tm


def directional(model: Model, trace: Trace, dx: dict | None = None,
                dparams: dict | None = None) -> Trace:
    """Tangents of every signal along input directions ``dx`` and parameter directions.

    Returns a Trace addressed like ``trace``: ``directional(...)["y"]`` is ``dy(k)``.
    """
    tplan = compile(tangent(model, dparams))
    dx = dict(dx or {})
    for name, slot in tplan.inports.items():
        if name not in dx:
            dx[name] = tplan.slot_types[slot].zeros(trace.T, trace.B)
    T, B, bufs = bind_inputs(tplan, dx, trace.T, trace.B, what="direction for Inport")
    forcing: dict = {}

    def read(slot, path, r):
        if not r.forcing:
            return trace[(path, r.port)]
        if path not in forcing:  # a parameter direction's effect, over the whole trace
            b = tplan.flat.blocks[path]
            forcing[path] = dict(zip(b.outputs, b.forcing(trace, path), strict=True))
        return np.asarray(forcing[path][r.port], dtype=tplan.slot_types[slot].dtype)

    return run(tplan, T, B, bufs, read)
