"""Sample times and multirate models: forward runs against hand-written index arithmetic
(both execution paths, loops and whole sequences), gradients through rate transitions
and slow loops against finite differences and the dot-product test, and the wiring
errors."""

import numpy as np
import pytest

from blockflow import (
    AlgebraicLoopError,
    Inport,
    Model,
    Outport,
    SimulationError,
    backward,
    compile,
    simulate,
)
from blockflow.core.rates import RateError
from blockflow.gradient.schedules import Chunked
from blockflow.io.modelfile import dumps, loads
from blocks import (
    DiscreteFilter,
    DiscreteTransferFcn,
    Downsample,
    Function,
    Gain,
    RateTransition,
    Sine,
    Sum,
    TransferFcn,
    UnitDelay,
    Upsample,
    ZeroOrderHold,
)

from .helpers import dot_check, fd_check

DT = 0.01


def slow_loop(n=4, offset=1):
    """A plant at the base rate under a proportional controller every n steps."""
    m = Model("mr", dt=DT)
    r, e, ds, kc, zoh, plant, y = m.add(
        Inport("r"), Sum("+-", name="e"), Downsample(n, offset, name="ds"),
        Gain(2.0, name="kc"), ZeroOrderHold(n, name="zoh"),
        DiscreteTransferFcn([0.1], [1.0, -0.9], name="plant"), Outport("y"))
    m.connect(r, e.u1)
    m.chain(e, ds, kc, zoh, plant, y)
    m.connect(plant, e.u2)
    return m


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_slow_controller_in_a_fast_loop_matches_index_arithmetic(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    T, n, o = 23, 4, 1
    R = np.ones((T, 1))
    R[0] = 2.0  # non-zero at k = 0
    tr = simulate(slow_loop(n, o), {"r": R}, backend=backend)
    y_prev, u_held, ys, us = 0.0, 0.0, [], []
    for k in range(T):
        y = y_prev
        if k >= o and (k - o) % n == 0:
            u_held = 2.0 * (R[k, 0] - y)  # sampled on the controller's hits, then held
        ys.append(y)
        us.append(u_held)
        y_prev = 0.9 * y + 0.1 * u_held
    np.testing.assert_allclose(tr["y"][:, 0], ys, atol=1e-15)
    np.testing.assert_allclose(tr["zoh"][:, 0], us, atol=1e-15)


def test_open_chain_at_a_slow_rate_runs_as_whole_sequences():
    m = Model("open", dt=DT)
    u, ds, f, up, zoh, y1, y2 = m.add(
        Inport("u"), Downsample(3, name="ds"),
        DiscreteFilter([1.0], [1.0, -0.5], name="f"), Upsample(3, name="up"),
        ZeroOrderHold(3, name="zoh"), Outport("y1"), Outport("y2"))
    m.chain(u, ds, f, up, y1)
    m.chain(f, zoh, y2)
    plan = compile(m)
    assert not plan.loops and plan.rates["f"][0].n == 3
    U = np.arange(1.0, 11.0)[:, None]
    tr = simulate(m, {"u": U})
    slow = [1.0, 4.0, 7.0, 10.0]  # u at k = 0, 3, 6, 9
    fs = []
    for v in slow:
        fs.append(v + 0.5 * (fs[-1] if fs else 0.0))
    held = np.repeat(fs, 3)[:10]
    zeros = np.zeros(10)
    zeros[::3] = fs
    np.testing.assert_allclose(tr["y2"][:, 0], held)
    np.testing.assert_allclose(tr["y1"][:, 0], zeros)
    np.testing.assert_allclose(tr["f"][:, 0], held)  # the slow signal as a scope shows it


def multirate_models():
    """Models whose gradients are checked: a slow loop, a slow nonlinear stateful chain
    with zero insertion, and a declared sample time with a rate transition."""
    yield slow_loop()
    m = Model("chain", dt=DT)
    u, ds, th, f, up, g, y = m.add(
        Inport("r"), Downsample(2, 1, name="ds"), Function("tanh", name="th"),
        DiscreteFilter([0.5, 0.2], [1.0, -0.3], name="f"), Upsample(2, name="up"),
        Gain(1.5, name="g"), Outport("y"))
    m.chain(u, ds, th, f, up, g, y)
    yield m
    m = Model("declared", dt=DT)
    r, e, rt, d, k, back, y = m.add(
        Inport("r"), Sum("+-", name="e"), RateTransition(0.03, name="rt"),
        UnitDelay(name="d", sample_time=0.03), Gain(0.7, name="k", sample_time=0.03),
        RateTransition(DT, name="back"), Outport("y"))
    m.connect(r, e.u1)
    m.chain(e, rt, d, k, back, y)
    m.connect(back, e.u2)
    yield m


@pytest.mark.parametrize("index", range(3))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_gradients_through_rate_transitions_are_exact(index, backend, monkeypatch):
    if backend == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
    m = list(multirate_models())[index]
    R = np.random.default_rng(index).standard_normal((17, 2))
    fd_check(m, {"r": R}, rtol=1e-6)
    dot_check(m, {"r": R})


def test_a_continuous_plant_is_discretised_at_the_rate_it_runs_at():
    m = Model("slowplant", dt=DT)
    u, ds, p, zoh, y = m.add(Inport("u"), Downsample(5, name="ds"),
                             TransferFcn([1.0], [1.0, 1.0], name="p"),
                             ZeroOrderHold(5, name="zoh"), Outport("y"))
    m.chain(u, ds, p, zoh, y)
    compile(m)
    assert m.block("p").period() == pytest.approx(0.05)
    np.testing.assert_allclose(m.block("p").matrices()[0], [[np.exp(-0.05)]])


def test_sources_in_seconds_and_the_time_axis():
    m = Model("sine", dt=0.001)
    s, y = m.add(Sine(freq_hz=50.0, name="s"), Outport("y"))
    m.chain(s, y)
    tr = simulate(m, steps=40)
    np.testing.assert_allclose(tr.time, np.arange(40) * 0.001)
    np.testing.assert_allclose(tr["y"][:, 0], np.sin(2 * np.pi * 50 * tr.time), atol=1e-12)
    m = Model("slow sine", dt=0.001)
    s, y = m.add(Sine(freq_hz=5.0, name="s", sample_time=(0.004, 0.001)), Outport("y"))
    m.chain(s, y)
    tr = simulate(m, steps=10)
    t_hits = np.array([0.001, 0.005, 0.009])
    expect = np.r_[0.0, np.repeat(np.sin(2 * np.pi * 5 * t_hits), 4)][:10]
    np.testing.assert_allclose(tr["y"][:, 0], expect, atol=1e-12)


def test_rates_are_saved_and_described():
    m = list(multirate_models())[2]
    m2 = loads(dumps(m))
    R = np.random.default_rng(7).standard_normal((12, 1))
    np.testing.assert_array_equal(simulate(m, {"r": R})["y"], simulate(m2, {"r": R})["y"])
    assert "d [Ts=0.03]" in compile(m2).describe()


def test_two_rates_wired_directly_is_an_error_naming_both_ends():
    m = Model("bad", dt=DT)
    r, ds, s, y = m.add(Inport("r"), Downsample(2, name="ds"), Sum("++", name="s"),
                        Outport("y"))
    m.connect(r, s.u1)
    m.chain(r, ds)
    m.connect(ds, s.u2)
    m.connect(s, y)
    with pytest.raises(RateError, match=r"ds\.y \(Ts=0\.02\) is wired directly to s\.u2.*"
                                        r"Ts=0\.01.*rate transition"):
        compile(m)


@pytest.mark.parametrize("build, words", [
    (lambda m, r: m.add(Gain(1.0, name="g", sample_time=0.015)), "not a whole multiple"),
    (lambda m, r: m.add(Gain(1.0, name="g", sample_time=(0.02, 0.025))), "offset"),
    (lambda m, r: m.add(ZeroOrderHold(3, name="g")), "non-integer rate ratio"),
])
def test_bad_sample_times_are_errors(build, words):
    m = Model("bad", dt=DT)
    r, y = m.add(Inport("r"), Outport("y"))
    g = build(m, r)
    if isinstance(g, ZeroOrderHold):
        ds = m.add(Downsample(2, name="ds"))
        m.chain(r, ds, g, y)
    else:
        m.chain(r, g, y)
    with pytest.raises(RateError, match=words):
        compile(m)


def test_a_rate_transition_in_an_algebraic_loop_is_refused():
    m = Model("alg", dt=DT)
    r, e, ds, zoh, y = m.add(Inport("r"), Sum("+-", name="e"), Downsample(2, name="ds"),
                             ZeroOrderHold(2, name="zoh"), Outport("y"))
    m.connect(r, e.u1)
    m.chain(e, ds, zoh, y)
    m.connect(zoh, e.u2)
    with pytest.raises(AlgebraicLoopError, match="ds"):
        compile(m)


def test_truncated_schedules_refuse_multirate_models():
    m = slow_loop()
    with pytest.raises(SimulationError, match="Full schedule"):
        backward(m, {"r": np.ones((8, 1))}, dL_dy={"y": np.ones((8, 1))},
                 schedule=Chunked(4))
