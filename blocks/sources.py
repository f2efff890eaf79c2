"""Sources: Constant, Step, Sine, Square, FromArray, Noise.

A source has no inputs; it produces its whole ``(T, B, *shape)`` sequence at once with
``generate(T, B)``.  Sources are nondifferentiable with respect to their (absent) inputs;
a Constant may carry a trainable value (``dJ/dc = sum_k delta_y(k)``).
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block, sum_to
from blockflow.core.ccode import at, each, number
from blockflow.core.rates import placed_rate
from blockflow.core.streams import random_streams
from blockflow.core.types import SignalType
from blockflow.errors import ParameterError


class _Source(Block):
    inputs = ()
    source = True
    nondifferentiable = True

    def __init__(self, shape=(), dtype=np.float64, **kw):
        super().__init__(**kw)
        t = self.signal_type(tuple(np.atleast_1d(shape)) if np.ndim(shape) else shape, dtype)
        self.shape, self.dtype = t.shape, t.dtype

    def infer(self):
        return (SignalType(self.shape, self.dtype),)

    def astype(self, dtype) -> _Source:
        super().astype(dtype)
        self.dtype = np.dtype(dtype)
        return self

    def _model_dt(self) -> float | None:
        """The sample period its model declares (``Model(dt=...)``, here or above), or
        None: then times are counted in steps."""
        m = self._model
        while m is not None:
            if m._dt is not None:
                return m._dt
            m = m._model
        return None

    def _steps(self, name: str, value, steps) -> int:
        """A duration as a whole number of base steps: ``steps`` when given, else
        ``value`` in seconds where the model has a ``dt`` (a whole number of periods), in
        steps where it has none."""
        if steps is not None:
            return steps
        dt = self._model_dt()
        n = value if dt is None else value / dt
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            where = f"block {self.name!r} ({type(self).__name__}): {name}"
            raise ParameterError(
                f"{where} = {value:g} s is not a whole number of the model's period "
                f"dt={dt:g} s ({n:g} steps); give a time on the grid, or {name}_steps= to "
                "count in steps" if dt is not None else
                f"{where} = {value:g} is counted in steps (the model has no dt); give a "
                f"whole number, or Model(dt=...) to count in seconds")
        return int(round(n))

    def _base_steps(self, T: int, k0: int) -> np.ndarray:
        """The base-rate step of each of the block's hits ``k0 .. k0+T-1``."""
        rate = placed_rate(self)
        n, o = (rate.n, rate.offset) if rate is not None else (1, 0)
        return o + n * np.arange(k0, k0 + T)

    def _c_hit(self) -> tuple[int, int]:
        """``(n, offset)``: its hits are the base steps ``offset + n j`` (C: ``s->k``)."""
        rate = placed_rate(self)
        return (rate.n, rate.offset) if rate is not None else (1, 0)

    def _c_wave(self, c, value: str) -> None:
        """Every element of the output is ``value`` (a C expression of ``s->k``)."""
        c.output(f"{{ {c.T} w = ({c.T})({value}); "
                 f"for (int i = 0; i < {c.n_y()}; ++i) {c.y()}[i] = w; }}")

    def _fill(self, wave: np.ndarray, T: int, B: int) -> np.ndarray:
        """Broadcast a (T,) waveform to (T, B, *shape)."""
        w = wave.reshape((T,) + (1,) * (1 + len(self.shape))).astype(self.dtype)
        return np.broadcast_to(w, (T, B, *self.shape))


class Constant(_Source):
    """``y(k) = c``."""

    batchable = frozenset({"value"})

    def __init__(self, value=0.0, *, trainable: bool = False, dtype=np.float64, **kw):
        super().__init__(shape=np.shape(value), dtype=dtype, **kw)
        self.param("value", value, trainable=trainable, dtype=self.dtype)

    def generate(self, T, B, k0=0):
        return np.broadcast_to(self.value.astype(self.dtype), (T, B, *self.shape))

    def c_code(self, c):
        v, n = c.param("value", self.value), c.n_y()
        c.output(*each(n, f"{c.y()}[i] = {at(v, self.value.size, n)};"))

    def param_grads(self, u, y, dy):
        return {"value": sum_to(dy[0], self.value.shape)} if self._params["value"] else {}

    def param_jvp(self, u, y, dp):
        return (np.broadcast_to(dp.get("value", 0.0), y[0].shape),)

    def label(self) -> str:
        v = self.value
        return f"{float(v):.4g}" if v.size == 1 else f"const {v.shape}"

    def config(self) -> dict:
        return {"value": self.value, "trainable": self._params["value"], "dtype": self.dtype.name}


