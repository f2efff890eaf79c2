"""A plan's records are reused by its next run only when nothing holds them any more: a
Trace kept, or a view of one of its signals, keeps its numbers; a dropped one lends its
memory (zeroed) to the next run, which gives the numbers of a fresh one."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, backward, compile, simulate
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


@pytest.mark.parametrize("backend, batch", [("numpy", 1), ("numba", 1), ("numba", 3)])
def test_multirate_records_reused_unzeroed_give_the_numbers_of_fresh_ones(backend, batch,
                                                                        monkeypatch):
    """Records of blocks off the base rate are not zeroed before a run from step 0: a
    held output is zeroed before its first hit only, and a compiled loop writes the
    zeros between an impulse's hits itself (the loop of numbers at B=1, the array form
    at B=3).  Every reused record is poisoned with NaN first: any row a run reads before
    writing it would show."""
    if backend == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)  # the reciprocal's loops too
    m = motor_loop()
    T = 301  # (not a multiple of the PID's 5 steps: the last interval is short)
    r = np.random.default_rng(0).standard_normal((T, batch)) + 1.0
    w = {"w": np.cos(np.arange(T))[:, None] * np.ones((1, batch))}

    def run():
        tr = simulate(m, {"r": r})
        g = backward(m, trace=tr, dL_dy=w)
        return {s: tr[s].copy() for s in tr.names()}, g.inputs["r"].copy(), \
            {k: np.array(v) for k, v in g.params.items()}

    first = run()
    gc.collect()
    for st in list(runtime._PLANS.values()):  # the forward's and the reciprocal's pools
        for a in st.records.values():
            a.fill(np.nan)
    again = run()
    for s, y in first[0].items():
        np.testing.assert_array_equal(again[0][s], y, err_msg=s)
    np.testing.assert_array_equal(again[1], first[1])
    for k, v in first[2].items():
        np.testing.assert_array_equal(again[2][k], v, err_msg=k)
    assert np.isfinite(first[1]).all()


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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_outputs_written_into_their_rows_are_the_bits_of_the_allocating_forms(
        dtype, monkeypatch):
    """The numpy path's ``np_into`` forms (matrix Gain, Sum, tanh, delay, junctions and
    the reciprocal rules) against the same loop with every op allocating its result:
    equal to the bit in float64.  In float32 a value written into its row is rounded to
    its signal's type at once, as the types say and the compiled loops do, where an
    allocated result of a kernel that mixes precisions (a Sum's float64 signs) kept
    float64 until the next step: equal to float32 rounding."""
    from blockflow.backends import execute

    def elman():
        return _elman(3, "+-", np.random.default_rng(5), 0.4).astype(dtype)

    X = np.random.default_rng(0).standard_normal((50, 5, 3)).astype(dtype)
    D = np.ones((50, 5, 1), dtype)
    runs = []
    for allow in (True, False):
        if not allow:
            monkeypatch.setattr(execute, "writes_into", lambda op, st, k=None: False)
        m = elman()
        tr = simulate(m, {"x": X}, backend="numpy")
        if allow:
            assert "f0(x0, " in next(s for s in tr.plan.segments if s.loop).loop.source
        g = backward(m, trace=tr, dL_dy={"y": D})
        runs.append((tr, g))
    (a, ga), (b, gb) = runs
    tol = 0.0 if dtype == np.float64 else 1e-5
    for n in a.names():
        np.testing.assert_array_equal(a[n], b[n], err_msg=n)  # (the forward: exact)
    for n in ga.deltas.names():
        np.testing.assert_allclose(ga.deltas[n], gb.deltas[n], rtol=tol, atol=tol,
                                   err_msg=n)
        assert ga.deltas[n].dtype == dtype
    for k in ga.params:
        np.testing.assert_allclose(ga.params[k], gb.params[k], rtol=tol, atol=tol,
                                   err_msg=k)


def _elman(n_in: int, signs: str, rng, scale: float) -> Model:
    """An Elman network from elementary blocks: ``Dense`` on the input, a matrix ``Gain``
    on the state, ``Sum(signs)``, ``tanh``, ``UnitDelay``, a ``Dense`` readout."""
    from blocks import Dense, Function, Gain, Sum, UnitDelay

    m = Model("elman")
    x, y = m.add(Inport("x", shape=(n_in,)), Outport("y"))
    wx = m.add(Dense(rng.standard_normal((4, n_in)), rng.standard_normal(4), name="Wx"))
    wh = m.add(Gain(scale * rng.standard_normal((4, 4)), name="Wh"))
    s, f = m.add(Sum(signs, name="s"), Function("tanh", name="f"))
    z = m.add(UnitDelay(np.full(4, 0.3), name="z"))
    m.chain(x, wx, s.u1)
    m.chain(wh, s.u2)
    m.chain(s, f, z, wh)
    m.chain(f, m.add(Dense(rng.standard_normal((1, 4)), name="out")), y)
    return m


def _rnn(H: int = 6) -> Model:
    from blocks import Dense, RNNCell, UnitDelay

    m = Model("rnn")
    x, y = m.add(Inport("x", shape=(3,)), Outport("y"))
    cell = m.add(RNNCell.random(3, H, name="cell", seed=1))
    z, out = m.add(UnitDelay(np.full(H, 0.2), name="h"), Dense.random(H, 1, name="out", seed=2))
    m.connect(x, cell.x)
    m.chain(cell, z, cell.h_prev)
    m.chain(cell, out, y)
    return m


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("case", ["rnn", "motor", "ring", "window"])
def test_a_sweep_keeping_only_the_deltas_its_gradients_need_gives_the_same_gradients(
        backend, case, monkeypatch):
    """``keep_deltas=False``: a loop's deltas that neither a parameter gradient, an input
    gradient nor a later op reads get one row for all steps; the gradients are those of
    the sweep that keeps them all, to the bit (loops of numbers at B=1, array loops at
    B=3, interpreted loops), and asking for a dropped delta says how to keep it."""
    from blockflow.backends import loops
    from blockflow.errors import SimulationError
    from tests.test_interp import ring

    if backend == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
    monkeypatch.setattr(loops, "INTERP_MIN_OPS", 4)  # the ring's loop: interpreted
    T = 40
    rng = np.random.default_rng(5)
    for B in (1, 3):
        m, x = {"rnn": (_rnn(), {"x": rng.standard_normal((T, B, 3))}),
                "motor": (motor_loop(), {"r": 1.0 + rng.standard_normal((T, B))}),
                "ring": (ring(7), {"u": rng.standard_normal((T, B, 2))}),
                "window": (_rnn(), {"x": rng.standard_normal((T, B, 3))})}[case]
        tr = simulate(m, x)
        w = {n: np.cos(np.arange(T)).reshape(T, 1, *([1] * (a.ndim - 2))) * np.ones_like(a)
             for n, a in tr.outputs().items()}
        kw = {"window": 15} if case == "window" else {}
        full = backward(m, trace=tr, dL_dy=w, **kw)
        lean = backward(m, trace=tr, dL_dy=w, keep_deltas=False, **kw)
        for k, v in full.params.items():
            np.testing.assert_array_equal(lean.params[k], v, err_msg=k)
        for k, v in full.inputs.items():
            np.testing.assert_array_equal(lean.inputs[k], v, err_msg=k)
        dropped = [n for n in lean.deltas.names()
                   if lean.deltas.bufs[lean.deltas.slot(n)] is None
                   and full.deltas.bufs[full.deltas.slot(n)] is not None]
        assert dropped, case  # every case has a loop signal nothing reads afterwards
        with pytest.raises(SimulationError, match="keep_deltas=True"):
            lean.deltas[dropped[0]]
        kept = sum(a.nbytes for a in lean.deltas.bufs if a is not None)
        assert kept < sum(a.nbytes for a in full.deltas.bufs if a is not None)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_delay_whose_input_is_not_kept_still_outputs_its_own_state(backend):
    """A run that keeps only some signals gives a loop's other outputs one row for all
    steps, except a stateful op's inputs: a delay's state on the numpy path is its
    input's row itself, and a read of the delay's output after that row is written
    again in the same step (``h`` after ``g``, one loop in ``mode="step"``) must see the
    state, not the new input."""
    from blocks import Constant, Gain, Sum, UnitDelay

    if backend == "numba":
        pytest.importorskip("numba")
    m = Model("m")
    r, c = m.add(Inport("r"), Constant(0.25, name="c"))
    s, g = m.add(Sum("+++", name="s"), Gain(0.5, name="g"))
    z, h = m.add(UnitDelay(1.0, name="z"), Gain(3.0, name="h"))
    m.connect(r, s.u1)
    m.connect(c, s.u2)
    m.connect(z, s.u3)
    m.chain(s, g, z)
    m.chain(z, h, m.add(Outport("y")))
    x = {"r": np.arange(1.0, 9.0)}  # non-zero at k = 0
    want, state = [], 1.0
    for rk in x["r"]:
        want.append(3.0 * state)
        state = 0.5 * (rk + 0.25 + state)
    for mode in ("auto", "step"):
        for signals in (None, "y"):
            got = simulate(m, x, mode=mode, backend=backend, signals=signals)["y"][:, 0]
            np.testing.assert_array_equal(got, want, err_msg=f"{mode} {signals}")


def test_lean_gradients_through_an_integrator_equal_the_full_sweep(monkeypatch):
    """The cart-pole's rk4 stages, on the numpy path: with ``keep_deltas=False`` the
    gradients are those of the sweep keeping every delta, to the bit (a junction there
    reads a state's output directly, the case of the test above in reversed time)."""
    from models.cart_pole import cart_pole, pushes

    monkeypatch.setenv("BLOCKFLOW_BACKEND", "numpy")
    m = cart_pole(hidden=3)
    tr = simulate(m, {"push": pushes(30, [20.0, -35.0])})
    dl = {k: np.cos(np.arange(30.0))[:, None] * np.ones_like(tr[k]) for k in tr.plan.outports}
    full = backward(m, trace=tr, dL_dy=dl)
    lean = backward(m, trace=tr, dL_dy=dl, keep_deltas=False)
    for k, v in full.params.items():
        np.testing.assert_array_equal(lean.params[k], v, err_msg=k)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_lean_gradients_run_the_forward_recording_only_what_the_sweep_reads(
        backend, monkeypatch):
    """``keep_deltas=False`` (``grad``, ``train``) runs the forward model recording the
    signals the sweep reads (the reciprocal's trace reads, the inputs and recorded
    outputs of blocks with parameters, the Outports): an Elman network's state gain
    output is read by nobody, and gets one row; the gradients are the full sweep's, to
    the bit (B=1: loops of numbers; B=3: array loops)."""
    from blockflow.gradient import sweep as sweep_module
    from blockflow.gradient.gradients import reciprocal_plan, swept_signals

    if backend == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
    rng = np.random.default_rng(3)
    m = _elman(2, "++", rng, 0.5)
    need = swept_signals(compile(m), reciprocal_plan(m))
    assert ("f", "u") in need and ("Wh", "u") in need and ("Wh", "y") not in need
    runs = []
    monkeypatch.setattr(sweep_module, "simulate",
                        lambda *a, **kw: runs.append(simulate(*a, **kw)) or runs[-1])
    for B in (1, 3):
        X, D = rng.standard_normal((30, B, 2)), rng.standard_normal((30, B, 1))
        full = backward(m, {"x": X}, targets=D)
        lean = backward(m, {"x": X}, targets=D, keep_deltas=False)
        for k, v in full.params.items():
            np.testing.assert_array_equal(lean.params[k], v, err_msg=k)
        assert "Wh.y" in runs[-2].recorded() and "Wh.y" not in runs[-1].recorded()
