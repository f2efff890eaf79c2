"""Santa Fe competition, data set A (far-infrared laser): Wan's FIR network, iterated.

The competition gave the first 1,000 samples and asked for the next 100.  Wan's winning
entry (Wan, 1994, in Weigend & Gershenfeld, *Time Series Prediction*) was a 1-12-12-1
network of FIR synapses with 25:5:5 delays (26, 6 and 6 taps), tanh hidden units, a
linear output, trained by temporal backprop; iterated 100 steps past sample 1,000 it
scored NMSE 0.0273 (reported).  Here: the same architecture, trained on the first 1,000
samples only (scaled by their own mean and standard deviation) by the exact gradient of
the one-step loss (the FIR network's reciprocal: temporal backprop over the whole
sequence) with Adam; then **iterated** in a closed-loop model built from the trained
network and a unit delay (a ``Switch`` feeds the true series until sample 1,000 and the
network's own prediction after it).  NMSE is normalised by the variance of the true
continuation.  The data ships inside ``reservoirpy`` (the ``experiments`` extra); it is
read from the package's data file, with no network access.
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np

from blockflow import Inport, Model, Outport, simulate
from blockflow.errors import BlockflowError
from blockflow.train import Adam, train
from blocks import FIRDense, Function, Switch, UnitDelay
from models.experiments.common import cli, default_plot, loss_figure, save_figure, table

PUBLISHED_NMSE = 0.0273  # Wan's entry, 100 steps iterated (Weigend & Gershenfeld, 1994)
N_TRAIN, N_TEST = 1000, 100


def laser() -> np.ndarray:
    """The 10,093 samples of data set A, from reservoirpy's data file."""
    spec = importlib.util.find_spec("reservoirpy")
    if spec is None or spec.origin is None:
        raise BlockflowError("the Santa Fe laser data ships with reservoirpy: pip install "
                             "'blockflow[experiments]'")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "santafe_laser.npy")
    return np.load(path).astype(float).ravel()


def network(hidden=(12, 12), taps=(26, 6, 6), *, seed: int = 0) -> Model:
    """``x(k) -> FIR -> tanh -> FIR -> tanh -> FIR -> x_hat(k+1)`` (1-12-12-1, 25:5:5)."""
    sizes = (1, *hidden, 1)
    m = Model("fir_1_12_12_1")
    chain: list = [m.add(Inport("x", shape=(1,)))]
    for i, (a, b, t) in enumerate(zip(sizes[:-1], sizes[1:], taps, strict=True)):
        chain.append(m.add(FIRDense.random(a, b, t, seed=seed + i, name=f"layer{i + 1}")))
        if i < len(taps) - 1:
            chain.append(m.add(Function("tanh", name=f"tanh{i + 1}")))
    chain.append(m.add(Outport("y")))
    m.chain(*chain)
    return m


def iterated(net: Model) -> Model:
    """The closed loop: the network's input is ``x`` while ``teach >= 0.5``, else its own
    previous prediction (``y(k-1)`` predicts ``x(k)``)."""
    m = Model("iterated")
    x, teach, y = m.add(Inport("x", shape=(1,)), Inport("teach", shape=(1,)), Outport("y"))
    sw, z, nn = m.add(Switch(0.5, name="input"), UnitDelay(shape=(1,), name="z"),
                      net.copy("net"))
    m.connect(x, sw.u1)
    m.connect(teach, sw.u2)
    m.connect(z, sw.u3)
    m.connect(sw.y, nn.x)
    m.connect(nn.y, z)
    m.connect(nn.y, y)
    return m


def nmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean((true - pred) ** 2) / np.var(true))


