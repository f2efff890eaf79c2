"""The DC motor under a discrete PID at a slower rate: its response at the PID's hits is
the one-rate loop's (the plant's zero-order hold composes exactly), which is
python-control's; its linearisation has python-control's closed-loop poles; the PID gains'
gradient through the multirate loop is exact, and tuning lowers the cost."""

import numpy as np
import pytest

from blockflow import simulate
from models.dc_motor import GAINS, closed_loop_poles, motor_loop, motor_tf, step_metrics, tune

from .helpers import dot_check, fd_check

control = pytest.importorskip("control")


def test_multirate_loop_equals_the_one_rate_loop_at_the_pid_hits():
    T = 600
    fast = simulate(motor_loop(plant_hz=5000, pid_hz=1000), {"r": np.ones((5 * T, 1))})
    slow = simulate(motor_loop(plant_hz=1000, pid_hz=1000), {"r": np.ones((T, 1))})
    np.testing.assert_allclose(fast["w"][::5, 0], slow["w"][:, 0], rtol=1e-9, atol=1e-12)
    h = 1e-3
    plant = control.c2d(control.tf(*motor_tf()), h, method="zoh")
    z = control.tf([1.0, 0.0], [1.0], h)
    kp, ki, kd = GAINS
    loop = control.feedback((kp + ki * h / (z - 1) + kd * (z - 1) / (h * z)) * plant, 1)
    ref = control.forced_response(loop, T=np.arange(T) * h, U=np.ones(T)).outputs
    np.testing.assert_allclose(slow["w"][:, 0], ref, rtol=1e-8, atol=1e-10)
    met = step_metrics(fast.time, fast["w"][:, 0])
    assert met["overshoot_pct"] < 2 and met["settling_s"] < 0.3


def test_linearised_poles_are_python_controls():
    ours, theirs = closed_loop_poles()
    np.testing.assert_allclose(np.sort_complex(ours), np.sort_complex(theirs), atol=1e-9)
    assert np.all(np.abs(ours) < 1)


def test_pid_gain_gradients_through_the_multirate_loop_are_exact():
    m = motor_loop(20.0, 20.0, 0.5)
    R = np.ones((150, 2))
    R[:, 1] = np.cos(np.arange(150) / 20.0)
    fd_check(m, {"r": R}, rtol=1e-6)
    dot_check(m, {"r": R})


def test_tuning_lowers_the_step_response_cost():
    m = motor_loop(20.0, 20.0, 0.1)
    hist = tune(m, seconds=0.05, epochs=4, lr=5.0)
    assert hist.losses[-1] < 0.9 * hist.losses[0]
