"""Gradient schedules: how a backward sweep covers time.

One driver (:func:`blockflow.gradient.sweep.sweep`, and
:func:`blockflow.gradient.sweep.backward` around it) runs every gradient mode; a schedule
object says which:

- :class:`Full`: backpropagation through time over the whole run (exact);
- :class:`Window`: truncated BPTT over the last ``h`` steps;
- :class:`Chunked`: truncated BPTT over consecutive windows of ``h`` steps, summed;
- :class:`Causal`: the reciprocal retimed to run forward, ``D`` steps late (temporal
  backprop over a recorded run; the full sweep's gradients);
- :class:`Streamed`: the same, streamed chunk by chunk beside the forward run with a
  weight update after every chunk (online temporal backprop; needs the inputs, not a
  recorded trace).

Truncation has one meaning for every block: the gradient over a window is the exact
gradient of the loss on the window's steps with the model state at the window's start
held fixed, as data.  Inputs and outputs recorded before the window are data too, so a
tapped delay line contracts its deltas with them, and a recursive block (an IIR filter,
a state-space block) cuts its own adjoint recursion at the window's start (the
``resets`` a block's ``param_grads`` receives).  A block and the same system built from
elementary blocks therefore agree in every mode.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

from blockflow.errors import SimulationError


def _positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SimulationError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Schedule:
    """Base class: a schedule over a recorded run of ``T`` steps.

    A schedule says how it runs by itself (no driver asks for its class): ``apply(how)``
    calls the one method of the driver ``how`` that runs it (``windows(spans)``,
    ``causal()`` or ``streamed(chunk)``); ``streams`` says whether it runs beside the
    forward model from the inputs (no recorded trace), ``multirate`` whether it is exact
    on a model of several rates.
    """

    streams: ClassVar[bool] = False
    multirate: ClassVar[bool] = False

    def spans(self, T: int) -> list[tuple[int, int]]:
        """The windows ``[a, b)`` swept, each from zero terminal state at ``b``."""
        return [(0, T)]

    def apply(self, how):
        return how.windows(self.spans(how.T))


@dataclass(frozen=True)
class Full(Schedule):
    """Backpropagation through time over the whole run."""

    multirate: ClassVar[bool] = True


@dataclass(frozen=True)
class _Windowed(Schedule):
    h: int

    def __post_init__(self):
        object.__setattr__(self, "h", _positive(self.h, "window"))


@dataclass(frozen=True)
class Window(_Windowed):
    """Truncated BPTT over the last ``h`` steps (``h >= T``: exact)."""

    def spans(self, T):
        return [(max(0, T - self.h), T)]


@dataclass(frozen=True)
class Chunked(_Windowed):
    """Truncated BPTT in consecutive windows of ``h`` steps; their gradients add up."""

    def spans(self, T):
        return [(a, min(a + self.h, T)) for a in range(0, T, self.h)]


@dataclass(frozen=True)
class Causal(Schedule):
    """The retimed, causal reciprocal run over the recorded run, ``D`` steps late."""

    def apply(self, how):
        return how.causal()


@dataclass(frozen=True)
class Streamed(Schedule):
    """Online temporal backprop: ``chunk`` steps at a time beside the forward run."""

    chunk: int = 1
    streams: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "chunk", _positive(self.chunk, "chunk"))

    def apply(self, how):
        return how.streamed(self.chunk)


def as_schedule(schedule: Schedule | None = None, *, window: int | None = None,
                chunked: bool = False, online: bool = False) -> Schedule:
    """The schedule named by ``schedule`` or by the keyword shorthands of ``backward``."""
    if schedule is not None:
        if not isinstance(schedule, Schedule):
            raise SimulationError(f"schedule must be a Schedule (Full(), Window(h), "
                                  f"Chunked(h), Causal(), Streamed(chunk)), got {schedule!r}")
        if window is not None or chunked or online:
            raise SimulationError("give either schedule= or window=/chunked=/online=, "
                                  "not both")
        return schedule
    if online:
        if window is not None or chunked:
            raise SimulationError("online=True runs the whole sequence: drop window=")
        return Causal()
    if window is None:
        if chunked:
            raise SimulationError("chunked=True needs window=h (steps per window)")
        return Full()
    return Chunked(window) if chunked else Window(window)
