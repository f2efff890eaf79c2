"""Linearisation (exact, from the tangent model) and python-control interop: a linear
model's linearisation is the model, a nonlinear one's matches finite differences of its
one-step map, and systems round-trip through from_control / to_control."""

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, ParameterError, SimulationError, simulate
from blockflow.control.lti import from_control, linearize, to_control
from blocks import (
    ContinuousStateSpace,
    Delay,
    DiscreteFilter,
    DiscreteTransferFcn,
    Function,
    Gain,
    StateSpace,
    Sum,
    TransferFcn,
    UnitDelay,
)

control = pytest.importorskip("control")


def chain_model(dt=0.05):
    m = Model("chain", dt=dt)
    u, p, f, z, y = m.add(Inport("u"), TransferFcn([2.0, 1.0], [1.0, 3.0, 2.0], name="p"),
                          DiscreteFilter([0.5, 0.2], [1.0, -0.3], name="f"),
                          Delay(2, name="z"), Outport("y"))
    m.chain(u, p, f, z, y)
    return m


def test_linearisation_of_a_linear_model_is_the_model():
    m = chain_model()
    lin = linearize(m)
    assert lin.states == ["p[0]", "p[1]", "f", "z[0]", "z[1]"]
    assert lin.dt == 0.05 and lin.inputs == ["u"] and lin.outputs == ["y"]
    U = np.random.default_rng(0).standard_normal(60)
    U[0] = 1.0
    y = simulate(m, {"u": U[:, None]})["y"][:, 0]
    ref = control.forced_response(lin.to_control(), T=np.arange(60) * 0.05, U=U).outputs
    np.testing.assert_allclose(y, ref, atol=1e-12)
    poles = np.sort_complex(lin.to_control().poles())
    np.testing.assert_allclose(np.sort(np.abs(poles)),
                               np.sort([0, 0, 0.3, np.exp(-0.05), np.exp(-0.1)]), atol=1e-12)


def tanh_loop(x0):
    # x1(k+1) = tanh(0.8 x1 + 0.5 x2 + u), x2(k+1) = x1, y = 2 x1 + u
    m = Model("nl")
    u, s, g1, g2, th, d1, d2, gy, sy, y = m.add(
        Inport("u"), Sum("+++", name="s"), Gain(0.8, name="g1"), Gain(0.5, name="g2"),
        Function("tanh", name="th"), UnitDelay(x0[0], train_x0=True, name="d1"),
        UnitDelay(x0[1], train_x0=True, name="d2"), Gain(2.0, name="gy"),
        Sum("++", name="sy"), Outport("y"))
    m.connect(u, s.u1)
    m.connect(d1, g1)
    m.connect(g1, s.u2)
    m.connect(d2, g2)
    m.connect(g2, s.u3)
    m.chain(s, th, d1)
    m.connect(d1, d2)
    m.connect(d1, gy)
    m.connect(gy, sy.u1)
    m.connect(u, sy.u2)
    m.connect(sy, y)
    return m


def test_linearisation_of_a_nonlinear_model_matches_finite_differences():
    x0, u0 = np.array([0.4, -0.7]), 0.3
    m = tanh_loop(x0)
    A, B, C, D = linearize(m, {"u": np.full((2, 1), u0)})

    def step(x, u):  # one step of the model from state x: (x(1), y(0))
        mm = tanh_loop(x)
        tr = simulate(mm, {"u": np.array([[u], [0.0]])})
        return np.array([tr["d1"][1, 0], tr["d2"][1, 0]]), tr["y"][0, 0]

    eps = 1e-6
    for j in range(2):
        e = np.eye(2)[j] * eps
        (xp, yp), (xm, ym) = step(x0 + e, u0), step(x0 - e, u0)
        np.testing.assert_allclose(A[:, j], (xp - xm) / (2 * eps), atol=1e-8)
        np.testing.assert_allclose(C[0, j], (yp - ym) / (2 * eps), atol=1e-8)
    (xp, yp), (xm, ym) = step(x0, u0 + eps), step(x0, u0 - eps)
    np.testing.assert_allclose(B[:, 0], (xp - xm) / (2 * eps), atol=1e-8)
    np.testing.assert_allclose(D[0, 0], (yp - ym) / (2 * eps), atol=1e-8)
    assert D[0, 0] == pytest.approx(1.0)


def test_linearisation_at_a_later_step_uses_that_steps_operating_point():
    m = tanh_loop(np.zeros(2))
    U = np.linspace(0.0, 1.0, 5)[:, None]
    tr = simulate(m, {"u": U})
    lin = linearize(m, trace=tr, step=3)
    a = tr["th.u"][3, 0]
    np.testing.assert_allclose(lin.A[0], [0.8 * (1 - np.tanh(a) ** 2),
                                          0.5 * (1 - np.tanh(a) ** 2)], atol=1e-14)


@pytest.mark.parametrize("sys", [
    control.tf([1.0, 0.5], [1.0, -0.4, 0.1], 0.1),
    control.ss([[0.5, 0.1], [0.0, 0.2]], [[1.0, 0.0], [0.5, 1.0]],
               [[1.0, 1.0], [0.0, 2.0]], [[0.0, 0.1], [0.0, 0.0]], 0.1),
])
def test_discrete_systems_round_trip(sys):
    block = from_control(sys, name="sys")
    m = Model("m", dt=0.1)
    shape = () if sys.ninputs == 1 else (sys.ninputs,)
    u, b, y = m.add(Inport("u", shape=shape), block, Outport("y"))
    m.chain(u, b, y)
    back = to_control(block)
    assert back.dt == 0.1
    w = np.array([0.1, 0.7, 2.0])
    np.testing.assert_allclose(back.frequency_response(w).complex,
                               sys.frequency_response(w).complex, atol=1e-12)
    np.testing.assert_allclose(to_control(m).frequency_response(w).complex,
                               sys.frequency_response(w).complex, atol=1e-12)


