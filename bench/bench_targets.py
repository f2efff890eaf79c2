"""The compiled-loop and scale targets in one table: each case next to its reference,
measured in this run (ratios, the machines are noisy), with the target beside it.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_targets.py``); the other
benchmarks print the details.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_compiled import (  # noqa: E402
    A_,
    B_,
    KC,
    compile_cost,
    dc_motor_njit,
    loop_alone,
    loop_bptt,
    numba_loop,
    pid_loop_njit,
    python_floats,
)
from bench_gradient import jax_bptt, numba_bptt, numpy_bptt, rnn  # noqa: E402
from bench_scale import chains, loops, measure, ring, wide_mux, wide_sum  # noqa: E402
from timing import best  # noqa: E402

from blockflow import backward, compile, grad, simulate  # noqa: E402
from blockflow.gradient.gradients import reciprocal_plan  # noqa: E402
from models.closed_loop import tanh_loop  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []


def row(case: str, now: str, reference: str, target: str) -> None:
    ROWS.append((case, now, reference, target))
    print(f"  {case}: {now} | {reference} | target {target}", flush=True)


def closed_loop() -> None:
    T = 100_000
    m = tanh_loop(KC, B_, A_)
    r = np.random.default_rng(0).standard_normal((T, 1))
    t_nb = best(lambda: simulate(m, {"r": r}, backend="numba"), 5)
    loop, out = numba_loop(), np.empty(T)
    t_hand = best(lambda: loop(r[:, 0], out), 5)
    rl = r[:, 0].tolist()
    t_py = best(lambda: python_floats(rl), 3)
    t_loop = best(loop_alone(m, {"r": r}), 5)
    us = 1e6 / T
    row("closed loop ARMA + tanh controller (13 blocks), B=1, compiled",
        f"simulate {us * t_nb:.3f} us/step: {t_nb / t_hand:.1f}x; its loop alone "
        f"{us * t_loop:.3f}: {t_loop / t_hand:.2f}x; {t_py / t_nb:.1f}x faster than Python "
        "floats", f"hand-written @njit loop, state in locals, {us * t_hand:.3f} us/step; "
        f"Python floats {us * t_py:.3f} us/step", "<= 1.5x")
    os.environ["BLOCKFLOW_BACKEND"] = "numba"
    w = {"y": np.ones((T, 1))}
    t_fwd = best(lambda: simulate(m, {"r": r}), 5)
    t_grad = best(lambda: backward(m, trace=simulate(m, {"r": r}), dL_dy=w), 5)
    g = backward(m, trace=simulate(m, {"r": r}), dL_dy=w).params
    del os.environ["BLOCKFLOW_BACKEND"]
    hand = loop_bptt()
    work = [np.empty(T) for _ in range(3)]
    args = (r[:, 0], w["y"][:, 0], KC, np.array(B_), np.array(A_), *work)
    dK, db, da = hand(*args)  # the same gradients, or the reference is no reference
    np.testing.assert_allclose([dK, *db, *da], [float(g["kc.K"]), *g["plant.b"],
                                                *g["plant.a"]], rtol=1e-9)
    t_bptt = best(lambda: hand(*args), 5)
    row("its forward + gradient, compiled path", f"{t_grad / t_fwd:.2f}x the forward; "
        f"{t_grad / t_bptt:.1f}x the hand BPTT",
        f"forward {us * t_fwd:.3f} us/step; hand @njit forward + BPTT, state in locals, "
        f"{us * t_bptt:.3f} us/step", "<= 2.5x the forward; <= 3x the hand BPTT")


def pid_case() -> None:
    from models.pid import pid_loop

    T = 100_000
    m = pid_loop()
    r = np.random.default_rng(0).standard_normal((T, 1))
    t_nb = best(lambda: simulate(m, {"r": r}, backend="numba"), 5)
    hand, out = pid_loop_njit(), np.empty(T)
    np.testing.assert_allclose(hand(r[:, 0], out), simulate(m, {"r": r})["y"][:, 0],
                               rtol=1e-9, atol=1e-12)  # the same loop, or no reference
    t_hand = best(lambda: hand(r[:, 0], out), 5)
    t_loop = best(loop_alone(m, {"r": r}), 5)
    us = 1e6 / T
    row("PID loop (subsystem, 8 blocks), B=1, compiled", f"simulate {us * t_nb:.3f} us/step:"
        f" {t_nb / t_hand:.1f}x; its loop alone {us * t_loop:.4f}: {t_loop / t_hand:.2f}x",
        f"hand-written @njit loop, state in locals, {us * t_hand:.4f} us/step", "<= 1.5x")


def dc_motor_case() -> None:
    from models.dc_motor import GAINS, motor_loop

    T = 100_000
    m = motor_loop()  # plant at 5 kHz, PID at 1 kHz
    r = np.ones((T, 1))
    r[0] = 0.5
    A, B, C, _ = (np.ascontiguousarray(M) for M in m.blocks["motor"].matrices())
    hand, out = dc_motor_njit(), np.empty(T)
    args = (r[:, 0], out, A, B, C, *GAINS, 1e-3, 5)
    os.environ["BLOCKFLOW_BACKEND"] = "numba"
    np.testing.assert_allclose(hand(*args), simulate(m, {"r": r})["w"][:, 0], rtol=1e-12,
                               atol=1e-14)  # the same loop, or no reference
    t_nb = best(lambda: simulate(m, {"r": r}), 5)
    w = {"w": np.ones((T, 1))}
    t_grad = best(lambda: backward(m, trace=simulate(m, {"r": r}), dL_dy=w), 5)
    del os.environ["BLOCKFLOW_BACKEND"]
    t_hand = best(lambda: hand(*args), 5)
    t_loop = best(loop_alone(m, {"r": r}), 5)
    us = 1e6 / T
    row("DC motor (multirate: plant 5 kHz, PID 1 kHz, 14 blocks), B=1, compiled",
        f"simulate {us * t_nb:.4f} us/step: {t_nb / t_hand:.1f}x; its loop alone "
        f"{us * t_loop:.4f}: {t_loop / t_hand:.2f}x; forward + gradient {t_grad / t_nb:.2f}x "
        "the forward", f"hand-written @njit loop, state in locals, {us * t_hand:.4f} us/step",
        "<= 1.5x; gradient <= 3x the forward")


def interpreter_case(sizes=(18, 30), T: int = 20_000, B: int = 4) -> None:
    """Item 7: a loop run by the interpreter of its operations' kinds against the same
    loop compiled whole (one generated function), ``simulate`` end to end."""
    from blockflow.backends import loops
    from tests.test_interp import ring

    os.environ["BLOCKFLOW_BACKEND"] = "numba"
    x = {"u": np.random.default_rng(0).standard_normal((T, B, 2))}
    parts = []
    for n in sizes:
        t = {}
        for how, limit in (("interpreted", loops.INTERP_MIN_OPS), ("whole", 10**6)):
            saved, loops.INTERP_MIN_OPS = loops.INTERP_MIN_OPS, limit
            try:
                plan = compile(ring(n))
                y = simulate(plan, x)["y"]  # (compiled, or loaded from the disk cache)
                t[how] = best(lambda plan=plan: simulate(plan, x), 5)
                seg = next(sg for sg in plan.segments if sg.loop is not None)
                assert ("interpreter" in plan.loop_backend(seg)) == (how == "interpreted")
                t[how + " y"] = y
            finally:
                loops.INTERP_MIN_OPS = saved
        np.testing.assert_allclose(t["interpreted y"], t["whole y"], rtol=1e-12, atol=1e-12)
        parts.append(f"{n + 2} blocks {t['interpreted'] / t['whole']:.2f}x "
                     f"({1e3 * t['interpreted']:.1f} against {1e3 * t['whole']:.1f} ms)")
    del os.environ["BLOCKFLOW_BACKEND"]
    row(f"a feedback ring of gains, tanh, saturations and filters, B={B}, T={T:,}: "
        "interpreted", "; ".join(parts), "the same loop compiled whole, same run", "<= 1.3x")


def rk4_case() -> None:
    from bench_solvers import hand_rk4

    from blockflow import grad
    from tests.test_solvers import pendulum

    T, dt = 100_000, 0.01
    m, r = pendulum(dt, "rk4"), np.full((T, 1), 0.5)
    hand = hand_rk4(dt)
    os.environ["BLOCKFLOW_BACKEND"] = "numba"
    t_nb = best(lambda: simulate(m, {"r": r}), 5)
    t_grad = best(lambda: grad(m, {"r": r}, targets=np.zeros((T, 1))), 5)
    del os.environ["BLOCKFLOW_BACKEND"]
    t_hand = best(lambda: hand(r[:, 0]), 5)
    t_loop = best(loop_alone(m, {"r": r}), 5)
    us = 1e6 / T
    row("rk4 pendulum + PD (44-block loop), B=1, compiled",
        f"simulate {us * t_nb:.3f} us/step: {t_nb / t_hand:.1f}x; its loop alone "
        f"{us * t_loop:.3f}: {t_loop / t_hand:.2f}x; forward + gradient {t_grad / t_nb:.2f}x "
        "the forward", f"hand-written numba rk4 {us * t_hand:.3f} us/step",
        "interpreted <= 2.5x; gradient <= 2.5x the forward")


def rnn_case(H: int, B: int, T: int = 1000, n_in: int = 4) -> None:
    m = rnn(n_in, H)
    rng = np.random.default_rng(0)
    X, D = rng.standard_normal((T, B, n_in)), rng.standard_normal((T, B, 1))
    cell, out = m.blocks["cell"], m.blocks["out"]
    args = (cell.W, cell.b, out.W, out.b, X, D)
    if B == 1:  # the compiled path against compiled references
        os.environ["BLOCKFLOW_BACKEND"] = "numba"
        t = best(lambda: backward(m, {"x": X}, targets=D), 5)
        del os.environ["BLOCKFLOW_BACKEND"]
        hand = numba_bptt()
        t_ref = best(lambda: hand(*args), 5)
        ref = f"hand-written numba BPTT {1e3 * t_ref:.2f} ms ({t / t_ref:.2f}x)"
        jx = jax_bptt(*args)
        if jx is not None:  # the target's reference, where JAX is installed
            t_ref = best(jx, 5)
            ref = f"JAX lax.scan {1e3 * t_ref:.2f} ms; {ref}"
        row(f"tanh RNN H={H} B=1 T=1000, forward + gradient",
            f"{1e3 * t:.2f} ms (compiled): {t / t_ref:.2f}x", ref, "<= 1x JAX (else numba)")
    else:  # the default backend against numpy BPTT with one matmul per weight
        compile(m)
        t = best(lambda: backward(m, {"x": X}, targets=D))
        row(f"tanh RNN H={H} B={B} T=1000, forward + gradient", *batched_refs(t, args),
            "<= 1.5x")


def batched_refs(t: float, args) -> tuple[str, str]:
    """A batched RNN's time against numpy BPTT (one matmul per weight) and, where JAX is
    installed (``make bench`` installs it), JAX's jitted ``lax.scan`` on the same data."""
    t_np = best(lambda: numpy_bptt(*args))
    now, ref = f"{1e3 * t:.0f} ms: {t / t_np:.2f}x numpy", f"numpy BPTT {1e3 * t_np:.0f} ms"
    jx = jax_bptt(*args)
    if jx is not None:
        t_jax = best(jx)
        now += f", {t / t_jax:.2f}x JAX"
        ref += f"; JAX lax.scan {1e3 * t_jax:.0f} ms"
    return now, ref


