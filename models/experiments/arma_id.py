"""ARMA system identification: output error through the IIR recursion vs least squares.

A second-order ARMA plant ``A(q^-1) y = B(q^-1) u`` is driven by white noise and its
output measured with white noise.  A ``DiscreteFilter``'s ``b`` and ``a`` are trained on
the measured data by gradient descent, the gradient flowing through the filter's own
recursion by its reciprocal (the anticausal filter): the output-error fit.  The
least-squares equation-error (ARX) fit regresses on the noisy past outputs and is biased
under output noise; the output-error fit is not.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as ss

from blockflow.train import Adam, exponential_decay, train
from models.arma import arma_filter
from models.experiments.common import cli, default_plot, loss_figure, nmse, save_figure, table

B_TRUE = np.array([0.0, 1.0, 0.5])
A_TRUE = np.array([1.0, -1.5, 0.7])


def least_squares(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ARX fit ``y(k) = b1 u(k-1) + b2 u(k-2) - a1 y(k-1) - a2 y(k-2)`` over all runs."""
    rows, rhs = [], []
    for j in range(u.shape[1]):
        uj, yj = u[:, j], y[:, j]
        rows.append(np.column_stack([uj[1:-1], uj[:-2], -yj[1:-1], -yj[:-2]]))
        rhs.append(yj[2:])
    th = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    return np.array([0.0, th[0], th[1]]), np.array([1.0, th[2], th[3]])


def run(quick: bool = False, seed: int = 0, plot=None) -> dict:
    rng = np.random.default_rng(seed)
    T, B, epochs = (300, 4, 150) if quick else (1000, 8, 400)
    u = rng.standard_normal((T, B))
    y_clean = ss.lfilter(B_TRUE, A_TRUE, u, axis=0)
    noise = 0.5 * y_clean.std()
    y = y_clean + noise * rng.standard_normal((T, B))
    b_ls, a_ls = least_squares(u, y)
    model = arma_filter([0.0, 0.1, 0.0], [1.0, 0.0, 0.0], name="arma_oe")
    filt = model.blocks["filter"]
    filt.fix_a0 = True
    hist = train(model, {"u": u}, y, loss="mse", optimizer=Adam(0.05), epochs=epochs,
                 clip_norm=10.0, schedule=exponential_decay(0.995), seed=seed)
    b_oe, a_oe = filt.b.copy(), filt.a.copy()
    # validation: a fresh input, noise-free outputs of each fitted model
    uv = np.random.default_rng(seed + 1).standard_normal((500, 1))
    yv = ss.lfilter(B_TRUE, A_TRUE, uv, axis=0)
    val = {"least squares": nmse(ss.lfilter(b_ls, a_ls, uv, axis=0), yv),
           "output error": nmse(ss.lfilter(b_oe, a_oe, uv, axis=0), yv)}
    err = {"least squares": float(np.linalg.norm(np.r_[b_ls - B_TRUE, a_ls - A_TRUE])),
           "output error": float(np.linalg.norm(np.r_[b_oe - B_TRUE, a_oe - A_TRUE]))}
    names = ["b1", "b2", "a1", "a2"]
    rows = [(n, f"{t:+.4f}", f"{ls:+.4f}", f"{oe:+.4f}") for n, t, ls, oe in zip(
        names, np.r_[B_TRUE[1:], A_TRUE[1:]], np.r_[b_ls[1:], a_ls[1:]],
        np.r_[b_oe[1:], a_oe[1:]], strict=True)]
    rows += [("|error|", "", f"{err['least squares']:.4f}", f"{err['output error']:.4f}"),
             ("val NMSE", "", f"{val['least squares']:.2e}", f"{val['output error']:.2e}")]
    out = default_plot("arma_id", plot)
    _plot(out, hist.losses, uv, yv, b_ls, a_ls, b_oe, a_oe)
    return {"table": table(f"ARMA identification, T={T}, B={B}, output noise std {noise:.2f}",
                           rows, ("coef", "true", "least sq.", "output err.")),
            "summary": f"coefficient error: output error {err['output error']:.4f} vs least "
                       f"squares {err['least squares']:.4f}",
            "metric": err["output error"], "baseline": err["least squares"],
            "loss_first": hist.losses[0], "loss_last": hist.losses[-1], "val": val,
            "b": b_oe, "a": a_oe, "plot": out}


def _plot(path, losses, uv, yv, b_ls, a_ls, b_oe, a_oe) -> None:
    fig, (ax2,) = loss_figure(losses, "training loss (mse, output error)")
    k = np.arange(100)
    ax2.plot(k, yv[:100, 0], "k", label="true plant")
    ax2.plot(k, ss.lfilter(b_ls, a_ls, uv, axis=0)[:100, 0], "--", label="least squares")
    ax2.plot(k, ss.lfilter(b_oe, a_oe, uv, axis=0)[:100, 0], ":", label="output error")
    ax2.set(title="validation (noise-free)", xlabel="k", ylabel="y(k) (dimensionless)")
    save_figure(fig, path)


def main(argv=None) -> int:
    return cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
