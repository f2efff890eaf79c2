"""Forward-simulation benchmark: blockflow next to hand-written numpy/scipy, same run.

Prints time per step and per block-step, and the ratio blockflow / hand-written.
Run: ``make bench`` (or ``.venv/bin/python bench/bench_simulate.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.signal as ss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best  # noqa: E402

from blockflow import Inport, Model, Outport, compile, simulate  # noqa: E402
from blocks import FIR, Function, Gain, UnitDelay  # noqa: E402
from models.closed_loop import tanh_loop  # noqa: E402


def row(name, T, n_blocks, t_bf, t_ref, ref_name):
    print(f"{name:34s} {1e6 * t_bf / T:9.2f} us/step {1e9 * t_bf / (T * n_blocks):9.1f} "
          f"ns/block-step | {ref_name:24s} {1e6 * t_ref / T:9.2f} us/step | "
          f"ratio {t_bf / t_ref:5.2f}x")


def closed_loop(T=10_000, B=1):
    kc, b, a = 1.5, (0.4, 0.2, 0.1), (1.0, -0.5, 0.2)
    m = tanh_loop(kc, b, a)
    r = np.random.default_rng(0).standard_normal((T, B))

    def hand():
        out = np.empty((T, B))
        yd = np.zeros(B)
        z = np.zeros((2, B))
        bn, an = np.array(b), np.array(a)
        for k in range(T):
            e = r[k] - yd
            u = np.tanh(kc * e)
            y = bn[0] * u + z[0]
            z_next = bn[1:, None] * u - an[1:, None] * y
            z_next[:-1] += z[1:]
            z = z_next
            out[k] = y
            yd = y
        return out

    compile(m)
    t_bf = best(lambda: simulate(m, {"r": r}), 5)
    t_ref = best(hand, 5)
    row(f"closed-loop ARMA+tanh (B={B})", T, 5, t_bf, t_ref, "hand-written python loop")


def wide(T=2_000, n=100, B=8):
    m = Model("wide")
    for i in range(n):
        m.chain(m.add(Inport(f"u{i}")), m.add(Gain(0.5 + i / n, name=f"g{i}")),
                m.add(UnitDelay(name=f"z{i}")), m.add(Function("tanh", name=f"f{i}")),
                m.add(Outport(f"y{i}")))
    rng = np.random.default_rng(0)
    x = {f"u{i}": rng.standard_normal((T, B)) for i in range(n)}
    gains = [0.5 + i / n for i in range(n)]

    def hand():  # keeps every intermediate signal, as a trace does
        out = {}
        for i in range(n):
            g = x[f"u{i}"] * gains[i]
            z = np.concatenate([np.zeros((1, B)), g[:-1]])
            out[i] = (g, z, np.tanh(z))
        return out

    def hand_step():
        states = [np.zeros(B) for _ in range(n)]
        outs = [[] for _ in range(n)]
        for k in range(T):
            for i in range(n):
                outs[i].append(np.tanh(states[i]))
                states[i] = x[f"u{i}"][k] * gains[i]
        return outs

    compile(m)
    compile(m, "step")
    t_bf = best(lambda: simulate(m, x), 3)
    row(f"wide: {n} gain-delay-tanh (vector)", T, 3 * n, t_bf, best(hand, 3),
        "numpy, whole sequences, kept")
    t_bf = best(lambda: simulate(m, x, mode="step"), 1)
    row(f"wide: {n} chains, forced step", T, 3 * n, t_bf, best(hand_step, 1),
        "hand-written python loop")


def fir_chain(T=100_000, B=4, taps=16, n=3):
    rng = np.random.default_rng(0)
    hs = [rng.standard_normal(taps) / taps for _ in range(n)]
    m = Model("fir_chain")
    items = [m.add(Inport("u"))] + [m.add(FIR(h, name=f"fir{i}")) for i, h in enumerate(hs)]
    m.chain(*items, m.add(Outport("y")))
    u = rng.standard_normal((T, B))

    def hand():
        y = u
        for h in hs:
            y = ss.lfilter(h, [1.0], y, axis=0)
        return y

    compile(m)
    t_bf = best(lambda: simulate(m, {"u": u}), 5)
    row(f"loop-free FIR chain ({n}x{taps} taps)", T, n, t_bf, best(hand, 5), "scipy.signal.lfilter")


if __name__ == "__main__":
    print(f"numpy {np.__version__}; times are the best of several runs")
    closed_loop(B=1)
    closed_loop(B=64)
    wide()
    fir_chain()
