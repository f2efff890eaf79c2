"""A plan's records are reused by its next run only when nothing holds them any more: a
Trace kept, or a view of one of its signals, keeps its numbers; a dropped one lends its
memory (zeroed) to the next run, which gives the numbers of a fresh one."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from blockflow import backward, compile, simulate
from blockflow.backends import runtime
from models.closed_loop import tanh_loop
from models.dc_motor import motor_loop


def _inputs(seed: int, T: int = 60) -> dict:
    r = np.random.default_rng(seed).standard_normal((T, 1))
    r[0] = 1.0
    return {"r": r}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_kept_trace_keeps_its_numbers_and_a_dropped_one_lends_its_memory(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    plan = compile(tanh_loop(), backend=backend)
    first = simulate(plan, _inputs(0))
    y0 = first["y"].copy()
    second = simulate(plan, _inputs(1))  # the first is held: fresh records
    np.testing.assert_array_equal(first["y"], y0)
    assert not np.shares_memory(first["y"], second["y"])
    view = second["y"][10:20]  # a view alone holds the second's record
    v0 = view.copy()
    del second
    gc.collect()
    third = simulate(plan, _inputs(2))
    np.testing.assert_array_equal(view, v0)
    assert not np.shares_memory(view, third["y"])
    del view, third
    gc.collect()
    ids = {id(a) for a in runtime._state(plan).records.values()}
    fourth = simulate(plan, _inputs(3))  # nothing holds the third's: its memory, zeroed
    assert any(id(a) in ids for a in runtime._state(plan).records.values())
    fresh = simulate(tanh_loop(), _inputs(3), backend=backend)
    for s in fresh.names():
        np.testing.assert_array_equal(fourth[s], fresh[s])


def test_a_training_loop_of_gradients_reuses_its_records_with_the_same_numbers():
    """The reciprocal's records (deltas) are the sweep's own: each backward reuses the
    last one's, and gives what a fresh process would (multirate sums over held intervals
    included)."""
    m = motor_loop()
    x, w = _inputs(0, 300), {"w": np.cos(np.arange(300.0))[:, None]}
    first = backward(m, x, dL_dy=w)
    again = [backward(m, x, dL_dy=w) for _ in range(3)]
    for g in again:
        np.testing.assert_array_equal(g.inputs["r"], first.inputs["r"])
        for k, v in first.params.items():
            np.testing.assert_array_equal(g.params[k], v)
    assert not np.shares_memory(again[0].inputs["r"], again[1].inputs["r"])


def test_records_beyond_the_budget_are_not_kept(monkeypatch):
    monkeypatch.setattr(runtime, "RECORDS_KEPT_BYTES", 100)
    plan = compile(tanh_loop(), backend="numpy")
    simulate(plan, _inputs(0))
    assert runtime._state(plan).records == {}  # 60 steps x 8 bytes: over 100 in all


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_unit_delay_in_a_loop_shares_its_input_record_one_row_on(backend):
    """``y(k) = u(k-1)``, ``y(0) = x0``: one array of T + 1 rows holds both records (the
    delay's and its input's), forward and, for the reciprocal's unit advance, in
    reversed time; the numbers are those of the delay's definition."""
    if backend == "numba":
        pytest.importorskip("numba")
    from blockflow import Inport, Model, Outport
    from blocks import Function, Gain, Sum, UnitDelay

    m = Model("shift")
    r, y = m.add(Inport("r"), Outport("y"))
    s, f = m.add(Sum("+-", name="s"), Function("tanh", name="f"))
    g, z = m.add(Gain(0.8, name="g"), UnitDelay(0.7, name="z"))
    m.connect(r, s.u1)
    m.chain(s, f, g, y)
    m.chain(g, z, s.u2)
    x = np.cos(np.arange(40.0) / 3.0)[:, None] + 0.5  # non-zero at k = 0
    tr = simulate(m, {"r": x}, backend=backend)
    zy, gy = tr["z.y"][:, 0], tr["g.y"][:, 0]
    assert np.shares_memory(tr["z.y"], tr["g.y"])
    assert zy[0] == 0.7 and np.array_equal(zy[1:], gy[:-1])
    want, zk = [], 0.7  # the loop by hand
    for xk in x[:, 0]:
        yk = 0.8 * np.tanh(xk - zk)
        want.append(yk)
        zk = yk
    np.testing.assert_allclose(gy, want, rtol=1e-13)
    gr = backward(m, trace=tr, dL_dy={"y": np.ones_like(x)})
    du, dy = gr.deltas["z.u"][:, 0], gr.deltas["z.y"][:, 0]
    assert np.array_equal(du[:-1], dy[1:]) and du[-1] == 0.0  # the unit advance
    assert np.shares_memory(gr.deltas["z.u"], gr.deltas["z.y"])


def test_delays_sharing_a_source_or_in_a_chain_keep_their_own_first_samples():
    """Two delays of one signal with different initial values, and a delay of a delay:
    only one of each can share a record; every record keeps its definition."""
    from blockflow import Inport, Model, Outport
    from blocks import Gain, Sum, UnitDelay

    m = Model("fan")
    r, y = m.add(Inport("r"), Outport("y"))
    s, g = m.add(Sum("+++", name="s"), Gain(0.5, name="g"))
    z1, z2, z3 = (m.add(UnitDelay(x0, name=n)) for x0, n in ((0.3, "z1"), (-0.2, "z2"),
                                                              (0.9, "z3")))
    m.connect(r, s.u1)
    m.chain(s, g, y)
    m.chain(g, z1, s.u2)
    m.connect(g, z2)  # a second delay of g
    m.chain(z2, z3, s.u3)  # and a delay of that delay
    x = np.sin(np.arange(30.0)) + 1.0  # non-zero at k = 0
    tr = simulate(m, {"r": x})
    gy = tr["g.y"][:, 0]
    for name, x0, src in (("z1", 0.3, gy), ("z2", -0.2, gy), ("z3", 0.9, tr["z2.y"][:, 0])):
        zy = tr[f"{name}.y"][:, 0]
        assert zy[0] == x0 and np.array_equal(zy[1:], src[:-1]), name
    want, a, b, c = [], 0.3, -0.2, 0.9
    for xk in x:
        gk = 0.5 * (xk + a + c)
        want.append(gk)
        a, b, c = gk, gk, b
    np.testing.assert_allclose(gy, want, rtol=1e-13)
