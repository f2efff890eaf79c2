"""Continuous plants integrated by rk4 (``Model(solver="rk4")``): the pendulum under a
sampled PD controller (tests/test_solvers.py), compiled, beside a hand-written numba rk4
loop of the same equations in the same run; forward + gradient against forward.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_solvers.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("BLOCKFLOW_BACKEND", "numba")

from timing import best  # noqa: E402

from blockflow import grad, simulate  # noqa: E402
from tests.test_solvers import DAMP, KD, KP, G, pendulum  # noqa: E402


def hand_rk4(dt: float):
    import numba

    @numba.njit(cache=False)
    def run(r):
        out, th, om = np.empty(r.shape[0]), 1.0, 0.0
        for k in range(r.shape[0]):
            out[k] = th
            u = KP * (r[k] - th) - KD * om  # held over the period
            k1t, k1o = om, -G * np.sin(th) - DAMP * om + u
            t2, o2 = th + dt / 2 * k1t, om + dt / 2 * k1o
            k2t, k2o = o2, -G * np.sin(t2) - DAMP * o2 + u
            t3, o3 = th + dt / 2 * k2t, om + dt / 2 * k2o
            k3t, k3o = o3, -G * np.sin(t3) - DAMP * o3 + u
            t4, o4 = th + dt * k3t, om + dt * k3o
            k4t, k4o = o4, -G * np.sin(t4) - DAMP * o4 + u
            th = th + dt / 6 * (k1t + 2 * k2t + 2 * k3t + k4t)
            om = om + dt / 6 * (k1o + 2 * k2o + 2 * k3o + k4o)
        return out

    return run


def main(T: int = 100_000, dt: float = 0.01) -> None:
    m = pendulum(dt, "rk4")
    r = np.full((T, 1), 0.5)
    hand = hand_rk4(dt)
    fwd = best(lambda: simulate(m, {"r": r}))
    ref = best(lambda: hand(r[:, 0]))
    both = best(lambda: grad(m, {"r": r}, targets=np.zeros((T, 1))))
    diff = np.abs(simulate(m, {"r": r})["theta"][:, 0] - hand(r[:, 0])).max()
    print(f"rk4 pendulum + PD (T={T}): forward {fwd / T * 1e6:.3f} us/step | hand numba rk4 "
          f"{ref / T * 1e6:.3f} us/step (blockflow {fwd / ref:.1f}x) | forward + gradient "
          f"{both / T * 1e6:.3f} us/step ({both / fwd:.1f}x forward) | max diff {diff:.1e}")


if __name__ == "__main__":
    main()
