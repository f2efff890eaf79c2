"""Blocks whose coefficients follow the sample period ``h`` of the model they run in:
``PeriodGain``, and three subsystems built from it and the elementary blocks:
``DiscreteIntegrator``, ``DiscreteDerivative``, ``RateLimiter``.

The subsystems are ordinary models (a diagram of Gain, Sum, Saturation, UnitDelay), so
their reciprocal, tangent and linearisation come from the general transform: exact,
including the limits (zero gradient while a limit holds).  Each one's docstring gives its
equation; ``h`` is read when the model runs, so changing ``dt`` needs no rebuild.
"""

from __future__ import annotations

import math

import numpy as np

from blockflow.core.block import Block
from blockflow.core.ccode import each
from blockflow.core.kernel import Kernel
from blockflow.core.model import Model
from blockflow.core.ports import Inport, Outport
from blockflow.errors import ParameterError

from .delays import UnitDelay
from .math import Saturation, Sum, gain_elementwise


class PeriodGain(Block):
    """``y(k) = K h^p u(k)``, ``h`` the sample period: ``p = 1`` turns a rate into a step
    (an integrator's ``K h``), ``p = -1`` a difference into a rate.

    Examples
    --------
    >>> import numpy as np
    >>> PeriodGain(2.0).output(None, np.array([1.5]))   # outside a model h = 1
    array([3.])
    """

    linear = True
    glyph = "gain"

    def __init__(self, K: float = 1.0, power: int = 1, **kw):
        super().__init__(**kw)
        self.K = self.scalar("K", K)
        self.power = self.scalar("power", power, integer=True)

    def gain(self) -> float:
        return self.K * self.period() ** self.power

    def output(self, x, u):
        return gain_elementwise(self.gain(), u)

    def c_code(self, c):
        g = c.param("gain", self.gain())  # K h^p at the period it runs at
        c.output(*each(c.n_y(), f"{c.y()}[i] = {g}[0] * {c.u(0)}[i];"))

    def vjp(self, u, y, dy):
        return gain_elementwise(self.gain(), dy)

    def kernel(self):  # (an array: compiled element loops read K with broadcast_at)
        return Kernel(gain_elementwise, params=(np.asarray(self.gain()),))

    vjp_kernel = kernel

    def label(self) -> str:
        sup = str(self.power).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
        p = "h" if self.power == 1 else f"h{sup}"
        return p if self.K == 1 else f"{self.K:.4g}·{p}"

    def config(self) -> dict:
        return {"K": self.K, "power": self.power}


INTEGRATION = {"forward_euler": (0.0, 1.0), "backward_euler": (1.0, 0.0),
               "trapezoidal": (0.5, 0.5)}


class DiscreteIntegrator(Model):
    """``y(k) = sat(x(k) + a K h u(k))``, ``x(k+1) = y(k) + b K h u(k)``, ``x(0) = x0``.

    ``(a, b)`` is ``(0, 1)`` for forward Euler (``y(k) = y(k-1) + K h u(k-1)``),
    ``(1, 0)`` for backward Euler (``y(k) = y(k-1) + K h u(k)``) and ``(1/2, 1/2)`` for
    the trapezoidal rule; the integral starts from ``x0`` before the first sample.  With
    ``lower``/``upper`` the output saturates and the state builds on the saturated
    output (the integrator holds at its limit: no wind-up).  A subsystem with input ``u``
    and output ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from blockflow import simulate
    >>> simulate(DiscreteIntegrator(), {"u": np.ones((3, 1))})["y"][:, 0]
    array([0., 1., 2.])
    """

    def __init__(self, K: float = 1.0, method: str = "forward_euler", x0: float = 0.0, *,
                 lower: float = -math.inf, upper: float = math.inf,
                 name: str | None = None):
        super().__init__(name or "integrator")
        if method not in INTEGRATION:
            raise ParameterError(f"block {self.name!r} (DiscreteIntegrator): method must be "
                                 f"one of {sorted(INTEGRATION)}, got {method!r}")
        self.method, self.K = method, self.scalar("K", K)
        lower = self.scalar("lower", lower, finite=False)
        upper = self.scalar("upper", upper, finite=False, above=lower)
        a, b = INTEGRATION[method]
        u, y = self.add(Inport("u"), Outport("y"))
        x = self.add(UnitDelay(x0, name="x"))
        out = x.y
        if a:
            s = self.add(Sum("++", name="xa"), PeriodGain(a * self.K, name="aKh"))[0]
            self.connect(out, s.u1)
            self.chain(u, "aKh", s.u2)
            out = s.y
        if lower > -math.inf or upper < math.inf:
            sat = self.add(Saturation(lower, upper, name="limit"))
            self.connect(out, sat)
            out = sat.y
        self.connect(out, y)
        if b:
            s = self.add(Sum("++", name="yb"), PeriodGain(b * self.K, name="bKh"))[0]
            self.connect(out, s.u1)
            self.chain(u, "bKh", s.u2)
            out = s.y
        self.connect(out, x)