def elman(n_in: int, H: int, seed: int = 0):
    """The benchmark's RNN from elementary blocks: ``Dense`` on the input (outside the
    loop: one matmul over the whole sequence), a matrix ``Gain`` on the state, ``Sum``,
    ``tanh``, ``UnitDelay``; the same weights as ``rnn(n_in, H)``."""
    from blockflow import Inport, Model, Outport
    from blocks import Dense, Function, Gain, Sum, UnitDelay

    ref = rnn(n_in, H, seed)
    W, b = ref.blocks["cell"].W, ref.blocks["cell"].b
    m = Model("elman")
    x, y = m.add(Inport("x", shape=(n_in,)), Outport("y"))
    wx, wh = m.add(Dense(W[:, :n_in], b, name="Wx"), Gain(W[:, n_in:].copy(), name="Wh"))
    s, f = m.add(Sum("++", name="s"), Function("tanh", name="f"))
    z = m.add(UnitDelay(np.zeros(H), name="z"))
    m.chain(x, wx, s.u1)
    m.chain(wh, s.u2)
    m.chain(s, f, z, wh)
    m.chain(f, m.add(Dense(ref.blocks["out"].W, ref.blocks["out"].b, name="out")), y)
    return m, ref


def elementary_case(H: int, B: int = 64, T: int = 1000, n_in: int = 4) -> None:
    m, ref = elman(n_in, H)
    rng = np.random.default_rng(0)
    X, D = rng.standard_normal((T, B, n_in)), rng.standard_normal((T, B, 1))
    g, g_ref = (backward(k, {"x": X}, targets=D).params for k in (m, ref))
    np.testing.assert_allclose(g["Wh.K"], g_ref["cell.W"][:, n_in:], rtol=1e-8, atol=1e-8)
    t_all = best(lambda: backward(m, {"x": X}, targets=D))
    t = best(lambda: grad(m, {"x": X}, targets=D))  # (as train() runs it)
    cell, out = ref.blocks["cell"], ref.blocks["out"]
    now, refs = batched_refs(t, (cell.W, cell.b, out.W, out.b, X, D))
    row(f"tanh RNN from elementary blocks H={H} B={B} T={T}, forward + gradient",
        f"grad (as train runs) {now}; backward keeping every signal and delta "
        f"{1e3 * t_all:.0f} ms", refs, "<= 1.2x")


