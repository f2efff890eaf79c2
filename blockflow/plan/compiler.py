"""Compile a model once into a flat execution plan.

``compile(model)`` flattens subsystems, infers and checks every signal type, rejects
unconnected inputs and algebraic loops, then orders the blocks on the condensation DAG
of the dependency graph: a block outside every feedback loop becomes one whole-sequence
operation; each strongly connected component (a loop broken by delays) becomes a step
loop, generated as straight-line Python so the hot loop does no graph work and no name
lookups.  Signals live in integer-numbered slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx

from blockflow.backends.execute import make_loop
from blockflow.backends.interp import loop_mode
from blockflow.backends.ops import Op, Segment, SegmentKind, TraceRead
from blockflow.backends.policy import resolve_backend
from blockflow.core.block import Block
from blockflow.core.model import Model, feedthrough_graph, propagate_types
from blockflow.core.ports import Inport, Outport, Passthrough
from blockflow.core.rates import (
    ADJOINT_IO,
    BASE,
    FORWARD_IO,
    RateError,
    infer_rates,
    place_rate,
)
from blockflow.core.types import SignalType
from blockflow.core.wiring import Wired
from blockflow.errors import AlgebraicLoopError, SignalTypeError, SimulationError, WiringError
from blockflow.plan.cache import cached
from blockflow.plan.expand import expanded
from blockflow.plan.integrate import plant_blocks, with_states
from blockflow.plan.order import condensed_order, topological_order


class FlatModel(Wired):
    """The model with every subsystem expanded: blocks keyed by path (``"sub/inner"``)."""

    def __init__(self, name: str):
        self.name = name
        self.blocks: dict[str, Block] = {}
        self._init_wiring()

    def add(self, path: str, block: Block) -> None:
        self.blocks[path] = block
        self._touch()

    def connect(self, s: tuple[str, str], d: tuple[str, str]) -> None:
        self._wire(s, d)


def flatten(model: Model) -> FlatModel:
    """Expand subsystems; their Inports/Outports become pass-throughs named by path."""
    flat = FlatModel(model.name)

    def add_blocks(m: Model, prefix: str, top: bool) -> None:
        m = expanded(m)
        for name, b in m.blocks.items():
            path = prefix + name
            if isinstance(b, Model):
                add_blocks(b, path + "/", False)
            elif not top and isinstance(b, Inport):
                flat.add(path, Passthrough(name=name, inputs=("in",), outputs=b.outputs,
                                          declared=b.type))
            elif not top and isinstance(b, Outport):
                flat.add(path, Passthrough(name=name, inputs=b.inputs, outputs=("out",)))
            else:
                flat.add(path, b)

    def add_edges(m: Model, prefix: str) -> None:
        m = expanded(m)
        for (s, sp), (d, dp) in m.wires():
            sb, db = m.blocks[s], m.blocks[d]
            src = (f"{prefix}{s}/{sp}", "out") if isinstance(sb, Model) else (prefix + s, sp)
            dst = (f"{prefix}{d}/{dp}", "in") if isinstance(db, Model) else (prefix + d, dp)
            flat.connect(src, dst)
        for name, b in m.blocks.items():
            if isinstance(b, Model):
                add_edges(b, f"{prefix}{name}/")

    add_blocks(model, "", True)
    add_edges(model, "")
    return flat


@dataclass
class Plan:
    """A compiled model: the schedule, the slots and their types."""

    model: Model
    flat: FlatModel
    types: dict
    slots: dict  # (path, port) -> slot, for output and input ports alike
    slot_types: list[SignalType]
    segments: list[Segment]
    inports: dict[str, int]
    outports: dict[str, int]
    trace_reads: list[TraceRead] = field(default_factory=list)
    n_states: int = 0
    backend: str = "auto"
    #: path -> (rate, i/o convention) of every block off the base rate (see rates.py)
    rates: dict = field(default_factory=dict)

    @property
    def multirate(self) -> bool:
        return bool(self.rates)

    @property
    def order(self) -> list[str]:
        """Block paths in execution order."""
        return [op.path for seg in self.segments for op in seg.ops]

    @property
    def loops(self) -> list[list[str]]:
        """The feedback loops run step by step, each as its block paths in step order."""
        return [[op.path for op in s.ops] for s in self.segments
                if s.kind is SegmentKind.LOOP]

    def describe(self) -> str:
        lines = [f"plan for {self.model.name!r}: {len(self.order)} operations, "
                 f"{len(self.slot_types)} signals"]
        dt = self.model.dt
        for s in self.segments:
            names = ", ".join(op.path + (f" [{op.rate.text(dt)}]" if op.rate != BASE else "")
                              for op in s.ops)
            lines.append(f"  {s.kind.value:9s} {names}")
            lines += [f"            {op.path}: {op.block.discretisation()}" for op in s.ops
                      if op.block.discretisation()]
            if s.kind is SegmentKind.LOOP:
                lines.append(f"            {self.loop_backend(s)}")
        lines += [f"  {text}" for text in _solver_lines(self.model)]
        return "\n".join(lines)

    def compiled_loop(self, seg):
        """The compiled function a loop of this plan last ran (None if it never ran
        compiled); running keeps it beside the plan (:mod:`blockflow.backends.runtime`)."""
        from blockflow.backends.runtime import loop_state

        return loop_state(self, seg).compiled

    def loop_backend(self, seg) -> str:
        """How a loop runs under this plan's backend, and why."""
        from blockflow.backends.policy import explain
        from blockflow.backends.scalar import numbers_loop

        how = explain(self, seg)
        if how.startswith("compiled") and numbers_loop(seg, self.slot_types):
            how += ("\n            a run of batch 1: a loop of numbers, its signals and "
                    "states in registers")
        return how


