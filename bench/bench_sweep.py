"""Sweeps: the closed-loop benchmark model, 2,000 runs of 1,000 steps (200 controller
gains x 10 seeds).  The batched-parameter path (one vectorised run per chunk) against a
serial Python loop over ``simulate``; and, for work that cannot be batched (a plant
coefficient), local processes against the serial time divided by the cores.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_sweep.py``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blockflow import simulate  # noqa: E402
from blockflow.parallel import parameter_sweep  # noqa: E402
from models.closed_loop import tanh_loop  # noqa: E402

T = 1000


def noise(seed):
    return {"r": np.random.default_rng(seed).standard_normal(T)}


def rms(signals, t):
    return float(np.sqrt(np.mean(signals["y"] ** 2)))


def serial_loop(gains, seeds) -> list:
    m = tanh_loop()
    out = []
    for k in gains:
        m.block("kc").K[...] = k
        for s in seeds:
            out.append(rms({"y": simulate(m, noise(s))["y"][:, 0]}, None))
    return out


def main() -> None:
    gains, seeds = np.linspace(0.2, 3.0, 200), list(range(10))
    n = len(gains) * len(seeds)
    sub = gains[:10]  # the serial loop on 100 runs, scaled to 2,000
    # warm-up: 20 runs, enough work for "auto" to import numba and load (or compile) the
    # loop, a one-time cost the scaling to 2,000 runs below must not multiply
    serial_loop(sub[:2], seeds)
    t0 = time.perf_counter()
    ref = serial_loop(sub, seeds)
    t_serial = (time.perf_counter() - t0) * n / (len(sub) * len(seeds))
    parameter_sweep(tanh_loop(), {"kc.K": gains[:2]}, seeds=seeds[:2], inputs=noise,
                    metric=rms, executor="serial", progress=False)  # one-time imports
    t0 = time.perf_counter()
    df = parameter_sweep(tanh_loop(), {"kc.K": gains}, seeds=seeds, inputs=noise, metric=rms,
                         executor="serial", chunk_size=n, progress=False)
    t_batched = time.perf_counter() - t0
    assert np.allclose(df["metric"][:100], ref, rtol=1e-12)
    t0 = time.perf_counter()
    parameter_sweep(tanh_loop(), {"kc.K": gains}, seeds=seeds, inputs=noise, metric=rms,
                    progress=False)  # the defaults: where and how it runs, decided by it
    t_default = time.perf_counter() - t0
    print(f"{n} runs x {T} steps (closed loop, gain x seed)")
    print(f"  serial loop over simulate  {t_serial:8.2f} s  (from 100 runs)")
    print(f"  batched parameters         {t_batched:8.2f} s  {t_serial / t_batched:6.1f}x faster")
    print(f"  parameter_sweep defaults   {t_default:8.2f} s  {t_serial / t_default:6.1f}x faster")

    # not batchable: a plant coefficient per run, each run its own simulation
    cores = os.cpu_count() or 1
    grid = {"plant.a": [np.array([1.0, -a]) for a in np.linspace(0.1, 0.8, 8 * cores)]}
    long_inputs = {"r": np.random.default_rng(0).standard_normal(100_000)}
    kw = dict(inputs=long_inputs, metric=rms, progress=False)
    t0 = time.perf_counter()
    parameter_sweep(tanh_loop(), grid, executor="serial", **kw)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    parameter_sweep(tanh_loop(), grid, executor="processes", workers=cores, **kw)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    parameter_sweep(tanh_loop(), grid, **kw)  # the defaults: processes where they pay
    t_auto = time.perf_counter() - t0
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(cores, mp_context=mp.get_context("forkserver")) as pool:
        parameter_sweep(tanh_loop(), {"plant.a": grid["plant.a"][:cores]}, executor=pool,
                        **kw)  # the workers start, import and load the compiled loop
        t0 = time.perf_counter()
        parameter_sweep(tanh_loop(), grid, executor=pool, **kw)
        t_warm = time.perf_counter() - t0
    ideal = t_one / cores
    print(f"{len(grid['plant.a'])} runs x 100000 steps, not batchable, {cores} cores")
    print(f"  serial                     {t_one:8.2f} s")
    print(f"  local processes            {t_cold:8.2f} s  {t_cold / ideal:6.2f}x serial/cores "
          f"(starting the workers included)")
    print(f"  a pool already started     {t_warm:8.2f} s  {t_warm / ideal:6.2f}x serial/cores")
    print(f"  parameter_sweep defaults   {t_auto:8.2f} s  {t_auto / ideal:6.2f}x serial/cores")

if __name__ == "__main__":
    main()
