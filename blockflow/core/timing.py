"""When a block runs: its sample time, its rate in the plan, its sample instants.

``sample_time`` is ``Ts`` or ``(Ts, offset)`` in seconds (``None``: the rate of its
inputs); the compiler places every block's rate beside the block
(:func:`blockflow.core.rates.placed_rate`), never on it.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from blockflow.core.rates import common_rate, placed_rate
from blockflow.errors import ParameterError


class Timing:
    """The timing part of :class:`~blockflow.core.block.Block` (a mixin of it)."""

    def _checked_sample_time(self, value):
        """``None``, ``Ts`` or ``(Ts, offset)`` in seconds: ``Ts > 0``, ``offset >= 0``."""
        if value is None:
            return None
        where = f"block {self.name!r} ({type(self).__name__}): sample_time"
        parts = [value] if np.ndim(value) == 0 else list(np.ravel(np.asarray(value,
                                                                            dtype=object)))
        try:
            nums = [float(v) for v in parts]
        except (TypeError, ValueError):
            nums = None
        if not nums or len(nums) > 2 or isinstance(value, str) or \
                not all(math.isfinite(v) for v in nums):
            raise ParameterError(f"{where} must be Ts or (Ts, offset) in seconds, got "
                                 f"{value!r:.60}")
        ts, off = nums[0], nums[1] if len(nums) == 2 else 0.0
        if not ts > 0 or not off >= 0:  # (offset < Ts, in whole periods: at compile)
            raise ParameterError(f"{where}: Ts must be > 0 and offset >= 0, got Ts={ts:g}, "
                                 f"offset={off:g}")
        return value

    #: an Integrator: its output is a state of the continuous subsystem of a model with
    #: a ``solver`` (its input the state's derivative); see :mod:`blockflow.plan.integrate`
    continuous_state: ClassVar[bool] = False

    #: the rate and i/o convention a transform copies from the forward plan
    rate_hint: tuple | None = None

    #: how a block at a slow rate reads its inputs and writes its outputs on the stored
    #: base-rate signals: sampled at its hits, held in between (see blockflow.core.rates)
    rate_io: ClassVar[tuple[str, str]] = ("sample", "hold")

    def rates(self, declared, known: list, dt: float, path: str) -> tuple:
        """``(the rate it runs at, the rate of its outputs)`` from its declared rate and
        the known rates of its inputs; rate transitions override this."""
        r = common_rate(declared, known, dt, path, type(self).__name__)
        return r, r

    rates.keeps_rate = True  # (the rule of blocks that convert no rate: see infer_rates)

    def period(self) -> float:
        """The sample period (s) this block runs at: its model's ``dt`` times its rate
        (1 outside a model)."""
        dt = self._model.dt if self._model is not None else 1.0
        rate = placed_rate(self)
        return dt * rate.n if rate is not None else dt

    def discretisation(self) -> str | None:
        """How a continuous block was made discrete (plan descriptions), else None."""
        return None

    def sample_times(self, T: int) -> np.ndarray:
        """The times (s) of this block's first ``T`` hits: ``(offset + n k) dt``."""
        dt = self._model.dt if self._model is not None else 1.0
        rate = placed_rate(self)
        n, o = (rate.n, rate.offset) if rate is not None else (1, 0)
        return (o + n * np.arange(T)) * dt
