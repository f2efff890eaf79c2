"""Closed-loop (multi-step) training: windows with a teacher-forced warm-up and a
free-running horizon (closed_loop_data), step weights in train (exact gradients), the
curriculum and scheduled sampling (train_closed_loop), and that it beats one-step
training where the predictor will run: free."""

import numpy as np
import pytest

from blockflow import ParameterError, backward, simulate
from blockflow.train import Adam, closed_loop_data, train, train_closed_loop, weighted
from models.experiments.santafe_laser import iterated, network

T = np.arange(400)
SERIES = (np.sin(0.3 * T) + 0.5 * np.sin(0.71 * T + 0.4))[:, None]


def test_windows_teacher_force_then_run_free_and_score_the_free_part():
    s = np.arange(20.0)
    x, d, w = closed_loop_data(s, warmup=3, horizon=4, starts=[0, 5])
    assert x["x"].shape == (6, 2) and d.shape == (6, 2) and w.shape == (6, 2)
    np.testing.assert_array_equal(x["x"][:, 1], np.arange(5.0, 11.0))
    np.testing.assert_array_equal(d[:, 1], np.arange(6.0, 12.0))          # next samples
    np.testing.assert_array_equal(x["teach"][:, 0], [1, 1, 1, 0, 0, 0])   # warm-up: 3
    np.testing.assert_array_equal(w[:, 0], [0, 0, 1, 1, 1, 1])             # 4 predictions
    one = closed_loop_data(s, warmup=3, horizon=1, stride=4)[0]
    assert one["teach"].all()                                               # one-step
    a = closed_loop_data(s, warmup=2, horizon=8, sampling=0.5, seed=1)[0]["teach"]
    b = closed_loop_data(s, warmup=2, horizon=8, sampling=0.5, seed=1)[0]["teach"]
    np.testing.assert_array_equal(a, b)
    assert 0 < a[2:].mean() < 1                                             # some fed true


def test_weighted_losses_have_exact_gradients():
    net = network((3,), (3, 2), seed=2)
    x = {"x": SERIES[:40, None] * np.ones((1, 2, 1))}
    d = SERIES[1:41, None] * np.ones((1, 2, 1))
    w = np.random.default_rng(0).random((40, 2))
    for loss in ("sse", "mse"):
        f = weighted(loss, w)
        g = backward(net, x, targets=d, loss=f).params
        k, eps = "layer1.W", 1e-6
        p = net.parameters()[k]
        v = np.random.default_rng(1).standard_normal(p.shape)

        def J(f=f):
            return f(simulate(net, x)["y"], d)[0]

        p += eps * v
        jp = J()
        p -= 2 * eps * v
        jm = J()
        p += eps * v
        assert abs((jp - jm) / (2 * eps) - np.vdot(g[k], v)) < 1e-7 * max(1, abs(jp))


def free_error(net, start=300, warm=20, horizon=60):
    L = warm + horizon
    teach = (np.arange(L) < warm).astype(float)[:, None, None]
    y = simulate(iterated(net), {"x": SERIES[start:start + L][:, None],
                                 "teach": teach})["y"][:, 0, 0]
    return float(np.mean((y[warm - 1:L - 1] - SERIES[start + warm:start + L, 0]) ** 2))


def test_closed_loop_training_beats_one_step_training_running_free():
    """Trained one step ahead, a small FIR network drifts when iterated on a held-out
    stretch; trained inside its loop (curriculum 5 -> 15 -> 30) it tracks far better."""
    net = network((4, 4), (4, 2, 2), seed=0)
    train(net, {"x": SERIES[:299, None]}, SERIES[1:300, None], loss="mse",
          optimizer=Adam(0.01), epochs=200)
    before = free_error(net)
    loop = iterated(net)
    hist = train_closed_loop(loop, SERIES[:300], warmup=10, horizon=30,
                             curriculum=[5, 15, 30], epochs=40, stride=5, loss="mse",
                             optimizer=Adam(0.003))
    after = free_error(loop.blocks["net"])
    assert len(hist) == 120 and [r["horizon"] for r in hist.records[::40]] == [5, 15, 30]
    assert after < 0.5 * before, (before, after)   # 0.45 -> 0.11 when written


def test_bad_closed_loop_settings_are_refused():
    net = network((3,), (3, 2), seed=2)
    x, d = {"x": SERIES[:40, None]}, SERIES[1:41, None]
    with pytest.raises(ParameterError, match="weights must be a .40, 1. array"):
        train(net, x, d, loss="mse", epochs=1, weights=np.ones(40))
    with pytest.raises(ParameterError, match="weight each step's error of loss 'sse' or"):
        train(net, x, d, loss="cross_entropy", epochs=1, weights=np.ones((40, 1)))
    with pytest.raises(ParameterError, match="windows of 29 steps .* must fit"):
        closed_loop_data(np.arange(20.0), warmup=10, horizon=20)
    with pytest.raises(ParameterError, match="sampling gives 1 probabilities for 2"):
        train_closed_loop(iterated(net), SERIES[:100], warmup=5, horizon=5,
                          curriculum=[1, 5], sampling=[0.5])
