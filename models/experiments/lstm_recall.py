"""A recurrent network trained by BPTT: an LSTM learns to recall its input ``DELAY``
steps later.

The input is a random sequence of +-1; the target is ``y(k) = x(k - DELAY)`` (0 before).
No memoryless predictor can beat a mean squared error of 1 (predicting 0); the LSTM
(cell state and output fed back through unit delays, a Dense readout) has to hold each
input in its state.  Gradients by the reciprocal sweep through the LSTM's Jacobian
transposes and the unit advances, over the whole sequence.
"""

from __future__ import annotations

import numpy as np

from blockflow import simulate
from blockflow.train import Adam, train
from models.experiments.common import cli, default_plot, loss_figure, save_figure, table
from models.paper import lstm

DELAY = 4


def data(T: int, B: int, rng) -> tuple[np.ndarray, np.ndarray]:
    x = rng.choice([-1.0, 1.0], (T, B, 1))
    y = np.zeros_like(x)
    y[DELAY:] = x[:-DELAY]
    return x, y


def score(model, x, y) -> tuple[float, float]:
    p = simulate(model, {"x": x})["y"]
    valid = slice(DELAY, None)
    mse = float(np.mean((p[valid] - y[valid]) ** 2))
    return mse, float(np.mean(np.sign(p[valid]) == y[valid]))


def run(quick: bool = False, seed: int = 0, plot=None) -> dict:
    rng = np.random.default_rng(seed)
    T, B, epochs, H = (30, 16, 120, 8) if quick else (40, 64, 400, 12)
    model = lstm(1, H, 1, seed=seed)
    x, y = data(T, B, rng)
    xt, yt = data(200, 16, np.random.default_rng(seed + 100))  # unseen test sequences
    before = score(model, xt, yt)
    hist = train(model, {"x": x}, y, loss="mse", optimizer=Adam(0.02), epochs=epochs,
                 batch_size=B // 2, clip_norm=5.0, seed=seed)
    after = score(model, xt, yt)
    out = default_plot("lstm_recall", plot)
    _plot(out, hist.losses, model, xt, yt)
    rows = [("untrained LSTM", f"{before[0]:.4f}", f"{before[1]:.1%}"),
            ("trained LSTM", f"{after[0]:.4f}", f"{after[1]:.1%}"),
            ("best memoryless", "1.0000", "50.0%")]
    return {"table": table(f"LSTM recall of the input {DELAY} steps back: H={H}, T={T}, B={B}, "
                           f"{epochs} epochs of BPTT; test on unseen sequences of 200 steps",
                           rows, ("model", "test MSE", "sign right")),
            "summary": f"recall at delay {DELAY}: test MSE {after[0]:.4f}, sign right "
                       f"{after[1]:.1%} (memoryless best: MSE 1, 50 %)",
            "metric": after[0], "baseline": 1.0, "accuracy": after[1],
            "loss_first": hist.losses[0], "loss_last": hist.losses[-1], "plot": out}


def _plot(path, losses, model, x, y) -> None:
    fig, (ax2,) = loss_figure(losses, "training loss (BPTT)")
    p = simulate(model, {"x": x})["y"]
    ax2.step(np.arange(60), y[:60, 0, 0], "k", where="mid", label=f"target x(k-{DELAY})")
    ax2.plot(p[:60, 0, 0], "o--", ms=3, label="LSTM")
    ax2.set(title="unseen sequence", xlabel="k", ylabel="recalled value (dimensionless)")
    save_figure(fig, path)


def main(argv=None) -> int:
    return cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
