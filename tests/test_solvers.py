"""Continuous subsystems integrated by Runge-Kutta (``Model(solver=...)``): accuracy
against ``scipy.integrate.solve_ivp`` (rtol 1e-10) under discrete controllers with
inputs held over each period, measured convergence orders, exact gradients through the
integrator (finite differences and the dot-product test, numpy and compiled), and the
bad inputs."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from blockflow import (
    Inport,
    Model,
    Outport,
    ParameterError,
    SimulationError,
    Simulator,
    WiringError,
    backward,
    compile,
    grad,
    simulate,
)
from blockflow.io.modelfile import dumps, loads
from blocks import Constant, Function, Gain, Integrator, Product, Sum, UnitDelay

from .helpers import dot_check, fd_check

G, DAMP, KP, KD = 9.81, 0.3, 4.0, 1.5


def pendulum(dt, solver, substeps=1, *, x0=(1.0, 0.0)):
    """A damped pendulum (continuous) under a sampled PD controller (``sample_time``:
    its output held over each period) tracking ``r``."""
    m = Model("pendulum", dt=dt, solver=solver, substeps=substeps)
    r, y = m.add(Inport("r"), Outport("theta"))
    th, om = m.add(Integrator(x0=x0[0], name="th"), Integrator(x0=x0[1], name="om"))
    s, g, damp = m.add(Function("sin", name="sin"), Gain(-G, name="g"), Gain(-DAMP, name="damp"))
    acc = m.add(Sum("+++", name="acc"))
    err, kp, kd, u = m.add(Sum("+-", name="err", sample_time=dt),
                           Gain(KP, name="kp", sample_time=dt),
                           Gain(-KD, name="kd", sample_time=dt),
                           Sum("++", name="u", sample_time=dt))
    m.chain(om, th)
    m.chain(th, s, g, acc.u1)
    m.chain(om, damp, acc.u2)
    m.chain(acc, om)
    m.connect(r, err.u1)
    m.connect(th.y, err.u2)
    m.chain(err, kp, u.u1)
    m.chain(om, kd, u.u2)
    m.connect(u.y, acc.u3)
    m.connect(th.y, y)
    return m


def pendulum_reference(dt, r):
    """The same loop by solve_ivp: the controller reads x(k), its output held over
    [k dt, (k+1) dt)."""
    x, out = np.array([1.0, 0.0]), []
    for rk in r:
        out.append(x[0])
        u = KP * (rk - x[0]) - KD * x[1]
        x = solve_ivp(lambda t, z, u=u: [z[1], -G * np.sin(z[0]) - DAMP * z[1] + u], (0.0, dt), x,
                      method="DOP853", rtol=1e-10, atol=1e-12).y[:, -1]
    return np.array(out)


def van_der_pol(dt, solver, mu=1.0):
    """Autonomous (no Inport): x1' = x2, x2' = mu (1 - x1^2) x2 - x1."""
    m = Model("vdp", dt=dt, solver=solver)
    y = m.add(Outport("pos"))
    x1 = m.add(Integrator(x0=2.0, shape=(), name="x1"))
    x2 = m.add(Integrator(x0=0.0, shape=(), name="x2"))
    sq, one = m.add(Product("**", name="sq"), Constant(1.0, name="one"))
    damp, prod = m.add(Sum("+-", name="damp"), Product("**", name="prod"))
    mu_, acc = m.add(Gain(mu, name="mu"), Sum("+-", name="acc"))
    m.chain(x2, x1)
    m.connect(x1.y, sq.u1)
    m.connect(x1.y, sq.u2)
    m.connect(one.y, damp.u1)
    m.connect(sq.y, damp.u2)
    m.connect(damp.y, prod.u1)
    m.connect(x2.y, prod.u2)
    m.chain(prod, mu_, acc.u1)
    m.connect(x1.y, acc.u2)
    m.chain(acc, x2)
    m.connect(x1.y, y)
    return m


def van_der_pol_reference(dt, n, mu=1.0):
    t = np.arange(n) * dt
    sol = solve_ivp(lambda _, z: [z[1], mu * (1 - z[0] ** 2) * z[1] - z[0]], (0.0, t[-1]),
                    [2.0, 0.0], t_eval=t, method="DOP853", rtol=1e-10, atol=1e-12)
    return sol.y[0]


AREA, OUTFLOW, KQ = 2.0, 0.5, 0.8


def tank(dt, solver):
    """A tank, h' = (q - c sqrt(h)) / A, filled by a sampled P controller q = K (r - h)
    (held over each period, one step late: the controller is a UnitDelay away)."""
    m = Model("tank", dt=dt, solver=solver)
    r, y = m.add(Inport("r"), Outport("h"))
    h = m.add(Integrator(x0=1.0, name="level"))
    root = m.add(Function(np.sqrt, lambda u, y: 0.5 / y, name="sqrt"))
    out, net, area = m.add(Gain(-OUTFLOW, name="out"), Sum("++", name="net"),
                           Gain(1 / AREA, name="area"))
    err, kq, hold = m.add(Sum("+-", name="err"), Gain(KQ, name="kq"), UnitDelay(0.2, name="hold"))
    m.chain(h, root, out, net.u1)
    m.chain(net, area, h)
    m.connect(r, err.u1)
    m.connect(h.y, err.u2)
    m.chain(err, kq, hold, net.u2)
    m.connect(h.y, y)
    return m


def tank_reference(dt, r):
    x, q, out = 1.0, 0.2, []
    for rk in r:
        out.append(x)
        x = solve_ivp(lambda t, z, qk=q: [(qk - OUTFLOW * np.sqrt(z[0])) / AREA], (0.0, dt), [x],
                      method="DOP853", rtol=1e-10, atol=1e-12).y[0, -1]
        q = KQ * (rk - out[-1])
    return np.array(out)


def errors(case, solver, dts, T):
    out = []
    for dt in dts:
        n = int(round(T / dt))
        if case == "vdp":
            got = simulate(van_der_pol(dt, solver), {}, steps=n)["pos"][:, 0]
            out.append(np.abs(got - van_der_pol_reference(dt, n)).max())
            continue
        r = 0.5 + 0.3 * np.sin(np.arange(n) * dt * 2.0)  # non-zero at k = 0
        model, ref = ((pendulum, pendulum_reference) if case == "pendulum"
                      else (tank, tank_reference))
        got = simulate(model(dt, solver), {"r": r[:, None]})
        name = "theta" if case == "pendulum" else "h"
        out.append(np.abs(got[name][:, 0] - ref(dt, r)).max())
    return np.array(out)


ORDERS = {"euler": 1, "heun": 2, "rk4": 4}


@pytest.mark.parametrize("case", ["pendulum", "vdp", "tank"])
@pytest.mark.parametrize("solver", list(ORDERS))
def test_measured_convergence_order(case, solver):
    """Halving the step divides the error by 2^order (measured over three steps)."""
    dts = [0.04, 0.02, 0.01]
    e = errors(case, solver, dts, T=2.0)
    orders = np.log2(e[:-1] / e[1:])
    assert np.all(np.abs(orders - ORDERS[solver]) < 0.35), (solver, case, e, orders)


def test_rk45_is_fifth_order_and_near_the_reference():
    e = errors("pendulum", "rk45", [0.04, 0.02], T=2.0)
    assert e[1] < 1e-9
    assert np.log2(e[0] / e[1]) > 4.6


def test_rk4_is_accurate_and_beats_forward_euler_by_orders_of_magnitude():
    """The issue's numbers: forward Euler (each Integrator on its own) at 1 ms."""
    euler = errors("pendulum", None, [0.001], T=1.0)[0]
    rk4 = errors("pendulum", "rk4", [0.01], T=1.0)[0]
    assert euler > 1e-3
    assert rk4 < 1e-7


