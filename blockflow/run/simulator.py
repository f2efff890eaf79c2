"""A simulation you can step, pause and continue: :class:`Simulator`.

The model is compiled once, in step mode (every block runs step by step, so a chunk of
``T`` steps does exactly the arithmetic of those ``T`` steps of a longer run), on one
backend fixed when the simulator is made (the compiled and numpy paths agree to rounding
only, so a run must not change path between chunks).  Running ``T`` steps in one call,
in chunks of any sizes, or one step at a time gives the same trace bit for bit; the state
(every delay line, filter, state-space and integrator state, by block path) can be read,
saved and set, and sources continue from the current step.
"""

from __future__ import annotations

import math

import numpy as np

from blockflow.backends.ops import SegmentKind
from blockflow.backends.policy import numba_available, resolve_backend
from blockflow.core.rates import HOLD
from blockflow.errors import SimulationError
from blockflow.plan.compiler import compile
from blockflow.run.driver import run
from blockflow.run.inputs import bind_inputs, check_steps
from blockflow.run.trace import Trace


class Simulator:
    """Step a model, pause, read or set its state, continue.

    Parameters
    ----------
    model : Model
    backend : {"auto", "numpy", "numba"}, optional
        Fixed for the simulator's life: ``"auto"`` takes the compiled path where numba is
        installed (a simulator runs many chunks; see :mod:`blockflow.backends.policy`).
    batch : int, default 1
        Members run side by side.
    initial_state : dict, optional
        States by block path (as :attr:`state` gives them); the blocks' own initial
        states otherwise.
    seed : int or sequence of int, optional
        The members' run seeds (random blocks: see ``simulate(seed=)``).

    Examples
    --------
    >>> from models.closed_loop import tanh_loop
    >>> sim = Simulator(tanh_loop(), backend="numpy")
    >>> first = sim.run({"r": np.ones(3)})
    >>> y = sim.step({"r": 1.0})["y"]          # one more step: (B, *shape)
    >>> sim.k, first.T
    (4, 3)
    """

    def __init__(self, model, *, backend: str | None = None, batch: int = 1,
                 initial_state: dict | None = None, seed=None):
        backend = resolve_backend(backend)
        if backend == "auto":
            backend = "numba" if numba_available() else "numpy"
        self.plan = compile(model, mode="step", backend=backend)
        slow = [op.path for seg in self.plan.segments if seg.kind is not SegmentKind.LOOP
                for op in seg.ops if op.multirate]
        if slow:
            raise SimulationError(
                f"Simulator: source(s) {slow} of {model.name!r} run off the base rate; a "
                "simulator continues base-rate sources only: run the source at the base "
                "rate (a ZeroOrderHold after it holds it the same), or simulate() whole")
        # a multirate model's slow blocks hold their outputs between hits: those values
        # carry from one chunk to the next, and each chunk runs in step with the schedule
        self._period = 1
        self._held_ops: dict[str, tuple] = {}  # path -> the slots it holds between hits
        for seg in self.plan.segments:
            for op in seg.ops:
                if op.multirate:
                    self._period = math.lcm(self._period, op.rate.n)
                    if op.io[1] == HOLD:
                        self._held_ops[op.path] = tuple(op.outs)
        self._held_slots = [s for outs in self._held_ops.values() for s in outs]
        self._held: dict = {}
        self.model = model
        self.B = check_steps(batch, "batch")
        self.seed = seed
        self._initial = None if initial_state is None else self._checked(initial_state)
        self.reset()

    # --------------------------------------------------------------------- state
    def reset(self, state: dict | None = None) -> None:
        """Back to step 0, from ``state`` (by block path), else the initial state."""
        self.k = 0
        self._assign(self._checked(state) if state is not None else self._initial or {})

    @property
    def time(self) -> float:
        """The time of the next step (s; steps where the model has no ``dt``)."""
        return self.k * self.model.dt

    @property
    def state(self) -> dict:
        """Every stateful block's state by path, as plain arrays (copies); blocks that
        have not run yet are at their initial state.  A multirate model adds what each
        slow block holds between its hits, as ``"path:held"``."""
        if len(self._state) < len(self._stateful()):
            self._fill_initial()
        out = {p: _copy(x) for p, x in self._state.items()}
        st = self.plan.slot_types
        for path, slots in self._held_ops.items():
            rows = tuple(np.array(self._held[s], copy=True) if s in self._held
                         else st[s].zeros(1, self.B)[0] for s in slots)
            out[f"{path}:held"] = rows[0] if len(rows) == 1 else rows
        return out

    @state.setter
    def state(self, value: dict) -> None:
        self._assign(self._checked(value))

    def _assign(self, checked: dict) -> None:
        """Take a checked state: block states, and held values by slot."""
        self._state = {p: x for p, x in checked.items() if not p.endswith(":held")}
        self._held = {}
        for key, x in checked.items():
            if key.endswith(":held"):
                rows = x if isinstance(x, tuple) else (x,)
                self._held.update(zip(self._held_ops[key[:-5]], rows, strict=True))

    def _stateful(self) -> dict:
        return {op.path: op for seg in self.plan.segments for op in seg.ops
                if op.state is not None}

    def _fill_initial(self) -> None:
        st = self.plan.slot_types
        for path, op in self._stateful().items():
            if path not in self._state:
                n = len(op.block.inputs)
                self._state[path] = op.block.init_state(
                    self.B, tuple(st[s] for s in op.ins[:n]), tuple(st[s] for s in op.outs))

    def _checked(self, state: dict) -> dict:
        if not isinstance(state, dict):
            raise SimulationError(f"a simulator's state is a dict {{block path: array}}, got "
                                  f"{type(state).__name__}")
        known = self._stateful()
        held = {f"{p}:held": slots for p, slots in self._held_ops.items()}
        unknown = sorted(set(state) - set(known) - set(held))
        if unknown:
            raise SimulationError(f"state names {unknown}, which are not stateful blocks of "
                                  f"{self.plan.model.name!r}; they are "
                                  f"{sorted(known) + sorted(held)}")
        st = self.plan.slot_types
        saved, self._state = getattr(self, "_state", {}), {}
        try:
            self._fill_initial()
            out = {}
            for path, x in state.items():
                if path in held:
                    rows = tuple(st[s].zeros(1, self.B)[0] for s in held[path])
                    like = rows[0] if len(rows) == 1 else rows
                else:
                    like = self._state[path]
                got = _shaped(x, like)
                if got is None:
                    raise SimulationError(
                        f"state of {path!r} has shape {_shapes(x)}, the block's is "
                        f"{_shapes(like)} (batch {self.B})")
                out[path] = got
        finally:
            self._state = saved
        return out

    # ----------------------------------------------------------------------- run
    def run(self, inputs: dict | None = None, *, steps: int | None = None) -> Trace:
        """Run a chunk (``inputs``: ``(T, ...)`` or ``(T, B, ...)`` per Inport, or
        ``steps`` for a model without Inports) and return its Trace (``trace.k0`` and
        ``trace.time`` say where it starts); the state moves on."""
        T, B, bufs = bind_inputs(self.plan, inputs, steps, self.B)  # (B: the simulator's)
        if not self._held_slots or self.k == 0:
            tr = run(self.plan, T, B, bufs, states=self._state, seeds=self.seed, k0=self.k)
        else:
            tr = self._run_in_phase(T, B, bufs)
        self._state = dict(tr.final_states)
        self._held = {s: np.array(tr.bufs[s][-1], copy=True) for s in self._held_slots}
        self.k += T
        return tr

    def _run_in_phase(self, T: int, B: int, bufs: list) -> Trace:
        """A chunk of a multirate model from step ``k > 0``: the loops count steps from
        the chunk's first row, so the chunk runs after ``p`` rows of context with
        ``p = k`` (mod the schedule's period) and ``p >= k`` or ``p >= period`` (every
        hit and every offset falls where a whole run has it); the row before the first
        step holds what the slow blocks held."""
        N, k = self._period, self.k
        if not self._held:
            raise SimulationError(
                f"Simulator: {self.model.name!r} runs blocks at several rates, and the values "
                f"its slow blocks hold at step {k} are not in a saved state: continue a "
                "multirate run in the simulator that ran it (or run it from step 0)")
        p = k if k < N else N + k % N
        padded = [None if b is None else
                  np.concatenate([np.zeros((p, *np.shape(b)[1:]), np.asarray(b).dtype), b])
                  for b in bufs]
        rows = {s: (p - 1, v) for s, v in self._held.items()}
        full = run(self.plan, p + T, B, padded, states=self._state, seeds=self.seed,
                   k0=k - p, rows=rows, start=p)
        return Trace(self.plan, [None if b is None else b[p:] for b in full.bufs], T, B,
                     full.final_states, k0=k)

    def step(self, inputs: dict | None = None) -> dict:
        """One step: ``inputs`` one sample per Inport (``(*shape)`` or ``(B, *shape)``);
        returns every Outport's sample ``(B, *shape)``."""
        one = None
        if inputs is not None:
            one = {}
            for name, v in inputs.items():
                a = np.asarray(v)
                slot = self.plan.inports.get(name)
                shape = self.plan.slot_types[slot].shape if slot is not None else a.shape
                one[name] = a[None] if a.shape in (shape, (self.B, *shape)) else a
        tr = self.run(one, steps=None if one else 1)
        return {n: tr[n][0] for n in self.plan.outports}


def _copy(x):
    return tuple(_copy(v) for v in x) if isinstance(x, tuple) else np.array(x, copy=True)


def _shapes(x):
    return tuple(_shapes(v) for v in x) if isinstance(x, tuple) else np.shape(x)


def _shaped(x, like):
    """``x`` as the block's state ``like`` (same structure and shapes), or None."""
    if isinstance(like, tuple):
        if not isinstance(x, tuple | list) or len(x) != len(like):
            return None
        parts = [_shaped(a, b) for a, b in zip(x, like, strict=True)]
        return None if any(p is None for p in parts) else tuple(parts)
    a = np.asarray(x)
    if a.shape != np.shape(like):
        return None
    return np.array(a, dtype=np.asarray(like).dtype, copy=True)
