"""No silent wrong number: a run's numbers depend on its model, inputs, settings and seed,
never on what a kernel cache holds, what the process ran before, or how it was split."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, simulate
from blockflow.gradient.sweep import grad
from blockflow.plan.compiler import compile

numba = pytest.importorskip("numba")

K = 0.8
Z0 = 0.5
R = np.sin(np.arange(40) / 5.0) + 1.0


def loop(f, df) -> Model:
    """``s = r - z``, ``y = K f(s)``, ``z(k+1) = y(k)``, ``z(0) = Z0``."""
    from blocks import Function, Gain, Sum, UnitDelay

    m = Model("user_fn_loop")
    r, y = m.add(Inport("r"), Outport("y"))
    s, p, g = m.add(Sum("+-", name="s"), Function(f, df, name="p"), Gain(K, name="g"))
    m.connect(r, s.u1)
    m.chain(s, p, g, y)
    m.chain(g, m.add(UnitDelay(Z0, name="z")), s.u2)
    return m


def by_hand(f, r=R) -> np.ndarray:
    z, out = Z0, []
    for rk in r:
        y = K * f(rk - z)
        out.append(y)
        z = y
    return np.array(out)


def make(c):
    """A factory: each function reads its own ``c`` through a default argument."""
    def f(x, c=c):
        return c * np.tanh(x)

    def df(a, y, c=c):
        return c * (1.0 - np.tanh(a) ** 2)

    return f, df


def make_closure(c):
    def f(x):
        return c * np.tanh(x)

    def df(a, y):
        return c * (1.0 - np.tanh(a) ** 2)

    return f, df


SCALE = 1.0


def f_global(x):
    return SCALE * np.tanh(x)


def df_global(a, y):
    return SCALE * (1.0 - np.tanh(a) ** 2)


def helper(x):
    return SCALE * np.sin(x)


def f_helper(x):
    return helper(x)


def df_helper(a, y):
    return SCALE * np.cos(a)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_functions_that_share_their_code_never_share_a_kernel(backend, monkeypatch):
    """Factories (defaults, closures), globals changed between runs and a helper whose
    global changed: each run gives the hand-written numbers of the function it holds,
    forward and gradient (finite differences), on the numpy path and compiled."""
    def check(f, df, c_of):
        m = loop(f, df)
        y = simulate(m, {"r": R}, backend=backend)["y"][:, 0]
        np.testing.assert_allclose(y, by_hand(c_of), rtol=1e-12, atol=1e-14)
        # dJ/dK of J = sum y^2 (sse against 0) against central differences by hand
        eps = 1e-6
        global K
        k0 = K
        try:
            K = k0 + eps
            jp = float(np.sum(by_hand(c_of) ** 2))
            K = k0 - eps
            jm = float(np.sum(by_hand(c_of) ** 2))
        finally:
            K = k0
        monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
        _, g = grad(m, {"r": R}, targets=np.zeros_like(R))
        np.testing.assert_allclose(g["g.K"], (jp - jm) / (2 * eps), rtol=1e-6)

    for c in (1.0, 1.2, -0.5):
        check(*make(c), lambda x, c=c: c * np.tanh(x))
        check(*make_closure(c), lambda x, c=c: c * np.tanh(x))
    for c in (1.0, 1.2):
        monkeypatch.setitem(globals(), "SCALE", c)
        check(f_global, df_global, lambda x, c=c: c * np.tanh(x))
        check(f_helper, df_helper, lambda x, c=c: c * np.sin(x))


def test_a_value_that_cannot_be_keyed_runs_the_users_function_and_says_why():
    table = {"c": 2.0}
    m = loop(lambda x: table["c"] * np.tanh(x), lambda a, y: table["c"] * (1 - np.tanh(a) ** 2))
    plan = compile(m, backend="numba")
    assert "cannot be keyed (it reads a dict" in plan.describe()
    for c in (2.0, 5.0):
        table["c"] = c
        y = simulate(m, {"r": R}, backend="numba")["y"][:, 0]
        np.testing.assert_allclose(y, by_hand(lambda x, c=c: c * np.tanh(x)), rtol=1e-12)


SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
import usermod
from test_trust import loop
usermod.C = float(sys.argv[1])
y = __import__("blockflow").simulate(loop(usermod.f, usermod.df), {{"r": np.ones(30)}},
                                     backend="numba")["y"]
print(repr(float(y.sum())))
"""

