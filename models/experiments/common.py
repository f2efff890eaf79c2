"""Helpers shared by the experiments: data, metrics, the command line, tables."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def nmse(y: np.ndarray, d: np.ndarray) -> float:
    """Normalised mean squared error ``mean((d - y)^2) / var(d)``."""
    d = np.asarray(d, float)
    return float(np.mean((d - y) ** 2) / np.var(d))


def mackey_glass(n: int, *, tau: float = 17.0, dt: float = 0.1, sample: float = 1.0,
                 x0: float = 1.2, discard: int = 500, history: float | None = None
                 ) -> np.ndarray:
    """The Mackey-Glass series ``dx/dt = 0.2 x(t-tau) / (1 + x(t-tau)^10) - 0.1 x(t)``.

    Integrated by 4th-order Runge-Kutta with step ``dt`` (the delayed term linearly
    interpolated) from ``x(0) = x0`` with ``x(t) = history`` for ``t < 0`` (default
    ``x0``; Jang's benchmark: 0), sampled every ``sample`` time units after a transient
    of ``discard`` samples.
    """
    per = int(round(sample / dt))
    lag = int(round(tau / dt))
    steps = (n + discard) * per
    x = np.empty(steps + lag + 1)
    x[:lag] = x0 if history is None else history
    x[lag] = x0

    def f(xt, xlag):
        return 0.2 * xlag / (1.0 + xlag**10) - 0.1 * xt

    for i in range(lag, lag + steps):
        xl0, xl1 = x[i - lag], x[i - lag + 1]
        xlh = 0.5 * (xl0 + xl1)
        k1 = f(x[i], xl0)
        k2 = f(x[i] + 0.5 * dt * k1, xlh)
        k3 = f(x[i] + 0.5 * dt * k2, xlh)
        k4 = f(x[i] + dt * k3, xl1)
        x[i + 1] = x[i] + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag::per][discard:discard + n]


def ar_fit(series: np.ndarray, order: int) -> np.ndarray:
    """Least-squares AR(order) with a constant: ``s(k+1) ~ c + sum_i a_i s(k-i)``."""
    X = np.column_stack([np.ones(len(series) - order)] +
                        [series[order - 1 - i:len(series) - 1 - i] for i in range(order)])
    return np.linalg.lstsq(X, series[order:], rcond=None)[0]


def ar_predict(series: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """One-step predictions of ``series[k+1]`` for every k (zeros before the start)."""
    order = len(coef) - 1
    padded = np.concatenate([np.zeros(order - 1), series])
    X = np.column_stack([np.ones(len(series))] +
                        [padded[order - 1 - i:len(padded) - i] for i in range(order)])
    return X @ coef


def table(title: str, rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    out = [title, line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*r) for r in rows]
    return "\n".join(out)


def cli(run, description: str, argv=None) -> int:
    """The shared command line: ``--quick``, ``--seed``, ``--plot``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="reduced size (seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help="where to save the figure (.png)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    import sys

    from blockflow.train import showing_progress

    with showing_progress(sys.stderr.isatty() and not args.quiet):
        res = run(quick=args.quick, seed=args.seed, plot=args.plot)
    print(res["table"])
    print(f"\n{res['summary']}  [seed {args.seed}, {time.perf_counter() - t0:.1f} s]")
    if res.get("plot"):
        print(f"plot written to {res['plot']}")
    return 0


def loss_figure(losses, title: str, *, panels: int = 1, xlabel: str = "epoch",
                height: float = 5.0, ylabel: str = "loss (log scale)"):
    """A figure: the training loss on top, ``panels`` axes below it for the results
    (each given its y label, with units, by the experiment)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, height), layout="constrained")
    axes = fig.subplots(1 + panels, 1)
    axes[0].semilogy(losses)
    axes[0].set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig, list(axes[1:])


def save_figure(fig, path: Path) -> None:
    """Legends on every axis that has labelled lines (and none yet), then the file."""
    for ax in fig.axes:
        if ax.get_legend_handles_labels()[0] and ax.get_legend() is None:
            ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def default_plot(name: str, plot) -> Path:
    return Path(plot) if plot else Path("out") / f"{name}.png"