def test_substeps_divide_the_error_by_the_order():
    """rk4 with 4 substeps per period: the error of a 4x finer step (about 4^4 smaller),
    the controller's output still held over the whole period."""
    dt, n = 0.1, 30
    r = 0.5 + 0.3 * np.sin(np.arange(n) * dt)
    ref = tank_reference(dt, r)
    one = np.abs(simulate(tank(dt, "rk4"), {"r": r[:, None]})["h"][:, 0] - ref).max()
    four = np.abs(simulate(tank(dt, "rk4").set_solver("rk4", 4), {"r": r[:, None]})["h"][:, 0]
                  - ref).max()
    assert 150 < one / four < 400, (one, four)


def test_the_trace_reads_the_states_at_the_samples_from_x0():
    tr = simulate(pendulum(0.01, "rk4"), {"r": np.full((5, 1), 0.5)})
    assert tr["th.y"][0, 0] == 1.0 and tr["om.y"][0, 0] == 0.0  # x(0) = x0, not x(1)
    assert tr["theta"][0, 0] == 1.0
    # the plant blocks read x(k): their outputs are f(x(k), u(k))
    np.testing.assert_allclose(tr["sin.y"][:, 0], np.sin(tr["th.y"][:, 0]), rtol=0, atol=0)


def test_plan_says_how_it_integrates():
    text = compile(pendulum(0.01, "rk4", 2)).describe()
    assert ("continuous subsystem 'pendulum': states th, om; f(x, u) by sin, g, damp, acc; "
            "integrated by rk4, 2 step(s) of h=0.005 s per period") in text
    assert "sin@k2" in text and "th@2next" in text


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("solver", ["euler", "heun", "rk4", "rk45"])
def test_gradients_through_the_integrator_are_exact(solver, backend, monkeypatch):
    """Finite differences and the dot-product test, on the numpy and compiled paths."""
    if backend == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
    m = pendulum(0.05, solver)
    r = {"r": 0.5 + 0.3 * np.sin(np.arange(30) * 0.1)[:, None] * np.array([[1.0, -0.5]])}
    assert fd_check(m, r, rtol=1e-6) == len(m.parameters()) + 1
    dot_check(m, r)


