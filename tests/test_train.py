"""Training: optimizers against hand-computed updates, gradient modes, frozen parameters,
non-finite detection, and checkpoint/resume bit for bit."""

import numpy as np
import pytest
import scipy.signal as ss

from blockflow import (
    BlockflowError,
    Inport,
    Model,
    Outport,
    SimulationError,
    TrainingError,
    simulate,
)
from blockflow.gradient.online import OnlineBackprop
from blockflow.gradient.sweep import backward
from blockflow.train import SGD, Adam, Momentum, exponential_decay, first_nonfinite, train
from blocks import DiscreteFilter, Function, Gain, UnitDelay
from models.arma import arma_filter
from models.paper import fir_network, output_feedback_rnn


def test_sgd_momentum_adam_match_hand_computed_updates():
    g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    w = np.array([1.0, 1.0])
    SGD(0.1).step({"w": w}, {"w": g1})
    np.testing.assert_allclose(w, [0.9, 1.2])
    w, opt = np.array([1.0, 1.0]), Momentum(0.1, beta=0.5)
    opt.step({"w": w}, {"w": g1})
    opt.step({"w": w}, {"w": g2})  # v = 0.5 g1 + g2 = [1.0, -0.5]
    np.testing.assert_allclose(w, [1.0 - 0.1 - 0.1, 1.0 + 0.2 + 0.05])
    w, opt = np.array([1.0, 1.0]), Adam(0.1, beta1=0.9, beta2=0.99, eps=0.0)
    opt.step({"w": w}, {"w": g1})  # first Adam step moves by lr * sign(g)
    np.testing.assert_allclose(w, [0.9, 1.1])
    opt.step({"w": w}, {"w": g2})
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.99 * 0.01 * g1**2 + 0.01 * g2**2
    step = 0.1 * (m / (1 - 0.81)) / np.sqrt(v / (1 - 0.99**2))
    np.testing.assert_allclose(w, np.array([0.9, 1.1]) - step)