class Step(_Source):
    """``y = before`` until ``time``, ``after`` from ``time`` on.

    ``time`` is in seconds where the model has a ``dt`` (a whole number of its periods:
    ``Step(1.0)`` in a ``dt = 0.01`` model switches at step 100) and in steps where it has
    none; ``time_steps=`` counts in steps whatever the model.
    """

    def __init__(self, time: float = 0.0, before: float = 0.0, after: float = 1.0, *,
                 time_steps: int | None = None, **kw):
        super().__init__(**kw)
        self.time = self.scalar("time", time, minimum=0)
        self.time_steps = None if time_steps is None else self.scalar(
            "time_steps", time_steps, integer=True, minimum=0)
        self.before, self.after = self.scalar("before", before), self.scalar("after", after)

    def generate(self, T, B, k0=0):
        switch = self._steps("time", self.time, self.time_steps)
        return self._fill(np.where(self._base_steps(T, k0) < switch, self.before,
                                   self.after), T, B)

    def c_code(self, c):
        switch = self._steps("time", self.time, self.time_steps)
        self._c_wave(c, f"s->k < {switch} ? {number(self.before)} : {number(self.after)}")

    def config(self) -> dict:
        return {"time": self.time, "time_steps": self.time_steps, "before": self.before,
                "after": self.after, "shape": self.shape, "dtype": self.dtype.name}


class Sine(_Source):
    """``y(k) = amplitude sin(2 pi frequency k + phase) + bias`` (frequency in cycles/sample),
    or with ``freq_hz`` ``y = amplitude sin(2 pi freq_hz t + phase) + bias`` at the times
    ``t`` (s) of its samples (the model's ``dt`` and the block's rate)."""

    def __init__(self, amplitude=1.0, frequency=0.05, phase=0.0, bias=0.0, *,
                 freq_hz: float | None = None, **kw):
        super().__init__(**kw)
        self.amplitude = self.scalar("amplitude", amplitude)
        self.frequency = self.scalar("frequency", frequency)
        self.freq_hz = None if freq_hz is None else self.scalar("freq_hz", freq_hz)
        self.phase, self.bias = self.scalar("phase", phase), self.scalar("bias", bias)

    def generate(self, T, B, k0=0):
        if self.freq_hz is None:
            arg = 2 * np.pi * self.frequency * np.arange(k0, k0 + T)
        else:
            arg = 2 * np.pi * self.freq_hz * self.sample_times(k0 + T)[k0:]
        return self._fill(self.amplitude * np.sin(arg + self.phase) + self.bias, T, B)

    def c_code(self, c):  # the same operations in the same order as generate
        n, o = self._c_hit()
        if self.freq_hz is None:
            arg = f"{number(2 * np.pi * self.frequency)} * (double)((s->k - {o}) / {n})"
        else:
            dt = self._model.dt if self._model is not None else 1.0
            arg = f"{number(2 * np.pi * self.freq_hz)} * ((double)s->k * {number(dt)})"
        self._c_wave(c, f"{number(self.amplitude)} * sin({arg} + {number(self.phase)}) + "
                        f"{number(self.bias)}")

    def label(self) -> str:
        return "sine" if self.freq_hz is None else f"sine {self.freq_hz:g} Hz"

    def config(self) -> dict:
        cfg = {"amplitude": self.amplitude, "frequency": self.frequency, "phase": self.phase,
               "bias": self.bias, "shape": self.shape, "dtype": self.dtype.name}
        if self.freq_hz is not None:
            cfg["freq_hz"] = self.freq_hz
        return cfg


