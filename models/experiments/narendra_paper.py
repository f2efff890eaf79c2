"""Narendra & Parthasarathy (1990), Example 3, on the paper's set-up: identification and
control of ``y(k+1) = y(k) / (1 + y(k)^2) + u(k)^3``.

**Identification.** As in the paper: ``y_hat(k+1) = N_f[y(k)] + N_g[u(k)]`` with two
1-20-10-1 networks, series-parallel (fed the plant's own output), trained on ``u(k)``
i.i.d. uniform in ``[-2, 2]``; validated on the paper's input
``u(k) = sin(2 pi k/25) + sin(2 pi k/10)``, both series-parallel and running free
(parallel: ``N_f`` fed its own output through a unit delay).  The paper trained online by
gradient descent for 100,000 steps; here the same networks get the exact gradient of the
squared one-step error (their reciprocal network) with Adam over sequences.

**Control.** The paper's model-reference control built on the identified model, inverted:
the reference model ``y_m(k+1) = 0.6 y_m(k) + r(k)`` with
``r(k) = sin(2 pi k/25) + sin(2 pi k/10)``, and the control
``u(k) = N_g^{-1}[-N_f(y(k)) + 0.6 y(k) + r(k)]``.  The loop is a block diagram: the
plant from elementary blocks, ``N_f`` an MLP block, ``N_g^{-1}`` a ``Lookup1D`` built by
tabulating the trained ``N_g`` (monotone, as ``u^3`` is) and swapping its axes.

**A neural controller trained through the identified model**, beside it: ``u(k) =
N_c[y(k), r(k)]`` (a 2-20-10-1 MLP) in a loop with the identified model as the plant's
stand-in, ``y_hat(k+1) = N_f[y_hat(k)] + N_g[u(k)]``; only ``N_c``'s weights are trained,
by BPTT through that loop (its reciprocal network), to follow the reference model on
random two-sine references (periods 8-40 steps, not the test's); then it runs on the
true plant with the paper's reference.
"""

from __future__ import annotations

import numpy as np

from blockflow import Inport, Model, Outport, simulate
from blockflow.train import Adam, exponential_decay, train
from blocks import MLP, Constant, Demux, Gain, Lookup1D, Mux, Product, Sum, UnitDelay
from models.experiments.common import cli, default_plot, loss_figure, nmse, save_figure, table
from models.experiments.narendra_id import plant


def paper_input(T: int) -> np.ndarray:
    k = np.arange(T)
    return np.sin(2 * np.pi * k / 25) + np.sin(2 * np.pi * k / 10)


def _scalar_net(m: Model, net: MLP, name: str):
    """A (1,)-sample MLP wired for scalar signals: Mux -> MLP -> Demux."""
    mux, dem = m.add(Mux(1, name=f"{name}_in"), Demux(1, name=f"{name}_out"))
    m.add(net)
    m.chain(mux, net, dem)
    return mux, dem


def identifier(nf: MLP, ng: MLP, *, free: bool) -> Model:
    """``y_hat(k+1) = N_f[y(k)] + N_g[u(k)]``: series-parallel (``y`` an input), or
    parallel (``free``: ``N_f`` fed ``y_hat`` through a unit delay)."""
    m = Model("parallel" if free else "series_parallel")
    u, out = m.add(Inport("u"), Outport("y_next"))
    f_in, f_out = _scalar_net(m, nf, "Nf")
    g_in, g_out = _scalar_net(m, ng, "Ng")
    s = m.add(Sum("++", name="y_hat"))
    m.connect(f_out, s.u1)
    m.connect(g_out, s.u2)
    m.connect(u, g_in.u1)
    m.connect(s, out)
    if free:
        m.chain(s, m.add(UnitDelay(name="z")), f_in.u1)
    else:
        m.connect(m.add(Inport("y")), f_in.u1)
    return m


def _plant(m: Model, z, u) -> None:
    """The plant ``y(k+1) = y / (1 + y^2) + u^3`` from elementary blocks, ``z`` holding
    ``y(k)`` and ``u`` the control's output port."""
    yy, one, den, frac, uu, u3, nxt = m.add(
        Product("**", name="y2"), Constant(1.0, name="one"), Sum("++", name="den"),
        Product("*/", name="frac"), Product("**", name="u2"), Product("**", name="u3"),
        Sum("++", name="y_next"))
    wires = [(z, yy.u1), (z, yy.u2), (one, den.u1), (yy, den.u2), (z, frac.u1),
             (den, frac.u2), (u, uu.u1), (u, uu.u2), (uu, u3.u1), (u, u3.u2),
             (frac, nxt.u1), (u3, nxt.u2), (nxt, z)]
    for src, dst in wires:
        m.connect(src, dst)


