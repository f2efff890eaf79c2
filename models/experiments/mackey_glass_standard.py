"""Mackey-Glass on the standard benchmark set-up, scored by NDEI beside the published table.

The benchmark (Jang 1993, the ANFIS paper; after Lapedes & Farber and Crowder): the
Mackey-Glass series with ``tau = 17``, ``x(0) = 1.2`` and ``x(t) = 0`` for ``t < 0``,
integrated with step 0.1; predict ``x(t+6)`` from ``x(t-18), x(t-12), x(t-6), x(t)`` for
``t = 118 .. 1117``: the first 500 points train, the last 500 test.  NDEI = RMSE /
standard deviation of the target.

Here FIR networks do it the block-diagram way, fitted by BFGS
(:func:`blockflow.train.minimize`) on the exact gradient of their reciprocal networks,
in two set-ups:

- *Jang's four inputs*: the series sampled every 6 steps is a sequence, and a first
  layer of FIR synapses with 4 taps sees exactly ``x(t), x(t-6), x(t-12), x(t-18)``; the
  six sampling phases run as six batch members; two tanh layers (15 and 8 units) follow.
- *the whole window*: the series at every step is one sequence, and a first layer of FIR
  synapses with 19 taps sees every sample of ``x(t-18..t)``, the same span; one tanh
  layer of 10 units follows.  The samples between Jang's four carry the slope and
  curvature of the series, which the four alone leave to be guessed.

The linear baseline is a least-squares predictor of ``x(t+6)`` from ``x(t), x(t-1), ...,
x(t-p+1)`` with its order ``p`` chosen on the training points alone (the Bayesian
information criterion).
"""

from __future__ import annotations

import numpy as np

from blockflow import simulate
from blockflow.train import minimize
from models.experiments.common import cli, default_plot, loss_figure, mackey_glass, save_figure
from models.experiments.common import table as text_table
from models.paper import fir_network

#: NDEI on this set-up, from Jang (1993), Table (test set)
PUBLISHED = {"ANFIS": 0.007, "backprop MLP": 0.02, "6th-order polynomial": 0.04,
             "cascade-correlation": 0.06, "linear AR": 0.19}
T0, N = 118, 500  # t = 118 .. 1117: 500 training and 500 test points


def series(n: int = 1130) -> np.ndarray:
    """``x(t)`` for ``t = 0 .. n-1`` (step 0.1, sampled at integer t, no transient cut),
    from ``x(0) = 1.2`` and ``x(t) = 0`` before: Jang's series."""
    return mackey_glass(n, tau=17.0, dt=0.1, sample=1.0, x0=1.2, discard=0, history=0.0)


def ndei(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((target - pred) ** 2)) / np.std(target))


def phases(x: np.ndarray, t_first: int, t_last: int) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """The span ``t_first .. t_last`` as six sequences (one per sampling phase), each
    starting 18 steps early so that the 4 taps are filled: inputs ``x(t)``, targets
    ``x(t+6)`` (both ``(K, 6, 1)``) and the times ``t`` (``(K, 6)``)."""
    K = (t_last - t_first + 18) // 6 + 1
    ts = t_first - 18 + np.arange(6)[None, :] + 6 * np.arange(K)[:, None]
    return x[ts][:, :, None], x[ts + 6][:, :, None], ts


def window(x: np.ndarray, t_first: int, t_last: int) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """The span ``t_first .. t_last`` as one sequence at every step, starting 18 steps
    early so that the 19 taps are filled: inputs ``x(t)``, targets ``x(t+6)`` (both
    ``(K, 1, 1)``) and the times ``t`` (``(K, 1)``)."""
    ts = np.arange(t_first - 18, t_last + 1)[:, None]
    return x[ts][:, :, None], x[ts + 6][:, :, None], ts


def _fit(x, net, inputs, test_inputs, t_train, t_test, iters: int):
    """Fit ``net`` by BFGS on the 500 training points alone (of the sequences ``inputs``
    at times ``t_train``); its test predictions at times ``t_test``."""
    scored = ((t_train >= T0) & (t_train < T0 + N))[:, :, None]  # the 500 points, no more

    def loss(y, d):  # the mean squared error over the 500 training points alone
        e = np.where(scored, y - d, 0.0)
        return float(np.sum(e * e) / scored.sum()), 2.0 * e / scored.sum()
    mean, std = x[T0:T0 + N].mean(), x[T0:T0 + N].std()
    hist = minimize(net, {"x": (inputs - mean) / std}, (x[t_train + 6][:, :, None] - mean) / std,
                    loss=loss, maxiter=iters)
    y = simulate(net, {"x": (test_inputs - mean) / std})["y"][:, :, 0] * std + mean
    pred = np.full(x.shape, np.nan)
    pred[t_test + 6] = y  # y at t predicts x(t+6)
    return hist, pred[np.arange(T0 + N, T0 + 2 * N) + 6]


