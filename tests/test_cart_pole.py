"""The cart-pole example (models/cart_pole.py): a continuous plant integrated by rk4
under a sampled LQR-initialised neural controller, trained by BPTT through the
integrator (quick sizes)."""

import numpy as np
import scipy.linalg
import scipy.signal

from blockflow import simulate
from blockflow.control.lti import linearize
from models.cart_pole import cart_pole, cost, fit, linearised, lqr_gain, main, pushes

from .helpers import dot_check, fd_check


def test_lqr_gain_solves_the_riccati_equation():
    dt = 0.02
    A, B = linearised()
    Ad, Bd, *_ = scipy.signal.cont2discrete((A, B, np.eye(4), np.zeros((4, 1))), dt)
    K = lqr_gain(dt)
    assert np.all(np.abs(np.linalg.eigvals(Ad - Bd @ K)) < 1.0)
    # K is stationary for the cost: perturbing it raises the closed loop's cost matrix trace
    Q, R = np.diag([1.0, 0.1, 10.0, 0.1]), np.array([[0.1]])

    def J(K):
        Acl = Ad - Bd @ K
        return np.trace(scipy.linalg.solve_discrete_lyapunov(Acl.T, Q + K.T @ R @ K))

    rng = np.random.default_rng(0)
    assert all(J(K + 1e-3 * rng.standard_normal(K.shape)) > J(K) for _ in range(5))


def test_the_loop_linearised_upright_is_the_lqr_loop():
    """blockflow's linearisation of the rk4-integrated loop (at rest upright) has the
    poles of Ad - Bd K of the exactly discretised plant, to rk4's accuracy."""
    m = cart_pole(0.02)
    lin = linearize(m)
    A, B = linearised()
    Ad, Bd, *_ = scipy.signal.cont2discrete((A, B, np.eye(4), np.zeros((4, 1))), 0.02)
    want = np.sort_complex(np.linalg.eigvals(Ad - Bd @ lqr_gain(0.02)))
    got = np.sort_complex(np.linalg.eigvals(lin.A))
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_lqr_initialised_controller_catches_pushes():
    m = cart_pole()
    tr = simulate(m, {"push": pushes(200, [-45.0, 75.0])})
    assert np.abs(tr["theta"][0]).max() == 0.0          # at rest at k = 0 ...
    assert 0.05 < np.abs(tr["theta"]).max() < 0.3       # ... pushed over by the impulse ...
    assert np.abs(tr["theta"][-20:]).max() < 0.01       # ... and caught
    assert np.abs(tr["x"][-20:]).max() < 0.03


def test_gradients_through_the_integrator_and_the_controller():
    m = cart_pole(hidden=3)
    x = {"push": pushes(12, [20.0, -35.0])}
    assert fd_check(m, x, rtol=1e-6) == len(m.parameters()) + 1
    dot_check(m, x)


def test_training_through_the_integrator_lowers_the_cost():
    m = cart_pole()
    unseen = pushes(100, [-45.0, 75.0])
    before = cost(m, unseen)
    hist = fit(m, seconds=1.5, epochs=15, lr=0.03)
    assert hist.losses[-1] < 0.7 * hist.losses[0]      # 0.096 -> 0.053 when written
    assert cost(m, unseen) < 0.7 * before               # 0.146 -> 0.072 on unseen pushes


def test_main_draws_and_plots(tmp_path, capsys):
    assert main(tmp_path, epochs=2) == 0
    assert (tmp_path / "cart_pole.svg").stat().st_size > 1000
    assert (tmp_path / "cart_pole.png").stat().st_size > 1000
    assert "unseen pushes" in capsys.readouterr().out