def compile(model: Model, mode: str = "auto",  # noqa: A001 - networkx-style name
            backend: str | None = None) -> Plan:
    """Compile ``model`` into a :class:`Plan`, cached until the model or a parameter
    array of it is replaced (see :mod:`blockflow.plan.cache`).

    Parameters
    ----------
    model : Model
    mode : {"auto", "step"}
        ``"auto"`` runs blocks outside feedback loops over whole sequences; ``"step"``
        runs every block step by step (for testing the two paths against each other).
    backend : {"auto", "numpy", "numba"}, optional
        How feedback loops run (:mod:`blockflow.backends.loops`); default ``BLOCKFLOW_BACKEND``
        or ``"auto"``: compiled by numba where a loop has enough work.

    Raises
    ------
    WiringError
        An input is not connected.
    SignalTypeError
        A signal type cannot be inferred or types disagree.
    AlgebraicLoopError
        A cycle passes only through feedthrough blocks; the error lists them in order.
    """
    if mode not in ("auto", "step"):
        raise SimulationError(f"mode must be 'auto' or 'step', got {mode!r}")
    backend = resolve_backend(backend)

    def build():
        plan = _compile(model, mode)
        plan.backend = backend
        return plan

    return cached(model, f"plan:{mode}:{backend}", build)


def _check_periods(model: Model, dt: float, path: str = "") -> None:
    """A subsystem with a ``dt`` of its own must run at the top model's period: the plan
    steps every block at that period (its continuous blocks would be discretised at one
    period and stepped at another)."""
    for name, b in model.blocks.items():
        if isinstance(b, Model):
            here = f"{path}{name}"
            if b._dt is not None and not math.isclose(b._dt, dt, rel_tol=1e-9):
                raise RateError(
                    f"subsystem {here!r} has dt={b._dt:g} s but runs inside {model.name!r} "
                    f"stepped every {dt:g} s; leave its dt unset (it takes the outer "
                    "period), or give its blocks sample_time=" f"{b._dt:g} (a slower rate, "
                    "with RateTransition blocks at its edges)")
            _check_periods(b, dt, here + "/")


def _compile(model: Model, mode: str, flat: FlatModel | None = None) -> Plan:
    _check_periods(model, model.dt)
    if model._dt is None and model.reciprocal_of is None:
        continuous = next(_continuous_blocks(model), None)
        if continuous:
            path, b = continuous
            raise SimulationError(
                f"block {path!r} ({type(b).__name__}) is continuous, and model "
                f"{model.name!r} has no sample period to discretise or integrate it at; "
                f"give Model({model.name!r}, dt=...) in seconds")
    flat = flat or flatten(model)
    for path, b in flat.blocks.items():
        for p in b.inputs:
            if flat.source_of(path, p) is None:
                raise WiringError(
                    f"input {path}.{p} of block {path!r} ({type(b).__name__}) is not "
                    "connected; wire a source to it (a Constant if it should be fixed)"
                )
    index = {p: i for i, p in enumerate(flat.blocks)}
    ft_order = topological_order(_feedthrough_succ(flat, index))
    _check_algebraic_loops(flat, ft_order)
    types = propagate_types(flat)
    for path, b in flat.blocks.items():
        for p in (*b.inputs, *b.outputs):
            if (path, p) not in types:
                raise SignalTypeError(
                    f"the type of {path}.{p} (block {type(b).__name__}) cannot be inferred; "
                    "declare the Inport's shape, or give the delays in its loop a shape "
                    "(UnitDelay(shape=...), Delay(n, shape=...), Integrator(shape=...))"
                )
    return _schedule(model, flat, types, mode, ft_order)


