"""Loops of numbers: a feedback loop of single float64 signals run with batch 1 keeps its
signals and states in local variables (blockflow.backends.scalar).  Its numbers are the
array form's to the bit, its states hand over between runs, and where it cannot run the
array form does."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("numba")

from blockflow import Inport, Model, Outport, Simulator, compile, simulate  # noqa: E402
from blockflow.backends.runtime import loop_state  # noqa: E402
from blockflow.core.kernel import Kernel, kernel  # noqa: E402
from blocks import (  # noqa: E402
    DiscreteFilter,
    DiscreteTransferFcn,
    Function,
    Gain,
    Product,
    Saturation,
    Sum,
    UnitDelay,
)
from blocks.filters import filter_update  # noqa: E402
from models.closed_loop import tanh_loop  # noqa: E402
from models.dc_motor import motor_loop  # noqa: E402
from models.pid import pid_loop  # noqa: E402


def zoo() -> Model:
    """Every block with a step on numbers in one loop: filters with 0, 1 and 3 states
    (one with an initial state), a delay starting off zero, a product, a saturation."""
    m = Model("zoo")
    r, y = m.add(Inport("r"), Outport("y"))
    e = m.add(Sum("+-+", name="e"))
    g = m.add(Gain(0.8, name="g"))
    f0 = m.add(DiscreteFilter([0.5], [1.0], name="f0"))  # no state: a gain
    f3 = m.add(DiscreteFilter([0.0, 0.3, 0.1, 0.05], [1.0, -0.4, 0.1, 0.02],
                              x0=[0.2, -0.1, 0.05], name="f3"))
    p = m.add(Product("*/", name="p"))
    sat = m.add(Saturation(-1.5, 1.5, name="sat"))
    th = m.add(Function("tanh", name="th"))
    z = m.add(UnitDelay(0.7, name="z"))
    d1 = m.add(DiscreteTransferFcn([0.5], [1.0, -0.9], name="d1"))
    m.connect(r, e.u1)
    m.chain(e, g, f0, sat, th, f3, y)
    m.chain(f3, z, e.u2)
    m.chain(th, d1, p.u1)
    m.connect(m.add(Sum("++", name="two")), p.u2)
    m.connect(r, m.blocks["two"].u1)
    m.connect(z, m.blocks["two"].u2)
    m.connect(p, e.u3)
    return m


MODELS = {"pid": pid_loop, "tanh": tanh_loop, "zoo": zoo, "dc_motor": motor_loop}
OUT = {"dc_motor": "w"}  # (the others: y)


def loop_of(plan):
    return next(s for s in plan.segments if s.loop is not None)


def inputs(T: int, B: int, seed: int = 0) -> dict:
    r = np.random.default_rng(seed).standard_normal((T, 1))
    r[0] = 1.0  # non-zero at k = 0: the first sample must not be lost or doubled
    r[:, 0] += 2.0  # (the zoo divides by r + z: kept away from zero)
    return {"r": np.repeat(r, B, axis=1)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_loop_of_numbers_gives_the_array_forms_numbers_to_the_bit(name):
    m = MODELS[name]()
    plan = compile(m, backend="numba")
    assert "loop of numbers" in plan.describe()
    one = simulate(plan, inputs(300, 1))
    assert loop_state(plan, loop_of(plan)).scalar is not None  # it ran as numbers
    two = simulate(plan, inputs(300, 2))  # batch 2: the array form
    ref = simulate(m, inputs(300, 1), backend="numpy")
    for s in one.names():
        np.testing.assert_array_equal(one[s][:, 0], two[s][:, 0])
        np.testing.assert_allclose(one[s], ref[s], rtol=1e-12, atol=1e-13)
    for path, x in one.final_state.items():  # the states, packed and unpacked
        np.testing.assert_allclose(_flat(x), _flat(ref.final_state[path]), rtol=1e-12)


def _flat(x) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(v, float))
                           for v in (x if isinstance(x, tuple) else (x,))])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_run_continued_in_chunks_is_the_whole_run(name):
    """The states go out of the loop of numbers and back in (packed, unpacked) between
    chunks: the same numbers as one run."""
    m = MODELS[name]()
    x = inputs(240, 1)
    whole = simulate(m, x, backend="numba")
    sim = Simulator(m, backend="numba")
    parts = [sim.run({"r": x["r"][a:b]}) for a, b in ((0, 1), (1, 90), (90, 240))]
    for s in whole.names():  # (the DC motor's controller at 1/5 the rate: held across)
        np.testing.assert_array_equal(np.concatenate([p[s] for p in parts]), whole[s])


def test_what_is_not_a_loop_of_numbers_runs_in_its_array_form():
    """float32 signals, vector signals: the array form (and the same numbers)."""
    m = tanh_loop().astype(np.float32)
    p32 = compile(m, backend="numba")
    assert "loop of numbers" not in p32.describe()
    out = simulate(p32, {"r": inputs(50, 1)["r"].astype(np.float32)})
    assert out["y"].dtype == np.float32 and loop_state(p32, loop_of(p32)).scalar is None

    v = Model("vector")
    r, y = v.add(Inport("r", shape=(2,)), Outport("y"))
    s, g, z = v.add(Sum("+-", name="s"), Gain(0.5, name="g"), UnitDelay(np.zeros(2), name="z"))
    v.connect(r, s.u1)
    v.chain(s, g, y)
    v.chain(g, z, s.u2)
    pv = compile(v, backend="numba")
    assert "loop of numbers" not in pv.describe()
    out = simulate(pv, {"r": np.ones((20, 1, 2))})
    assert loop_state(pv, loop_of(pv)).scalar is None
    np.testing.assert_allclose(out["y"][-1, 0], [1 / 3, 1 / 3], rtol=1e-6)


class ShiftedFilter(DiscreteFilter):
    """A subclass that changes the kernel (adds 1 to the output) but not the step on
    numbers it inherits: the inherited one no longer holds."""

    def kernel(self):
        return Kernel(_plus_one, filter_update, (self.feedthrough,))

    def output(self, x, u):
        return _plus_one(self.feedthrough, x, u)


@kernel
def _plus_one(feed, x, u):
    return x[0][0] + 1.0


def test_a_subclass_that_changes_the_kernel_does_not_inherit_the_numbers():
    m = Model("shifted")
    r, y = m.add(Inport("r"), Outport("y"))
    s, f = m.add(Sum("+-", name="s"), ShiftedFilter([0.0, 0.5], [1.0, -0.5], name="f"))
    m.connect(r, s.u1)
    m.chain(s, f, y)
    m.connect(f, s.u2)
    plan = compile(m, backend="numba")
    got = simulate(plan, {"r": np.ones(30)})
    assert loop_state(plan, loop_of(plan)).scalar is None
    np.testing.assert_allclose(got["y"], simulate(m, {"r": np.ones(30)}, backend="numpy")["y"],
                               rtol=1e-12)
    assert got["y"][0, 0] == 1.0  # x[0] = 0, plus one


@kernel(numbers=True)  # a broken promise: it reads an array's attribute
def _twice_claimed(u):
    return u * u.size


class Claimed(Gain):
    def kernel(self):
        return Kernel(_twice_claimed)

    def scalar_kernel(self):
        from blockflow.core.kernel import scalar_of

        return scalar_of(self.kernel())

    def output(self, x, u):
        return u * u.size


def test_a_step_on_numbers_numba_refuses_falls_back_to_the_array_form(caplog):
    m = Model("claimed")
    r, y = m.add(Inport("r"), Outport("y"))
    s, c, z = m.add(Sum("+-", name="s"), Claimed(1.0, name="c"), UnitDelay(0.0, name="z"))
    m.connect(r, s.u1)
    m.chain(s, c, y)
    m.chain(c, z, s.u2)
    plan = compile(m, backend="numba")
    with caplog.at_level(logging.WARNING):
        got = simulate(plan, {"r": np.ones(10)})
    st = loop_state(plan, loop_of(plan))
    assert st.scalar is None and "loop of numbers" in st.why_not_scalar
    assert "runs in its array form" in caplog.text
    np.testing.assert_allclose(got["y"], simulate(m, {"r": np.ones(10)}, backend="numpy")["y"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_reciprocal_loop_runs_as_numbers_with_the_array_forms_gradient(name, monkeypatch):
    """The backward sweep of a batch of one is a loop of numbers too (branching points,
    J^T of each block, the filters run anticausally): the same deltas as the array form
    to the bit, and the numpy path's gradient."""
    from blockflow import backward
    from blockflow.gradient.gradients import reciprocal_plan

    m = MODELS[name]()
    x1, x2 = inputs(200, 1), inputs(200, 2)
    w = np.cos(np.arange(200.0))[:, None]
    monkeypatch.setenv("BLOCKFLOW_BACKEND", "numba")
    y = OUT.get(name, "y")
    g1 = backward(m, x1, dL_dy={y: w})
    back = reciprocal_plan(m)
    assert loop_state(back, loop_of(back)).scalar is not None
    g2 = backward(m, x2, dL_dy={y: np.repeat(w, 2, axis=1)})
    monkeypatch.setenv("BLOCKFLOW_BACKEND", "numpy")
    ref = backward(m, x1, dL_dy={y: w})
    np.testing.assert_array_equal(g1.inputs["r"][:, 0], g2.inputs["r"][:, 0])
    np.testing.assert_allclose(g1.inputs["r"], ref.inputs["r"], rtol=1e-11, atol=1e-13)
    for k in ref.params:
        np.testing.assert_allclose(2 * g1.params[k], g2.params[k], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(g1.params[k], ref.params[k], rtol=1e-11, atol=1e-13)


def _random_block(rng, kind: int, i: int, filt):
    if kind == 0:
        return Gain(rng.uniform(-1.5, 1.5), name=f"g{i}")
    if kind == 1:
        return Function(["tanh", "sin", "sigmoid"][rng.integers(0, 3)], name=f"f{i}")
    if kind == 2:
        return Saturation(-0.7, 0.9, name=f"q{i}")
    if kind == 3:
        return filt(i)
    if kind == 4:
        return UnitDelay(rng.normal(), name=f"z{i}")
    return Product("**", name=f"p{i}")


def random_loop(seed: int) -> Model:
    """A feedback loop drawn at random: a chain of gains, functions, saturations,
    products, filters (random order, initial state) and delays behind a sum, closed by a
    delay or a strictly proper filter; for odd seeds the middle of the chain runs at a
    third of the rate (Downsample in, ZeroOrderHold out)."""
    from blocks import Downsample, ZeroOrderHold

    rng = np.random.default_rng(seed)
    m = Model(f"random{seed}")
    r, y = m.add(Inport("r"), Outport("y"))
    s = m.add(Sum("+-", name="s"))
    m.connect(r, s.u1)
    prev, n = s, int(rng.integers(4, 9))
    slow = (n // 3, 2 * n // 3) if seed % 2 else (-1, -1)

    def filt(i):
        order = int(rng.integers(0, 4))
        a = np.poly(rng.uniform(-0.8, 0.8, order)) if order else np.array([1.0])
        b = rng.normal(size=order + 1)
        return DiscreteFilter(b, a, x0=rng.normal(size=order) if order else 0.0,
                              name=f"h{i}")

    for i in range(n):
        if i == slow[0]:
            down = m.add(Downsample(3, name="down"))
            m.connect(prev, down)
            prev = down
        kind = int(rng.integers(0, 6))
        b = _random_block(rng, kind, i, filt)
        m.add(b)
        if kind == 5:  # u tanh(u): grows no faster than u
            t = m.add(Function("tanh", name=f"t{i}"))
            m.connect(prev, t)
            m.connect(prev, b.u1)
            m.connect(t, b.u2)
        else:
            m.connect(prev, b)
        prev = b
        if i == slow[1]:
            hold = m.add(ZeroOrderHold(3, name="hold"))
            m.connect(prev, hold)
            prev = hold
    m.connect(prev, y)
    back = m.add(UnitDelay(0.3, name="back") if seed % 3 else
                 DiscreteTransferFcn([0.4], [1.0, -0.5], name="back"))
    m.connect(prev, back)
    m.connect(back, s.u2)
    return m


@pytest.mark.parametrize("seed", range(4))
def test_random_loops_run_as_numbers_with_the_array_forms_numbers(seed, monkeypatch):
    """Loops drawn at random (half of them multirate), forward and backward: the loop of
    numbers (batch 1) against the array form (batch 2) to the bit, and the numpy path.
    (Seeds 4-39 passed once too; four keep the suite's time.)"""
    from blockflow import backward

    m = random_loop(seed)
    x1, x2 = inputs(45, 1, seed), inputs(45, 2, seed)
    monkeypatch.setenv("BLOCKFLOW_BACKEND", "numba")
    plan = compile(m)
    one = simulate(plan, x1)
    assert loop_state(plan, loop_of(plan)).scalar is not None
    two = simulate(plan, x2)
    w = np.sin(np.arange(45.0))[:, None]
    g1 = backward(m, trace=one, dL_dy={"y": w})
    g2 = backward(m, trace=two, dL_dy={"y": np.repeat(w, 2, axis=1)})
    monkeypatch.setenv("BLOCKFLOW_BACKEND", "numpy")
    ref = simulate(m, x1)
    gref = backward(m, trace=ref, dL_dy={"y": w})
    for s in one.names():
        np.testing.assert_array_equal(one[s][:, 0], two[s][:, 0], err_msg=s)
        np.testing.assert_allclose(one[s], ref[s], rtol=1e-10, atol=1e-12, err_msg=s)
    np.testing.assert_array_equal(g1.inputs["r"][:, 0], g2.inputs["r"][:, 0])
    np.testing.assert_allclose(g1.inputs["r"], gref.inputs["r"], rtol=1e-9, atol=1e-11)
    for k, v in gref.params.items():
        np.testing.assert_allclose(2 * g1.params[k], g2.params[k], rtol=1e-11, atol=1e-12,
                                   err_msg=k)
        np.testing.assert_allclose(g1.params[k], v, rtol=1e-9, atol=1e-11, err_msg=k)


def test_systems_of_no_states_run_and_differentiate_on_every_path(monkeypatch):
    """A static transfer function (no states) and a state-space block of none, in a
    loop: every path gives y(0) = 2 (1 - 0.4) and the same gradients (hostile input:
    ``reshape(-1, 0)`` cannot size their empty state)."""
    from blockflow import backward
    from blocks import StateSpace, TransferFcn

    m = Model("static", dt=0.1)
    r, y = m.add(Inport("r"), Outport("y"))
    s, z = m.add(Sum("+-", name="s"), UnitDelay(0.4, name="z"))
    tf = m.add(TransferFcn([2.0], [1.0], name="tf"))
    m.connect(r, s.u1)
    m.chain(s, tf, y)
    m.chain(tf, z, s.u2)
    v = Model("ss0")
    rv, yv = v.add(Inport("r", shape=(1,)), Outport("y"))
    sv, zv = v.add(Sum("+-", name="s"), UnitDelay(np.array([0.4]), name="z"))
    ss = v.add(StateSpace(np.zeros((0, 0)), np.zeros((0, 1)), np.zeros((1, 0)), [[2.0]],
                          name="ss"))
    v.connect(rv, sv.u1)
    v.chain(sv, ss, yv)
    v.chain(ss, zv, sv.u2)
    for model, shape in ((m, ()), (v, (1,))):
        got = []
        for backend in ("numpy", "numba"):
            monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
            for B in (1, 2):
                x = {"r": np.ones((12, B, *shape))}
                g = backward(model, x, dL_dy={"y": np.ones((12, B, *shape))})
                got.append((simulate(model, x)["y"][:, 0], g.inputs["r"][:, 0]))
        assert got[0][0].ravel()[0] == pytest.approx(1.2)
        for yy, dr in got[1:]:
            np.testing.assert_allclose(yy, got[0][0], rtol=1e-12)
            np.testing.assert_allclose(dr, got[0][1], rtol=1e-12)