@pytest.mark.parametrize("method", ["zoh", "tustin"])
def test_continuous_systems_are_discretised_like_control_c2d(method):
    sys = control.tf([1.0], [0.5, 1.5, 1.0])
    block = from_control(sys, method=method)
    assert isinstance(block, TransferFcn)
    m = Model("m", dt=0.01)
    u, b, y = m.add(Inport("u"), block, Outport("y"))
    m.chain(u, b, y)
    ref = control.c2d(sys, 0.01, method="bilinear" if method == "tustin" else method)
    w = np.array([0.5, 3.0, 40.0])
    np.testing.assert_allclose(to_control(m).frequency_response(w).complex,
                               ref.frequency_response(w).complex, atol=1e-12)
    cont = to_control(block, continuous=True)
    np.testing.assert_allclose(cont.frequency_response(w).complex,
                               sys.frequency_response(w).complex, atol=1e-12)
    mimo = control.ss([[-1.0, 0.5], [0.0, -2.0]], [[1.0, 0.0], [0.0, 1.0]], np.eye(2), 0)
    assert isinstance(from_control(mimo), ContinuousStateSpace)


def test_mimo_transfer_functions_need_no_slycot():
    tf = control.tf([[[1.0], [2.0, 0.5]]], [[[1.0, 1.0], [1.0, 3.0, 2.0]]])
    block = from_control(tf, method="zoh")
    assert isinstance(block, ContinuousStateSpace) and block.B.shape == (3, 2)
    w = np.array([0.3, 2.0, 9.0])
    ours = to_control(block, continuous=True).frequency_response(w).complex
    np.testing.assert_allclose(ours, tf.frequency_response(w).complex, atol=1e-12)
    dtf = control.tf([[[0.5], [1.0]]], [[[1.0, -0.3], [1.0, 0.2]]], 0.1)
    d = from_control(dtf)
    m = Model("m", dt=0.1)
    u, b, y = m.add(Inport("u", shape=(2,)), d, Outport("y"))
    m.chain(u, b, y)
    np.testing.assert_allclose(to_control(m).frequency_response(w).complex,
                               dtf.frequency_response(w).complex, atol=1e-12)


def test_discrete_state_space_block_converts_directly():
    ss = StateSpace([[0.5]], [[1.0]], [[2.0]], [[0.5]])
    sys = to_control(ss)
    assert sys.dt == 1.0
    np.testing.assert_allclose(sys.A, [[0.5]])


def test_bad_requests_say_what_is_wrong():
    from models.dc_motor import motor_loop

    with pytest.raises(SimulationError, match="several rates .hyperperiod 5 steps.*not 3"):
        linearize(motor_loop(), step=3)
    m = chain_model()
    with pytest.raises(SimulationError, match="no Inport"):
        linearize(m, input_names=["v"])
    with pytest.raises(SimulationError, match="step 9 is outside"):
        linearize(m, trace=simulate(m, {"u": np.zeros((3, 1))}), step=9)
    with pytest.raises(ParameterError, match="TransferFunction or"):
        from_control("1/s")
    with pytest.raises(ParameterError, match="not a state-space"):
        to_control(Gain(2.0))
    for cls in (TransferFcn, DiscreteTransferFcn):
        with pytest.raises(ParameterError, match="from_control"):
            cls(control.tf([1.0], [1.0, 1.0]))
    with pytest.raises(ParameterError, match="not a continuous block"):
        to_control(StateSpace([[0.5]], [[1.0]], [[1.0]]), continuous=True)


def test_a_multirate_loop_is_linearised_by_lifting():
    """The DC motor at 5 kHz under a PID at 1 kHz, lifted over its hyperperiod (5 steps):
    its poles are the single-rate loop's at 1 kHz and python-control's feedback()
    (the zero-order hold composes exactly), and the lifted map reproduces simulation."""
    from models.dc_motor import closed_loop_poles, motor_loop

    m = motor_loop()
    lin = linearize(m)
    assert lin.dt == pytest.approx(1e-3) and lin.A.shape == (4, 4)
    assert lin.B.shape == (4, 5) and lin.D.shape == (5, 5)
    assert lin.inputs == [f"r@{j}" for j in range(5)]
    ours, theirs = closed_loop_poles()
    got = np.sort_complex(np.linalg.eigvals(lin.A))
    np.testing.assert_allclose(got, np.sort_complex(ours), atol=1e-10)
    if theirs is not None:
        np.testing.assert_allclose(got, np.sort_complex(theirs), atol=1e-10)
    # three hyperperiods from rest: y3 = C A B u1 + C B u2 + D u3
    u = np.random.default_rng(0).standard_normal(15)
    u[0] = 1.0
    y = simulate(m, {"r": u[:, None]})["w"][:, 0]
    A, B, C, D = lin
    u1, u2, u3 = u[:5], u[5:10], u[10:]
    np.testing.assert_allclose(y[:5], D @ u1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(y[5:10], C @ B @ u1 + D @ u2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(y[10:], C @ A @ B @ u1 + C @ B @ u2 + D @ u3, rtol=1e-9,
                               atol=1e-12)