USERMOD = """
import numpy as np
C = 1.0
def f(x):
    return C * np.tanh(x)
def df(a, y):
    return C * (1.0 - np.tanh(a) ** 2)
"""


def test_a_second_process_with_another_global_gets_its_own_numbers(tmp_path):
    """Two processes share one disk cache; the second's global differs: it must not
    load the first one's machine code (numba froze the first value there)."""
    (tmp_path / "usermod.py").write_text(USERMOD)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__)))
    env = dict(os.environ, BLOCKFLOW_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.getcwd()]))

    def run(c):
        out = subprocess.run([sys.executable, str(script), str(c)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stderr
        return float(out.stdout.strip().splitlines()[-1])

    first, second = run(1.0), run(3.0)
    want = [by_hand(lambda x, c=c: c * np.tanh(x), np.ones(30)).sum() for c in (1.0, 3.0)]
    np.testing.assert_allclose([first, second], want, rtol=1e-12)
    assert run(1.0) == first  # and the first value's entry is served again, bit for bit


def _training(m, checkpoint=None, resume=False, stop_at=None):
    from blockflow.train import Adam, train

    rng = np.random.default_rng(3)
    r = rng.standard_normal((60, 4))

    def stop(epoch, rec):
        if stop_at is not None and epoch == stop_at:
            raise KeyboardInterrupt  # killed after the checkpoint of this epoch

    try:
        train(m, {"r": r}, np.tanh(r), epochs=12, optimizer=Adam(0.05), batch_size=2,
              checkpoint=checkpoint, checkpoint_every=3, resume=resume, callback=stop)
    except KeyboardInterrupt:
        return None
    return {k: v.copy() for k, v in m.parameters().items()}


@pytest.mark.parametrize("backend", ["numpy", "numba", "auto-cold", "auto-warm"])
def test_a_killed_and_resumed_training_ends_bit_for_bit_where_one_run_ends(
        backend, tmp_path, monkeypatch):
    from models.closed_loop import tanh_loop

    monkeypatch.setenv("BLOCKFLOW_BACKEND", backend.split("-")[0])
    if backend == "auto-cold":
        monkeypatch.setenv("BLOCKFLOW_CACHE", str(tmp_path / "cold"))
    whole = _training(tanh_loop())
    ck = tmp_path / "ck.npz"
    m = tanh_loop()
    assert _training(m, ck, stop_at=6) is None
    resumed = _training(tanh_loop(), ck, resume=True)
    assert whole.keys() == resumed.keys()
    for k in whole:
        np.testing.assert_array_equal(resumed[k], whole[k], err_msg=k)


def test_the_backend_decision_is_a_function_of_the_run():
    """The same run decides the same way before and after other work in the process."""
    from blockflow.backends import policy
    from models.closed_loop import tanh_loop

    plan = compile(tanh_loop(), backend="auto")
    seg = next(s for s in plan.segments if s.loop is not None)
    before = [policy.loop_compiled(plan, seg, T, 1) for T in (10, 10**4, 10**6)]
    simulate(plan, {"r": np.ones((20000, 1))})
    after = [policy.loop_compiled(plan, seg, T, 1) for T in (10, 10**4, 10**6)]
    assert before == after == [False, False, True]
    assert textwrap.dedent(policy.__doc__).count("pure function") == 1


def noisy(feedback: bool = False) -> Model:
    """``y = K n`` (``n`` white noise), or through a loop ``y(k) = K n(k) + 0.5 y(k-1)``."""
    from blocks import Gain, Noise, Sum, UnitDelay

    m = Model("noisy")
    n, g, y = m.add(Noise(1.0, seed=4, name="n"), Gain(2.0, name="g"), Outport("y"))
    if feedback:
        s, h, z = m.add(Sum("++", name="s"), Gain(0.5, name="h"), UnitDelay(0.0, name="z"))
        m.chain(n, g, s.u1)
        m.chain(s, y)
        m.chain(s, z, h, s.u2)
    else:
        m.chain(n, g, y)
    return m


@pytest.mark.parametrize("chunk_size", [1, 2, 256])
def test_a_runs_seed_reaches_every_random_block_whatever_the_chunking(chunk_size):
    """Same seed -> the same noise for every swept value (batched or not); different
    seeds -> different noise; the chunking does not change a run's numbers."""
    from blockflow.parallel import parameter_sweep

    pytest.importorskip("xarray")
    ks = [0.5, 1.0, 3.0]
    ds = parameter_sweep(noisy(), {"g.K": ks}, seeds=[0, 1, 7], steps=50,
                         chunk_size=chunk_size, executor="serial", progress=False,
                         backend="numpy")
    y = ds["y"].values  # (K, seed, time)
    n = y / np.array(ks)[:, None, None]
    for s in range(3):
        np.testing.assert_allclose(n[1:, s], np.broadcast_to(n[0, s], n[1:, s].shape),
                                   rtol=1e-13)
    assert not np.allclose(n[0, 0], n[0, 1]) and not np.allclose(n[0, 1], n[0, 2])
    assert np.abs(n[0, 0, 0]) > 0  # the first sample is drawn too
    # a run's noise is simulate's for that seed, alone, with any batch around it
    alone = simulate(noisy(), steps=50, seed=7)["y"][:, 0] / 2.0
    np.testing.assert_array_equal(n[1, 2], alone)
    batch = simulate(noisy(), steps=50, batch=3, seed=[5, 7, 9])["y"][:, 1] / 2.0
    np.testing.assert_array_equal(batch, alone)


def test_random_blocks_draw_independently_and_the_default_seeds_are_the_members():
    from blocks import Noise

    m = Model("two_noises")
    a, b = m.add(Noise(name="a"), Noise(name="b"))
    m.connect(a, m.add(Outport("ya")))
    m.connect(b, m.add(Outport("yb")))
    tr = simulate(m, steps=200, batch=2)
    assert abs(np.corrcoef(tr["ya"][:, 0], tr["yb"][:, 0])[0, 1]) < 0.25
    assert abs(np.corrcoef(tr["ya"][:, 0], tr["ya"][:, 1])[0, 1]) < 0.25
    np.testing.assert_array_equal(tr["ya"][:, 1], simulate(m, steps=200, seed=1)["ya"][:, 0])
    with pytest.raises(Exception, match="seed must be a non-negative integer"):
        simulate(m, steps=5, batch=2, seed=[1, 2, 3])


def test_noise_in_a_loop_is_the_same_compiled_and_with_any_backend_choice():
    tr = simulate(noisy(feedback=True), steps=300, seed=[3], backend="numba")
    ref = simulate(noisy(feedback=True), steps=300, seed=[3], backend="numpy")
    np.testing.assert_allclose(tr["y"], ref["y"], rtol=1e-13)
    n = simulate(noisy(), steps=300, seed=3)["y"][:, 0]
    y, prev = [], 0.0
    for v in n:
        prev = v + 0.5 * prev
        y.append(prev)
    np.testing.assert_allclose(ref["y"][:, 0], y, rtol=1e-13)


def test_the_transpose_of_the_transpose_of_a_multirate_model_is_the_model():
    """reciprocal(reciprocal(m)) reads and writes as m at every rate (held outputs, not
    impulses): it simulates as m, to rounding."""
    from blockflow import reciprocal
    from models.dc_motor import motor_loop

    m = motor_loop(20.0, 20.0, 0.5)
    rr = reciprocal(reciprocal(m))
    r = np.linspace(0.5, 1.5, 3) * (1.0 + 0.1 * np.sin(np.arange(60) / 4.0))[:, None]
    a, b = simulate(m, {"r": r}), simulate(rr, {"r": r})
    np.testing.assert_allclose(b["w"], a["w"], rtol=1e-13, atol=1e-15)
    assert np.abs(a["w"]).max() > 0.01
    assert set(rr.blocks) == set(m.blocks)


# ------------------------------------------------------------------ smaller surprises
def test_an_identified_filter_keeps_a0_at_one_by_default():
    """a[0] only scales b and a together: trained by default, an identified filter came
    back scaled (b = [0.529, 0.318] for a true [0.5, 0.3]).  It is held unless asked."""
    import scipy.signal as ss

    from blockflow.train import Adam, train
    from models.arma import arma_filter

    rng = np.random.default_rng(0)
    u = rng.standard_normal((200, 4))
    y = ss.lfilter([0.0, 0.5, 0.3], [1.0, -0.6], u, axis=0)
    m = arma_filter([0.0, 0.1, 0.1], [1.0, 0.0])
    train(m, {"u": u}, y, loss="mse", optimizer=Adam(0.05), epochs=300)
    f = m.blocks["filter"]
    assert f.a[0] == 1.0
    np.testing.assert_allclose(f.b, [0.0, 0.5, 0.3], atol=2e-3)
    np.testing.assert_allclose(f.a, [1.0, -0.6], atol=2e-3)
    from blocks import DiscreteFilter

    assert DiscreteFilter([1.0], [2.0, 0.5], fix_a0=False).fix_a0 is False  # when asked


def test_submodules_are_modules_and_their_functions_still_run():
    import importlib

    import blockflow

    for name, path, member in [("train", "train", "Adam"), ("sweep", "gradient.sweep", "backward"),
                               ("simulate", "run.simulate", "bind_inputs"),
                               ("reciprocal", "gradient.reciprocal", "port_types"),
                               ("tangent", "gradient.tangent", "directional")]:
        module = importlib.import_module(f"blockflow.{path}")
        assert getattr(blockflow, name) is module and hasattr(module, member), name
    import blockflow.train as bt  # the statement the issue saw return the function

    assert bt.Adam is importlib.import_module("blockflow.train").Adam
    from blockflow import simulate as sim
    from models.closed_loop import tanh_loop

    direct = blockflow.run.simulate.simulate(tanh_loop(), {"r": np.ones(5)})["y"]
    np.testing.assert_array_equal(sim(tanh_loop(), {"r": np.ones(5)})["y"], direct)
    import inspect

    assert "check_finite" in inspect.signature(blockflow.run.simulate).parameters


BROKEN = '''
import numpy as np
from blockflow import Inport, Model, Outport
from blocks import Function, Gain


def f(a):
    return np.sin(a)


def wrong(a, y):  # off by 1 %: a wrong rule the check must name
    return 1.01 * np.cos(a)


def build():
    m = Model("broken")
    m.chain(*m.add(Inport("r"), Gain(120.0, name="big"), Function(f, wrong, name="f"),
                   Gain(0.5, name="h"), Outport("y")))
    return m
'''


def test_the_cli_gradient_check_uses_a_relative_step_and_names_a_disagreement(tmp_path, capsys):
    """Gains near 100 (the DC motor's PID): a fixed step of 1e-6 reported finite-difference
    error as a disagreement; a wrong rule is named with both numbers and the tolerance."""
    from blockflow import cli

    assert cli.main(["grad", "models/dc_motor.py:motor_loop", "--steps", "400",
                     "--random-inputs", "1", "--fd-check", "--quiet"]) == 0
    assert "tolerance 1e-05" in capsys.readouterr().out
    (tmp_path / "broken.py").write_text(BROKEN)
    assert cli.main(["grad", str(tmp_path / "broken.py"), "--steps", "50",
                     "--random-inputs", "2", "--fd-check", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "the gradient of big.K disagrees" in err and "tolerance 1e-05" in err
    assert "by the reciprocal sweep" in err and "by central differences" in err
    assert "h.K" not in err


def test_central_differences_with_richardson_are_exact_to_fourth_order():
    from blockflow.gradient.check import central_difference, relative_step

    assert central_difference(lambda t: np.exp(2.0 + t), 1e-2) == pytest.approx(
        np.exp(2.0), rel=1e-9)
    assert relative_step(np.array([100.0, -3.0]), np.array([0.5, 2.0])) == pytest.approx(
        1e-4 * 100 / 2.0)


def test_an_autonomous_loop_of_integrators_builds_with_a_declared_shape():
    """x'' = -x from x(0) = 1: no Inport, so the integrators declare their shape (the
    error's advice names how); forward Euler by hand."""
    from blockflow.errors import SignalTypeError
    from blocks import Gain, Integrator

    def oscillator(**kw):
        m = Model("osc", dt=0.01)
        a, b, g = m.add(Integrator(1.0, name="a", **kw), Integrator(0.0, name="b", **kw),
                        Gain(-1.0, name="g"))
        m.chain(b, a, g, b)  # b' = -a, a' = b: a = cos, b = -sin
        m.connect(a, m.add(Outport("x")))
        return m

    with pytest.raises(SignalTypeError, match=r"Integrator\(shape=...\)"):
        simulate(oscillator(), steps=5)
    x = simulate(oscillator(shape=()), steps=300)["x"][:, 0]
    a, b, ref = 1.0, 0.0, []
    for _ in range(300):
        ref.append(a)
        a, b = a + 0.01 * b, b - 0.01 * a
    np.testing.assert_allclose(x, ref, rtol=1e-12, atol=1e-14)
    assert x[0] == 1.0


UNGUARDED = """
import numpy as np
from blockflow.parallel import parameter_sweep
from models.closed_loop import tanh_loop

parameter_sweep(tanh_loop(), {"plant.a": [np.array([1.0, -a]) for a in (0.1, 0.2)]},
                steps=10, inputs={"r": np.ones(10)}, progress=False, executor="processes")
"""


def test_a_sweep_script_without_the_main_guard_is_told_in_one_line(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(UNGUARDED)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0
    assert "BrokenProcessPool" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "sweep_script.py, line 6" in last and 'if __name__ == "__main__":' in last


def test_a_model_file_with_a_huge_integer_or_deep_nesting_names_the_block(tmp_path):
    import json

    from blockflow import load, save
    from blockflow.errors import ModelFileError
    from models.closed_loop import tanh_loop

    path = tmp_path / "m.json"
    save(tanh_loop(), path)
    spec = json.loads(path.read_text())
    kc = next(b for b in spec["model"]["blocks"] if b["name"] == "kc")
    kc["config"]["K"]["__array__"]["data"] = ["HUGE"]
    path.write_text(json.dumps(spec).replace('"HUGE"', "9" * 5000))
    with pytest.raises(ModelFileError, match="block 'kc': an integer of 5000 digits"):
        load(path)
    kc["config"]["K"] = "DEEP"
    for depth, match in [(100_000, r"nested too deeply \(at line 1, column \d+, inside "
                                   r"block 'kc'\)"),
                         (200, "block 'kc': values nested more than 32 deep")]:
        path.write_text(json.dumps(spec).replace('"DEEP"', "[" * depth + "1" + "]" * depth))
        with pytest.raises(ModelFileError, match=match):
            load(path)


def test_a_loop_through_a_quantizer_stays_compiled_in_both_directions():
    """Quantizer's reciprocal (a zero block) has a kernel: the reciprocal loop compiles."""
    from blockflow import reciprocal
    from blocks import Function, Gain, Quantizer, Sum, UnitDelay

    m = Model("quantised")
    r, y = m.add(Inport("r"), Outport("y"))
    s, g, t = m.add(Sum("+-", name="s"), Gain(0.7, name="g"), Function("tanh", name="t"))
    q, z = m.add(Quantizer(0.1, name="q"), UnitDelay(0.2, name="z"))
    m.connect(r, s.u1)
    m.chain(s, g, t, y)
    m.chain(t, q, z, s.u2)
    assert "numpy path" not in compile(reciprocal(m), backend="numba").describe()
    x = np.sin(np.arange(30) / 3.0)[:, None]
    got = {}
    for backend in ("numpy", "numba"):
        os.environ["BLOCKFLOW_BACKEND"] = backend
        try:
            got[backend] = grad(m, {"r": x}, targets=np.zeros_like(x))
        finally:
            os.environ["BLOCKFLOW_BACKEND"] = "numpy"
    assert got["numba"][0] == pytest.approx(got["numpy"][0], rel=1e-13)
    np.testing.assert_allclose(got["numba"][1]["g.K"], got["numpy"][1]["g.K"], rtol=1e-12)


def test_compiling_writes_nothing_into_the_users_blocks():
    """A block's rate is kept beside it (core.rates.placed_rate), and compiling or running
    leaves the block's own attributes and the plan's as they were."""
    from blockflow.core.rates import placed_rate
    from models.dc_motor import motor_loop

    m = motor_loop(20.0, 20.0, 0.5)
    before = {p: dict(vars(b)) for p, b in m.blocks.items()}
    plan = compile(m)
    plan_before = dict(vars(plan))
    simulate(m, {"r": np.ones(40)}, backend="numba")
    simulate(m, {"r": np.ones(40)}, backend="numpy")
    own_memos = {"_discrete", "_port_sets"}  # a block's memos of its own values (c2d, ports)
    for p, b in m.blocks.items():
        assert set(vars(b)) - set(before[p]) <= own_memos, p
        assert "_rate" not in vars(b)
    assert vars(plan).keys() == plan_before.keys()
    assert placed_rate(m.blocks["sample"]).n > 1
    copy = m.blocks["sample"].copy("other")
    assert placed_rate(copy) is None  # a copy has no rate until its model is compiled