def _solver_lines(model: Model, prefix: str = ""):
    """How each continuous subsystem is integrated (plan descriptions)."""
    if model.solver is not None:
        level = with_states(model)
        ints = [n for n, b in level.blocks.items() if b.continuous_state]
        if ints:
            h = model.dt / model.substeps
            plant = plant_blocks(level)
            where = repr(prefix.rstrip("/") or model.name)
            yield (f"continuous subsystem {where}: states {', '.join(ints)}"
                   f"{'; f(x, u) by ' + ', '.join(plant) if plant else ''}; integrated by "
                   f"{model.solver}, {model.substeps} step(s) of h={h:.6g} s per period")
    for name, b in model.blocks.items():
        if isinstance(b, Model):
            yield from _solver_lines(b, f"{prefix}{name}/")


def _continuous_blocks(model: Model, prefix: str = ""):
    """``(path, block)`` of every continuous block (discretised or integrated) in ``model``."""
    for name, b in model.blocks.items():
        if isinstance(b, Model):
            yield from _continuous_blocks(b, f"{prefix}{name}/")
        elif b.continuous_state or b.discretisation() is not None:
            yield prefix + name, b


def _feedthrough_succ(flat: FlatModel, index: dict) -> list[list[int]]:
    """Successor lists, by block number, of the wires along which a signal passes within
    one step (no delay)."""
    direct = [b.direct_inputs() for b in flat.blocks.values()]
    succ: list[list[int]] = [[] for _ in direct]
    for (d, dp), (s, _) in flat._src.items():
        j = index[d]
        if dp in direct[j]:
            succ[index[s]].append(j)
    return succ


def _check_algebraic_loops(flat: FlatModel, ft_order: list[int] | None) -> None:
    if ft_order is not None:  # acyclic: the usual case
        return
    # the loop to report: inside one strongly connected component (found once, linear)
    g = feedthrough_graph(flat)
    scc = next(c for c in nx.strongly_connected_components(g)
               if len(c) > 1 or any(g.has_edge(n, n) for n in c))
    sub = g.subgraph(scc)
    order = {p: i for i, p in enumerate(flat.blocks)}
    cycle = nx.find_cycle(sub, source=min(scc, key=order.__getitem__))
    loop = [s for s, _ in cycle]
    wires = " -> ".join(f"{s}.{g.edges[s, d]['port'][0]}" for s, d in cycle)
    raise AlgebraicLoopError(
        f"algebraic loop (no delay breaks it): {wires} -> {cycle[0][0]}; insert a "
        "UnitDelay somewhere in the loop, or use blocks without direct feedthrough",
        loop,
    )


