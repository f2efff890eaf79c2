"""Operating points (find_operating_point): steady states with exact Jacobians, against
closed forms: a tank with a square-root outflow (open loop and under a P controller, rk4),
the DC motor (its DC gain), held states and the bad inputs."""

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, SimulationError, simulate
from blockflow.control import find_operating_point
from blocks import Function, Gain, Integrator, Sum, TransferFcn
from models.dc_motor import MOTOR, motor_tf

from .test_solvers import AREA, KQ, OUTFLOW, tank


def open_tank():
    m = Model("tank", dt=0.1, solver="rk4")
    q, h = m.add(Inport("q"), Outport("h"))
    level = m.add(Integrator(x0=1.0, name="level"))
    root = m.add(Function(np.sqrt, lambda u, y: 0.5 / y, name="sqrt"))
    out, net = m.add(Gain(-OUTFLOW, name="out"), Sum("++", name="net"))
    area = m.add(Gain(1 / AREA, name="area"))
    m.chain(level, root, out, net.u1)
    m.connect(q, net.u2)
    m.chain(net, area, level)
    m.connect(level.y, h)
    return m


def test_the_inflow_that_holds_a_level():
    op = find_operating_point(open_tank(), outputs={"h": 2.0})
    assert op.success and op.residual < 1e-12
    np.testing.assert_allclose(op.inputs["q"], OUTFLOW * np.sqrt(2.0), rtol=1e-12)
    np.testing.assert_allclose(op.states["level"], [2.0], rtol=1e-12)
    # it is a steady state: simulated from it, nothing moves
    m = open_tank()
    m.blocks["level"].x0[...] = op.states["level"]
    tr = simulate(m, {"q": np.full((50, 1), op.inputs["q"])})
    np.testing.assert_allclose(tr["h"][:, 0], 2.0, rtol=1e-12)


def test_the_level_an_inflow_settles_at():
    op = find_operating_point(open_tank(), inputs={"q": 0.3})
    np.testing.assert_allclose(op.outputs["h"], (0.3 / OUTFLOW) ** 2, rtol=1e-12)


def test_the_tank_under_its_controller():
    """Steady state of the closed loop (P control through a UnitDelay hold):
    K (r - h) = c sqrt(h), the hold at the flow it holds."""
    op = find_operating_point(tank(0.1, "rk4"), inputs={"r": 2.0})
    h = float(op.outputs["h"])
    assert op.success
    assert abs(KQ * (2.0 - h) - OUTFLOW * np.sqrt(h)) < 1e-12
    np.testing.assert_allclose(op.states["hold"], [KQ * (2.0 - h)], rtol=1e-12)


def test_the_dc_motors_voltage_for_a_speed():
    m = Model("motor", dt=1e-3)
    v, w = m.add(Inport("V"), Outport("w"))
    m.chain(v, m.add(TransferFcn(*motor_tf(**MOTOR), name="motor")), w)
    op = find_operating_point(m, outputs={"w": 1.0})
    K, b, R = MOTOR["K"], MOTOR["b"], MOTOR["R"]
    np.testing.assert_allclose(op.inputs["V"], (b * R + K * K) / K, rtol=1e-10)
    assert op.names["states"] == ["motor[0]", "motor[1]"]


def test_a_fixed_state_is_held_and_the_input_solved():
    op = find_operating_point(open_tank(), fixed={"level": np.array([0.49])})
    np.testing.assert_allclose(op.states["level"], [0.49])
    np.testing.assert_allclose(op.inputs["q"], OUTFLOW * 0.7, rtol=1e-12)


def test_bad_requests_are_refused():
    with pytest.raises(SimulationError, match=r"no Outport \['y'\]"):
        find_operating_point(open_tank(), outputs={"y": 1.0})
    with pytest.raises(SimulationError, match=r"no Inport \['u'\]"):
        find_operating_point(open_tank(), inputs={"u": 1.0})
    with pytest.raises(SimulationError, match="nothing to solve for"):
        find_operating_point(open_tank(), inputs={"q": 0.1}, fixed={"level": np.array([1.0])})
