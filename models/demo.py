"""``make demo``: the main job in one run.

Simulates the ARMA model (as blocks and as one filter, checked against
``scipy.signal.lfilter``) and the tanh closed loop, computes the closed loop's gradient
by the reciprocal sweep and checks it against finite differences, draws the loop and its
reciprocal network as SVG and plots its signals as PNG (under ``out/``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.signal as ss

from blockflow import compile, reciprocal, simulate
from blockflow.gradient.sweep import grad
from models.arma import A_DEFAULT, B_DEFAULT, arma_blocks, arma_filter
from models.closed_loop import tanh_loop


def main() -> int:
    rng = np.random.default_rng(0)
    T, B = 200, 4
    u = rng.standard_normal((T, B))
    print("blockflow demo")
    print("==============")
    ref = ss.lfilter(B_DEFAULT, A_DEFAULT, u, axis=0)
    for m in (arma_blocks(), arma_filter()):
        plan = compile(m)
        y = simulate(m, {"u": u})["y"]
        print(f"{m.name:12s} {len(plan.order):2d} ops, loops {plan.loops}: "
              f"max |y - lfilter| = {np.abs(y - ref).max():.1e}")
    loop = tanh_loop()
    r = np.repeat(np.sign(np.sin(np.arange(T) / 15.0))[:, None], B, 1)
    tr = simulate(loop, {"r": r})
    e = r - tr["y"]
    print(f"{loop.name:12s} feedback loop {compile(loop).loops[0]}: tracking a square "
          f"wave, RMS error {np.sqrt(np.mean(e[50:] ** 2)):.3f}")
    worst = gradient_check(loop, {"r": r}, r)
    out = Path("out")
    files = [loop.draw(out / "tanh_loop.svg"),
             reciprocal(loop).draw(out / "tanh_loop_reciprocal.svg"),
             out / "tanh_loop_signals.png"]
    tr.plot(["r", "tanh", "y"], files[-1], batch=0, title="tanh loop tracking a square wave")
    print("\nwritten:")
    for f in files:
        print(f"  {f}")
    return 0 if worst < 1e-6 else 1


def gradient_check(model, inputs, target, eps=1e-6) -> float:
    """Reciprocal-sweep gradient of J = sum_k ||d(k) - y(k)||^2 against central differences."""
    J, g = grad(model, inputs, targets=target)
    print(f"\ntracking loss J = sum_k (r - y)^2 = {J:.4f}; its gradient by the reciprocal sweep:")
    worst = 0.0
    for name, w in model.parameters().items():
        num = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + eps
            jp, _ = grad(model, inputs, targets=target)
            w[i] = old - eps
            jm, _ = grad(model, inputs, targets=target)
            w[i] = old
            num[i] = (jp - jm) / (2 * eps)
        rel = float(np.abs(num - g[name]).max() / max(np.abs(num).max(), 1e-12))
        worst = max(worst, rel)
        print(f"  dJ/d{name:8s} = {np.array2string(g[name], precision=5):28s} "
              f"finite differences agree to {rel:.1e}")
    print(f"  {'OK' if worst < 1e-6 else 'MISMATCH'}: worst relative difference {worst:.1e}")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