def ar_bic(x: np.ndarray, train_t: np.ndarray, max_order: int = 30) -> tuple[int, np.ndarray]:
    """The least-squares ``x(t+6) ~ c + sum_i a_i x(t-i)``, order by BIC on the training
    points."""
    best = None
    for p in range(1, max_order + 1):
        X = np.column_stack([np.ones(len(train_t))] + [x[train_t - i] for i in range(p)])
        coef, *_ = np.linalg.lstsq(X, x[train_t + 6], rcond=None)
        rss = float(np.sum((X @ coef - x[train_t + 6]) ** 2))
        bic = len(train_t) * np.log(rss / len(train_t)) + (p + 1) * np.log(len(train_t))
        if best is None or bic < best[0]:
            best = (bic, p, coef)
    return best[1], best[2]


def run(quick: bool = False, seed: int = 0, plot=None, seeds: int | None = None) -> dict:
    x = series()
    train_t = np.arange(T0, T0 + N)
    test_t = np.arange(T0 + N, T0 + 2 * N)
    n_seeds = seeds or (1 if quick else 5)
    # (name, layers, taps, sequences, BFGS iterations at most)
    setups = [("whole window", (1, 6, 1) if quick else (1, 10, 1), (19, 1), window,
               150 if quick else 4000),
              ("Jang's 4 inputs", (1, 6, 4, 1) if quick else (1, 15, 8, 1), (4, 1, 1), phases,
               150 if quick else 5000)]
    results: dict = {}
    hists, preds, rows = [], [], []
    for name, layers, taps, seqs, iters in setups:
        (U, _, t_train), (Ut, _, t_test) = (seqs(x, T0, T0 + N - 1),
                                            seqs(x, T0 + N, T0 + 2 * N - 1))
        res = results[name] = []
        for i in range(n_seeds):
            net = fir_network(layers, taps, seed=seed + 10 * i)
            hist, on_test = _fit(x, net, U, Ut, t_train, t_test, iters)
            res.append(ndei(on_test, x[test_t + 6]))
            if name == "whole window":
                hists.append(hist.losses)
                preds.append(on_test)
        label = f"FIR network {'-'.join(map(str, layers))}, {name} ({taps[0]} taps)"
        rows += [(f"{label}, seed {seed + 10 * i}", f"{r:.5f}") for i, r in enumerate(res)]
        rows.append((f"{label}, mean ± std of {n_seeds}",
                     f"{np.mean(res):.5f} ± {np.std(res):.5f}"))
    order, coef = ar_bic(x, train_t)
    X = np.column_stack([np.ones(len(test_t))] + [x[test_t - i] for i in range(order)])
    ar = ndei(X @ coef, x[test_t + 6])
    rows.append((f"linear AR({order}) by BIC on the training points", f"{ar:.4f}"))
    rows += [(f"{k} (Jang 1993)", f"{v}") for k, v in PUBLISHED.items()]
    out = default_plot("mackey_glass_standard", plot)
    full, jang = (np.array(results[k]) for k in ("whole window", "Jang's 4 inputs"))
    best = int(np.argmin(full))
    _plot(out, hists[best], test_t + 6, x[test_t + 6], preds[best])
    return {"table": text_table(f"Mackey-Glass, standard set-up: x(t+6) from x(t-18..t), "
                                f"t = {T0}..{T0 + 2 * N - 1}, {N} train / {N} test; BFGS",
                                rows, ("predictor", "test NDEI")),
            "summary": f"test NDEI: FIR network on the whole window {full.mean():.5f} ± "
                       f"{full.std():.5f}, on Jang's 4 inputs {jang.mean():.4f} ± "
                       f"{jang.std():.4f} ({n_seeds} seeds), linear AR({order}) {ar:.4f}; "
                       "published: ANFIS 0.007, backprop MLP 0.02, linear AR 0.19",
            "metric": float(full.mean()), "metric_std": float(full.std()),
            "jang_inputs": float(jang.mean()), "jang_inputs_std": float(jang.std()),
            "baseline": ar, "order": order,
            "loss_first": hists[0][0], "loss_last": hists[0][-1], "plot": out}


def _plot(path, losses, t, target, pred) -> None:
    fig, (ax2,) = loss_figure(losses, "training loss (standardised MSE)", xlabel="BFGS iteration")
    ax2.plot(t, target, "k", label="Mackey-Glass x(t+6)")
    ax2.plot(t, pred, "--", label="FIR network, 19 taps")
    err = ax2.twinx()  # the error on its own scale: on the signal's it is a flat line
    a = float(np.abs(pred - target).max()) or 1.0
    (err_line,) = err.plot(t, pred - target, color="C3", lw=0.7)
    err.set_ylim(-1.5 * a, 6 * a)  # (in the band below the series)
    err.set_ylabel("prediction error (red)", color="C3")
    lo, hi = float(target.min()), float(target.max())
    ax2.set(title="test points", xlabel="t (time units)", ylabel="x(t+6) (dimensionless)",
            ylim=(lo - 0.35 * (hi - lo), hi + 0.05 * (hi - lo)))
    lines, labels = ax2.get_legend_handles_labels()
    ax2.legend([*lines, err_line], [*labels, "its error (right axis)"], fontsize=8, ncol=3,
               loc="upper center", bbox_to_anchor=(0.5, -0.22))  # (below: the plot is full)
    save_figure(fig, path)


def main(argv=None) -> int:
    return cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
