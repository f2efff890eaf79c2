"""``make demo``: the main job in one run.

Simulates the ARMA model (as blocks and as one filter, checked against
``scipy.signal.lfilter``) and the tanh closed loop, and prints a short summary.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as ss

from blockflow import compile, simulate
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