def test_gradients_reach_blocks_in_every_stage_and_substep():
    """A plant gain's gradient adds its stage copies' (and a tangent direction moves
    them all): d/dg by central differences."""
    m = pendulum(0.05, "heun", substeps=3)
    r = {"r": np.full((25, 1), 0.4)}
    target = np.zeros((25, 1))
    _, g = grad(m, r, targets=target)
    assert set(g) == set(m.parameters())  # no key for a stage copy
    eps, K = 1e-6, m.blocks["g"].K
    K += eps
    jp, _ = grad(m, r, targets=target)
    K -= 2 * eps
    jm, _ = grad(m, r, targets=target)
    K += eps
    assert abs(g["g.K"] - (jp - jm) / (2 * eps)) < 1e-6 * abs(g["g.K"])


def test_batched_plant_parameters_reach_every_stage():
    m = pendulum(0.05, "rk4")
    r = np.full((20, 1), 0.3)
    values = np.array([-9.81, -4.0, -1.0])
    both = simulate(m, {"r": np.repeat(r, 3, axis=1)}, params={"g.K": values})["theta"]
    for i, v in enumerate(values):
        one = pendulum(0.05, "rk4")
        one.blocks["g"].K[...] = v
        np.testing.assert_allclose(both[:, i], simulate(one, {"r": r})["theta"][:, 0],
                                   rtol=0, atol=1e-15)


def test_simulator_chunks_equal_one_run_bit_for_bit():
    m = pendulum(0.02, "rk4")
    r = (0.5 + 0.3 * np.sin(np.arange(30) * 0.2))[:, None]
    whole = simulate(m, {"r": r})["theta"]
    sim = Simulator(m)
    parts = [sim.run({"r": r[:7]})["theta"], sim.run({"r": r[7:8]})["theta"],
             sim.run({"r": r[8:]})["theta"]]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_model_files_keep_the_solver():
    m = pendulum(0.02, "heun", 3)
    back = loads(dumps(m))
    assert (back.solver, back.substeps) == ("heun", 3)
    r = {"r": np.full((10, 1), 0.2)}
    np.testing.assert_array_equal(simulate(back, r)["theta"], simulate(m, r)["theta"])


def test_a_solver_in_a_subsystem():
    """The plant as a subsystem with its own solver, inside a loop at the top level."""
    inner = Model("plant", solver="rk4")
    u, y = inner.add(Inport("u"), Outport("y"))
    x = inner.add(Integrator(x0=1.0, name="x"))
    f, s = inner.add(Function("tanh", name="f"), Sum("+-", name="s"))
    inner.connect(u, s.u1)
    inner.chain(x, f, s.u2)
    inner.chain(s, x, y)
    top = Model("top", dt=0.1)
    r, out = top.add(Inport("r"), Outport("y"))
    top.add(inner)
    top.chain(r, inner, out)
    got = simulate(top, {"r": np.full((20, 1), 0.5)})["y"][:, 0]
    want = [1.0]
    for _ in range(19):
        want.append(solve_ivp(lambda t, z: [0.5 - np.tanh(z[0])], (0, 0.1), [want[-1]],
                              rtol=1e-11, atol=1e-12).y[0, -1])
    np.testing.assert_allclose(got, want, atol=1e-7)
    fd_check(top, {"r": np.full((8, 1), 0.5)})