def scale() -> None:
    t0 = time.perf_counter()
    m = chains(2000)
    t1 = time.perf_counter()
    compile(m)
    t2 = time.perf_counter()
    row("building a model of 2,000 blocks", f"{t1 - t0:.2f} s", f"compile {t2 - t1:.2f} s",
        "near-linear in blocks")
    m = ring(1000)
    compile(m)
    t0 = time.perf_counter()
    reciprocal_plan(m)
    t1 = time.perf_counter()
    x, w = {"u": np.ones((200, 1))}, {"y": np.ones((200, 1))}
    t_fwd = best(lambda: simulate(m, x))
    t_grad = best(lambda: backward(m, trace=simulate(m, x), dL_dy=w))
    row("reciprocal of a 1,000-block feedback ring", f"compile {t1 - t0:.2f} s; forward + "
        f"gradient {t_grad / t_fwd:.2f}x the forward", "", "near-linear; <= 3x")
    for kind, what in ((wide_sum, "Sum"), (wide_mux, "Mux")):
        r = measure(kind, 16_000, T=10)
        total = sum(r[k] for k in ("build", "compile", "reciprocal", "forward", "gradient"))
        row(f"a {what} of 16,000 inputs, each through a gain ({r['n']:,} blocks): build, "
            "compile, differentiate",
            f"{total:.1f} s (build {r['build']:.1f}, compile {r['compile']:.1f}, reciprocal "
            f"{r['reciprocal']:.1f}, forward + gradient {r['forward'] + r['gradient']:.1f})",
            "", "< 3 s")
    for kind in (chains, ring, loops):
        small, big = measure(kind, 100), measure(kind, 5000)
        setup = big["build"] + big["compile"] + big["reciprocal"]
        run = big["forward"] + big["gradient"]
        per = [1e6 * r["warm"] / (200 * r["n"]) for r in (small, big)]
        row(f"5,000 blocks, {kind.__name__}", f"setup {setup:.2f} s; forward + gradient "
            f"{run:.2f} s (again: {big['warm']:.2f} s)",
            f"per block-step {per[0]:.2f} us at 100 blocks, {per[1]:.2f} us at 5,000",
            "setup < 5 s; fwd+grad < 5 s; flat per block")


