"""Delays: UnitDelay and Delay(n) (from ``x0``; held back by ``n`` steps).

Linear and stateful: the reciprocal is the transposed realisation run in reversed time
(see :mod:`blocks.filters`).
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block, sum_to
from blockflow.core.ccode import each
from blockflow.core.kernel import Kernel, kernel, take_input_into, take_state_into
from blockflow.core.lines import DelayLine, Wire
from blockflow.core.types import SignalType
from blockflow.errors import ParameterError


@kernel(into=take_state_into, numbers=True)  # (numpy: returning x and a row copy is faster)
def delay_output(x, u):
    return x


@kernel(into=take_input_into, numbers=True)
def delay_update(x, u):
    return u


def _delay_shape(b: Block, shape) -> tuple | None:
    """The sample shape a delay declares (``shape=``, else its x0's), or None."""
    if shape is None:
        return b.x0.shape if b.x0.ndim else None
    t = b.signal_type(shape, b.x0.dtype)
    try:
        fits = np.broadcast_shapes(b.x0.shape, t.shape) == t.shape
    except ValueError:
        fits = False
    if not fits:
        raise ParameterError(f"block {b.name!r} ({type(b).__name__}): initial value of shape "
                             f"{b.x0.shape} does not fit samples of shape {t.shape}")
    return t.shape


class UnitDelay(Block):
    """``y(k) = x(k)``, ``x(k+1) = u(k)``, ``x(0) = x0``: the unit delay ``z^-1``.

    Examples
    --------
    >>> UnitDelay(x0=5.0).sequence(np.array([5.0]), np.array([[1.0], [2.0]]))[:, 0]
    array([5., 1.])
    """

    feedthrough = False
    stateful = True
    linear = True
    unit_shift = True
    symbol = "z⁻¹"
    glyph = "delay"

    def __init__(self, x0=0.0, *, shape: tuple | None = None, train_x0: bool = False, **kw):
        super().__init__(**kw)
        self.param("x0", x0, trainable=train_x0)
        # the signal's shape, when neither x0 nor the input tells it (a loop of delays)
        self.shape = _delay_shape(self, shape)

    def infer(self, t):
        if t is None:
            return (None if self.shape is None else SignalType(self.shape, self.x0.dtype),)
        if np.broadcast_shapes(self.x0.shape, t.shape) != t.shape:
            raise self.type_error(f"initial value of shape {self.x0.shape} does not fit "
                                  f"samples of shape {t.shape}", port="u")
        return (t,)

    def init_state(self, batch, in_types, out_types):
        t = out_types[0]
        return np.broadcast_to(self.x0, (batch, *t.shape)).astype(t.dtype)

    def c_code(self, c):
        n = c.n_y()
        if self.x0.size not in (1, n):
            raise c.refuse(f"an initial value of shape {self.x0.shape} per member")
        x = c.state("x", np.broadcast_to(np.ravel(self.x0), (n,)))
        c.output(*each(n, f"{c.y()}[i] = {x}[i];"))
        c.update(*each(n, f"{x}[i] = {c.u(0)}[i];"))

    def output(self, x, u):
        return delay_output(x, u)

    def update(self, x, u):
        return delay_update(x, u)

    def kernel(self):
        return Kernel(delay_output, delay_update)

    def sequence(self, x0, U):
        return np.concatenate([x0[None], U[:-1]])

    def param_grads(self, u, y, dy):  # dJ/dx0 = delta_y(0)
        return {"x0": sum_to(dy[0][0], self.x0.shape)} if self._params["x0"] else {}

    def param_jvp(self, u, y, dp):  # dy(0) = dx0
        out = np.zeros_like(y[0])
        out[0] = dp.get("x0", 0.0)
        return (out,)

    def transposed(self) -> Block:  # (zero initial state in the signal's precision)
        return UnitDelay(np.zeros((), self.x0.dtype), name=self.name, shape=self.shape,
                         inputs=self.outputs, outputs=self.inputs)

    memory = 1

    def reversed_taps(self) -> Block:
        return Wire(name=self.name, inputs=self.inputs, outputs=self.outputs)

    def config(self) -> dict:
        return {"x0": self.x0, "shape": self.shape, "train_x0": self._params["x0"]}


class Delay(DelayLine):
    """``y(k) = u(k - n)``, with ``y(k) = x0`` for ``k < n``: the delay ``z^-n``."""

    stateful = True
    linear = True
    glyph = "delay"

    def __init__(self, n: int, x0=0.0, *, shape: tuple | None = None, train_x0: bool = False,
                 **kw):
        super().__init__(n, **kw)  # the delay line's equations, from initial value x0
        self.param("x0", x0, trainable=train_x0)
        self.shape = _delay_shape(self, shape)

    infer = UnitDelay.infer

    def init_state(self, batch, in_types, out_types):
        t = out_types[0]
        return np.broadcast_to(self.x0, (self.n, batch, *t.shape)).astype(t.dtype)

    def c_code(self, c):
        n, m = c.n_y(), self.n  # m samples of n elements, oldest first
        if self.x0.size not in (1, n):
            raise c.refuse(f"an initial value of shape {self.x0.shape} per member")
        x = c.state("line", np.broadcast_to(np.ravel(self.x0), (m, n)))
        c.output(*each(n, f"{c.y()}[i] = {x}[i];"))
        c.update(f"memmove({x}, {x} + {n}, sizeof({c.T}) * {(m - 1) * n});",
                 *each(n, f"{x}[{(m - 1) * n} + i] = {c.u(0)}[i];"))

    def param_grads(self, u, y, dy, resets=()):
        # dJ/dx0 = sum_{k<n} delta_y(k), up to the first step whose state is held as data
        n = min(self.n, *resets) if resets else self.n
        return {"x0": sum_to(dy[0][:n], self.x0.shape)} if self._params["x0"] else {}

    def param_jvp(self, u, y, dp):  # dy(k) = dx0 for k < n
        out = np.zeros_like(y[0])
        out[: self.n] = dp.get("x0", 0.0)
        return (out,)

    def transposed(self) -> Block:
        return Delay(self.n, np.zeros((), self.x0.dtype), name=self.name, shape=self.shape,
                     inputs=self.outputs, outputs=self.inputs)

    @property
    def memory(self) -> int:
        return self.n

    def reversed_taps(self) -> Block:
        return Wire(name=self.name, inputs=self.inputs, outputs=self.outputs)

    def label(self) -> str:
        return f"z⁻{self.n}"

    def config(self) -> dict:
        return {"n": self.n, "x0": self.x0, "shape": self.shape,
                "train_x0": self._params["x0"]}