def test_without_a_solver_integrators_stay_discretised():
    """solver=None keeps forward Euler (and its first-order error), as documented."""
    e = errors("pendulum", None, [0.02, 0.01], T=2.0)
    assert abs(np.log2(e[0] / e[1]) - 1) < 0.3


def test_bad_solver_settings_are_refused():
    with pytest.raises(ParameterError, match="unknown solver 'rk5'.*euler, heun, rk4, rk45"):
        Model("m", solver="rk5")
    for bad in (0, -1, 1.5, True, "2", None):
        with pytest.raises(ParameterError, match="substeps must be a whole number >= 1"):
            Model("m", solver="rk4", substeps=bad)
    assert Model("m", solver="rk4", substeps=np.int64(3)).substeps == 3
    m = Model("m", solver="rk4")  # no dt
    y = m.add(Outport("y"))
    x = m.add(Integrator(x0=1.0, shape=(), name="x"))
    m.chain(x, m.add(Gain(-1.0, name="k")), x)
    m.connect(x.y, y)
    with pytest.raises(SimulationError, match="block 'x' .Integrator. is continuous.*dt=..."):
        compile(m)


def test_an_unconnected_integrator_input_names_it():
    m = Model("m", dt=0.1, solver="rk4")
    y = m.add(Outport("y"))
    x = m.add(Integrator(x0=1.0, shape=(), name="x"))
    m.connect(x.y, y)
    with pytest.raises(WiringError, match=r"input x\.u of block 'x' \(Integrator\).*not connected"):
        compile(m)


def test_a_subsystem_inside_the_dynamics_is_refused():
    sub = Model("sub")
    a, b = sub.add(Inport("a"), Outport("b"))
    sub.chain(a, sub.add(Gain(-1.0, name="k")), b)
    m = Model("m", dt=0.1, solver="rk4")
    y = m.add(Outport("y"))
    x = m.add(Integrator(x0=1.0, shape=(), name="x"))
    m.add(sub)
    m.chain(x, sub, x)
    m.connect(x.y, y)
    with pytest.raises(WiringError, match="subsystem 'sub' .* lies on a path from an Integrator"):
        compile(m)


def lti_loop(dt, solver, kind="tf"):
    """r -> (r - y) -> tanh -> P(s) -> y, fed back with no delay: a continuous linear
    block inside the nonlinear loop, integrated with it."""
    from blocks import ContinuousStateSpace, TransferFcn

    m = Model("lti_loop", dt=dt, solver=solver)
    r, y = m.add(Inport("r"), Outport("y"))
    e, f = m.add(Sum("+-", name="e"), Function("tanh", name="f"))
    if kind == "tf":
        p = m.add(TransferFcn([2.0, 1.0], [1.0, 3.0, 2.0], name="p"))
    else:
        p = m.add(ContinuousStateSpace([[0.0, 1.0], [-2.0, -3.0]], [[0.0], [1.0]],
                                       [[1.0, 2.0]], name="p", elementwise=True))
    m.connect(r, e.u1)
    m.chain(e, f, p, y)
    m.connect(p.y, e.u2)
    return m


def lti_reference(dt, r):
    """(2 s + 1)/(s^2 + 3 s + 2) in controllable canonical form: x1' = -3 x1 - 2 x2 + v,
    x2' = x1, y = 2 x1 + x2, v = tanh(r - y)."""
    x, out = np.zeros(2), []
    for rk in r:
        out.append(2 * x[0] + x[1])
        x = solve_ivp(lambda t, z, rk=rk: [-3 * z[0] - 2 * z[1] + np.tanh(rk - 2 * z[0] - z[1]),
                                           z[0]], (0.0, dt), x, method="DOP853", rtol=1e-11,
                      atol=1e-13).y[:, -1]
    return np.array(out)


