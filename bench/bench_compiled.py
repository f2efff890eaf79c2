"""Compiled loops: the closed loop ARMA + tanh controller on the numba path, next to the
numpy path, a hand-written numba loop of the same equations and the same loop on Python
floats, in one run; forward + gradient against forward; compile cost in a fresh process
and in a second one (the disk cache).

Run: ``make bench`` (or ``.venv/bin/python bench/bench_compiled.py``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best  # noqa: E402

from blockflow import backward, compile, simulate  # noqa: E402
from models.closed_loop import tanh_loop  # noqa: E402

KC, B_, A_ = 1.5, (0.4, 0.2, 0.1), (1.0, -0.5, 0.2)


def python_floats(r):
    out = [0.0] * len(r)
    yd, z0, z1 = 0.0, 0.0, 0.0
    for k, rk in enumerate(r):
        u = math.tanh(KC * (rk - yd))
        y = B_[0] * u + z0
        z0, z1 = B_[1] * u - A_[1] * y + z1, B_[2] * u - A_[2] * y
        out[k] = y
        yd = y
    return out


def numba_loop():
    from numba import njit

    @njit(cache=True)
    def loop(r, out):
        yd, z0, z1 = 0.0, 0.0, 0.0
        for k in range(r.shape[0]):
            u = math.tanh(1.5 * (r[k] - yd))
            y = 0.4 * u + z0
            z0, z1 = 0.2 * u + 0.5 * y + z1, 0.1 * u - 0.2 * y
            out[k] = y
            yd = y
        return out

    return loop


def loop_alone(model, inputs: dict):
    """The compiled loop of ``model``'s run on ``inputs`` (batch 1, a loop of numbers) as
    a call on the arguments that run gave it: its time without the Trace around it (every
    signal's record allocated, the inputs and outputs checked)."""
    import blockflow.backends.execute as ex
    from blockflow import simulate

    got, real = {}, ex.run_scalar

    def spy(seg, fn, forms, steps, bufs, states, rec):
        got["call"] = (seg, fn, forms, steps, bufs, dict(states), rec)
        return real(seg, fn, forms, steps, bufs, states, rec)

    ex.run_scalar = spy
    try:
        simulate(model, inputs, backend="numba")
    finally:
        ex.run_scalar = real
    seg, fn, forms, steps, bufs, states, rec = got["call"]
    return lambda: real(seg, fn, forms, steps, bufs, dict(states), rec)


def pid_loop_njit():
    """``models.pid.pid_loop()`` by hand, state in locals (the plant's and the filters'
    transposed direct form II, as the blocks run them)."""
    from numba import njit

    @njit(cache=True)
    def loop(r, out):
        z0, z1, zi, zd = 0.0, 0.0, 0.0, 0.0
        for k in range(r.shape[0]):
            y = z0  # strictly proper plant: no feedthrough
            e = r[k] - y
            yi = 0.4 * e + zi
            yd = 0.3 * e + zd
            u = 1.2 * e + yi + yd
            out[k] = y
            z0, z1 = 0.1 * u + 1.5 * y + z1, 0.08 * u - 0.7 * y
            zi, zd = yi, -0.3 * e
        return out

    return loop


def dc_motor_njit():
    """``models.dc_motor.motor_loop()`` by hand, state in locals: the discretised motor
    (``A, B, C`` of its realisation) every step, the PID (forward Euler integral,
    difference) every ``n``-th step on the sampled error, its output held between."""
    from numba import njit

    @njit(cache=True)
    def loop(r, out, A, B, C, kp, ki, kd, h, n):
        a00, a01, a10, a11 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
        b0, b1, c0, c1 = B[0, 0], B[1, 0], C[0, 0], C[0, 1]
        x0, x1, xi, prev, u = 0.0, 0.0, 0.0, 0.0, 0.0
        for k in range(r.shape[0]):
            y = c0 * x0 + c1 * x1  # strictly proper: no feedthrough
            out[k] = y
            if k % n == 0:  # the PID's sample
                e = r[k] - y
                ui = xi
                xi = ui + h * (ki * e)
                g = (kd * e) / h
                u = kp * e + ui + (g - prev)
                prev = g
            x0, x1 = a00 * x0 + a01 * x1 + b0 * u, a10 * x0 + a11 * x1 + b1 * u
        return out

    return loop


def loop_bptt():
    """The closed loop's forward run and its BPTT by hand, state in locals: the loss
    ``sum_k dL/dy(k) y(k)``'s gradients with respect to ``kc.K``, ``plant.b`` and
    ``plant.a`` (as blockflow's, ``a[0]`` included), for a reference in time."""
    from numba import njit

    @njit(cache=True)
    def bptt(r, w, K, b, a, u, y, e):
        T = r.shape[0]
        yd, z0, z1 = 0.0, 0.0, 0.0
        for k in range(T):  # forward, the signals the sweep needs kept
            e[k] = r[k] - yd
            u[k] = math.tanh(K * e[k])
            y[k] = b[0] * u[k] + z0
            z0, z1 = b[1] * u[k] - a[1] * y[k] + z1, b[2] * u[k] - a[2] * y[k]
            yd = y[k]
        dK, db, da = 0.0, np.zeros(3), np.zeros(3)
        g1, g2, dyd = 0.0, 0.0, 0.0  # g(k+1), g(k+2), delta of y(k) through the delay
        for k in range(T - 1, -1, -1):
            g = w[k] + dyd - a[1] * g1 - a[2] * g2  # the filter's adjoint A(q^+1)^-1
            du = b[0] * g + b[1] * g1 + b[2] * g2
            dv = du * (1.0 - u[k] * u[k])
            dK += dv * e[k]
            dyd = -K * dv
            for m in range(3):
                if k - m >= 0:
                    db[m] += g * u[k - m]
                    da[m] -= g * y[k - m]
            g1, g2 = g, g1
        return dK, db, da

    return bptt


def compile_cost() -> tuple[float, float, float, float]:
    """Seconds to a first simulation (T=1,000) in a fresh process with an empty cache,
    and in a second process that finds the cache (Python and blockflow's imports
    excluded; numba is imported by the first simulation, included), numba's import
    alone, and the second process's time with the default backend ("auto": a run this
    short does not pay for importing numba, so it takes the numpy path)."""
    code = ("import time, numpy as np; from blockflow import simulate; "
            "from models.closed_loop import tanh_loop; m = tanh_loop(); "
            "r = np.zeros((1000, 1)); t0 = time.perf_counter(); "
            "simulate(m, {'r': r}, backend=BACKEND); print(time.perf_counter() - t0)")
    env = dict(os.environ, BLOCKFLOW_CACHE=tempfile.mkdtemp(prefix="bf-bench-"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))

    def run(backend):
        src = code.replace("BACKEND", repr(backend))
        return float(subprocess.run([sys.executable, "-c", src], env=env, check=True,
                                    capture_output=True, text=True).stdout)

    first, second, auto = run("numba"), run("numba"), run("auto")
    imp = ("import time; t0 = time.perf_counter(); import numba; "
           "print(time.perf_counter() - t0)")
    numba_import = float(subprocess.run([sys.executable, "-c", imp], check=True,
                                        capture_output=True, text=True).stdout)
    return first, second, numba_import, auto


def main() -> None:
    T = 100_000
    m = tanh_loop(KC, B_, A_)
    r = np.random.default_rng(0).standard_normal((T, 1))
    rl = r[:, 0].tolist()
    compile(m, backend="numba")
    t_nb = best(lambda: simulate(m, {"r": r}, backend="numba"), 5)
    t_np = best(lambda: simulate(m, {"r": r}, backend="numpy"), 2)
    loop = numba_loop()
    out = np.empty(T)
    t_hand = best(lambda: loop(r[:, 0], out), 5)
    t_py = best(lambda: python_floats(rl), 3)
    ref = python_floats(rl)
    np.testing.assert_allclose(simulate(m, {"r": r}, backend="numba")["y"][:, 0], ref,
                               rtol=1e-12, atol=1e-12)
    print(f"closed loop ARMA + tanh controller, B=1, T={T} (us per step)")
    us = 1e6 / T
    print(f"  blockflow, numba path     {us * t_nb:8.3f}")
    print(f"  blockflow, numpy path     {us * t_np:8.3f}   ({t_np / t_nb:6.1f}x the numba path)")
    print(f"  hand-written numba loop   {us * t_hand:8.3f}   (numba path: {t_nb / t_hand:.1f}x it)")
    print(f"  Python floats loop        {us * t_py:8.3f}   ({t_py / t_nb:6.1f}x the numba path)")
    os.environ["BLOCKFLOW_BACKEND"] = "numba"
    tr = simulate(m, {"r": r})
    w = {"y": np.ones((T, 1))}
    backward(m, trace=tr, dL_dy=w)
    t_fwd = best(lambda: simulate(m, {"r": r}), 5)
    t_grad = best(lambda: backward(m, trace=simulate(m, {"r": r}), dL_dy=w), 5)
    print(f"  forward + gradient        {us * t_grad:8.3f}   ({t_grad / t_fwd:4.2f}x the forward)")
    first, second, imp, auto = compile_cost()
    print(f"  first simulation, empty cache {first:6.2f} s; second process {second:6.2f} s "
          f"(of which importing numba {imp:.2f} s); default backend {auto:.2f} s")


if __name__ == "__main__":
    main()
