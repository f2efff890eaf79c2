"""Models: blocks wired into a graph, usable as a block.

The wiring is kept as two dicts (:mod:`blockflow.core.wiring`); ``model.graph`` shows it
as a ``networkx.MultiDiGraph`` (nodes are block names; an edge ``src -> dst`` carries
``src_port`` and ``dst_port``).
Connections check signal types as they are made: each new wire propagates the types it
makes known through the model, and a mismatch raises at once, naming both ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import networkx as nx
import numpy as np

from blockflow.core.block import Block, PortRef
from blockflow.core.ports import Inport, Outport
from blockflow.core.solvers import check_solver
from blockflow.core.types import SignalType
from blockflow.core.wiring import PortKey, Wired
from blockflow.errors import SignalTypeError, WiringError


class Model(Wired, Block):
    """A block diagram.  A Model is itself a block (a subsystem) inside another model.

    Parameters
    ----------
    name : str, optional
    dt : float, optional
        The base sample period in seconds.  A subsystem without one runs at its parent's;
        a top-level model without one at 1 (time in steps).
    solver : {"euler", "heun", "rk4", "rk45"}, optional
        Integrate the continuous subsystem that this model's ``Integrator`` blocks form
        (``x' = f(x, u)``: the integrators and the blocks without state or sample time
        on the paths from their outputs back to their inputs) with this explicit
        Runge-Kutta method over each sample period, inputs held over the period.  The
        gradient through it is exact (that of the discretised map).  ``None``: each
        continuous block is discretised on its own (exact for linear blocks; an
        ``Integrator`` in a nonlinear loop is then forward Euler).
    substeps : int, default 1
        Solver steps per sample period.

    Examples
    --------
    >>> from blocks import Gain, UnitDelay
    >>> m = Model("echo")
    >>> u, g, d, y = m.add(Inport("u"), Gain(0.5), UnitDelay(), Outport("y"))
    >>> m.chain(u, g, d, y)
    >>> m.signal_type(d.y)
    SignalType(shape=(), dtype=float64)
    """

    #: the name of the forward model, when this model is a reciprocal (diagrams, files)
    reciprocal_of: str | None = None

    def __init__(self, name: str | None = None, *, dt: float | None = None,
                 solver: str | None = None, substeps: int = 1):
        self._dt: float | None = None
        self.blocks: dict[str, Block] = {}
        self._types: dict[PortKey, SignalType] = {}
        self._init_wiring()
        self._deferred = 0  # > 0 inside deferred_types(): no inference per wire
        self._stale = False  # types left to be inferred at first use (deferred, unchecked)
        self._scan: dict[str, int] = {}  # separable block -> its inputs known up to here
        self._version = 0
        super().__init__(name=name or "model")
        if dt is not None:
            self.dt = dt
        self._solver = check_solver(solver, substeps, f"model {self.name!r}")

    @property
    def solver(self) -> str | None:
        """The Runge-Kutta method of this model's continuous subsystem (None: none)."""
        return self._solver[0]

    @property
    def substeps(self) -> int:
        """Solver steps per sample period."""
        return self._solver[1]

    def set_solver(self, solver: str | None, substeps: int = 1) -> Model:
        """Choose the continuous subsystem's integration method (see the class)."""
        self._solver = check_solver(solver, substeps, f"model {self.name!r}")
        self._version += 1
        return self

    @property
    def dt(self) -> float:
        """The base sample period (s): this model's own, else its parent's, else 1."""
        if self._dt is not None:
            return self._dt
        return self._model.dt if self._model is not None else 1.0

    @dt.setter
    def dt(self, value: float | None) -> None:
        if value is not None:
            value = self.scalar("dt", value, above=0.0)
        self._dt = None if value is None else float(value)
        self._version += 1

    # ---------------------------------------------------------- as a block
    @property
    def inputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(n for n, b in self.blocks.items() if isinstance(b, Inport))

    @property
    def outputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(n for n, b in self.blocks.items() if isinstance(b, Outport))

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        return any(b.stateful for b in self.blocks.values())

    @property
    def feedthrough(self) -> frozenset:  # type: ignore[override]
        """Inputs with a path of feedthrough blocks to some output."""
        g = feedthrough_graph(self)
        outs = set(self.outputs)
        return frozenset(i for i in self.inputs if outs & (nx.descendants(g, i) | {i}))

    def infer(self, *in_types):
        seeds = dict(zip(self.inputs, in_types, strict=True))
        types = propagate_types(self, seeds=seeds)
        return tuple(types.get((o, "u")) for o in self.outputs)

    def version(self) -> tuple:
        """Changes whenever this model or a subsystem in it is edited."""
        return (self._version, *(b.version() for b in self.blocks.values()
                                 if isinstance(b, Model)))

    # -------------------------------------------------------------- building
    def add(self, *blocks: Block):
        """Add blocks; returns the block, or a tuple of them when several are given."""
        for b in blocks:
            if not isinstance(b, Block):
                raise WiringError(f"model {self.name!r}: add() takes blocks, got {b!r}")
            if b.name in self.blocks:
                raise WiringError(
                    f"model {self.name!r} already has a block named {b.name!r}; "
                    "give the new block another name"
                )
            if any(c in b.name for c in "/:.") or not b.name:
                raise WiringError(f"block name {b.name!r} may not be empty or contain / : .")
            owner = b.__dict__.get("_model")
            if owner is not None and owner is not self:
                raise WiringError(
                    f"block {b.name!r} ({type(b).__name__}) already belongs to model "
                    f"{owner.name!r}; a block (and its parameters) lives in one model: "
                    "add block.copy() instead"
                )
            b._model = self
            self.blocks[b.name] = b
        self._touch()
        self._version += 1
        if self._deferred:
            return blocks[0] if len(blocks) == 1 else blocks
        self._settle()
        self._types = propagate_types(self, start=[b.name for b in blocks], types=self._types,
                                      inplace=True, scan=self._scan)
        return blocks[0] if len(blocks) == 1 else blocks


    def block(self, path: str) -> Block:
        """The block at ``path`` (``"sub/inner"`` reaches into subsystems)."""
        head, _, rest = path.partition("/")
        b = self.blocks.get(head)
        if b is None:
            raise WiringError(f"model {self.name!r} has no block {head!r}; it has "
                              f"{sorted(self.blocks)}")
        if rest:
            if not isinstance(b, Model):
                raise WiringError(f"block {head!r} in {self.name!r} is not a subsystem")
            return b.block(rest)
        return b

    def _resolve(self, ref, direction: str) -> PortRef:
        if isinstance(ref, str):
            name, _, port = ref.partition(".")
            blk = self.block(name)
            ref = blk[port] if port else blk
        if isinstance(ref, Block):
            ports = ref.outputs if direction == "out" else ref.inputs
            if len(ports) != 1:
                kind = "output" if direction == "out" else "input"
                raise WiringError(
                    f"block {ref.name!r} has {len(ports)} {kind}s {list(ports)}; "
                    f"name the port, e.g. {ref.name}.{ports[0] if ports else '?'}"
                )
            ref = PortRef(ref, ports[0])
        if not isinstance(ref, PortRef):
            raise WiringError(f"model {self.name!r}: cannot connect {ref!r}")
        if self.blocks.get(ref.block.name) is not ref.block:
            raise WiringError(f"block {ref.block.name!r} is not in model {self.name!r}; "
                              "add() it first")
        if ref.port not in ref.block.port_names(direction):
            ports = ref.block.outputs if direction == "out" else ref.block.inputs
            kind = "output" if direction == "out" else "input"
            raise WiringError(f"block {ref.block.name!r} ({type(ref.block).__name__}) has no "
                              f"{kind} port {ref.port!r}; its {kind}s are {list(ports)}")
        return ref

    def connect(self, src, dst) -> None:
        """Wire output ``src`` to input ``dst``.

        Either end is a port reference (``block.y``, ``block["y"]``), a block with a single
        port of that direction, or a string ``"block.port"``.
        """
        s, d = self._resolve(src, "out"), self._resolve(dst, "in")
        prior = self.source_of(d.block.name, d.port)
        if prior is not None:
            raise WiringError(
                f"input {d.block.name}.{d.port} is already driven by {prior[0]}.{prior[1]}; "
                f"an input takes one source (add a Sum to combine {s} with it)"
            )
        self._wire((s.block.name, s.port), (d.block.name, d.port))
        self._version += 1
        try:  # only what the new wire touches; put back as it was if it fails
            if not self._deferred:
                self._settle()
            if self._deferred or self._joins_uniformly(s, d) or self._joins_separately(s, d):
                return
            propagate_types(self, start=[d.block.name], types=self._types, inplace=True,
                            scan=self._scan)
        except SignalTypeError as e:
            self._unwire((d.block.name, d.port))
            self._types.pop((d.block.name, d.port), None)  # (an open input has no type)
            self._scan.clear()
            raise SignalTypeError(f"connecting {s} -> {d}: {e}") from None

    @contextmanager
    def deferred_types(self, *, check: bool = True) -> Iterator[Model]:
        """Add and wire many blocks, inferring signal types once at the end.

        Inside the block, ``add`` and ``connect`` check names and ports but not types;
        on leaving it every type is inferred in one pass (linear in the model), and a
        mismatch raises the same :class:`SignalTypeError`, naming the block and port.
        For generated models of thousands of blocks; wiring by hand, the check at each
        ``connect`` points at the line that is wrong.  ``check=False`` leaves even that
        pass to the first use that needs a type (``signal_type``, the next ``add`` or
        ``connect``; compiling checks every type anyway): for a model built only to be
        compiled, such as a reciprocal, which would otherwise be inferred twice.

        Examples
        --------
        >>> from blocks import Gain, Sum
        >>> m = Model("wide")
        >>> with m.deferred_types():
        ...     u, s, y = m.add(Inport("u"), Sum("+" * 3), Outport("y"))
        ...     for i in range(3):
        ...         g = m.add(Gain(float(i + 1), name=f"g{i}"))
        ...         m.chain(u, g, s[f"u{i + 1}"])
        ...     m.connect(s, y)
        >>> m.signal_type(s.y)
        SignalType(shape=(), dtype=float64)
        """
        self._deferred += 1
        try:
            yield self
        except BaseException:
            self._deferred -= 1
            if not self._deferred:  # the wires made so far, typed as far as they go
                try:
                    self._retype()
                except SignalTypeError:
                    pass  # (the error raised inside the block is the one to see)
            raise
        self._deferred -= 1
        if not self._deferred:
            if check:
                self._retype()
            else:
                self._stale = True

    def _retype(self) -> None:
        """Infer every type afresh (after a change that can make a known type unknown)."""
        self._stale = False
        self._types = propagate_types(self)
        self._scan = {}

    def _settle(self) -> None:
        """Infer the types left to first use (``deferred_types(check=False)``)."""
        if self._stale:
            self._retype()

    def _joins_uniformly(self, s: PortRef, d: PortRef) -> bool:
        """Whether the new wire ``s -> d`` brings a uniform block (``Block.uniform``) one
        more input of the type its outputs have already: then no type changes anywhere,
        and the wire is recorded without inferring the block again."""
        b = d.block
        if not b.uniform:
            return False
        t = self._types.get((s.block.name, s.port))
        if t is None:  # an input of unknown type changes nothing yet
            return True
        if any(self._types.get((b.name, p)) != t for p in b.outputs):
            return False
        self._types[(b.name, d.port)] = t
        return True

    def _joins_separately(self, s: PortRef, d: PortRef) -> bool:
        """Whether the new wire ``s -> d`` into a separable block (``Block.separable``) is
        settled by checking that input alone: so while some other input is still unknown
        (the outputs stay unknown).  Raises the block's type error for a wrong type."""
        b = d.block
        return b.separable and _separable_pending(self, b.name, b, {d.port}, self._types,
                                                  self._scan)

    def disconnect(self, dst) -> None:
        """Remove the wire driving input ``dst``."""
        d = self._resolve(dst, "in")
        if self.source_of(d.block.name, d.port) is None:
            raise WiringError(f"input {d} is not connected")
        self._unwire((d.block.name, d.port))
        self._version += 1
        self._retype()

    def chain(self, *items) -> None:
        """Connect each item's output to the next one's input: ``m.chain(u, g, d, y)``."""
        for a, b in zip(items, items[1:], strict=False):
            self.connect(a, b)

    # -------------------------------------------------------------- reading
    def signal_type(self, ref) -> SignalType | None:
        """The inferred type of an output port (``None`` while unknown)."""
        r = self._resolve(ref, "out")
        self._settle()
        return self._types.get((r.block.name, r.port))

    def parameters(self, *, trainable_only: bool = True) -> dict[str, np.ndarray]:
        """Every parameter, keyed ``"path/to/block.name"``: the arrays themselves."""
        out = {}
        for n, b in self.blocks.items():
            for pn, arr in b.parameters(trainable_only=trainable_only).items():
                sep = "/" if isinstance(b, Model) else "."
                out[f"{n}{sep}{pn}"] = arr
        return out

    def held(self) -> dict[str, np.ndarray]:
        """The elements training holds, keyed like :meth:`parameters` (see Block.held)."""
        out = {}
        for n, b in self.blocks.items():
            for pn, mask in b.held().items():
                out[f"{n}{'/' if isinstance(b, Model) else '.'}{pn}"] = mask
        return out

    def astype(self, dtype) -> Model:
        """Cast every parameter and typed Inport of the model to ``dtype`` in place."""
        for b in self.blocks.values():
            b.astype(dtype)
        self._version += 1
        self._retype()
        return self

    def label(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return (f"<Model {self.name!r}: {len(self.blocks)} blocks, "
                f"{len(self._src)} connections>")

    def draw(self, path, *, collapse: bool = False, labels: str = "auto"):
        """Write the diagram to ``path`` (.svg, .dot, .png, .pdf); see :func:`export.draw`
        (the drawing layer registers itself in :data:`DRAWING`)."""
        return DRAWING["draw"](self, path, collapse=collapse, labels=labels)

    def _repr_svg_(self) -> str | None:
        """The diagram in a notebook (None, a plain repr, where nothing draws)."""
        svg = DRAWING.get("svg")
        return None if svg is None else svg(self)


#: how models are drawn, registered by the drawing layer (blockflow.io.export, imported with
#: the package): ``draw(model, path, **options)`` and ``svg(model) -> str``; the model
#: itself knows nothing of diagrams
DRAWING: dict[str, Callable] = {}


def feedthrough_graph(model) -> nx.DiGraph:
    """Block-to-block edges along which a signal passes within one step (no delay);
    each edge keeps its ``(src_port, dst_port)`` as ``port``."""
    g = nx.DiGraph()
    g.add_nodes_from(model.blocks)
    for (s, sp), (d, dp) in model.wires():
        if dp in model.blocks[d].direct_inputs():
            g.add_edge(s, d, port=(sp, dp))
    return g


def propagate_types(model, *, seeds: dict | None = None, start: Iterable[str] | None = None,
                    types: dict | None = None, inplace: bool = False,
                    scan: dict | None = None) -> dict[PortKey, SignalType]:
    """Infer every port type it can, by a worklist over the model's blocks.

    ``types`` maps ``(block, port)`` to types for input and output ports alike.  Starting
    from ``start`` (all blocks when omitted), each block infers its output types from its
    known input types; changed outputs queue their consumers.  Shapes may only go from
    unknown to known; dtypes may only widen (so feedback loops settle).

    ``inplace=True`` updates ``types`` itself (what a new wire touches costs only its
    own work, not a copy of every type) and puts it back as it was if inference fails.
    ``scan`` (with ``inplace``) keeps, for each separable block, how many of its inputs
    are known in ``types`` (so finding its first unknown input is amortised constant
    time); it is emptied if inference fails.
    """
    if inplace and types is not None:
        undo: dict = {}
        try:
            return _propagate(model, seeds or {}, start, _Logged(types, undo),
                              {} if scan is None else scan)
        except Exception:
            if scan is not None:
                scan.clear()
            for k, v in undo.items():
                if v is _MISSING:
                    types.pop(k, None)
                else:
                    types[k] = v
            raise
    return _propagate(model, seeds or {}, start, {} if types is None else dict(types), {})


_MISSING = object()


class _Logged(dict):
    """A view of a types dict that records each key's first previous value (to undo)."""

    def __init__(self, base: dict, undo: dict):
        super().__init__()
        self.base, self.undo = base, undo

    def get(self, key, default=None):
        return self.base.get(key, default)

    def __setitem__(self, key, value):
        if key not in self.undo:
            self.undo[key] = self.base.get(key, _MISSING)
        self.base[key] = value


def _propagate(model, seeds: dict, start, types, scan: dict) -> dict[PortKey, SignalType]:
    blocks = model.blocks
    queue = deque(blocks if start is None else start)
    queued = set(queue)
    # the inputs whose source changed, of blocks queued only for that (a uniform block
    # checks just those against its known type: linear in a wide Sum's inputs)
    changed: dict[str, set] = {}
    budget = 20 * (len(blocks) + 1) ** 2
    while queue:
        budget -= 1
        if budget < 0:
            raise SignalTypeError(f"model {model.name!r}: signal types do not settle")
        name = queue.popleft()
        queued.discard(name)
        b = blocks[name]
        ports = changed.pop(name, None)
        if ports is not None and b.uniform and _uniform_unchanged(model, name, b, ports,
                                                                  types):
            continue
        if ports is not None and b.separable and _separable_pending(model, name, b, ports,
                                                                    types, scan):
            continue
        ins = []
        for p in b.inputs:
            src = model.source_of(name, p)
            t = types.get(src) if src else None
            if t is not None:
                types[(name, p)] = t
            ins.append(t)
        if isinstance(b, Inport):
            outs = _inport_type(b, seeds.get(name))
        else:
            try:
                outs = b.infer(*ins)
            except SignalTypeError:
                raise
            except Exception as e:  # a block's infer failed on these types
                raise b.type_error(f"cannot infer output types from inputs "
                                   f"{[str(t) for t in ins]}: {e}") from None
        hints = b.type_hints
        if hints is not None:  # types known from elsewhere (a transform's forward model)
            outs = tuple(t if t is not None else h for t, h in zip(outs, hints, strict=True))
        if len(outs) != len(b.outputs):
            raise b.type_error(f"infer() returned {len(outs)} types for outputs "
                               f"{list(b.outputs)}")
        moved = set()
        for p, t in zip(b.outputs, outs, strict=True):
            old = types.get((name, p))
            if t is None or t == old:
                continue
            if old is not None and old.shape != t.shape:
                raise b.type_error(f"output type changes from {old} to {t} around a loop",
                                   port=p)
            if old is not None:
                t = SignalType(t.shape, np.result_type(old.dtype, t.dtype))
                if t == old:
                    continue
            types[(name, p)] = t
            moved.add(p)
        if moved:  # (one pass over the block's wires, however many outputs moved)
            for sp, d, dp in model.readers(name):
                if sp not in moved:
                    continue
                if d not in queued:
                    queue.append(d)
                    queued.add(d)
                    changed[d] = set()
                if d in changed:
                    changed[d].add(dp)
    return types.base if isinstance(types, _Logged) else types


def _uniform_unchanged(model, name: str, b, ports: set, types) -> bool:
    """Whether the inputs ``ports`` of the uniform block ``name`` now carry exactly the type
    its outputs have (then nothing changes; their types are recorded)."""
    outs = {types.get((name, p)) for p in b.outputs}
    if len(outs) != 1 or None in outs:
        return False
    (t,) = outs
    new = {p: types.get(model.source_of(name, p)) for p in ports}
    if any(v is not None and v != t for v in new.values()):
        return False
    for p, v in new.items():
        if v is not None:
            types[(name, p)] = v
    return True


def _separable_pending(model, name: str, b, ports: set, types, scan: dict) -> bool:
    """Whether the separable block ``name`` has checked its inputs ``ports`` on their own
    and still waits for another input (its outputs stay unknown: nothing to infer)."""
    if any(types.get((name, p)) is not None for p in b.outputs):
        return False  # known outputs: a changed input may change them
    for p in ports:
        t = types.get(model.source_of(name, p))
        if t is not None:
            try:
                b.check_input(p, t)
            except SignalTypeError:
                raise
            except Exception as e:
                raise b.type_error(f"cannot check input {p!r} of type {t}: {e}") from None
            types[(name, p)] = t
    return _first_unknown(b, name, types, scan) < len(b.inputs)


def _first_unknown(b, name: str, types, scan: dict) -> int:
    """The position of the first input of ``name`` whose type is unknown in ``types``
    (``len(b.inputs)`` when all are known), resuming where the last search stopped:
    input types only go from unknown to known while ``scan`` is kept."""
    i, ins = scan.get(name, 0), b.inputs
    while i < len(ins) and types.get((name, ins[i])) is not None:
        i += 1
    scan[name] = i
    return i


def _inport_type(b: Inport, outer: SignalType | None):
    if b.type is None or outer is None:
        return (b.type or outer,)
    if b.type.shape != outer.shape:
        raise b.type_error(f"declared shape {b.type.shape} but the parent feeds {outer.shape}",
                           port="y")
    return (b.type,)
