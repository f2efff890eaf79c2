"""A PID loop around a second-order discrete plant.

``e = r - y``; the controller ``u = Kp e + Ki Ts sum(e) + Kd (e(k) - e(k-1)) / Ts`` is a
subsystem; the plant is a strictly proper ``DiscreteTransferFcn`` (it breaks the loop).
"""

from __future__ import annotations

from blockflow import Inport, Model, Outport
from blocks import DiscreteFilter, DiscreteTransferFcn, Gain, Sum

PLANT_NUM = (0.1, 0.08)
PLANT_DEN = (1.0, -1.5, 0.7)


def pid_controller(kp=1.2, ki=0.4, kd=0.3, ts=1.0, name: str = "pid") -> Model:
    """PID as a subsystem: proportional gain, backward-Euler integrator, difference."""
    c = Model(name)
    e, u = c.add(Inport("e"), Outport("u"))
    p = c.add(Gain(kp, name="P"))
    i = c.add(DiscreteFilter([ki * ts], [1.0, -1.0], name="I"))
    d = c.add(DiscreteFilter([kd / ts, -kd / ts], [1.0], name="D"))
    s = c.add(Sum("+++", name="sum"))
    for k, blk in enumerate((p, i, d)):
        c.chain(e, blk, s[f"u{k + 1}"])
    c.connect(s, u)
    return c


def pid_loop(kp=1.2, ki=0.4, kd=0.3, num=PLANT_NUM, den=PLANT_DEN, name="pid_loop") -> Model:
    """Reference ``r`` in, plant output ``y`` out, unity negative feedback."""
    m = Model(name)
    r, y = m.add(Inport("r"), Outport("y"))
    err = m.add(Sum("+-", name="err"))
    ctrl = m.add(pid_controller(kp, ki, kd))
    plant = m.add(DiscreteTransferFcn(num, den, name="plant"))
    m.connect(r, err.u1)
    m.chain(err, ctrl.e)
    m.chain(ctrl.u, plant, y)
    m.connect(plant, err.u2)
    return m


def build() -> Model:
    return pid_loop()
