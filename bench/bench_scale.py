"""Models of thousands of blocks: build, compile, reciprocal compile, and forward +
gradient of 200 steps, for parallel chains, one feedback ring and many separate loops,
at 100 and 5,000 blocks (per-block cost side by side).

Run: ``make bench`` (or ``.venv/bin/python bench/bench_scale.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blockflow import Inport, Model, Outport, backward, compile, simulate  # noqa: E402
from blockflow.gradient.gradients import reciprocal_plan  # noqa: E402
from blocks import Function, Gain, Mux, Sum, UnitDelay  # noqa: E402

PER = 20  # blocks per chain or loop


def chains(n: int) -> Model:
    m = Model("chains")
    for c in range(n // PER):
        prev = m.add(Inport(f"u{c}"))
        for i in range(PER - 2):
            g = m.add(Gain(0.9, name=f"g{c}_{i}"))
            m.connect(prev, g)
            prev = g
        m.connect(prev, m.add(Outport(f"y{c}")))
    return m


def ring(n: int) -> Model:
    m = Model("ring")
    u, s = m.add(Inport("u"), Sum("++", name="s"))
    m.connect(u, s.u1)
    prev = s
    for i in range(n - 4):
        b = m.add(Function("tanh", name=f"f{i}") if i % 2 else Gain(0.99, name=f"g{i}"))
        m.connect(prev, b)
        prev = b
    z = m.add(UnitDelay(name="z"))
    m.connect(prev, z)
    m.connect(z, s.u2)
    m.connect(prev, m.add(Outport("y")))
    return m


def loops(n: int) -> Model:
    m = Model("loops")
    for c in range(n // PER):
        u, s = m.add(Inport(f"u{c}"), Sum("++", name=f"s{c}"))
        m.connect(u, s.u1)
        prev = s
        for i in range(PER - 4):
            b = m.add(Gain(0.9, name=f"g{c}_{i}"))
            m.connect(prev, b)
            prev = b
        z = m.add(UnitDelay(name=f"z{c}"))
        m.connect(prev, z)
        m.connect(z, s.u2)
        m.connect(prev, m.add(Outport(f"y{c}")))
    return m


def _wide(name: str, wide_block) -> Model:
    """One wide block of ``n`` inputs, each through a gain of its own from one Inport."""
    n = len(wide_block.inputs)
    m = Model(name)
    u, s, y = m.add(Inport("u"), wide_block, Outport("y"))
    for i in range(n):
        g = m.add(Gain(1.0 + 1e-4 * i, name=f"g{i}"))
        m.connect(u, g)
        m.connect(g, s[f"u{i + 1}"])
    m.connect(s, y)
    return m


def wide_sum(n: int) -> Model:
    """One Sum of ``n`` inputs, each through a gain of its own from one Inport."""
    return _wide("wide_sum", Sum("+" * n, name="s"))


def wide_mux(n: int) -> Model:
    """One Mux of ``n`` inputs, each through a gain of its own from one Inport."""
    return _wide("wide_mux", Mux(n, name="s"))


def measure(kind, n: int, T: int = 200) -> dict:
    t0 = time.perf_counter()
    m = kind(n)
    t1 = time.perf_counter()
    plan = compile(m)
    t2 = time.perf_counter()
    reciprocal_plan(m)
    t3 = time.perf_counter()
    x = {k: np.ones((T, 1)) for k in plan.inports}
    dl = {k: np.ones((T, 1, *plan.slot_types[s].shape)) for k, s in plan.outports.items()}
    tr = simulate(m, x)
    t4 = time.perf_counter()
    backward(m, trace=tr, dL_dy=dl)
    t5 = time.perf_counter()
    backward(m, trace=simulate(m, x), dL_dy=dl)  # again: loops compiled or loaded
    t6 = time.perf_counter()
    return {"build": t1 - t0, "compile": t2 - t1, "reciprocal": t3 - t2,
            "forward": t4 - t3, "gradient": t5 - t4, "warm": t6 - t5,
            "n": len(plan.flat.blocks)}


def main() -> None:
    # numba imported first, as in any process that has run a compiled loop: otherwise
    # "auto" keeps a single short run (the 100-block ring) on the numpy path rather than
    # pay numba's import, and the per-block costs compared would be of two paths
    import numba  # noqa: F401

    print("first fwd+grad includes compiling (or loading) compiled loops; 'again' is a second "
          "run; us/block-step of the second run")
    print(f"{'model':8s} {'blocks':>6s} {'build':>7s} {'compile':>8s} {'recip.':>7s} "
          f"{'setup':>7s} {'fwd':>6s} {'grad':>6s} {'fwd+grad':>8s} {'again':>6s} "
          f"{'us/block-step':>14s}")
    for kind in (chains, ring, loops):
        for n in (100, 5000):
            r = measure(kind, n)
            setup = r["build"] + r["compile"] + r["reciprocal"]
            run = r["forward"] + r["gradient"]
            print(f"{kind.__name__:8s} {r['n']:6d} {r['build']:7.2f} {r['compile']:8.2f} "
                  f"{r['reciprocal']:7.2f} {setup:7.2f} {r['forward']:6.2f} "
                  f"{r['gradient']:6.2f} {run:8.2f} {r['warm']:6.2f} "
                  f"{1e6 * r['warm'] / (200 * r['n']):14.2f}")


if __name__ == "__main__":
    main()
