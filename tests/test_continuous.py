"""Continuous plants, discretised: responses against scipy's discretisation and ``dlsim``,
gradients with respect to the continuous parameters against finite differences and the
dot-product test, in open loop and in a feedback loop, and the bad inputs."""

import numpy as np
import pytest
import scipy.signal

from blockflow import Inport, Model, Outport, ParameterError, compile, simulate
from blockflow.core.discretize import METHODS, c2d, c2d_jvp, c2d_vjp, tf2ss, tf2ss_jvp, tf2ss_vjp
from blockflow.io.modelfile import dumps, loads
from blocks import ContinuousStateSpace, Gain, Integrator, Sum, TransferFcn, UnitDelay

from .helpers import dot_check, fd_check

SCIPY = {"tustin": "bilinear", "backward_euler": "backward_diff"}
NUM, DEN = [2.0, 1.0], [1.0, 3.0, 2.0]


def plant_model(block, dt, name="plant", shape=None):
    block.name = "plant"
    m = Model(name, dt=dt)
    u, _, y = m.add(Inport("u", shape=shape or ()), block, Outport("y"))
    m.chain(u, block, y)
    return m


def mimo(seed=0, n=3, m=2, p=2):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) - 2.0 * np.eye(n)
    return A, rng.standard_normal((n, m)), rng.standard_normal((p, n)), rng.standard_normal((p, m))


@pytest.mark.filterwarnings("ignore::scipy.signal.BadCoefficients")  # scipy's own tf
@pytest.mark.parametrize("method", METHODS)
def test_transfer_function_matches_scipy_discretisation(method):
    dt = 0.05
    m = plant_model(TransferFcn(NUM, DEN, method=method), dt)
    U = np.random.default_rng(1).standard_normal((300, 1))
    U[0] = 1.0  # non-zero at k = 0
    y = simulate(m, {"u": U})["y"][:, 0]
    nd, dd, _ = scipy.signal.cont2discrete((NUM, DEN), dt, method=SCIPY.get(method, method))
    _, ref = scipy.signal.dlsim((nd.ravel(), dd, dt), U[:, 0])
    np.testing.assert_allclose(y, ref[:, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["zoh", "tustin", "foh"])
def test_mimo_state_space_matches_dlsim(method):
    A, B, C, D = mimo()
    dt = 0.1
    m = plant_model(ContinuousStateSpace(A, B, C, D, method=method), dt, shape=(2,))
    U = np.random.default_rng(2).standard_normal((100, 1, 2))
    y = simulate(m, {"u": U})["y"][:, 0]
    sys = scipy.signal.cont2discrete((A, B, C, D), dt, method=SCIPY.get(method, method))
    _, ref, _ = scipy.signal.dlsim(sys, U[:, 0])
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)


def test_integrator_sums_from_its_initial_value():
    U = np.array([1.0, 2.0, 3.0, 4.0])[:, None]
    m = plant_model(Integrator(x0=0.5), 0.1)
    np.testing.assert_allclose(simulate(m, {"u": U})["y"][:, 0], [0.5, 0.6, 0.8, 1.1])
    m = plant_model(Integrator(method="tustin"), 0.1)  # trapezoids: h (u(k-1) + u(k)) / 2
    np.testing.assert_allclose(simulate(m, {"u": U})["y"][:, 0], [0.05, 0.2, 0.45, 0.8])