def control_loop(nf: MLP, ng_inverse: Lookup1D) -> Model:
    """The reference ``r`` in, the plant output ``y`` out: ``u = N_g^-1[0.6 y + r - N_f(y)]``
    and the plant ``y(k+1) = y / (1 + y^2) + u^3`` from elementary blocks."""
    m = Model("model_reference_control")
    r, y_out = m.add(Inport("r"), Outport("y"))
    z = m.add(UnitDelay(name="y_k"))  # the plant state: y(k)
    f_in, f_out = _scalar_net(m, nf, "Nf")
    v, g06, inv = m.add(Sum("++-", name="v"), Gain(0.6, trainable=False, name="gain06"),
                        ng_inverse)
    for src, dst in [(z, f_in.u1), (z, g06), (g06, v.u1), (r, v.u2), (f_out, v.u3),
                     (v, inv), (z, y_out)]:
        m.connect(src, dst)
    _plant(m, z, inv)
    return m


def _controller(m: Model, nc: MLP, z, r):
    """``u(k) = N_c[y(k), r(k)]``: its output port."""
    c_in, c_out = m.add(Mux(2, name="Nc_in"), Demux(1, name="Nc_out"))
    m.add(nc)
    m.chain(c_in, nc, c_out)
    m.connect(z, c_in.u1)
    m.connect(r, c_in.u2)
    return c_out.y1


def emulator_loop(nf: MLP, ng: MLP, nc: MLP) -> Model:
    """The neural controller ``N_c`` driving the identified model: ``r`` in, ``y_hat(k+1)
    = N_f[y_hat(k)] + N_g[N_c(y_hat(k), r(k))]`` out; trained with ``params=["Nc."]``."""
    m = Model("controller_through_the_model")
    r, out = m.add(Inport("r"), Outport("y_next"))
    z = m.add(UnitDelay(name="y_k", shape=()))
    f_in, f_out = _scalar_net(m, nf, "Nf")
    g_in, g_out = _scalar_net(m, ng, "Ng")
    s = m.add(Sum("++", name="y_hat"))
    for src, dst in [(z, f_in.u1), (_controller(m, nc, z, r), g_in.u1), (f_out, s.u1),
                     (g_out, s.u2), (s, z), (s, out)]:
        m.connect(src, dst)
    return m


def neural_control_loop(nc: MLP) -> Model:
    """The trained ``N_c`` on the true plant: ``r`` in, ``y`` out (as :func:`control_loop`)."""
    m = Model("neural_control")
    r, y_out = m.add(Inport("r"), Outport("y"))
    z = m.add(UnitDelay(name="y_k", shape=()))
    _plant(m, z, _controller(m, nc, z, r))
    m.connect(z, y_out)
    return m


def reference_model(r: np.ndarray) -> np.ndarray:
    """``y_m(k+1) = 0.6 y_m(k) + r(k)`` from ``y_m(0) = 0``: ``T + 1`` values."""
    ym = np.zeros((r.shape[0] + 1, *r.shape[1:]))
    for k in range(r.shape[0]):
        ym[k + 1] = 0.6 * ym[k] + r[k]
    return ym


def training_references(rng, T: int, B: int) -> np.ndarray:
    """``B`` random two-sine references (amplitudes 0.3-1, periods 8-40 steps, phases)."""
    k = np.arange(T)[:, None]
    out = np.zeros((T, B))
    for _ in range(2):
        a, per, ph = rng.uniform(0.3, 1.0, B), rng.uniform(8, 40, B), rng.uniform(0, 6.3, B)
        out += a * np.sin(2 * np.pi * k / per + ph)
    return out


def tracking_rmse(y: np.ndarray, ym: np.ndarray, start: int = 100) -> float:
    """RMSE of ``y(k)`` against ``y_m(k)`` for ``k >= start`` (the transient left out)."""
    n = min(len(y), len(ym))
    return float(np.sqrt(np.mean((y[start:n] - ym[start:n]) ** 2)))


def invert(ng: MLP, lo: float = -3.0, hi: float = 3.0, n: int = 4001) -> Lookup1D:
    """``N_g^-1`` as a lookup table: ``N_g`` tabulated on ``[lo, hi]``, axes swapped (it
    must be increasing there)."""
    grid = np.linspace(lo, hi, n)
    vals = ng.output(None, grid[:, None])
    vals = (vals[0] if isinstance(vals, tuple) else vals)[:, 0]
    if np.any(np.diff(vals) <= 0):
        raise ValueError("the trained N_g is not increasing on [-3, 3]; it has no inverse")
    return Lookup1D(vals, grid, trainable=False, name="Ng_inverse")


