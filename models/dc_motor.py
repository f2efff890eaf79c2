"""A DC motor (continuous plant) under a discrete PID running at a slower rate.

Plant: the speed ``w`` (rad/s) of a DC motor driven by its voltage ``V``, with the
classic parameters ``J = 0.01 kg m^2``, ``b = 0.1 N m s``, ``K = 0.01 V s/rad``,
``R = 1 ohm``, ``L = 0.5 H``::

    W(s) / V(s) = K / ((J s + b)(L s + R) + K^2)

simulated at ``plant_hz`` (zero-order hold discretisation), under a PID sampled at
``pid_hz`` (``Downsample`` in, ``ZeroOrderHold`` out)::

    u(k) = Kp e(k) + Ki h sum_{j<k} e(j) + Kd (e(k) - e(k-1)) / h,   e = r - w

Run ``python -m models.dc_motor``: the step response, the closed loop's poles from
:func:`~blockflow.control.lti.linearize` beside python-control's ``feedback``, the PID gains
tuned by gradient descent on the step response (reciprocal sweep through the multirate
loop), and the diagram (``out/dc_motor.svg``) and plot (``out/dc_motor.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blockflow import Inport, Model, Outport, compile, simulate
from blockflow.control.lti import linearize
from blockflow.train import Adam, train
from blocks import (
    DiscreteDerivative,
    DiscreteIntegrator,
    Downsample,
    Gain,
    Sum,
    TransferFcn,
    ZeroOrderHold,
)

MOTOR = {"J": 0.01, "b": 0.1, "K": 0.01, "R": 1.0, "L": 0.5}
GAINS = (100.0, 200.0, 10.0)  # Kp, Ki, Kd: 1 % overshoot, settled (2 %) in 0.26 s


def motor_tf(J=0.01, b=0.1, K=0.01, R=1.0, L=0.5) -> tuple[list, list]:
    """``(num, den)`` of the speed transfer function ``W(s)/V(s)``."""
    return [K], [J * L, J * R + b * L, b * R + K * K]


def pid(kp: float, ki: float, kd: float, name: str = "pid") -> Model:
    """The PID as a subsystem: ``e`` in, ``u`` out; its gains ``P.K``, ``I.K``, ``D.K``
    train, the integrator (forward Euler) and the difference follow the rate it runs at."""
    c = Model(name)
    e, u = c.add(Inport("e"), Outport("u"))
    p, gi, integ, gd, deriv, s = c.add(
        Gain(kp, name="P"), Gain(ki, name="I"), DiscreteIntegrator(name="integral"),
        Gain(kd, name="D"), DiscreteDerivative(name="difference"), Sum("+++", name="sum"))
    c.chain(e, p, s.u1)
    c.chain(e, gi, integ, s.u2)
    c.chain(e, gd, deriv, s.u3)
    c.connect(s, u)
    return c


def motor_loop(kp=GAINS[0], ki=GAINS[1], kd=GAINS[2], *, plant_hz=5000, pid_hz=1000,
               method="zoh", name="dc_motor") -> Model:
    """Reference speed ``r`` in, motor speed ``w`` out; the PID every
    ``plant_hz // pid_hz`` plant steps (one rate when they are equal)."""
    n = plant_hz // pid_hz
    if n * pid_hz != plant_hz:
        raise ValueError(f"plant_hz={plant_hz} must be a whole multiple of pid_hz={pid_hz}")
    m = Model(name, dt=1.0 / plant_hz)
    r, e, w = m.add(Inport("r"), Sum("+-", name="error"), Outport("w"))
    ctrl = m.add(pid(kp, ki, kd))
    motor = m.add(TransferFcn(*motor_tf(**MOTOR), method=method, trainable=False,
                              name="motor"))
    m.connect(r, e.u1)
    if n > 1:
        down, hold = m.add(Downsample(n, name="sample"), ZeroOrderHold(n, name="hold"))
        m.chain(e, down, ctrl.e)
        m.chain(ctrl.u, hold, motor)
    else:
        m.chain(e, ctrl.e)
        m.chain(ctrl.u, motor)
    m.connect(motor, w)
    m.connect(motor, e.u2)
    return m


