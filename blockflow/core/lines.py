"""Plumbing blocks the engine inserts itself (the block library is not imported here).

- :class:`Wire`: ``y(k) = u(k)`` as an operation of its own (unlike a pass-through, its
  output gets its own slot, so input and output may run at different lags);
- :class:`DelayLine`: ``y(k) = u(k - n)`` from zero initial state, the delay lines in
  which the causal sweep holds early deltas back.
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.kernel import Kernel, copy_into, kernel, take_state_into


@kernel(into=copy_into)
def wire_output(u):
    return u


class Wire(Block):
    """``y(k) = u(k)``: a unit delay's reversed taps in the causal sweep."""

    linear = True

    def output(self, x, u):
        return wire_output(u)

    def kernel(self):
        return Kernel(wire_output)

    def vjp(self, u, y, dy):
        return dy

    def label(self) -> str:
        return "1"

    def config(self) -> dict:
        return {}




@kernel(allocates=False)
def _line_update_into(x, u, out):  # out is x: shifted one sample in place, u appended
    m = u.size
    for i in range(x.size - m):
        x.flat[i] = x.flat[i + m]
    for i in range(m):
        x.flat[x.size - m + i] = u.flat[i]
    return x


@kernel(into=take_state_into)
def line_output(x, u):  # a delay line of n samples: the oldest comes out
    return x[0]


@kernel(into=_line_update_into)
def line_update(x, u):
    return np.concatenate((x[1:], np.expand_dims(u, 0)))


class DelayLine(Block):
    """``y(k) = u(k - n)``, zero for ``k < n``."""

    stateful = True
    linear = True
    feedthrough = False
    state_batch_axis = 1  # the state holds the last n inputs: (n, B, ...)

    def __init__(self, n: int, **kw):
        super().__init__(**kw)
        self.n = self.scalar("n", n, integer=True, minimum=1)

    def init_state(self, batch, in_types, out_types):
        return in_types[0].zeros(self.n, batch)

    def output(self, x, u):
        return line_output(x, u)

    def update(self, x, u):
        return line_update(x, u)

    def kernel(self):
        return Kernel(line_output, line_update)

    def sequence(self, x0, U):
        return np.concatenate([x0, U])[: U.shape[0]]

    def label(self) -> str:
        return f"z⁻{self.n}"

    def config(self) -> dict:
        return {"n": self.n}