def run(quick: bool = False, seed: int = 0, plot=None) -> dict:
    rng = np.random.default_rng(seed)
    T, B, epochs = (200, 8, 150) if quick else (500, 20, 1500)
    sizes = [1, 10, 5, 1] if quick else [1, 20, 10, 1]
    u = rng.uniform(-2, 2, (T, B))
    ys = np.column_stack([plant(u[:, j]) for j in range(B)])  # (T+1, B)
    nf = MLP.random(sizes, seed=seed, name="Nf")
    ng = MLP.random(sizes, seed=seed + 1, name="Ng")
    sp = identifier(nf, ng, free=False)
    hist = train(sp, {"y": ys[:-1], "u": u}, ys[1:], loss="mse", optimizer=Adam(0.005),
                 epochs=epochs, schedule=exponential_decay(0.998 if quick else 0.9985),
                 seed=seed)
    uv = paper_input(500)
    yv = plant(uv)
    y_sp = simulate(sp, {"y": yv[:-1], "u": uv})["y_next"][:, 0]
    free = identifier(sp.block("Nf").copy(), sp.block("Ng").copy(), free=True)
    y_par = simulate(free, {"u": uv})["y_next"][:, 0]
    ident = {"series-parallel": nmse(y_sp, yv[1:]), "parallel (free running)":
             nmse(y_par, yv[1:])}
    # control with the identified model inverted
    r = paper_input(500)
    loop = control_loop(sp.block("Nf").copy(), invert(sp.block("Ng")))
    y = simulate(loop, {"r": r})["y"][:, 0]  # y(k), k = 0..499
    ym = reference_model(r)  # y_m(k), k = 0..500
    ctrl = {"tracking RMSE": tracking_rmse(y, ym), "tracking NMSE": nmse(y[1:], ym[1:500])}
    # a neural controller trained by BPTT through the identified model
    nc = MLP.random([2, 10, 5, 1] if quick else [2, 20, 10, 1], seed=seed + 2, name="Nc")
    emu = emulator_loop(sp.block("Nf").copy(), sp.block("Ng").copy(), nc)
    r_train = training_references(rng, 100, 32)
    c_epochs = 300 if quick else 3000
    untrained = simulate(neural_control_loop(emu.block("Nc").copy()), {"r": r})["y"][:, 0]
    on_model = simulate(emu, {"r": r})["y_next"][:, 0]  # y_hat(k+1)
    chist = train(emu, {"r": r_train}, reference_model(r_train)[1:], loss="mse",
                  params=["Nc."], optimizer=Adam(0.005), epochs=c_epochs,
                  schedule=exponential_decay(0.999), seed=seed)
    y_nc = simulate(neural_control_loop(emu.block("Nc").copy()), {"r": r})["y"][:, 0]
    ctrl["neural controller: tracking RMSE"] = tracking_rmse(y_nc, ym)
    ctrl["neural controller, untrained"] = tracking_rmse(untrained, ym)
    ctrl["neural controller on the model"] = tracking_rmse(
        simulate(emu, {"r": r})["y_next"][:, 0], ym[1:])
    ctrl["neural controller on the model, untrained"] = tracking_rmse(on_model, ym[1:])
    rows = [(k, f"{v:.4f}") for k, v in ident.items()]
    rows += [(f"control: {k}", f"{v:.4f}") for k, v in ctrl.items()]
    out = default_plot("narendra_paper", plot)
    _plot(out, hist.losses, yv[1:201], y_par[:200], ym[1:201], y[1:201], y_nc[1:201])
    net = "-".join(map(str, sizes))
    return {"table": table(f"Narendra & Parthasarathy Example 3: N_f, N_g {net}, u ~ U[-2, 2], "
                           f"{epochs} epochs of Adam on {B} runs of {T} steps; validation and "
                           "reference input sin(2 pi k/25) + sin(2 pi k/10); N_c trained "
                           f"{c_epochs} epochs by BPTT through the identified model", rows,
                           ("", "value")),
            "summary": f"identification NMSE series-parallel {ident['series-parallel']:.4f}, "
                       f"free running {ident['parallel (free running)']:.4f}; control "
                       f"tracking RMSE {ctrl['tracking RMSE']:.4f} (inverted model), "
                       f"{ctrl['neural controller: tracking RMSE']:.4f} (neural controller "
                       "trained through the model), after k = 100",
            "metric": ident["parallel (free running)"], "control": ctrl,
            "series_parallel": ident["series-parallel"],
            "controller_loss_first": chist.losses[0], "controller_loss_last": chist.losses[-1],
            "loss_first": hist.losses[0], "loss_last": hist.losses[-1], "plot": out}


def _plot(path, losses, y, y_par, ym, y_ctrl, y_nc) -> None:
    fig, (ax2, ax3) = loss_figure(losses, "identification loss (series-parallel MSE)",
                                  panels=2, height=7.5)
    ax2.plot(y, "k", label="plant")
    ax2.plot(y_par, "--", label="identified model, free running")
    ax2.set(title="validation input sin(2 pi k/25) + sin(2 pi k/10)", xlabel="k",
            ylabel="y(k) (dimensionless)")
    ax3.plot(ym, "k", label="reference model")
    ax3.plot(y_ctrl, "--", label="plant, identified model inverted")
    ax3.plot(y_nc, ":", label="plant, neural controller (BPTT through the model)")
    ax3.set(title="model-reference control of the true plant", xlabel="k",
            ylabel="y(k) (dimensionless)")
    lo, hi = ax3.get_ylim()
    ax3.set_ylim(lo, hi + 0.45 * (hi - lo))  # room for the legend above the signals
    ax3.legend(fontsize=8, ncols=3, loc="upper center", frameon=False)
    save_figure(fig, path)


def main(argv=None) -> int:
    return cli(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
