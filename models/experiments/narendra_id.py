"""Nonlinear plant identification (Narendra & Parthasarathy, 1990).

The plant ``y(k+1) = y(k) / (1 + y(k)^2) + u(k)^3`` is identified by a tanh MLP in
series-parallel form, ``y_hat(k+1) = N(y(k), u(k))`` fed with the plant's measured
output, then validated in parallel form: the same network with its own output fed
back through a unit delay, free running on an input it has not seen.  The baseline is the
best linear model ``y(k+1) = a y(k) + b u(k) + c`` (least squares), also run in parallel.
"""

from __future__ import annotations

import numpy as np

from blockflow import Inport, Model, Outport, simulate
from blockflow.train import Adam, exponential_decay, train
from blocks import MLP, Demux, Mux, UnitDelay
from models.experiments.common import cli, default_plot, loss_figure, nmse, save_figure, table


def plant(u: np.ndarray, y0: float = 0.0) -> np.ndarray:
    """y(k), k = 0..T, for inputs u(0..T-1) (one run)."""
    y = np.empty(len(u) + 1)
    y[0] = y0
    for k in range(len(u)):
        y[k + 1] = y[k] / (1 + y[k] ** 2) + u[k] ** 3
    return y


def series_parallel(net: MLP) -> Model:
    """``y_hat(k+1) = N(y(k), u(k))`` with the plant's own ``y(k)`` as an input."""
    m = Model("series_parallel")
    y, u, out = m.add(Inport("y"), Inport("u"), Outport("y_next"))
    z = m.add(Mux(2, name="z"))
    m.connect(y, z.u1)
    m.connect(u, z.u2)
    m.chain(z, m.add(net), m.add(Demux(1, name="s")), out)
    return m


def parallel(net: MLP) -> Model:
    """``y_hat(k+1) = N(y_hat(k), u(k))``: the identified model running free."""
    m = Model("parallel")
    u, out = m.add(Inport("u"), Outport("y_next"))
    z, s, d = m.add(Mux(2, name="z"), Demux(1, name="s"), UnitDelay(shape=(), name="y_hat"))
    m.connect(u, z.u2)
    m.chain(z, m.add(net), s, out)
    m.chain(s, d, z.u1)
    return m


def validation_input(T: int) -> np.ndarray:
    k = np.arange(T)
    return 0.5 * np.sin(2 * np.pi * k / 25) + 0.5 * np.sin(2 * np.pi * k / 10)


def run(quick: bool = False, seed: int = 0, plot=None) -> dict:
    rng = np.random.default_rng(seed)
    T, B, epochs, H = (200, 8, 150, 12) if quick else (500, 16, 800, 12)
    u = rng.uniform(-1, 1, (T, B))
    ys = np.column_stack([plant(u[:, j]) for j in range(B)])  # (T+1, B)
    net = MLP.random([2, H, 1], seed=seed, name="N")
    sp = series_parallel(net)
    x = {"y": ys[:-1], "u": u}
    hist = train(sp, x, ys[1:], loss="mse", optimizer=Adam(0.01), epochs=epochs,
                 schedule=exponential_decay(0.997 if quick else 0.999), batch_size=B // 2,
                 seed=seed)
    uv = validation_input(300)
    yv = plant(uv)[1:]
    y_sp = simulate(sp, {"y": plant(uv)[:-1], "u": uv})["y_next"][:, 0]
    y_par = simulate(parallel(net.copy()), {"u": uv})["y_next"][:, 0]
    # linear baseline, least squares on the same data, run in parallel
    X = np.column_stack([ys[:-1].ravel(), u.ravel(), np.ones(T * B)])
    a, b, c = np.linalg.lstsq(X, ys[1:].ravel(), rcond=None)[0]
    y_lin = np.empty(300)
    prev = 0.0
    for k in range(300):
        prev = a * prev + b * uv[k] + c
        y_lin[k] = prev
    res = {"series-parallel MLP": nmse(y_sp, yv), "parallel MLP": nmse(y_par, yv),
           "parallel linear (LS)": nmse(y_lin, yv)}
    out = default_plot("narendra_id", plot)
    _plot(out, hist.losses, yv, y_par, y_lin)
    rows = [(k, f"{v:.4f}") for k, v in res.items()]
    return {"table": table(f"Narendra plant identification: MLP 2-{H}-1, T={T}, B={B}, "
                           f"{epochs} epochs", rows, ("model (validation)", "NMSE")),
            "summary": f"validation NMSE, parallel (free-running) MLP: {res['parallel MLP']:.4f}"
                       f" (linear model: {res['parallel linear (LS)']:.4f})",
            "metric": res["parallel MLP"], "baseline": res["parallel linear (LS)"],
            "loss_first": hist.losses[0], "loss_last": hist.losses[-1], "plot": out}


def _plot(path, losses, yv, y_par, y_lin) -> None:
    fig, (ax2,) = loss_figure(losses, "training loss (series-parallel, mse)")
    ax2.plot(yv, "k", label="plant")
    ax2.plot(y_par, "--", label="MLP, parallel (free running)")
    ax2.plot(y_lin, ":", label="linear, parallel")
    ax2.set(title="validation input 0.5 sin(2πk/25) + 0.5 sin(2πk/10)", xlabel="k",
            ylabel="plant output y(k) (dimensionless)")
    save_figure(fig, path)


def main(argv=None) -> int:
    return cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