def jax_sweep(gains, R):
    """The sweep by JAX: the closed loop as a ``lax.scan`` over time, ``vmap`` over the runs
    (gain, input row), jitted; returns each run's RMS output. ``None`` without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    b, a = B_, A_

    def run(kc, r):
        def step(c, rk):
            yd, z0, z1 = c
            u = jnp.tanh(kc * (rk - yd))
            y = b[0] * u + z0
            return (y, b[1] * u - a[1] * y + z1, b[2] * u - a[2] * y), y

        _, y = jax.lax.scan(step, (0.0, 0.0, 0.0), r)
        return jnp.sqrt(jnp.mean(y * y))

    f = jax.jit(jax.vmap(run))
    args = (jnp.asarray(gains), jnp.asarray(R))
    return lambda: np.asarray(jax.block_until_ready(f(*args)))


def sweep_case(n_gains: int = 200, n_seeds: int = 10, T: int = 1000) -> None:
    """Item 8: 2,000 runs of the closed loop that all batch (a gain per run), by
    ``parameter_sweep``'s defaults and by one ``simulate(params=)``, against JAX vmap."""
    from blockflow.parallel import parameter_sweep

    gains = np.repeat(np.linspace(0.2, 3.0, n_gains), n_seeds)
    seeds = list(range(n_seeds))
    R = np.stack([np.random.default_rng(s).standard_normal(T) for s in seeds] * n_gains)

    def noise(seed):
        return {"r": np.random.default_rng(seed).standard_normal(T)}

    def rms(signals, t):
        return float(np.sqrt(np.mean(signals["y"] ** 2)))

    def rms_all(signals, t):  # the same metric, every run of the chunk at once
        return np.sqrt(np.mean(signals["y"] ** 2, axis=0))

    m = tanh_loop(KC, B_, A_)
    grid = {"kc.K": np.linspace(0.2, 3.0, n_gains)}
    RT = np.ascontiguousarray(R.T)  # (T, runs): the layout simulate takes
    sweep = lambda: parameter_sweep(m, grid, seeds=seeds, inputs=noise, metric=rms,  # noqa: E731
                                    progress=False)
    vec = lambda: parameter_sweep(m, grid, seeds=seeds, inputs=noise,  # noqa: E731
                                  metric=rms_all, vectorized=True, progress=False)
    batched = lambda: simulate(m, {"r": RT}, params={"kc.K": gains})  # noqa: E731
    only_y = lambda: simulate(m, {"r": RT}, params={"kc.K": gains}, signals="y")  # noqa: E731
    compiled_y = lambda: simulate(m, {"r": RT}, params={"kc.K": gains}, signals="y",  # noqa: E731
                                  backend="numba")
    t_sweep, t_vec, t_sim, t_y, t_nb = (best(f, 3) for f in (sweep, vec, batched, only_y,
                                                             compiled_y))
    y = batched()["y"]
    got = np.sqrt(np.mean(y * y, axis=0))
    np.testing.assert_allclose(vec()["metric"], got, rtol=1e-12)
    t_user = best(lambda: [rms({"y": y[:, i]}, None) for i in range(len(gains))], 3)
    now = (f"parameter_sweep {t_sweep:.3f} s (its 2,000 metric calls {t_user:.3f} s), with a "
           f"vectorized metric {t_vec:.3f} s; one simulate(params=) {t_sim:.3f} s, "
           f"recording y alone (signals=) {t_y:.3f} s, that compiled {t_nb:.3f} s")
    ref = "JAX not installed (make bench installs it)"
    jx = jax_sweep(gains, R)
    if jx is not None:
        np.testing.assert_allclose(jx(), got, rtol=1e-10)
        t_jax = best(jx, 5)
        now += (f": {t_sweep / t_jax:.1f}x / {t_vec / t_jax:.1f}x / {t_sim / t_jax:.1f}x / "
                f"{t_y / t_jax:.1f}x / {t_nb / t_jax:.1f}x JAX")
        ref = f"JAX vmap of lax.scan, jitted, {t_jax:.3f} s"
    row(f"{len(gains):,} runs x {T:,} steps that all batch (closed loop, gain x seed)",
        now, ref, "<= 3x JAX vmap; no pool")


def main() -> None:
    print("targets of the compiled-loop work, this machine, one run", flush=True)
    closed_loop()
    pid_case()
    dc_motor_case()
    rk4_case()
    interpreter_case()
    for H, B in ((8, 1), (64, 1), (256, 64)):
        rnn_case(H, B)
    for H in (64, 256):
        elementary_case(H)
    sweep_case()
    scale()
    first, second, imp, auto = compile_cost()
    row("closed loop, T=1,000: first simulation, empty cache / second process",
        f"{first:.2f} s / {second:.2f} s compiled; {auto:.2f} s with the default backend "
        "(numpy path: the run does not pay for importing numba)",
        f"importing numba {imp:.2f} s of each; numba's start when it loads cached code "
        "~0.3 s", "< 2 s / < 0.2 s")
    print("\n| case | blockflow now | reference, same run | target |\n|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