class DiscreteDerivative(Model):
    """``y(k) = K (u(k) - u(k-1)) / h``, with ``K u(-1) / h = x0`` (the weighted previous
    input, as Simulink states it).  A subsystem with input ``u`` and output ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from blockflow import simulate
    >>> simulate(DiscreteDerivative(), {"u": np.array([[1.0], [3.0], [4.0]])})["y"][:, 0]
    array([1., 2., 1.])
    """

    def __init__(self, K: float = 1.0, x0: float = 0.0, *, name: str | None = None):
        super().__init__(name or "derivative")
        self.K = self.scalar("K", K)
        u, g, d, s, y = self.add(Inport("u"), PeriodGain(self.K, -1, name="K_h"),
                                 UnitDelay(x0, name="prev"), Sum("+-", name="diff"),
                                 Outport("y"))
        self.chain(u, g)
        self.connect(g, s.u1)
        self.chain(g, d, s.u2)
        self.connect(s, y)


class RateLimiter(Model):
    """``y(k) = y(k-1) + h clip((u(k) - y(k-1)) / h, falling, rising)``, ``y(-1) = x0``:
    the output moves at most ``rising`` per second up and ``falling`` (negative) down.
    A subsystem with input ``u`` and output ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from blockflow import simulate
    >>> simulate(RateLimiter(0.5, -1.0), {"u": np.array([[2.0], [2.0], [-1.0]])})["y"][:, 0]
    array([0.5, 1. , 0. ])
    """

    def __init__(self, rising: float = 1.0, falling: float = -1.0, x0: float = 0.0, *,
                 name: str | None = None):
        super().__init__(name or "ratelimiter")
        rising = self.scalar("rising", rising, finite=False)  # per second, up (>= 0)
        falling = self.scalar("falling", falling, finite=False)  # per second, down (<= 0)
        if not falling < rising:
            raise ParameterError(f"block {self.name!r} (RateLimiter): falling rate must be "
                                 f"below the rising rate, got falling={falling}, "
                                 f"rising={rising}")
        if rising < 0 or falling > 0:
            raise ParameterError(f"block {self.name!r} (RateLimiter): rising is the fastest "
                                 f"rise per second (>= 0) and falling the fastest fall (<= 0); "
                                 f"got rising={rising}, falling={falling}")
        u, y = self.add(Inport("u"), Outport("y"))
        diff, rate, sat, step, acc, prev = self.add(
            Sum("+-", name="diff"), PeriodGain(1.0, -1, name="per_h"),
            Saturation(falling, rising, name="slew"), PeriodGain(1.0, 1, name="h"),
            Sum("++", name="acc"), UnitDelay(x0, name="prev"))
        self.connect(u, diff.u1)
        self.connect(prev, diff.u2)
        self.chain(diff, rate, sat, step, acc.u1)
        self.connect(prev, acc.u2)
        self.connect(acc, y)
        self.connect(acc, prev)
