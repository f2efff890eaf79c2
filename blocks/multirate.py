"""Rate transitions: where blocks at different sample rates meet.

Each is the identity run at the slower of its two rates (see :mod:`blockflow.core.rates`):

- ``ZeroOrderHold(n)`` (slow to ``n`` times faster) and ``Downsample(n)`` (fast to ``n``
  times slower) both sample on the slow hits and hold: ``y = H S u``.  Their reciprocal
  sums the deltas over each held interval and places the sum at the hit
  (``S^T H^T``: summation over the held steps, i.e. upsampling by zero insertion).
- ``Upsample(n)`` (slow to fast by zero insertion) places the samples at the hits, zero
  in between: ``y = S^T S u``, its own transpose (the reciprocal downsamples).
- ``RateTransition(sample_time)`` holds or downsamples to a declared output rate.
"""

from __future__ import annotations

from blockflow.core.block import Block
from blockflow.core.kernel import Kernel
from blockflow.core.rates import IMPULSE, SAMPLE, Rate, RateError

from .math import ELEMENTWISE

_identity = ELEMENTWISE["identity"][0]


def _nested(slow: Rate, fast: Rate) -> bool:
    return slow.n % fast.n == 0 and slow.offset % fast.n == fast.offset


class _Transition(Block):
    """The identity at the slower rate; subclasses say which rate that is."""

    linear = True

    def infer(self, t):
        return (t,)

    def c_code(self, c):  # the hits and holds are the schedule's (the generator's if)
        c.output(f"memcpy({c.y()}, {c.u(0)}, sizeof({c.T}) * {c.n_y()});")

    def output(self, x, u):
        return _identity(u)

    def vjp(self, u, y, dy):
        return _identity(dy)

    def kernel(self):
        return Kernel(_identity)

    vjp_kernel = kernel

    def _input(self, known, path) -> Rate:
        if not known:  # pragma: no cover - inference asks only once an input is known
            raise RateError(f"block {path!r}: the rate of its input is unknown")
        return known[0][0]

    def _faster(self, r: Rate, n: int, path: str, dt: float) -> Rate:
        if r.n % n:
            raise RateError(f"block {path!r} ({type(self).__name__}): its input runs at "
                            f"{r.text(dt)}, which is not {n} times a whole multiple of the "
                            f"base period dt={dt:g} s (non-integer rate ratio)")
        fast = r.n // n
        return Rate(fast, r.offset % fast)


class ZeroOrderHold(_Transition):
    """``y(k) = u(k_j)`` for ``k_j <= k`` the last hit of the slow input: from a slow rate
    to one ``n`` times faster, each sample held."""

    def __init__(self, n: int = 1, **kw):
        super().__init__(**kw)
        self.n = self.scalar("n", n, integer=True, minimum=1)

    def rates(self, declared, known, dt, path):
        r = self._input(known, path)
        return r, self._faster(r, self.n, path, dt)

    def label(self) -> str:
        return f"ZOH ↑{self.n}"

    def config(self) -> dict:
        return {"n": self.n}


class Upsample(ZeroOrderHold):
    """``y(k) = u(k)`` on the hits of the slow input, ``0`` in between: from a slow rate to
    one ``n`` times faster by zero insertion."""

    rate_io = (SAMPLE, IMPULSE)

    def label(self) -> str:
        return f"↑{self.n} (zeros)"


class Downsample(_Transition):
    """``y(k) = u(k_j)``, ``k_j`` the last hit of the output rate (every ``n``-th step of the
    input from step ``offset``): from a fast rate to one ``n`` times slower."""

    def __init__(self, n: int = 2, offset: int = 0, **kw):
        super().__init__(**kw)
        self.n = self.scalar("n", n, integer=True, minimum=1)
        self.offset = self.scalar("offset", offset, integer=True, minimum=0, below=self.n)

    def rates(self, declared, known, dt, path):
        r = self._input(known, path)
        out = Rate(r.n * self.n, r.offset + self.offset * r.n)
        return out, out

    def label(self) -> str:
        return f"↓{self.n}"

    def config(self) -> dict:
        return {"n": self.n, "offset": self.offset}


class RateTransition(_Transition):
    """``y = u`` moved to the output rate ``sample_time`` (seconds): held when that is
    faster than the input (``ZeroOrderHold``), sampled when slower (``Downsample``)."""

    def __init__(self, sample_time, **kw):
        super().__init__(sample_time=sample_time, **kw)

    def rates(self, declared, known, dt, path):
        r = self._input(known, path)
        slow, fast = (r, declared) if r.n >= declared.n else (declared, r)
        if not _nested(slow, fast):
            raise RateError(f"block {path!r} (RateTransition): {r.text(dt)} and "
                            f"{declared.text(dt)} do not nest (the slow hits must be hits "
                            "of the fast rate: a whole rate ratio and aligned offsets)")
        return slow, declared

    def label(self) -> str:
        return "rate transition"

    def config(self) -> dict:
        return {"sample_time": self.sample_time}

