"""A parameter sweep: the tanh closed loop's step response against its controller gain,
over noisy references (Monte-Carlo over seeds).

``python -m models.gain_sweep`` sweeps ``kc.K`` over 40 values x 20 seeds (800 runs of
200 steps, one batched simulation: the gain is a batchable parameter), reports the gain
with the least tracking error and plots the overshoot and the error against the gain,
median and 10-90 % band over the seeds (``out/gain_sweep.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blockflow.parallel import parameter_sweep
from models.closed_loop import tanh_loop

T = 200
GAINS = np.geomspace(0.2, 20.0, 40)


def noisy_step(seed: int) -> dict:
    """A unit step reference with a little noise (std 0.05), seeded."""
    return {"r": 1.0 + 0.05 * np.random.default_rng(seed).standard_normal(T)}


def step_metrics(signals: dict, time) -> dict:
    y = signals["y"]
    final = y[T // 2:].mean()
    return {"overshoot_pct": float(max(0.0, (y.max() - final) / final * 100)),
            "rms_error": float(np.sqrt(np.mean((1.0 - y[20:]) ** 2)))}


def sweep(gains=GAINS, seeds: int = 20, **kw):
    """The sweep's table: one row per run (gain, seed, overshoot, error)."""
    return parameter_sweep(tanh_loop(), {"kc.K": gains}, seeds=seeds, inputs=noisy_step,
                           metric=step_metrics, **kw)


def main(out: str | Path = "out") -> int:
    out = Path(out)
    out.mkdir(exist_ok=True)
    df = sweep(progress=False)
    q = df.groupby("kc.K")[["overshoot_pct", "rms_error"]].quantile([0.1, 0.5, 0.9])
    q = q.unstack()
    best = q["rms_error"][0.5].idxmin()
    print(f"{len(df)} runs: least median tracking error {q['rms_error'][0.5].min():.3f} at "
          f"kc = {best:.2f} (overshoot {q['overshoot_pct'][0.5][best]:.1f} %)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.0))
    gains = q.index.to_numpy()
    for ax, col, label in ((axes[0], "overshoot_pct", "overshoot (%)"),
                           (axes[1], "rms_error", "RMS tracking error")):
        ax.fill_between(gains, q[col][0.1], q[col][0.9], alpha=0.3,
                        label="10-90 % of 20 seeds")
        ax.plot(gains, q[col][0.5], label="median")
        ax.set_xlabel("controller gain kc")
        ax.set_xscale("log")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[1].axvline(best, color="k", lw=0.6)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "gain_sweep.png", dpi=110)
    print(f"wrote {out / 'gain_sweep.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