def run_seed(s: np.ndarray, seed: int, epochs: int, hidden, taps, lr: float) -> dict:
    x, d = s[:N_TRAIN - 1], s[1:N_TRAIN]  # one-step pairs inside the training span
    net = network(hidden, taps, seed=seed)
    t0 = time.perf_counter()
    hist = train(net, {"x": x[:, None, None]}, d[:, None, None], loss="mse",
                 optimizer=Adam(lr), epochs=epochs, seed=seed, clip_norm=1.0)
    seconds = time.perf_counter() - t0
    T = N_TRAIN + N_TEST
    one = simulate(net, {"x": s[:T - 1, None, None]})["y"][:, 0, 0]  # predicts s[1:T]
    teach = (np.arange(T) < N_TRAIN).astype(float)
    xs = np.where(teach > 0, s[:T], 0.0)
    it = simulate(iterated(net), {"x": xs[:, None, None], "teach": teach[:, None, None]}
                  )["y"][:, 0, 0]
    future = s[N_TRAIN:T]
    return {"iterated": nmse(it[N_TRAIN - 1:T - 1], future),
            "one_step": nmse(one[N_TRAIN - 1:T - 1], future),
            "train": float(hist.losses[-1]), "losses": hist.losses, "seconds": seconds,
            "prediction": it[N_TRAIN - 1:T - 1]}


def run(quick: bool = False, seed: int = 0, plot=None, seeds: int | None = None) -> dict:
    raw = laser()
    mean, std = raw[:N_TRAIN].mean(), raw[:N_TRAIN].std()  # fitted on the 1,000 alone
    s = (raw[:N_TRAIN + N_TEST] - mean) / std
    if quick:
        hidden, taps, epochs, n_seeds = (6, 6), (16, 4, 4), 60, 1
    else:
        hidden, taps, epochs, n_seeds = (12, 12), (26, 6, 6), 3000, 5
    n_seeds = seeds or n_seeds
    lr = 0.01 if quick else 0.003
    runs = [run_seed(s, seed + i, epochs, hidden, taps, lr=lr) for i in range(n_seeds)]
    it = np.array([r["iterated"] for r in runs])
    one = np.array([r["one_step"] for r in runs])
    rows = [(str(seed + i), f"{r['train']:.5f}", f"{r['one_step']:.4f}",
             f"{r['iterated']:.4f}", f"{r['seconds']:.0f}") for i, r in enumerate(runs)]
    rows.append(("mean ± std", "", f"{one.mean():.4f} ± {one.std():.4f}",
                 f"{it.mean():.4f} ± {it.std():.4f}", ""))
    rows.append(("Wan (published)", "", "", f"{PUBLISHED_NMSE}", ""))
    arch = f"1-{hidden[0]}-{hidden[1]}-1, taps {':'.join(str(t - 1) for t in taps)}"
    out = default_plot("santafe_laser", plot)
    best = int(np.argmin(it))
    _plot(out, runs[best]["losses"], s[N_TRAIN:], runs[best]["prediction"], seed + best)
    return {"table": table(f"Santa Fe laser (data set A): FIR network {arch}, {epochs} "
                           f"epochs of Adam on the first {N_TRAIN} samples, {n_seeds} seeds; "
                           f"NMSE over samples {N_TRAIN + 1}-{N_TRAIN + N_TEST}", rows,
                           ("seed", "train MSE", "one-step NMSE", "iterated NMSE", "s")),
            "summary": f"iterated 100-step NMSE {it.mean():.4f} ± {it.std():.4f} over "
                       f"{n_seeds} seeds (best {it.min():.4f}); published {PUBLISHED_NMSE}",
            "metric": float(it.mean()), "one_step": float(one.mean()),
            "iterated": it.tolist(), "plot": out,
            "persistence": nmse(s[N_TRAIN - 1:N_TRAIN + N_TEST - 1], s[N_TRAIN:]),
            "loss_first": runs[0]["losses"][0], "loss_last": runs[0]["losses"][-1]}


def _plot(path, losses, future, pred, seed) -> None:
    fig, (ax2,) = loss_figure(losses, "training loss (one-step MSE)")
    ax2.plot(np.arange(N_TRAIN + 1, N_TRAIN + 1 + len(future)), future, "k",
             label="laser (true continuation)")
    ax2.plot(np.arange(N_TRAIN + 1, N_TRAIN + 1 + len(future)), pred, "--",
             label=f"FIR network iterated (seed {seed})")
    ax2.set(title="100 steps past the training data, iterated", xlabel="sample",
            ylabel="intensity (standardised: std units)")
    save_figure(fig, path)


def main(argv=None) -> int:
    return cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
