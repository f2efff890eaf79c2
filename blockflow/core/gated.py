"""Enabled and triggered subsystems (Simulink's): blocks that run only on some steps.

A subsystem holding an :class:`EnablePort` runs only on the steps where its ``enable``
input is positive; one holding a :class:`TriggerPort` runs once on each rising (or
falling, or either) edge of its ``trigger`` input.  Between its runs its states are held
(or reset to their initial values: ``states="reset"``) and its outputs hold their last
value (or read zero: ``outputs="reset"``).  Enable and trigger signals are per batch
member, like any signal.

Each block of such a subsystem is run as a :class:`Gated` block (the expansion is
:mod:`blockflow.plan.conditional`): the block itself on the steps the gate is open, its
state and outputs held (or reset) on the others.  On its own time axis, the enabled
steps, it is the same block, and so are its rules:

- **reciprocal** (:class:`GatedAdjoint`, right below): the block's reciprocal, run in
  reversed time on the enabled steps only; on a closed step it passes no delta to the
  inputs, its adjoint state is held (cut, after a reset), and the deltas of held outputs
  are summed into the step that produced the value;
- **tangent**: the block's tangent, gated by the same (recorded) gate;
- **parameter gradients**: the block's own ``param_grads`` over the enabled steps of each
  batch member (each run from a reset separately).

The gate itself is not differentiable: its delta is zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blockflow.core.block import Block, Read, as_tuple
from blockflow.core.ports import Inport
from blockflow.core.types import SignalType, delta_type
from blockflow.errors import ParameterError

MODES = ("held", "reset")
_NUMPY_ONLY = "a gated block (enabled or triggered subsystem) runs on the numpy path"
EDGES = ("rising", "falling", "either")


def _mode(value: str, what: str, where: str) -> str:
    if value not in MODES:
        raise ParameterError(f"{where}: {what} must be 'held' or 'reset', got {value!r:.40}")
    return value


class EnablePort(Inport):
    """The enable input of a subsystem: the subsystem runs on the steps where it is > 0.

    Parameters
    ----------
    name : str, default "enable"
        The subsystem's input name.
    states : {"held", "reset"}
        While disabled, every state keeps its value, or returns to its initial value
        (the run restarts from it when enabled again).
    outputs : {"held", "reset"}
        While disabled, the outputs keep their last value, or read zero.
    """

    def __init__(self, name: str = "enable", *, states: str = "held", outputs: str = "held",
                 **kw):
        kw.setdefault("shape", ())
        super().__init__(name, **kw)
        where = f"block {self.name!r} (EnablePort)"
        self.states = _mode(states, "states", where)
        self.outputs_mode = _mode(outputs, "outputs", where)

    def label(self) -> str:
        return f"Enable {self.name}"

    def config(self) -> dict:
        return {**super().config(), "states": self.states, "outputs": self.outputs_mode}


class TriggerPort(Inport):
    """The trigger input of a subsystem: it runs once on each edge of this signal.

    A rising edge is a step where the signal is > 0 and was <= 0 at the step before (0
    before the first step, so a trigger already positive at k = 0 fires at k = 0); a
    falling edge the reverse; ``"either"`` both.  Between its runs the subsystem's
    states and outputs hold.
    """

    def __init__(self, name: str = "trigger", *, edge: str = "rising", **kw):
        kw.setdefault("shape", ())
        super().__init__(name, **kw)
        if edge not in EDGES:
            raise ParameterError(f"block {self.name!r} (TriggerPort): edge must be one of "
                                 f"{', '.join(EDGES)}, got {edge!r:.40}")
        self.edge = edge
        self.states, self.outputs_mode = "held", "held"

    def label(self) -> str:
        return f"Trigger {self.name} ({self.edge})"

    def config(self) -> dict:
        return {**super().config(), "edge": self.edge}


class EdgeDetector(Block):
    """``y(k) = 1`` on an edge of ``u`` (see :class:`TriggerPort`), else ``0``."""

    stateful = True
    nondifferentiable = True

    def __init__(self, edge: str = "rising", **kw):
        super().__init__(**kw)
        self.edge = edge

    def infer(self, t):
        return (None if t is None else SignalType(t.shape, np.float64),)

    def init_state(self, batch, in_types, out_types):
        return np.zeros((batch, *out_types[0].shape))

    def output(self, x, u):
        now, before = u > 0, x > 0
        rising, falling = now & ~before, before & ~now
        hit = rising if self.edge == "rising" else falling if self.edge == "falling" \
            else rising | falling
        return hit.astype(np.float64)

    def update(self, x, u):
        return np.asarray(u, np.float64).copy()

    def label(self) -> str:
        return f"{self.edge} edge"

    def config(self) -> dict:
        return {"edge": self.edge}


def _open(e: np.ndarray, like: np.ndarray, axis: int = 0) -> np.ndarray:
    """The gate ``e > 0`` (one per batch member), shaped to broadcast against ``like``
    whose batch axis is ``axis``."""
    on = np.asarray(e) > 0
    shape = [1] * np.ndim(like)
    if shape:
        shape[axis] = on.shape[0]
    return on.reshape(shape)


def _gated_state(block: Block, new, ref, e):
    """``block``'s state ``new`` where the gate is open, ``ref`` (held or initial) where
    it is closed: only the arrays that evolve (``state_parts``) are chosen between."""
    ax = block.state_batch_axis
    parts = tuple(np.where(_open(e, p, ax), p, q)
                  for p, q in zip(block.state_parts(new), ref, strict=True))
    return block.with_state_parts(new, parts)


def _parts(block: Block, x) -> tuple:
    """Copies of the evolving arrays of ``block``'s state ``x``."""
    return tuple(np.array(p, copy=True) for p in block.state_parts(x))


