"""An inverted pendulum on a cart (continuous, integrated by rk4) under a discrete neural
controller initialised from LQR and trained by BPTT through the integrator.

Plant (the cart's acceleration ``a`` commanded, a pole of length ``l`` with damping
``c``; ``theta = 0`` upright), integrated by the model's ``solver``::

    x' = v,   v' = a,   theta' = omega,
    omega' = (g sin(theta) - a cos(theta)) / l - c omega + push

Controller, sampled every ``dt`` (its output held over the period)::

    a(k) = -K s(k) + MLP(s(k)),   s = (x, v, theta, omega)

``K`` is the discrete LQR gain of the plant linearised upright and discretised at
``dt`` (zero-order hold); the MLP's output layer starts at zero, so the controller
starts as LQR.  Training (BPTT through the Runge-Kutta stages) lowers the squared angle
and position over pushes of several sizes; a push is a torque impulse over the first
period, a different one per batch member.

Run ``python -m models.cart_pole``: LQR's response, training, the trained response to
pushes not seen in training, the diagram (``out/cart_pole.svg``) and the plot
(``out/cart_pole.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blockflow import Inport, Model, Outport, simulate
from blockflow.train import Adam, train
from blocks import MLP, Demux, Dense, Function, Gain, Integrator, Mux, Product, Sum

G, POLE, DAMPING = 9.81, 0.5, 0.1  # m/s^2, m, 1/s
Q, R = np.diag([1.0, 0.1, 10.0, 0.1]), np.array([[0.1]])


def linearised(l: float = POLE, c: float = DAMPING) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` of the plant linearised upright, states ``(x, v, theta, omega)``."""
    A = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, G / l, -c]], float)
    B = np.array([[0.0], [1.0], [0.0], [-1.0 / l]])
    return A, B


def lqr_gain(dt: float, Qw: np.ndarray = Q, Rw: np.ndarray = R) -> np.ndarray:
    """The discrete LQR gain ``K`` (``a = -K s``) of the plant held over ``dt``."""
    import scipy.linalg
    import scipy.signal

    A, B = linearised()
    Ad, Bd, *_ = scipy.signal.cont2discrete((A, B, np.eye(4), np.zeros((4, 1))), dt)
    P = scipy.linalg.solve_discrete_are(Ad, Bd, Qw, Rw)
    return np.linalg.solve(Rw + Bd.T @ P @ Bd, Bd.T @ P @ Ad)


def plant(solver: str = "rk4", *, dt: float | None = None, name: str = "plant") -> Model:
    """The cart-pole alone: the cart's acceleration ``a`` and a torque ``push`` in, the
    four states ``x, v, theta, omega`` out (integrated by ``solver``; ``dt`` for a plant
    run on its own, else its parent's)."""
    m = Model(name, dt=dt, solver=solver)
    a, push = m.add(Inport("a", shape=()), Inport("push", shape=()))
    outs = m.add(Outport("x"), Outport("v"), Outport("theta"), Outport("omega"))
    x, v = m.add(Integrator(shape=(), name="pos"), Integrator(shape=(), name="vel"))
    th, om = m.add(Integrator(shape=(), name="angle"), Integrator(shape=(), name="rate"))
    sin, cos = m.add(Function("sin", name="sin"), Function("cos", name="cos"))
    acos = m.add(Product("**", name="a_cos"))
    gl, al, damp = m.add(Gain(G / POLE, name="g_l"), Gain(-1.0 / POLE, name="inv_l"),
                         Gain(-DAMPING, name="damping"))
    accel = m.add(Sum("++++", name="omega_dot"))
    m.chain(a, v)                     # v' = a
    m.chain(v, x)                     # x' = v
    m.chain(om, th)                   # theta' = omega
    m.chain(th, sin, gl, accel.u1)    # omega' = g/l sin(theta) - a cos(theta)/l - c omega + push
    m.chain(th, cos, acos.u2)
    m.connect(a, acos.u1)
    m.chain(acos, al, accel.u2)
    m.chain(om, damp, accel.u3)
    m.connect(push, accel.u4)
    m.chain(accel, om)
    for state, out in zip((x, v, th, om), outs, strict=True):
        m.connect(state.y, out)
    return m


def cart_pole(dt: float = 0.02, *, hidden: int = 8, seed: int = 0, solver: str = "rk4",
              name: str = "cart_pole") -> Model:
    """The closed loop: ``push`` in (torque impulses, rad/s^2); ``theta``, ``x`` and the
    command ``a`` out.  The plant is a subsystem (:func:`plant`) integrated by ``solver``;
    the controller's parameters: ``lqr.W`` (starts at ``-K``), ``net.W0 .. b1`` (the
    correction, starting at zero)."""
    m = Model(name, dt=dt)
    push = m.add(Inport("push", shape=()))
    th_out, x_out, a_out = m.add(Outport("theta"), Outport("x"), Outport("a"))
    p = m.add(plant(solver))
    # the controller, sampled: a(k) = -K s(k) + MLP(s(k))
    ts = dict(sample_time=dt)
    rng = np.random.default_rng(seed)
    state = m.add(Mux(4, name="state", **ts))
    lqr = m.add(Dense(-lqr_gain(dt), np.zeros(1), name="lqr", **ts))
    net = m.add(MLP([rng.normal(0, 0.5, (hidden, 4)), np.zeros((1, hidden))],
                    [np.zeros(hidden), np.zeros(1)], name="net", **ts))
    total, a = m.add(Sum("++", name="control", **ts), Demux(1, name="a_cmd", **ts))
    for i, port in enumerate(("x", "v", "theta", "omega")):
        m.connect(p[port], state[f"u{i + 1}"])
    m.connect(push, p.push)
    m.chain(state, lqr, total.u1)
    m.chain(state, net, total.u2)
    m.chain(total, a)
    m.connect(a.y1, p.a)
    m.connect(p.theta, th_out)
    m.connect(p.x, x_out)
    m.connect(a.y1, a_out)
    return m


