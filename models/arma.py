"""ARMA models: ``A(q^-1) y(k) = B(q^-1) u(k)``, built from blocks or as one filter.

``y(k) = sum_i b_i u(k-i) - sum_{j>=1} a_j y(k-j)`` (with ``a_0 = 1``).
"""

from __future__ import annotations

import numpy as np

from blockflow import Inport, Model, Outport
from blocks import DiscreteFilter, Gain, Sum, UnitDelay

B_DEFAULT = (0.5, 0.3, 0.1)
A_DEFAULT = (1.0, -0.6, 0.2)


def arma_blocks(b=B_DEFAULT, a=A_DEFAULT, name: str = "arma") -> Model:
    """The ARMA model drawn as a tapped delay line: UnitDelays, Gains and one Sum."""
    b, a = np.asarray(b, float) / a[0], np.asarray(a, float) / a[0]
    nb, na = len(b) - 1, len(a) - 1
    m = Model(name)
    u, y = m.add(Inport("u"), Outport("y"))
    s = m.add(Sum("+" * (nb + 1) + "-" * na, name="sum"))
    tap = u
    for i in range(nb + 1):
        if i:
            d = m.add(UnitDelay(name=f"zu{i}"))
            m.connect(tap, d)
            tap = d
        m.chain(tap, m.add(Gain(b[i], name=f"b{i}")), s[f"u{i + 1}"])
    tap = s
    for j in range(1, na + 1):
        d = m.add(UnitDelay(name=f"zy{j}"))
        m.connect(tap, d)
        tap = d
        m.chain(d, m.add(Gain(a[j], name=f"a{j}")), s[f"u{nb + 1 + j}"])
    m.connect(s, y)
    return m


def arma_filter(b=B_DEFAULT, a=A_DEFAULT, name: str = "arma_filter") -> Model:
    """The same ARMA model as a single DiscreteFilter."""
    m = Model(name)
    m.chain(*m.add(Inport("u"), DiscreteFilter(b, a, name="filter"), Outport("y")))
    return m


def build() -> Model:
    return arma_blocks()
