"""The blocks control engineers reach for, each against an independent computation (plain
loops or numpy), their gradients against finite differences and the dot-product test,
both execution paths, files, and bad parameters."""

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, ParameterError, simulate
from blockflow.control.lti import linearize
from blockflow.io.modelfile import dumps, loads
from blocks import (
    DeadZone,
    DiscreteDerivative,
    DiscreteIntegrator,
    Gain,
    Lookup1D,
    Quantizer,
    RateLimiter,
    Relay,
    Sum,
    Switch,
    UnitDelay,
)
from tests.helpers import compiled

from .helpers import dot_check, fd_check

DT = 0.1


def single(block, dt=DT, n_inputs=1):
    m = Model("one", dt=dt)
    m.add(block)
    ins = ["u"] if n_inputs == 1 else [f"u{i + 1}" for i in range(n_inputs)]
    for name in ins:
        m.connect(m.add(Inport(f"in_{name}")), block[name] if n_inputs > 1 else block)
    m.connect(block.y if n_inputs > 1 else block, m.add(Outport("y")))
    return m


def run(block, *U, dt=DT):
    m = single(block, dt, len(U))
    names = ["in_u"] if len(U) == 1 else [f"in_u{i + 1}" for i in range(len(U))]
    return simulate(m, dict(zip(names, U, strict=True)))["y"]


U = np.array([1.0, 2.0, -0.5, 3.0, -4.0, 0.25, 1.5])[:, None]  # non-zero at k = 0


@pytest.mark.parametrize("method", ["forward_euler", "backward_euler", "trapezoidal"])
@pytest.mark.parametrize("limits", [(-np.inf, np.inf), (-0.3, 0.6)])
def test_discrete_integrator_is_the_sum_it_names(method, limits):
    K, x0 = 2.0, 0.1
    y = run(DiscreteIntegrator(K, method, x0, lower=limits[0], upper=limits[1]), U)[:, 0]
    ref, prev_y, prev_u = [], x0, 0.0  # y(-1) = x0, u(-1) = 0
    for u in U[:, 0]:
        inc = {"forward_euler": prev_u, "backward_euler": u,
               "trapezoidal": 0.5 * (u + prev_u)}[method]
        prev_y = float(np.clip(prev_y + K * DT * inc, *limits))
        if method == "forward_euler" and not ref:
            prev_y = float(np.clip(x0, *limits))
        ref.append(prev_y)
        prev_u = u
    np.testing.assert_allclose(y, ref, atol=1e-14)


def test_discrete_integrator_follows_the_model_period_and_linearises():
    integ = DiscreteIntegrator(3.0)
    m = single(integ, dt=0.5)
    np.testing.assert_allclose(simulate(m, {"in_u": np.ones((3, 1))})["y"][:, 0], [0, 1.5, 3])
    A, B, C, D = linearize(m)
    np.testing.assert_allclose([A[0, 0], B[0, 0], C[0, 0], D[0, 0]], [1.0, 1.5, 1.0, 0.0])
    m.dt = 0.1
    np.testing.assert_allclose(simulate(m, {"in_u": np.ones((3, 1))})["y"][:, 0],
                               [0, 0.3, 0.6], atol=1e-15)


def test_discrete_derivative_and_rate_limiter():
    y = run(DiscreteDerivative(2.0, x0=0.5), U)[:, 0]
    ref = 2.0 * np.diff(U[:, 0], prepend=0.0) / DT
    ref[0] = 2.0 * U[0, 0] / DT - 0.5
    np.testing.assert_allclose(y, ref, atol=1e-12)
    y = run(RateLimiter(5.0, -10.0, x0=0.2), U)[:, 0]
    ref, prev = [], 0.2
    for u in U[:, 0]:
        prev = prev + np.clip(u - prev, -10.0 * DT, 5.0 * DT)
        ref.append(prev)
    np.testing.assert_allclose(y, ref, atol=1e-12)


def test_discontinuities_against_numpy():
    V = np.linspace(-2, 2, 41)[:, None]
    np.testing.assert_allclose(run(DeadZone(-0.5, 1.0), V)[:, 0],
                               np.where(V > 1, V - 1, np.where(V < -0.5, V + 0.5, 0))[:, 0])
    np.testing.assert_allclose(run(Quantizer(0.3), V)[:, 0], 0.3 * np.round(V[:, 0] / 0.3))
    bp, tab = np.array([-1.0, 0.0, 0.5, 1.5]), np.array([2.0, -1.0, 0.0, 4.0])
    np.testing.assert_allclose(run(Lookup1D(bp, tab), V)[:, 0], np.interp(V[:, 0], bp, tab))
    W = np.cos(np.arange(41))[:, None]
    np.testing.assert_allclose(run(Switch(0.2), V, W, -V)[:, 0],
                               np.where(W >= 0.2, V, -V)[:, 0])
    np.testing.assert_allclose(run(Switch(0.0, strict=True), V, V, 3 + 0 * V)[:, 0],
                               np.where(V > 0, V, 3)[:, 0])