def _schedule(model: Model, flat: FlatModel, types: dict, mode: str,
              ft_order: list[int]) -> Plan:
    paths = list(flat.blocks)
    slots: dict[tuple[str, str], int] = {}
    slot_types: list[SignalType] = []
    # outputs get slots in dependency order, so that an alias (a pass-through) can reuse
    # the slot of its source; inputs then read their source's slot
    for i in ft_order:
        path = paths[i]
        b = flat.blocks[path]
        for p in b.outputs:
            if b.alias:
                slots[(path, p)] = slots[flat.source_of(path, b.inputs[0])]
            else:
                slots[(path, p)] = len(slot_types)
                slot_types.append(types[(path, p)])
        if b.residuals:  # recorded for the gradient rules, typed from the port types
            rt = b.residual_types(tuple(types[(path, p)] for p in b.inputs),
                                  tuple(types[(path, p)] for p in b.outputs))
            for p, t in zip(b.residuals, rt, strict=True):
                types[(path, p)] = t
                slots[(path, p)] = len(slot_types)
                slot_types.append(t)
    for path, b in flat.blocks.items():
        for p in b.inputs:
            slots[(path, p)] = slots[flat.source_of(path, p)]
    trace_reads = []
    ops: dict[str, Op] = {}
    n_states = 0
    for path, b in flat.blocks.items():
        if b.alias or (not b.outputs and not b.stateful):
            continue
        ins = [slots[(path, p)] for p in b.inputs]
        for r in b.trace_reads:
            ins.append(len(slot_types))
            trace_reads.append(TraceRead(len(slot_types), path, r))
            slot_types.append(b.read_type(r))
        state = None
        if b.stateful:
            state, n_states = n_states, n_states + 1
        ops[path] = Op(path, b, tuple(ins), tuple(slots[(path, p)] for p in b.recorded), state)
    rates = _assign_rates(model, flat, ops)
    producer = {s: i for i, op in enumerate(ops.values()) for s in op.outs}
    by_number = list(ops.values())  # numbered in the model's order, as the blocks are
    dep: list[list[int]] = [[] for _ in by_number]
    dep_ft: list[list[int]] = [[] for _ in by_number]
    for j, op in enumerate(by_number):
        direct = op.block.direct_inputs()
        for p, s in zip(op.block.inputs, op.ins, strict=False):  # trace reads come after
            i = producer.get(s)
            if i is None:
                continue
            dep[i].append(j)
            if p in direct:
                dep_ft[i].append(j)
    segments: list[Segment] = []

    def is_source(o: Op) -> bool:
        return o.block.source or isinstance(o.block, Inport)

    def kind_of(o: Op) -> SegmentKind:
        return SegmentKind.EXTERNAL if isinstance(o.block, Inport) else SegmentKind.SOURCE

    if mode == "step":
        order = [by_number[j] for j in topological_order(dep_ft)]
        segments += [Segment(kind_of(o), [o]) for o in order if is_source(o)]
        body = [o for o in order if not is_source(o)]
        if body:
            segments.append(Segment(SegmentKind.LOOP, body))
    else:
        for members in condensed_order(dep):
            if len(members) == 1:
                (j,) = members
                o = by_number[j]
                if j not in dep[j]:  # not a block feeding itself through a delay
                    kind = kind_of(o) if is_source(o) else SegmentKind.SEQUENCE
                    segments.append(Segment(kind, [o]))
                    continue
            order = topological_order(dep_ft, members)
            segments.append(Segment(SegmentKind.LOOP, [by_number[j] for j in order]))
    for seg in segments:
        if seg.kind is SegmentKind.LOOP:
            seg.loop = make_loop(seg.ops, slot_types)
            seg.why_numpy, seg.interpreted = loop_mode(seg.ops)
    inports = {p: slots[(p, b.outputs[0])]
               for p, b in flat.blocks.items() if isinstance(b, Inport)}
    outports = {p: slots[(p, b.inputs[0])]
                for p, b in flat.blocks.items() if isinstance(b, Outport)}
    return Plan(model, flat, types, slots, slot_types, segments, inports, outports,
                trace_reads, n_states, rates=rates)


def _assign_rates(model: Model, flat: FlatModel, ops: dict) -> dict:
    """Give every op its rate and i/o convention; returns those off the base rate.

    A forward model's rates are inferred along its wires; a transformed model (its
    blocks carry ``rate_hint``) takes them from the forward plan, and a reciprocal reads
    and writes as the transpose (summed over held steps in, impulses out).
    """
    hinted = any(b.rate_hint is not None for b in flat.blocks.values())
    adjoint = model.reciprocal_of is not None
    if hinted:
        table = {p: b.rate_hint or (BASE, FORWARD_IO) for p, b in flat.blocks.items()}
    else:
        table = {p: (r, flat.blocks[p].rate_io) for p, r in infer_rates(flat, model.dt).items()}
    off_base = {}
    for path, b in flat.blocks.items():
        rate, hint = table[path]
        place_rate(b, rate)  # (beside the block: compiling writes nothing into it)
        # a hint is how the transposed block reads and writes: a reciprocal transposes it
        # (twice: the original's, ADJOINT_IO being an involution)
        io = ADJOINT_IO[hint] if adjoint and hinted else hint
        if rate != BASE or hint != FORWARD_IO:
            off_base[path] = (rate, io)
        op = ops.get(path)
        if op is not None:
            op.rate, op.io = rate, io
    return off_base
