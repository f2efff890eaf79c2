"""Time-series prediction with an FIR network trained online by temporal backprop
(Wan, 1993).

The Mackey-Glass series (tau = 17, sampled every 6 time units, generated here by RK4) is
predicted one step ahead by a network of FIR synapses, ``x(k) -> FIR layer -> tanh ->
FIR layer -> x_hat(k+1)``.  Its reciprocal has bounded advances, so it runs causally,
``D`` steps late, and the weights are updated online after every step (paper eq. 13).
The baseline is the least-squares linear AR predictor over the same input window; both
are scored by NMSE on a held-out span.
"""

from __future__ import annotations

from blockflow import simulate
from blockflow.gradient.online import OnlineBackprop
from blockflow.train import SGD, train
from models.experiments.common import (
    ar_fit,
    ar_predict,
    cli,
    default_plot,
    loss_figure,
    mackey_glass,
    nmse,
    save_figure,
    table,
)
from models.paper import fir_network


def run(quick: bool = False, seed: int = 0, plot=None) -> dict:
    n_train, n_test, epochs, H = (300, 300, 6, 8) if quick else (1000, 500, 30, 12)
    taps = (8, 2)  # input window: 8 + 2 - 1 = 9 samples
    s = mackey_glass(n_train + n_test + 1, sample=6.0)
    s = (s - s[:n_train].mean()) / s[:n_train].std()
    x, d = s[:-1], s[1:]  # predict s(k+1) from s(k), s(k-1), ...
    model = fir_network((1, H, 1), taps, seed=seed)
    D = OnlineBackprop(model).D
    hist = train(model, {"x": x[:n_train, None, None]}, d[:n_train, None, None], loss="sse",
                 mode="online", chunk=1, optimizer=SGD(0.01), epochs=epochs, seed=seed)
    pred = simulate(model, {"x": x[:, None, None]})["y"][:, 0, 0]
    order = taps[0] + taps[1] - 1
    ar = ar_predict(x, ar_fit(x[:n_train + 1], order))
    test = slice(n_train, n_train + n_test)
    res = {"FIR network (online)": nmse(pred[test], d[test]),
           f"linear AR({order})": nmse(ar[test], d[test])}
    out = default_plot("mackey_glass", plot)
    _plot(out, hist.losses, d[test], pred[test], ar[test])
    rows = [(k, f"{v:.4f}") for k, v in res.items()]
    fir = res["FIR network (online)"]
    return {"table": table(f"Mackey-Glass one-step prediction: FIR network 1-{H}-1, taps "
                           f"{taps}, online temporal backprop (D = {D}), {epochs} passes over "
                           f"{n_train} samples; NMSE on the next {n_test}", rows,
                           ("predictor", "test NMSE")),
            "summary": f"held-out NMSE: FIR network {fir:.4f} vs linear AR({order}) "
                       f"{res[f'linear AR({order})']:.4f}",
            "metric": fir, "baseline": res[f"linear AR({order})"],
            "loss_first": hist.losses[0], "loss_last": hist.losses[-1], "delay": D,
            "plot": out}


def _plot(path, losses, d, pred, ar) -> None:
    fig, (ax2,) = loss_figure(losses, "training loss per pass (online updates)", xlabel="pass")
    ax2.plot(d[:200], "k", label="Mackey-Glass")
    ax2.plot(pred[:200], "--", label="FIR network")
    ax2.plot(ar[:200], ":", label="linear AR")
    ax2.set(title="held-out span", xlabel="k", ylabel="x(k) (dimensionless)")
    save_figure(fig, path)


def main(argv=None) -> int:
    return cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