def test_relay_has_hysteresis_and_starts_off():
    u = np.array([0.0, 0.6, 0.2, -0.2, -0.6, 0.4, 0.5])[:, None]
    np.testing.assert_allclose(run(Relay(0.5, -0.5, on=2.0, off=-1.0), u)[:, 0],
                               [-1, 2, 2, 2, -1, -1, 2])


def loop_with(block, n_inputs=1):
    """``block`` inside a feedback loop: e = r - 0.5 z^-1 y, y = block(e) (+ its other
    inputs driven from r)."""
    m = Model("loop", dt=DT)
    r, e, d, g, y = m.add(Inport("r"), Sum("+-", name="e"), UnitDelay(name="d"),
                          Gain(0.5, name="g"), Outport("y"))
    m.add(block)
    m.connect(r, e.u1)
    first = block if n_inputs == 1 else block.u1
    m.connect(e, first)
    for i in range(1, n_inputs):
        m.connect(r, block[f"u{i + 1}"])
    out = block.y if n_inputs > 1 else block
    m.connect(out, d)
    m.chain(d, g, e.u2)
    m.connect(out, y)
    return m


GRADIENT_CASES = [
    (lambda: DiscreteIntegrator(1.5, "trapezoidal", lower=-0.8, upper=0.9), 1),
    (lambda: DiscreteIntegrator(1.5, "backward_euler"), 1),
    (lambda: DiscreteDerivative(0.7), 1),
    (lambda: RateLimiter(4.0, -3.0), 1),
    (lambda: DeadZone(-0.2, 0.3), 1),
    (lambda: Lookup1D([-2.0, -0.5, 0.0, 1.0, 2.5], [1.0, -1.0, 0.5, 2.0, 0.0]), 1),
    (lambda: Switch(0.1), 3),
]


@pytest.mark.parametrize("make, n", GRADIENT_CASES)
def test_gradients_in_a_feedback_loop(make, n):
    m = loop_with(make(), n)
    R = np.random.default_rng(3).standard_normal((30, 2))
    fd_check(m, {"r": R}, rtol=1e-6)
    dot_check(m, {"r": R})


def test_nondifferentiable_blocks_pass_no_gradient():
    from blockflow import backward

    for block in (Quantizer(0.25), Relay(0.1, -0.1)):
        m = loop_with(block)
        R = np.random.default_rng(4).standard_normal((10, 1))
        g = backward(m, {"r": R}, dL_dy={"y": np.ones((10, 1))})
        np.testing.assert_array_equal(g.inputs["r"], 0.0)


def test_compiled_and_numpy_paths_agree_on_every_new_block():
    pytest.importorskip("numba")
    m = Model("all", dt=DT)
    r, e, d, y = m.add(Inport("r"), Sum("+-", name="e"), UnitDelay(name="d"), Outport("y"))
    chain = [DeadZone(-0.1, 0.1), Quantizer(0.05), Relay(0.3, -0.3),
             Lookup1D([-1.0, 0.0, 1.0], [-0.5, 0.2, 0.7]), Switch(0.0)]
    m.add(*chain)
    m.connect(r, e.u1)
    m.chain(e, chain[0], chain[1], chain[2])
    m.connect(chain[2], chain[3])
    m.connect(chain[3], chain[4].u1)
    m.connect(r, chain[4].u2)
    m.connect(e, chain[4].u3)
    m.chain(chain[4].y, d, e.u2)
    m.connect(chain[4].y, y)
    R = np.random.default_rng(5).standard_normal((300, 3))
    a = simulate(m, {"r": R}, backend="numpy")
    b = simulate(m, {"r": R}, backend="numba")
    assert compiled(b.plan.segments[-1]) is not None or any(
        compiled(s) is not None for s in b.plan.segments)
    np.testing.assert_allclose(a["y"], b["y"], rtol=1e-12, atol=1e-14)


def test_saved_and_loaded():
    m = loop_with(DiscreteIntegrator(2.0, "trapezoidal", 0.3, upper=1.0, name="integ"))
    lut, relay, out = m.add(Lookup1D([0.0, 1.0], [0.0, 2.0], name="lut"), Relay(name="relay"),
                            Outport("z"))
    m.chain(m.blocks["r"], lut, relay, out)
    m2 = loads(dumps(m))
    R = np.random.default_rng(6).standard_normal((20, 1))
    for name in ("y", "z"):
        np.testing.assert_array_equal(simulate(m, {"r": R})[name], simulate(m2, {"r": R})[name])


@pytest.mark.parametrize("make, words", [
    (lambda: DiscreteIntegrator(method="rk4"), "method must be one of"),
    (lambda: DeadZone(1.0, -1.0), "end must be >= 1.0"),
    (lambda: Quantizer(0.0), "interval must be > 0"),
    (lambda: Relay(0.0, 0.5), "off_at must be < 0.0"),
    (lambda: Lookup1D([0.0, 0.0, 1.0], [1.0, 2.0, 3.0]), "strictly increasing"),
    (lambda: Lookup1D([0.0, 1.0], [1.0, 2.0, 3.0]), "as many as the table"),
    (lambda: RateLimiter(-1.0, 1.0), "falling rate must be below"),
])
def test_bad_parameters_are_refused_with_a_reason(make, words):
    with pytest.raises(ParameterError, match=words):
        make()
