"""A closed loop with a tanh controller and a unit delay in the feedback path.

``e(k) = r(k) - y(k-1)``, ``u(k) = tanh(kc e(k))``, ``y = B(q^-1)/A(q^-1) u`` (the plant).
"""

from __future__ import annotations

from blockflow import Inport, Model, Outport
from blocks import DiscreteFilter, Function, Gain, Sum, UnitDelay

PLANT_B = (0.4, 0.2)
PLANT_A = (1.0, -0.5)


def tanh_loop(kc: float = 1.5, b=PLANT_B, a=PLANT_A, y0: float = 0.0,
              name: str = "tanh_loop") -> Model:
    m = Model(name)
    r, y = m.add(Inport("r"), Outport("y"))
    err = m.add(Sum("+-", name="err"))
    k = m.add(Gain(kc, name="kc"))
    f = m.add(Function("tanh", name="tanh"))
    plant = m.add(DiscreteFilter(b, a, name="plant"))
    z = m.add(UnitDelay(y0, name="z"))
    m.connect(r, err.u1)
    m.chain(err, k, f, plant, y)
    m.chain(plant, z, err.u2)
    return m


def build() -> Model:
    return tanh_loop()