def step_metrics(t: np.ndarray, w: np.ndarray, target: float = 1.0) -> dict:
    """Overshoot (%), 10-90 % rise time and 2 % settling time (s) of a step response
    (NaN for what the response does not reach within ``t``)."""
    over = max(0.0, float(w.max() - target) / target * 100)

    def first(mask):
        i = np.nonzero(mask)[0]
        return t[i[0]] if i.size else np.nan

    rise = first(w >= 0.9 * target) - first(w >= 0.1 * target)
    outside = np.nonzero(np.abs(w - target) > 0.02 * target)[0]
    if not outside.size:
        settle = t[0]
    else:
        settle = t[outside[-1] + 1] if outside[-1] + 1 < t.size else np.nan
    return {"overshoot_pct": over, "rise_s": float(rise), "settling_s": float(settle)}


def closed_loop_poles(kp=GAINS[0], ki=GAINS[1], kd=GAINS[2], pid_hz=1000) -> tuple:
    """The loop's poles at the PID rate: from blockflow's linearisation, and from
    python-control's ``feedback`` of the same discretised plant and PID (``None`` when
    python-control is not installed)."""
    m = motor_loop(kp, ki, kd, plant_hz=pid_hz, pid_hz=pid_hz)  # one rate: LTI
    ours = np.linalg.eigvals(linearize(m).A)
    try:
        import control
    except ImportError:
        return ours, None
    h = 1.0 / pid_hz
    plant = control.c2d(control.tf(*motor_tf(**MOTOR)), h, method="zoh")
    z = control.tf([1.0, 0.0], [1.0], h)
    pid_z = kp + ki * h / (z - 1) + kd * (z - 1) / (h * z)
    theirs = control.feedback(pid_z * plant, 1).poles()
    return ours, theirs


def tune(model: Model, seconds: float = 0.4, epochs: int = 40, lr: float = 5.0):
    """Gradient descent (Adam) on the PID gains for the squared tracking error of a unit
    step over ``seconds``; returns the training history."""
    T = int(round(seconds / model.dt))
    R = np.ones((T, 1))
    return train(model, {"r": R}, {"w": R}, loss="mse", params=["pid/"],
                 optimizer=Adam(lr), epochs=epochs)


def main(out: str | Path = "out") -> int:
    out = Path(out)
    out.mkdir(exist_ok=True)
    m = motor_loop()
    print(compile(m).describe())
    T = 2500  # 0.5 s at 5 kHz
    tr = simulate(m, {"r": np.ones((T, 1))})
    met = step_metrics(tr.time, tr["w"][:, 0])
    kp, ki, kd = GAINS
    print(f"step response (Kp, Ki, Kd = {kp:g}, {ki:g}, {kd:g}): "
          + ", ".join(f"{k} {v:.3g}" for k, v in met.items()))
    ours, theirs = closed_loop_poles()
    print("closed-loop poles at 1 kHz (linearize):", np.sort_complex(ours).round(4))
    if theirs is not None:
        print("python-control feedback():            ", np.sort_complex(theirs).round(4))
    slow = motor_loop(20.0, 20.0, 0.1, name="dc_motor_tuned")
    before = simulate(slow, {"r": np.ones((T, 1))})["w"][:, 0].copy()
    hist = tune(slow)
    gains = [float(slow.block(f"pid/{g}").K) for g in "PID"]
    print(f"tuned from Kp, Ki, Kd = 20, 20, 0.1: loss {hist.losses[0]:.4f} -> "
          f"{hist.losses[-1]:.4f}, gains {', '.join(f'{g:.3g}' for g in gains)}")
    after = simulate(slow, {"r": np.ones((T, 1))})["w"][:, 0]
    from blockflow.io.export import draw

    draw(m, out / "dc_motor.svg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(tr.time, tr["w"][:, 0], label=f"PID {kp:g}/{ki:g}/{kd:g}")
    ax.plot(tr.time, before, "--", label="PID 20/20/0.1")
    ax.plot(tr.time, after, label="tuned by gradient descent")
    ax.axhline(1.0, color="k", lw=0.6)
    ax.set_xlabel("time t (s)")
    ax.set_ylabel("speed w (rad/s)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "dc_motor.png", dpi=110)
    print(f"wrote {out / 'dc_motor.svg'} and {out / 'dc_motor.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