class Gated(Block):
    """``block`` run only on the steps where its gate (the last input, ``enable``, or a
    recorded signal for a derived block) is > 0; see the module.

    Parameters
    ----------
    block : Block
        The block it runs (its name, ports and parameters are this block's).
    states, outputs : {"held", "reset"}
    gate : {"input", "trace"}
        Where the gate comes from: the ``enable`` input, or the forward trace (a derived
        block: the tangent reads the forward block's gate).
    """

    stateful = True

    def __init__(self, block: Block, *, states: str = "held", outputs: str = "held",
                 gate: str = "input"):
        super().__init__(name=block.name, inputs=block.inputs + ("enable",),
                         outputs=block.outputs, type_hints=block.type_hints,
                         sample_time=block.sample_time)
        self.block, self.states, self.outputs_mode, self.gate = block, states, outputs, gate
        self.wraps = block
        self.shares_parameters_with = block.shares_parameters_with
        self.residuals = block.residuals
        self.memory = None
        self.fwd_types = block.fwd_types
        # a derived (tangent) block's ``enable`` input carries the gate's tangent, which
        # it ignores: its gate is the forward one, read from the trace
        self.trace_reads = block.trace_reads + ((Read("enable"),) if gate == "trace" else ())
        direct = block.direct_inputs()
        self.feedthrough = frozenset(direct | ({"enable"} if gate == "input" else set()))

    # the block's parameters are the inner block's
    def parameters(self, *, trainable_only: bool = True) -> dict[str, np.ndarray]:
        return self.block.parameters(trainable_only=trainable_only)

    def held(self):
        return self.block.held()

    def astype(self, dtype) -> Gated:
        self.block.astype(dtype)
        return self

    def block_ports(self):
        return self.block.block_ports()

    def read_type(self, read: Read) -> SignalType:
        if read.port == "enable" and self.gate == "trace":
            return self.fwd_types[0][-1] if self.fwd_types else SignalType((), np.float64)
        return self.block.read_type(read)

    def residual_types(self, in_types, out_types):
        return self.block.residual_types(in_types[:len(self.block.inputs)], out_types)

    def infer(self, *t):
        n = len(self.block.inputs)
        if self.gate == "input" and t[n] is not None and t[n].shape != ():
            raise self.type_error(f"the gate must be a scalar signal, got shape {t[n].shape}",
                                  port="enable")
        return self.block.infer(*t[:n])

    # ---------------------------------------------------------------- forward
    def _split(self, args: tuple) -> tuple[tuple, np.ndarray]:
        """(the inner block's arguments, the gate)."""
        n = len(self.block.inputs)
        if self.gate == "input":
            return args[:n], args[n]
        return args[:n] + args[n + 1:-1], args[-1]

    def init_state(self, batch, in_types, out_types):
        n = len(self.block.inputs)
        inner = self.block.init_state(batch, in_types[:n], out_types) \
            if self.block.stateful else None
        types = list(out_types) + list(self.block.residual_types(in_types[:n], out_types))
        last = tuple(t.zeros(batch) for t in types)
        return inner, last, _copy(inner)

    def state_parts(self, x) -> tuple:
        return self.block.state_parts(x[0]) if self.block.stateful else ()

    def with_state_parts(self, x, parts):
        inner = self.block.with_state_parts(x[0], parts) if self.block.stateful else None
        return inner, x[1], x[2]

    def output(self, x, *args):
        inner, last, _ = x
        a, e = self._split(args)
        y = as_tuple(self.block, self.block.output(inner, *a))
        y = tuple(np.where(_open(e, v), v, h if self.outputs_mode == "held" else 0 * h)
                  for v, h in zip(y, last, strict=True))
        return y[0] if len(y) == 1 else y

    def update(self, x, *args):
        inner, last, first = x
        a, e = self._split(args)
        y = as_tuple(self, self.output(x, *args))
        if self.block.stateful:
            ref = _parts(self.block, inner if self.states == "held" else first)
            inner = _gated_state(self.block, self.block.update(inner, *a), ref, e)
        return inner, tuple(np.asarray(v).copy() for v in y), first

    # --------------------------------------------------------------- gradient
    def wrap_rule(self, rule: Block, *, reciprocal: bool) -> Block:
        """The reciprocal (or tangent) of this block, from ``block``'s."""
        if reciprocal:
            return GatedAdjoint(rule, self)
        return Gated(rule, states=self.states, outputs=self.outputs_mode, gate="trace")

    def _runs(self, e: np.ndarray):
        """For each batch member, the runs of enabled steps the block sees as one
        sequence: ``(member, steps, ends)``, ``ends[i]`` the step where the value made at
        ``steps[i]`` stops being held (the next enabled step); with reset states each
        stretch of enabled steps is a run of its own."""
        on = np.asarray(e) > 0
        T = on.shape[0]
        for b in range(on.shape[1]):
            ks = np.flatnonzero(on[:, b])
            if not ks.size:
                continue
            ends = np.append(ks[1:], T) if self.outputs_mode == "held" else ks + 1
            if self.states == "held":
                yield b, ks, ends
            else:
                cut = np.flatnonzero(np.diff(ks) > 1) + 1
                yield from ((b, r, n) for r, n in zip(np.split(ks, cut), np.split(ends, cut),
                                                      strict=True))

    @staticmethod
    def _effective(dy: np.ndarray, b: int, ks: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """The output deltas the block's own steps ``ks`` receive: a value held until
        ``ends`` takes the deltas of every step it is held over."""
        c = np.concatenate([np.zeros((1, *dy.shape[2:]), dy.dtype), np.cumsum(dy[:, b], 0)])
        return c[ends] - c[ks]

    def param_grads(self, u, y, dy, resets=()):
        n = len(self.block.inputs)
        total: dict[str, np.ndarray] = {}
        for b, ks, ends in self._runs(u[n]):
            g = self.block.param_grads(
                tuple(a[ks, b][:, None] for a in u[:n]), tuple(a[ks, b][:, None] for a in y),
                tuple(self._effective(d, b, ks, ends)[:, None] for d in dy))
            for k, v in g.items():
                total[k] = total[k] + v if k in total else np.asarray(v)
        own = self.block.parameters()
        return {k: total.get(k, np.zeros_like(p)) for k, p in own.items()}

    def param_jvp(self, u, y, dparams):
        n = len(self.block.inputs)
        outs = [np.zeros_like(a) for a in y[:len(self.outputs)]]
        for b, ks, ends in self._runs(u[n]):
            d = self.block.param_jvp(tuple(a[ks, b][:, None] for a in u[:n]),
                                     tuple(a[ks, b][:, None] for a in y), dparams)
            for o, v in zip(outs, d, strict=True):
                if v is None:
                    continue
                for i, (k, end) in enumerate(zip(ks, ends, strict=True)):
                    o[k:end, b] = v[i, 0]
        return tuple(outs)

    def why_no_kernel(self) -> str:  # (no kernel: Block.kernel's None)
        return _NUMPY_ONLY

    def label(self) -> str:
        return self.block.label()

    @property
    def glyph(self):  # type: ignore[override]
        return self.block.glyph

    def fraction(self):
        return self.block.fraction()

    def input_signs(self):
        return self.block.input_signs()

    def config(self) -> dict:
        return {"block": self.block, "states": self.states, "outputs": self.outputs_mode,
                "gate": self.gate}


class GatedAdjoint(Block):
    """The reciprocal of a :class:`Gated` block: ``rule`` (the inner block's reciprocal)
    run in reversed time on the steps the forward gate was open (read from the trace);
    see the module."""

    stateful = True

    def __init__(self, rule: Block, forward: Gated):
        super().__init__(name=forward.name, inputs=rule.inputs,
                         outputs=rule.outputs + ("enable",), type_hints=None)
        self.rule, self.forward = rule, forward
        self.fwd_types = rule.fwd_types
        self.trace_reads = rule.trace_reads + (Read("enable"),)
        self.feedthrough = frozenset(rule.direct_inputs())
        self.memory = None
        hints = rule.type_hints
        self.type_hints = None if hints is None else (*hints, SignalType((), np.float64))

    def block_ports(self):
        return self.forward.block_ports()

    def read_type(self, read: Read) -> SignalType:
        if read.port == "enable":
            return SignalType((), np.float64)
        return self.rule.read_type(read)

    def infer(self, *t):
        n = len(self.rule.inputs)
        return (*self.rule.infer(*t[:n]), SignalType((), np.float64))

    def init_state(self, batch, in_types, out_types):
        rule_out = out_types[:-1]
        inner = self.rule.init_state(batch, in_types, rule_out) if self.rule.stateful else None
        acc = tuple(t.zeros(batch) for t in in_types)
        return inner, acc, _copy(inner)

    def _args(self, x, args):
        n = len(self.rule.inputs)
        dy, reads, e = args[:n], args[n:-1], args[-1]
        if self.forward.outputs_mode == "held":
            # (a rule without feedthrough reads no delta in its output: None there)
            dy = tuple(d if d is None else d + a for d, a in zip(dy, x[1], strict=True))
        return dy, reads, e

    def output(self, x, *args):
        dy, reads, e = self._args(x, args)
        du = as_tuple(self.rule, self.rule.output(x[0], *dy, *reads))
        du = tuple(np.where(_open(e, v), v, 0 * v) for v in du)
        return (*du, np.zeros_like(np.asarray(e, np.float64)))

    def update(self, x, *args):
        inner, acc, first = x
        dy, reads, e = self._args(x, args)
        if self.rule.stateful:
            ref = _parts(self.rule, inner if self.forward.states == "held" else first)
            inner = _gated_state(self.rule, self.rule.update(inner, *dy, *reads), ref, e)
        if self.forward.outputs_mode == "held":  # closed: keep summing; open: start again
            acc = tuple(np.where(_open(e, d), 0 * d, d) for d in dy)
        return inner, acc, first

    def sequence(self, x0, *U):  # in reversed time, like the loop runs it
        T = U[0].shape[0]
        outs = [None] * T
        x = x0
        for k in range(T - 1, -1, -1):
            uk = tuple(a[k] for a in U)
            outs[k] = self.output(x, *uk)
            x = self.update(x, *uk)
        return tuple(np.stack(col) for col in zip(*outs, strict=True))

    def why_no_kernel(self) -> str:  # (no kernel: Block.kernel's None)
        return _NUMPY_ONLY

    def label(self) -> str:
        return self.rule.label()

    @property
    def glyph(self):  # type: ignore[override]
        return self.rule.glyph

    def output_signs(self):
        return self.rule.output_signs()

    def config(self) -> dict:
        return {"rule": self.rule, "forward": self.forward}


def _copy(state: Any) -> Any:
    """A copy of a state's arrays (a block may update its state in place)."""
    if isinstance(state, tuple):
        return tuple(_copy(s) for s in state)
    if isinstance(state, np.ndarray):
        return state.copy()
    return state


__all__ = ["EdgeDetector", "EnablePort", "Gated", "GatedAdjoint", "TriggerPort", "delta_type"]