def controller(model: Model, name: str = "cart_pole_controller") -> Model:
    """The controller of a :func:`cart_pole` loop as a model of its own (copies of its
    trained blocks): the state ``x, v, theta, omega`` in, the acceleration ``a`` out, at
    the loop's period (for ``blockflow.codegen.export_c``)."""
    c = Model(name, dt=model.dt)
    ins = c.add(*(Inport(n, shape=()) for n in ("x", "v", "theta", "omega")))
    state = c.add(Mux(4, name="state"))
    lqr, net = c.add(model.blocks["lqr"].copy(), model.blocks["net"].copy())
    for blk in (lqr, net):
        blk.sample_time = None  # (the model's own period)
    total, a, out = c.add(Sum("++", name="control"), Demux(1, name="a_cmd"), Outport("a"))
    for i, port in enumerate(ins):
        c.connect(port, state[f"u{i + 1}"])
    c.chain(state, lqr, total.u1)
    c.chain(state, net, total.u2)
    c.chain(total, a, out)
    return c


def policy(model: Model):
    """The trained controller of a :func:`cart_pole` loop as a function of the state
    ``s = (x, v, theta, omega)``: ``a = W s + b + MLP(s)`` (to run in an environment)."""
    lqr, net = model.blocks["lqr"], model.blocks["net"]

    def act(s):
        s = np.asarray(s, float).reshape(1, 4)
        return (lqr.output(None, s) + net.output(None, s)[0]).reshape(())

    return act


def pushes(T: int, sizes) -> np.ndarray:
    """``(T, B)`` torque impulses (rad/s^2) over the first period, ``sizes[b]`` for member b."""
    p = np.zeros((T, len(sizes)))
    p[0] = sizes  # (non-zero at k = 0: the first sample counts)
    return p


def cost(model: Model, push: np.ndarray) -> float:
    """Mean squared angle and position over the run (what training lowers)."""
    tr = simulate(model, {"push": push})
    return float(np.mean(tr["theta"] ** 2) + np.mean(tr["x"] ** 2))


def fit(model: Model, *, seconds: float = 3.0, sizes=(-60, -30, 30, 60), epochs: int = 60,
        lr: float = 0.01):
    """Train the controller (plant frozen) by BPTT through the loop and the integrator."""
    T = int(round(seconds / model.dt))
    p = pushes(T, sizes)
    zero = np.zeros_like(p)
    return train(model, {"push": p}, {"theta": zero, "x": zero}, loss="mse",
                 params=["lqr.", "net."], optimizer=Adam(lr), epochs=epochs)


def main(out: str | Path = "out", *, epochs: int = 60) -> int:
    out = Path(out)
    out.mkdir(exist_ok=True)
    m = cart_pole()
    T = int(round(4.0 / m.dt))
    unseen = pushes(T, [-45.0, 75.0])
    before = simulate(m, {"push": unseen})
    c0 = cost(m, unseen)
    hist = fit(m, epochs=epochs)
    after = simulate(m, {"push": unseen})
    c1 = cost(m, unseen)
    print(f"LQR gain K = {np.round(lqr_gain(m.dt), 3).tolist()}")
    print(f"training loss {hist.losses[0]:.4g} -> {hist.losses[-1]:.4g} "
          f"({len(hist.losses)} epochs, BPTT through rk4)")
    print(f"unseen pushes: mean theta^2 + x^2 {c0:.4g} (LQR) -> {c1:.4g} (trained)")
    from blockflow.io.export import draw

    draw(m, out / "cart_pole.svg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharex=True)
    for j, style in ((0, "-"), (1, "--")):
        axes[0].plot(before.time, before["theta"][:, j], style, color="C0",
                     label="LQR" if j == 0 else None)
        axes[0].plot(after.time, after["theta"][:, j], style, color="C1",
                     label="trained" if j == 0 else None)
        axes[1].plot(before.time, before["x"][:, j], style, color="C0")
        axes[1].plot(after.time, after["x"][:, j], style, color="C1")
    axes[0].set_ylabel("pole angle theta (rad)")
    axes[1].set_ylabel("cart position x (m)")
    for ax in axes:
        ax.set_xlabel("time t (s)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("cart-pole, pushes not seen in training (solid -45, dashed +75 rad/s²); "
                 "training lowers mean theta² + x²",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "cart_pole.png", dpi=110)
    print(f"wrote {out / 'cart_pole.svg'} and {out / 'cart_pole.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