class Square(_Source):
    """``y = +-amplitude + bias``: high for the first ``duty`` of every ``period``.

    ``period`` is in seconds where the model has a ``dt`` (a whole number of its periods)
    and in steps where it has none; ``period_steps=`` counts in steps whatever the model.
    """

    def __init__(self, amplitude=1.0, period: float = 20, duty: float = 0.5, bias=0.0, *,
                 period_steps: int | None = None, **kw):
        super().__init__(**kw)
        self.amplitude, self.bias = self.scalar("amplitude", amplitude), self.scalar("bias", bias)
        self.period = self.scalar("period", period, above=0)
        self.period_steps = None if period_steps is None else self.scalar(
            "period_steps", period_steps, integer=True, minimum=1)
        self.duty = self.scalar("duty", duty, above=0, below=1)

    def generate(self, T, B, k0=0):
        P = self._steps("period", self.period, self.period_steps)
        if P < 1:
            raise ParameterError(f"block {self.name!r} (Square): a period of {P} steps")
        high = (self._base_steps(T, k0) % P) < self.duty * P
        return self._fill(np.where(high, self.amplitude, -self.amplitude) + self.bias, T, B)

    def c_code(self, c):
        P = self._steps("period", self.period, self.period_steps)
        hi, lo = self.amplitude + self.bias, -self.amplitude + self.bias
        self._c_wave(c, f"(double)(s->k % {P}) < {number(self.duty * P)} ? {number(hi)} : "
                        f"{number(lo)}")

    def config(self) -> dict:
        return {"amplitude": self.amplitude, "period": self.period,
                "period_steps": self.period_steps, "duty": self.duty, "bias": self.bias,
                "shape": self.shape, "dtype": self.dtype.name}


class FromArray(_Source):
    """``y(k) = data[k]``: a recorded signal, ``(T, *shape)`` or ``(T, B, *shape)``.

    Steps past the end of the data hold the last sample.
    """

    def __init__(self, data, *, batched: bool = False, dtype=np.float64, **kw):
        self.batched = bool(batched)
        shape = np.shape(data)
        lead = 2 if batched else 1
        super().__init__(shape=shape[lead:], dtype=dtype, **kw)
        if len(shape) < lead or shape[0] == 0:
            raise ParameterError(f"block {self.name!r} (FromArray): data must be "
                                 f"{'(T, B, *shape)' if batched else '(T, *shape)'} with T >= 1, "
                                 f"got shape {shape}")
        self.param("data", data, trainable=False, dtype=self.dtype)

    def c_code(self, c):
        raise c.refuse("recorded data has no place in C; feed it through an Inport")

    def generate(self, T, B, k0=0):
        d = self.data
        idx = np.minimum(np.arange(k0, k0 + T), d.shape[0] - 1)
        d = d[idx]
        if not self.batched:
            d = d[:, None]
        return np.broadcast_to(d, (T, B, *self.shape))

    def label(self) -> str:
        return f"data {self.data.shape}"

    def config(self) -> dict:
        return {"data": self.data, "batched": self.batched, "dtype": self.dtype.name}


class Noise(_Source):
    """``y(k) ~ N(mean, std^2)``, independent over time, batch members and blocks.

    Each batch member draws from its own stream, made from the block's ``seed``, the
    member's run seed and the block's path in the model (the engine's
    :func:`blockflow.core.streams.random_streams`): a member's noise is the same whatever
    the batch it runs in (a sweep's chunking, its workers), two Noise blocks of one model
    are independent, and a run seed reproduces every random block of the model.
    """

    random = True

    def __init__(self, std=1.0, mean=0.0, *, seed: int = 0, shape=(), **kw):
        super().__init__(shape=shape, **kw)
        self.std = self.scalar("std", std, minimum=0)
        self.mean = self.scalar("mean", mean)
        self.seed = self.scalar("seed", seed, integer=True, minimum=0)

    #: samples drawn per generator: a member's sample ``k`` comes from block ``k // BLOCK``
    #: of its stream, so a run continued from any step draws what one long run draws
    BLOCK = 256

    def c_code(self, c):
        raise c.refuse("a random source: C has no generator that draws numpy's streams; "
                       "feed the noise in through an Inport")

    def generate(self, T, B, k0=0, streams=None):
        if streams is None:  # (called alone: members 0 .. B-1 under this block's name)
            streams = random_streams(self.name, range(B))
        out = np.empty((T, B, *self.shape), self.dtype)
        first, last = k0 // self.BLOCK, (k0 + T - 1) // self.BLOCK
        for b, stream in enumerate(streams):
            key = [self.seed, *stream.generate_state(4)]
            draws = np.concatenate([np.random.default_rng([*key, j]).standard_normal(
                (self.BLOCK, *self.shape)) for j in range(first, last + 1)]) if T else \
                np.empty((0, *self.shape))
            start = k0 - first * self.BLOCK
            out[:, b] = self.mean + self.std * draws[start:start + T]
        return out

    def label(self) -> str:
        return f"N({self.mean:g},{self.std:g}²)"

    def config(self) -> dict:
        return {"std": self.std, "mean": self.mean, "seed": self.seed, "shape": self.shape,
                "dtype": self.dtype.name}