def test_period_comes_from_the_model_and_is_inherited_by_subsystems():
    inner = plant_model(TransferFcn([1.0], [1.0, 1.0]), None, name="inner")
    outer = Model("outer", dt=0.2)
    u, sub, y = outer.add(Inport("u"), inner, Outport("y"))
    outer.chain(u, sub, y)
    p = inner.block("plant")
    assert inner.dt == 0.2 and p.period() == 0.2
    np.testing.assert_allclose(p.matrices()[0], [[np.exp(-0.2)]])
    outer.dt = 0.1
    np.testing.assert_allclose(p.matrices()[0], [[np.exp(-0.1)]])
    U = np.ones((5, 1))
    y = simulate(outer, {"u": U})["y"][:, 0]
    np.testing.assert_allclose(y, 1 - np.exp(-0.1 * np.arange(5)), atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_discretisation_chain_rule_against_finite_differences(method):
    rng = np.random.default_rng(3)
    X = mimo(4)
    h, eps = 0.3, 1e-6
    G = [rng.standard_normal(M.shape) for M in X]
    d = [rng.standard_normal(M.shape) for M in X]

    def f(Y):
        return sum(np.vdot(g, M) for g, M in zip(G, c2d(*Y, h, method), strict=True))

    fd = (f([x + eps * v for x, v in zip(X, d, strict=True)])
          - f([x - eps * v for x, v in zip(X, d, strict=True)])) / (2 * eps)
    vjp = sum(np.vdot(a, b) for a, b in zip(c2d_vjp(*X, h, method, G), d, strict=True))
    jvp = sum(np.vdot(a, b) for a, b in zip(c2d_jvp(*X, h, method, d), G, strict=True))
    assert vjp == pytest.approx(fd, rel=1e-7) and jvp == pytest.approx(vjp, rel=1e-12)


def test_tf2ss_is_scipys_and_its_chain_rule_is_exact():
    num, den = np.array([0.5, 2.0, 1.0]), np.array([1.5, 3.0, 2.0, 0.7])
    for a, b in zip(tf2ss(num, den), scipy.signal.tf2ss(num, den), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-14)
    rng = np.random.default_rng(5)
    G = [rng.standard_normal(M.shape) for M in tf2ss(num, den)]
    dn, dd, eps = rng.standard_normal(3), rng.standard_normal(4), 1e-6

    def f(n, d):
        return sum(np.vdot(g, M) for g, M in zip(G, tf2ss(n, d), strict=True))

    fd = (f(num + eps * dn, den + eps * dd) - f(num - eps * dn, den - eps * dd)) / (2 * eps)
    gn, gd = tf2ss_vjp(num, den, G)
    assert gn @ dn + gd @ dd == pytest.approx(fd, rel=1e-8)
    jvp = sum(np.vdot(a, g) for a, g in zip(tf2ss_jvp(num, den, dn, dd), G, strict=True))
    assert jvp == pytest.approx(fd, rel=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_gradients_through_the_discretisation(method):
    rng = np.random.default_rng(6)
    U = rng.standard_normal((40, 2))
    m = plant_model(TransferFcn(NUM, DEN, method=method, x0=[0.3, -0.2], train_x0=True), 0.1)
    fd_check(m, {"u": U}, rtol=1e-6)
    dot_check(m, {"u": U})
    A, B, C, D = mimo(7)
    m = plant_model(ContinuousStateSpace(A, B, C, D, method=method), 0.1, shape=(2,))
    U = rng.standard_normal((30, 2, 2))
    fd_check(m, {"u": U}, rtol=1e-6)
    dot_check(m, {"u": U})


@pytest.mark.parametrize("method", ["zoh", "tustin"])
def test_gradients_through_a_feedback_loop_with_a_continuous_plant(method):
    # a discrete PI controller around a continuous plant: e = r - y, u = kp e + ki sum e
    m = Model("loop", dt=0.05)
    r, e, kp, ki, acc, s, plant, yo = m.add(
        Inport("r"), Sum("+-", name="e"), Gain(2.0, name="kp"), Gain(0.5, name="ki"),
        Sum("++", name="acc"), Sum("++", name="u"),
        TransferFcn([1.0], [0.5, 1.0, 0.0], method=method, name="plant"), Outport("y"))
    z, sensor = m.add(UnitDelay(name="z"), UnitDelay(name="sensor"))
    m.connect(r, e.u1)
    m.connect(e, kp)
    m.connect(e, ki)
    m.connect(ki, acc.u1)
    m.connect(acc, z)
    m.connect(z, acc.u2)
    m.connect(kp, s.u1)
    m.connect(acc, s.u2)
    m.connect(s, plant)
    m.connect(plant, yo)
    m.connect(plant, sensor)  # a measurement one sample late: tustin's plant feeds through
    m.connect(sensor, e.u2)
    R = np.ones((60, 2))
    R[:, 1] = np.cos(0.1 * np.arange(60))
    fd_check(m, {"r": R}, rtol=1e-6)
    dot_check(m, {"r": R})


def test_compiled_and_numpy_paths_agree():
    m = plant_model(TransferFcn(NUM, DEN, method="tustin"), 0.05)
    m2 = Model("fb", dt=0.05)
    r, e, p, y = m2.add(Inport("r"), Sum("+-"), TransferFcn([1.0], [1.0, 1.0, 0.0]),
                        Outport("y"))
    m2.chain(r, e.u1)
    m2.chain(e, p, y)
    m2.connect(p, e.u2)
    R = np.random.default_rng(8).standard_normal((200, 3))
    for model in (m, m2):
        a = simulate(model, {"r" if model is m2 else "u": R}, backend="numpy")["y"]
        b = simulate(model, {"r" if model is m2 else "u": R}, backend="numba")["y"]
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_saved_and_loaded_with_the_period():
    m = plant_model(TransferFcn(NUM, DEN, method="foh", x0=[0.1, 0.2]), 0.01)
    m2 = loads(dumps(m))
    assert m2.dt == 0.01 and m2.block("plant").method == "foh"
    U = np.random.default_rng(9).standard_normal((50, 1))
    np.testing.assert_array_equal(simulate(m, {"u": U})["y"], simulate(m2, {"u": U})["y"])
    A, B, C, _ = mimo()
    m = plant_model(ContinuousStateSpace(A, B, C, method="euler"), 0.1, shape=(2,))
    m2 = loads(dumps(m))
    assert not m2.block("plant").feedthrough
    U = np.random.default_rng(9).standard_normal((20, 1, 2))
    np.testing.assert_array_equal(simulate(m, {"u": U})["y"], simulate(m2, {"u": U})["y"])


def test_the_plan_says_which_discretisation_ran():
    m = plant_model(TransferFcn(NUM, DEN, method="tustin"), 0.002)
    assert "plant: (2s + 1)/(s² + 3s + 2) discretised by tustin at h=0.002 s" in \
        compile(m).describe()


def test_labels_show_the_continuous_form():
    assert TransferFcn(NUM, DEN).label() == "(2s + 1)/(s² + 3s + 2)"
    assert TransferFcn([1.0], [1.0, -0.5]).label() == "1/(s - 0.5)"
    assert Integrator().label() == "1/s"


@pytest.mark.parametrize("make, words", [
    (lambda: TransferFcn([1.0, 0.0, 0.0], [1.0, 1.0]), "improper"),
    (lambda: TransferFcn([1.0], [0.0, 1.0]), "leading coefficient"),
    (lambda: TransferFcn([1.0], [1.0, 1.0], method="bilinear2"), "unknown discretisation"),
    (lambda: TransferFcn([[1.0]], [1.0, 1.0]), "1-D"),
    (lambda: ContinuousStateSpace(np.eye(2), np.ones((3, 1)), np.ones((1, 2))), r"needs A \(n,n\)"),
    (lambda: Model("m", dt=0.0), "dt must be > 0"),
    (lambda: Model("m", dt=float("nan")), "finite"),
])
def test_bad_continuous_blocks_are_refused_with_a_reason(make, words):
    with pytest.raises(ParameterError, match=words):
        make()