def test_a_transfer_function_inside_the_loop_is_integrated_with_it():
    """Under a solver a TransferFcn is an Integrator of its state plus its realisation
    (A x + B u, C x + D u): integrated with the nonlinear loop, at the solver's order."""
    errs = []
    for dt in (0.1, 0.05, 0.025):
        n = int(round(2.0 / dt))
        r = 1.0 + 0.5 * np.sin(np.arange(n) * dt)
        got = simulate(lti_loop(dt, "rk4"), {"r": r[:, None]})["y"][:, 0]
        errs.append(np.abs(got - lti_reference(dt, r)).max())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - 4) < 0.35), (errs, orders)
    assert "states p@state; f(x, u) by e, f, p@rate, p" in \
        compile(lti_loop(0.1, "rk4")).describe()


@pytest.mark.parametrize(("kind", "backend"), [("tf", "numpy"), ("ss", "numpy"),
                                                ("tf", "numba")])
def test_gradients_reach_a_continuous_block_through_the_solver(kind, backend, monkeypatch):
    """dJ/d(num, den) or dJ/d(A, B, C, D) of a block integrated by rk4: exact, on the
    numpy and the compiled path (the realisation's halves have kernels)."""
    if backend == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
    m = lti_loop(0.1, "rk4", kind)
    r = {"r": (1.0 + 0.5 * np.sin(np.arange(25) * 0.1))[:, None] * np.array([[1.0, 0.6]])}
    names = {"tf": {"p.num", "p.den"}, "ss": {"p.A", "p.B", "p.C"}}[kind]
    assert set(m.parameters()) == names
    assert fd_check(m, r, rtol=1e-6) == len(names) + 1
    dot_check(m, r)


def test_a_continuous_block_training_its_initial_state_is_refused_under_a_solver():
    from blocks import TransferFcn

    m = Model("m", dt=0.1, solver="rk4")
    u, y = m.add(Inport("u"), Outport("y"))
    m.chain(u, m.add(TransferFcn([1.0], [1.0, 1.0], x0=[0.5], train_x0=True, name="p")), y)
    with pytest.raises(WiringError, match="block 'p' .TransferFcn.*train_x0.*rk4"):
        compile(m)


def test_the_diagram_says_how_the_plant_is_integrated():
    from blockflow.io.export import to_pydot

    assert to_pydot(pendulum(0.01, "rk4", 2)).get_label() == \
        "pendulum (continuous plant: rk4, 2 steps per period)"
    assert to_pydot(pendulum(0.01, None)).get_label() == "pendulum"


def test_the_realisation_halves_compile(monkeypatch):
    """A TransferFcn and a vector ContinuousStateSpace under rk4: the compiled loops
    (forward and reciprocal) give the numpy path's numbers."""
    pytest.importorskip("numba")
    from blocks import ContinuousStateSpace

    def mimo():
        m = Model("mimo", dt=0.1, solver="rk4")
        r, y = m.add(Inport("r", shape=(2,)), Outport("y"))
        f = m.add(Function("tanh", name="f"))
        p = m.add(ContinuousStateSpace([[-1.0, 0.5], [0.0, -2.0]], [[1.0, 0.0], [0.5, 1.0]],
                                       [[1.0, 0.0], [0.3, 1.0]], [[0.1, 0.0], [0.0, 0.0]],
                                       name="p"))   # D != 0: the output reads u
        m.chain(r, f, p, y)
        return m

    x = {"r": np.random.default_rng(0).standard_normal((15, 2, 2))}
    for build, inputs in ((mimo, x), (lambda: lti_loop(0.1, "rk4"),
                                      {"r": np.ones((15, 2))})):
        out = {}
        for backend in ("numpy", "numba"):
            monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
            m = build()
            tr = simulate(m, inputs)
            g = backward(m, trace=tr, dL_dy={"y": np.ones_like(tr["y"])})
            out[backend] = (tr["y"], g.params)
            if backend == "numba":
                assert "no kernel" not in compile(m).describe()
        np.testing.assert_allclose(out["numba"][0], out["numpy"][0], rtol=1e-13, atol=1e-14)
        for k, v in out["numpy"][1].items():
            np.testing.assert_allclose(out["numba"][1][k], v, rtol=1e-12)