def _arma_data(T=200, B=4, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((T, B))
    return {"u": u}, ss.lfilter([0.0, 0.5, 0.3], [1.0, -1.2, 0.5], u, axis=0)


def test_training_recovers_a_filter_and_the_loss_falls():
    x, y = _arma_data()
    m = arma_filter([0.0, 0.1, 0.1], [1.0, 0.0, 0.0])
    m.blocks["filter"].fix_a0 = True
    h = train(m, x, y, loss="mse", optimizer=Adam(0.05), epochs=300, clip_norm=10.0,
              schedule=exponential_decay(0.995))
    assert h.losses[-1] < 1e-6 * h.losses[0]
    np.testing.assert_allclose(m.blocks["filter"].b, [0.0, 0.5, 0.3], atol=1e-3)
    np.testing.assert_allclose(m.blocks["filter"].a, [1.0, -1.2, 0.5], atol=1e-3)


def test_frozen_parameters_stay_put_and_schedule_and_minibatches_apply():
    m = Model("two")
    m.chain(*m.add(Inport("u"), Gain(0.3, name="g1"), Gain(0.2, name="g2"), Outport("y")))
    x = {"u": np.random.default_rng(0).standard_normal((10, 8))}
    d = 1.5 * x["u"]
    h = train(m, x, d, params=["g2."], optimizer=SGD(0.01), epochs=5, batch_size=3,
              schedule=exponential_decay(0.5))
    assert m.blocks["g1"].K == 0.3 and m.blocks["g2"].K != 0.2
    assert [r["lr"] for r in h.records] == [0.01 * 0.5**e for e in range(5)]
    with pytest.raises(Exception, match="no parameter 'nope'"):
        train(m, x, d, params=["nope"], epochs=1)


def test_truncated_mode_with_full_window_equals_bptt():
    x = {"x": np.random.default_rng(1).standard_normal((30, 3, 2))}
    a, b = output_feedback_rnn(seed=1), output_feedback_rnn(seed=1)
    d = np.zeros((30, 3, 3))
    train(a, x, d, optimizer=SGD(0.01), epochs=3)
    train(b, x, d, optimizer=SGD(0.01), epochs=3, mode="truncated", window=30)
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(v, b.parameters()[k])
    g_full = backward(a, x, targets=d).params
    g_trunc = backward(a, x, targets=d, window=5, chunked=True).params
    assert not np.allclose(g_full["layer1.W"], g_trunc["layer1.W"])


def test_online_gradients_sum_to_bptt_and_online_training_learns():
    m = fir_network(seed=3)
    rng = np.random.default_rng(3)
    x = {"x": rng.standard_normal((50, 2, 1))}
    d = rng.standard_normal((50, 2, 1))
    for loss in ("sse", "mse"):
        full = backward(m, x, targets=d, loss=loss)
        value, g = OnlineBackprop(m, chunk=7, loss=loss).run(x, d)
        assert value == pytest.approx(full.loss, rel=1e-12)
        for k in full.params:
            np.testing.assert_allclose(g[k], full.params[k], rtol=1e-10, atol=1e-14)
    target = np.sin(np.arange(50) / 3.0)[:, None, None] * np.ones((1, 2, 1))
    h = train(m, x, target * 0.5, mode="online", chunk=1, optimizer=SGD(0.002), epochs=15)
    assert h.losses[-1] < 0.5 * h.losses[0]


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_non_finite_loss_names_the_first_block_and_step():
    m = Model("blowup")
    u, y = m.add(Inport("u"), Outport("y"))
    f = m.add(Function("exp", name="expo"))
    g = m.add(Gain(50.0, name="big"))
    z = m.add(UnitDelay(name="z"))
    s = m.add(DiscreteFilter([1.0], [1.0], name="pass"))
    m.chain(u, s, g, f, y)
    m.chain(f, z, m.add(Function("identity", name="sink")))
    x = {"u": np.concatenate([np.zeros((5, 1)), np.full((5, 1), 20.0)])}
    tr = simulate(m, x, check_finite=False)
    assert first_nonfinite(tr) == ("expo.y", 5)
    with pytest.raises(SimulationError, match=r"non-finite value, first at expo\.y, step 5"):
        simulate(m, x)
    with pytest.raises(TrainingError, match=r"non-finite loss in epoch 0: first at expo\.y, "
                                            "step 5"):
        train(m, x, np.zeros((10, 1)), optimizer=SGD(0.1), epochs=2)


def test_checkpoint_resume_is_bit_for_bit(tmp_path):
    x = {"x": np.random.default_rng(2).standard_normal((20, 6, 2))}
    d = np.random.default_rng(3).standard_normal((20, 6, 3)) * 0.5
    kw = dict(optimizer_cls=Adam, epochs=9, batch_size=4, checkpoint_every=2)

    def run(ck, stop_at=None):
        m = output_feedback_rnn(seed=5)

        def cb(epoch, rec):
            if epoch == stop_at:
                raise KeyboardInterrupt  # killed mid-run, after epoch 7 (checkpoint at 6)

        try:
            h = train(m, x, d, optimizer=kw["optimizer_cls"](0.01), epochs=kw["epochs"],
                      batch_size=kw["batch_size"], checkpoint=ck,
                      checkpoint_every=kw["checkpoint_every"], resume=True, callback=cb,
                      seed=11)
        except KeyboardInterrupt:
            return m, None
        return m, h

    unbroken, h1 = run(tmp_path / "a.npz")
    _, none = run(tmp_path / "b.npz", stop_at=7)
    assert none is None
    resumed, h2 = run(tmp_path / "b.npz")
    for k, v in unbroken.parameters().items():
        np.testing.assert_array_equal(v, resumed.parameters()[k])
    assert [r["loss"] for r in h1.records] == [r["loss"] for r in h2.records]
    other = output_feedback_rnn(seed=5)
    with pytest.raises(TrainingError, match="belongs to another run"):
        train(other, x, d, optimizer=SGD(0.1), epochs=10, checkpoint=tmp_path / "b.npz",
              resume=True)


def test_showing_progress_draws_a_bar_over_the_epochs(monkeypatch):
    import tqdm.auto

    from blockflow.train import showing_progress
    from models.closed_loop import tanh_loop

    made = []

    class Bar:
        def __init__(self, total, **kw):
            made.append(self)
            self.total, self.n = total, 0

        def set_postfix(self, **kw):
            self.loss = kw["loss"]

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    r = np.sin(np.arange(40) / 5.0)[:, None]
    train(tanh_loop(), {"r": r}, 0.5 * r, epochs=3)
    assert not made  # off by default
    with showing_progress():
        train(tanh_loop(), {"r": r}, 0.5 * r, epochs=3)
    assert len(made) == 1 and made[0].n == made[0].total == 3 and made[0].closed


def test_minimize_fits_a_filter_exactly_and_keeps_held_entries():
    """Quasi-Newton on the exact gradient: an IIR filter identified from noise-free data
    to its true coefficients in a few iterations, a[0] held, unselected parameters
    frozen."""
    from blockflow.train import minimize
    from blocks import DiscreteFilter

    def filt(b, a):
        m = Model("f")
        u, y = m.add(Inport("u"), Outport("y"))
        m.chain(u, m.add(DiscreteFilter(b, a, name="f")), y)
        return m

    u = np.random.default_rng(0).standard_normal((200, 2))
    d = simulate(filt([0.5, 0.3], [1.0, -0.6, 0.2]), {"u": u})["y"]
    m = filt([0.1, 0.0], [1.0, 0.0, 0.0])
    hist = minimize(m, {"u": u}, d, loss="mse", maxiter=200)
    np.testing.assert_allclose(m.blocks["f"].b, [0.5, 0.3], atol=1e-7)
    np.testing.assert_allclose(m.blocks["f"].a, [1.0, -0.6, 0.2], atol=1e-7)
    assert m.blocks["f"].a[0] == 1.0  # held
    assert 1 < len(hist) < 100 and hist.losses[-1] < 1e-12 < hist.losses[0]
    frozen = filt([0.1, 0.0], [1.0, 0.0, 0.0])
    minimize(frozen, {"u": u}, d, loss="mse", params=["f.b"], maxiter=50)
    np.testing.assert_array_equal(frozen.blocks["f"].a, [1.0, 0.0, 0.0])  # not selected
    with pytest.raises(BlockflowError, match="no parameter 'g.K'"):
        minimize(frozen, {"u": u}, d, params=["g.K"])
    with pytest.raises(BlockflowError, match="method must be one of"):
        minimize(frozen, {"u": u}, d, method="newton-raphson")
    empty = Model("delay")
    x, y = empty.add(Inport("u"), Outport("y"))
    empty.chain(x, empty.add(UnitDelay(name="z")), y)
    with pytest.raises(BlockflowError, match="no trainable parameters"):
        minimize(empty, {"u": u}, d)
