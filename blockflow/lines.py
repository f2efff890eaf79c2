"""Plumbing blocks the engine inserts itself (the block library is not imported here).

- :class:`Wire`: ``y(k) = u(k)`` as an operation of its own (unlike a pass-through, its
  output gets its own slot, so input and output may run at different lags);
- :class:`DelayLine`: ``y(k) = u(k - n)`` from zero initial state, the delay lines in
  which the causal sweep holds early deltas back.
"""

from __future__ import annotations

import numpy as np

from .block import Block


class Wire(Block):
    """``y(k) = u(k)``: a unit delay's reversed taps in the causal sweep."""

    linear = True

    def output(self, x, u):
        return u

    def vjp(self, u, y, dy):
        return dy

    def label(self) -> str:
        return "1"

    def config(self) -> dict:
        return {}


class DelayLine(Block):
    """``y(k) = u(k - n)``, zero for ``k < n``."""

    stateful = True
    linear = True
    feedthrough = False

    def __init__(self, n: int, **kw):
        super().__init__(**kw)
        self.n = int(n)

    def init_state(self, batch, in_types, out_types):
        return in_types[0].zeros(self.n, batch)

    def output(self, x, u):
        return x[0]

    def update(self, x, u):
        return np.concatenate([x[1:], u[None]])

    def sequence(self, x0, U):
        return np.concatenate([x0, U])[: U.shape[0]]

    def label(self) -> str:
        return f"z⁻{self.n}"

    def config(self) -> dict:
        return {"n": self.n}
