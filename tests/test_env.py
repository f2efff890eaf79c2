"""A model as a Gymnasium environment (blockflow.env.ModelEnv): Gymnasium's own
check_env, steps equal to one simulate() run bit for bit, seeded resets, a controller
trained by BPTT evaluated in it, pacing and the bad inputs."""

import time

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from blockflow import Inport, Model, Outport, SimulationError, simulate  # noqa: E402
from blockflow.env import ModelEnv  # noqa: E402
from blocks import Gain  # noqa: E402
from models.cart_pole import cart_pole, fit, lqr_gain, plant, policy  # noqa: E402

STATES = ["x", "v", "theta", "omega"]


def cart_env(**kw):
    kw.setdefault("initial_state",
                  lambda rng: {"angle": np.array([rng.uniform(-0.2, 0.2)])})
    return ModelEnv(plant(dt=0.02), action="a", observation=STATES, horizon=150,
                    action_low=-50.0, action_high=50.0,
                    terminated=lambda o: abs(float(o["theta"])) > 1.0, **kw)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gymnasiums_check_env_passes():
    check_env(cart_env(), skip_render_check=True)


def test_steps_equal_one_simulate_run_bit_for_bit():
    env = cart_env(initial_state={"angle": np.array([0.1])})
    obs0, _ = env.reset(seed=0)
    rng = np.random.default_rng(1)
    acts = rng.uniform(-5, 5, 40)
    acts[0] = 3.0  # non-zero at k = 0
    seen = [obs0]
    for a in acts:
        seen.append(env.step(a)[0])
    p = plant(dt=0.02)
    p.blocks["angle"].x0[...] = 0.1
    tr = simulate(p, {"a": np.append(acts, 0.0)[:, None], "push": np.zeros((41, 1))},
                  backend=env.sim.plan.backend if env.sim.plan.backend != "auto" else None)
    want = np.stack([tr[s][:, 0] for s in STATES], axis=1)
    np.testing.assert_array_equal(np.array(seen), want)


def test_seeded_resets_repeat_and_differ():
    env = cart_env()
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a, b)
    assert a[2] != c[2]
    assert env.reset(options={"state": {"angle": np.array([0.05])}})[0][2] == 0.05


def episode(env, act, seed=3):
    obs, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        obs, r, term, trunc, _ = env.step(act(obs))
        total, steps = total + r, steps + 1
        if term or trunc:
            return total, term, steps


def test_a_controller_trained_by_bptt_is_evaluated_in_the_environment():
    """The cart-pole loop's controller, trained through the model (rk4 plant), run as a
    policy in the plant's environment: it balances the pole; doing nothing drops it."""
    loop = cart_pole()
    fit(loop, seconds=1.5, epochs=15, lr=0.03)
    env = cart_env()
    trained, fell, n = episode(env, policy(loop))
    assert not fell and n == 150
    lqr, _, _ = episode(env, lambda s: -(lqr_gain(0.02) @ s).reshape(()))
    nothing, dropped, _ = episode(env, lambda s: 0.0)
    assert dropped
    assert trained > nothing and lqr > nothing


def test_realtime_paces_the_steps():
    env = ModelEnv(plant(dt=0.01), action="a", observation=["theta"], realtime=1.0)
    env.reset(seed=0)
    t0 = time.monotonic()
    for _ in range(5):
        env.step(0.0)
    assert time.monotonic() - t0 >= 0.04


def test_bad_settings_are_refused():
    with pytest.raises(SimulationError, match="has Inports .*name the one the action drives"):
        ModelEnv(plant(dt=0.02))
    with pytest.raises(SimulationError, match="no Inport 'u'"):
        ModelEnv(plant(dt=0.02), action="u")
    with pytest.raises(SimulationError, match=r"observation names \['speed'\]"):
        ModelEnv(plant(dt=0.02), action="a", observation=["speed"])
    direct = Model("direct", dt=0.1)
    u, y = direct.add(Inport("u"), Outport("y"))
    direct.chain(u, direct.add(Gain(2.0, name="k")), y)
    with pytest.raises(SimulationError, match=r"Outport\(s\) \['y'\] .* read the action 'u'"):
        ModelEnv(direct)
