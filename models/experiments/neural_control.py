"""Neural control through a plant: a controller trained by backpropagation through the
plant model and through time.

The closed loop is one model: the reference ``r(k)`` and the plant output ``y(k)`` feed a
tanh MLP controller, whose output ``u(k)`` drives the nonlinear plant
``y(k+1) = y(k) / (1 + y(k)^2) + u(k)``.  The controller is trained (the plant frozen) so
that ``y`` follows the reference model ``y_m(k+1) = 0.6 y_m(k) + 0.4 r(k)``: the loss is
``sum_k (y_m(k) - y(k))^2`` and its gradient flows back through the plant and around the
loop by the reciprocal sweep (BPTT).  Tracking errors are reported on references not
seen in training, for the untrained and the trained controller.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as ss

from blockflow import Inport, Model, Outport, simulate
from blockflow.train import Adam, exponential_decay, train
from blocks import MLP, Demux, Function, Mux, Sum, UnitDelay
from models.experiments.common import cli, default_plot, loss_figure, save_figure, table

REF_B, REF_A = [0.0, 0.4], [1.0, -0.6]  # y_m(k+1) = 0.6 y_m(k) + 0.4 r(k)


def _p(v):
    return v / (1.0 + v * v)


def _dp(v, y):
    return (1.0 - v * v) / (1.0 + v * v) ** 2


def closed_loop(controller: MLP) -> Model:
    """``u(k) = C(r(k), y(k))``, ``y(k+1) = p(y(k)) + u(k)``, ``p(v) = v / (1 + v^2)``."""
    m = Model("neural_control")
    r, y = m.add(Inport("r"), Outport("y"))
    c_in, c_out = m.add(Mux(2, name="c_in"), Demux(1, name="u"))
    plant_p = m.add(Function(_p, _dp, name="p"))
    zu, zy = m.add(UnitDelay(shape=(), name="zu"), UnitDelay(shape=(), name="zy"))
    s = m.add(Sum("++", name="plant"))
    m.add(controller)
    m.connect(r, c_in.u1)
    m.chain(c_in, controller, c_out)
    m.chain(c_out, zu, s.u2)          # u(k) acts at k+1
    m.chain(s, zy, plant_p, s.u1)     # p(y(k)) at k+1
    m.connect(s, c_in.u2)             # the controller sees y(k)
    m.connect(s, y)
    return m


def references(T: int, B: int, rng) -> np.ndarray:
    """Random staircase references: levels in [-1.5, 1.5] held 10 to 30 steps."""
    r = np.empty((T, B))
    for j in range(B):
        k = 0
        while k < T:
            n = int(rng.integers(10, 31))
            r[k:k + n, j] = rng.uniform(-1.5, 1.5)
            k += n
    return r


def test_references(T: int) -> np.ndarray:
    k = np.arange(T)
    sine = 1.2 * np.sin(2 * np.pi * k / 40)
    square = np.where((k // 25) % 2 == 0, 1.0, -0.8)
    return np.column_stack([sine, square])


def tracking_mse(model: Model, r: np.ndarray) -> float:
    y = simulate(model, {"r": r})["y"]
    return float(np.mean((ss.lfilter(REF_B, REF_A, r, axis=0) - y) ** 2))


def run(quick: bool = False, seed: int = 0, plot=None) -> dict:
    rng = np.random.default_rng(seed)
    T, B, epochs = (60, 8, 80) if quick else (100, 32, 300)
    ctrl = MLP.random([2, 10, 1], seed=seed, name="ctrl")
    model = closed_loop(ctrl)
    r_train = references(T, B, rng)
    r_test = test_references(200)
    before = tracking_mse(model, r_test)
    y_before = simulate(model, {"r": r_test})["y"]
    hist = train(model, {"r": r_train}, ss.lfilter(REF_B, REF_A, r_train, axis=0),
                 loss="mse", params=["ctrl."], optimizer=Adam(0.01), epochs=epochs,
                 clip_norm=1.0, schedule=exponential_decay(0.995), batch_size=B // 2,
                 seed=seed)
    after = tracking_mse(model, r_test)
    y_after = simulate(model, {"r": r_test})["y"]
    out = default_plot("neural_control", plot)
    _plot(out, hist.losses, r_test, y_before, y_after)
    rows = [("untrained controller", f"{before:.4f}"), ("trained controller", f"{after:.4f}")]
    return {"table": table(f"Neural control through a plant, T={T}, B={B}, {epochs} epochs; "
                           "tracking MSE on unseen references (sine, square)", rows,
                           ("controller", "MSE")),
            "summary": f"tracking MSE on unseen references: {before:.4f} untrained -> "
                       f"{after:.4f} trained",
            "metric": after, "baseline": before, "loss_first": hist.losses[0],
            "loss_last": hist.losses[-1], "plot": out}


def _plot(path, losses, r, y0, y1) -> None:
    fig, axes = loss_figure(losses, "training loss", panels=2, height=6)
    ym = ss.lfilter(REF_B, REF_A, r, axis=0)
    for j, a in enumerate(axes):
        a.plot(ym[:, j], "k", label="reference model")
        a.plot(y0[:, j], ":", label="untrained")
        a.plot(y1[:, j], "--", label="trained")
    for j, a in enumerate(axes):
        a.set_ylabel(f"output y{j + 1}(k) (dimensionless)")
    axes[-1].set_xlabel("k")
    save_figure(fig, path)


def main(argv=None) -> int:
    return cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
