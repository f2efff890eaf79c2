"""The block contract.

A block declares its ports and whether inputs reach outputs within the same step
(``feedthrough``), and provides:

- ``output(x, *u)``: the step equation, ``y(k) = g(x(k), u(k))``; ``x`` is the state
  (``None`` for stateless blocks); one array per input, each with a leading batch axis;
  returns one array, or a tuple when the block has several outputs;
- ``update(x, *u)``: stateful blocks only, ``x(k+1) = f(x(k), u(k))``;
- ``sequence(x0, *U)``: optional, the same over whole ``(T, B, ...)`` arrays; the
  scheduler uses it wherever the block sits outside every feedback loop.  Stateless
  blocks whose ``output`` broadcasts over leading axes get it for free;
- ``infer(*in_types)``: output types from input types (``None`` = not yet known);
- the gradient rules, right under the forward rule: ``vjp`` (stateless blocks: the
  Jacobian transpose applied to output deltas), ``jvp`` (its tangent), ``param_grads``
  (``dJ/dw = sum_k delta(k) a(k)``), or ``reciprocal()`` returning a whole reciprocal block
  (stateful linear blocks: their transposed, anticausal realisation).

Everything the engine reads from a block is declared on :class:`Block` below, with its
default: the class flags (``feedthrough``, ``stateful``, ``linear``, ``nondifferentiable``,
``source``, ``alias``, ``junction``, ``display``), the attributes a transform fills in
(``fwd_types``, ``type_hints``, ``trace_reads``), and the methods (``read_type``,
``config``, the rules above).  The engine never probes for them with ``getattr``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import math
import operator
from typing import Any, ClassVar, NamedTuple

import numpy as np

from blockflow.core.rates import common_rate, placed_rate
from blockflow.core.types import PortTypes, SignalType
from blockflow.errors import (
    ParameterError,
    PortError,
    ReciprocalNotDefinedError,
    SignalTypeError,
    WiringError,
)

_counter = itertools.count()


class PortRef:
    """A reference to one port of one block, as used by ``Model.connect``."""

    __slots__ = ("block", "port")

    def __init__(self, block: Block, port: str):
        self.block = block
        self.port = port

    def __repr__(self) -> str:
        return f"{self.block.name}.{self.port}"


class Read(NamedTuple):
    """A forward signal a derived block reads at every step (bound to a slot by the plan).

    ``forcing=False``: the recorded value of the forward block's port ``port``;
    ``forcing=True``: the output change at ``port`` that parameter directions cause
    (forward mode, :class:`~blockflow.gradient.adjoint.Forced`).
    """

    port: str
    forcing: bool = False


class Block:
    """Base class of every block.

    Parameters
    ----------
    name : str, optional
        Name of the block inside its model; a unique one is made up when omitted.
    inputs, outputs : tuple of str, optional
        Port names overriding the class defaults (reciprocal blocks keep their forward
        block's port names with the directions swapped).
    allow_nonfinite : bool, default False
        Accept NaN or infinite parameter values (refused otherwise, at construction).
    type_hints : tuple, optional
        Output types known from elsewhere (transforms pass the forward model's types).
    """

    inputs: tuple[str, ...] = ("u",)
    outputs: tuple[str, ...] = ("y",)
    #: True: every input reaches every output within a step; False: none does (a delay);
    #: or a frozenset of the input names that do.
    feedthrough: ClassVar[bool | frozenset] = True
    stateful: ClassVar[bool] = False
    #: a linear block's Jacobian does not depend on the forward signals
    linear: ClassVar[bool] = False
    #: gradients through this block are zero by definition (sign, quantiser, sources)
    nondifferentiable: ClassVar[bool] = False
    #: sources produce their whole sequence with ``generate(T, B)``
    source: ClassVar[bool] = False
    #: the outputs have the common type of the inputs (``same_type``: Sum, Product, a
    #: junction): wiring one more input of that type changes nothing, so ``connect``
    #: checks it in constant time (a Sum of 16,000 inputs builds in linear time)
    uniform: ClassVar[bool] = False
    #: a model's external input, supplied by the caller (Inport)
    external: ClassVar[bool] = False
    #: random sources: ``generate(T, B, streams)`` draws member ``b`` from ``streams[b]``
    #: (a ``numpy.random.SeedSequence`` per member, from its run seed and the block's path)
    random: ClassVar[bool] = False
    #: shown on diagrams; defaults to the class name
    symbol: ClassVar[str | None] = None
    #: how diagrams draw the block: "sum" (a circle), "gain" (a triangle), "delay" (a
    #: z^-n box), or None (a box with a field per port)
    glyph: ClassVar[str | None] = None
    #: stateful linear blocks: how many steps back the output reaches (None: unbounded)
    memory: int | None = None
    #: a pass-through: its output *is* its input's signal (no operation, no slot)
    alias: ClassVar[bool] = False
    #: the reciprocal of a branching point: a summing junction made by the transform
    junction: ClassVar[bool] = False
    #: a sink whose input plots show (Scope)
    display: ClassVar[bool] = False
    #: derived blocks: the forward block's port types
    fwd_types: PortTypes | None = None
    #: output types a transform knew from the forward model, used where ``infer`` cannot
    #: tell (a loop of delays with no shape of its own)
    type_hints: tuple | None = None
    #: derived blocks: forward signals read at every step, after the block's inputs
    trace_reads: tuple[Read, ...] = ()
    #: what the gradient rules need from the forward pass beyond inputs and outputs
    #: (pre-activations, states): ``output`` returns these after the outputs, the trace
    #: records them (``trace["mlp.s0"]``), and ``vjp``/``jvp``/``param_grads`` find them in
    #: ``y`` after the outputs.  Diagrams and the reciprocal transform ignore them.
    residuals: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        name: str | None = None,
        inputs: tuple[str, ...] | None = None,
        outputs: tuple[str, ...] | None = None,
        allow_nonfinite: bool = False,
        type_hints: tuple | None = None,
        sample_time=None,
    ):
        if name is not None and not isinstance(name, str):
            raise WiringError(f"a block name must be a string, got {name!r}")
        self.name = name or f"{type(self).__name__.lower()}{next(_counter)}"
        if inputs is not None:
            self.inputs = tuple(inputs)
        if outputs is not None:
            self.outputs = tuple(outputs)
        check_ports(self.name, self.inputs, self.outputs)
        self.allow_nonfinite = bool(allow_nonfinite)
        if type_hints is not None:
            self.type_hints = tuple(type_hints)
        self._params: dict[str, bool] = {}  # name -> trainable
        self._model = None  # the model this block was added to (one only)
        #: ``Ts`` or ``(Ts, offset)`` in seconds; None: the rate of its inputs
        self.sample_time = self._checked_sample_time(sample_time)

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

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attr in ("inputs", "outputs"):
            ports = cls.__dict__.get(attr, ())
            ok = isinstance(ports, tuple) and all(isinstance(p, str) for p in ports)
            if not isinstance(ports, property) and not ok:
                raise TypeError(f"{cls.__name__}.{attr} must be a tuple of port names")
        if cls.__dict__.get("stateful") is True and cls.update is Block.update:
            raise TypeError(f"{cls.__name__} is stateful and must define update(x, *u)")
        rule = cls.__dict__.get("param_grads")
        if rule is not None and "resets" not in inspect.signature(rule).parameters:
            cls.param_grads = _without_resets(rule)

    # ------------------------------------------------------------------ ports
    def __getattr__(self, attr: str) -> PortRef:
        # only reached when normal lookup fails: ``block.y`` refers to port ``y``
        if attr.startswith("_") or "name" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {attr!r}")
        if attr in self.inputs or attr in self.outputs:
            return PortRef(self, attr)
        raise PortError(
            f"block {self.name!r} ({type(self).__name__}) has no port or attribute {attr!r}; "
            f"its inputs are {list(self.inputs)}, its outputs {list(self.outputs)}"
        )

    def port_names(self, direction: str) -> frozenset:
        """The names of the block's inputs (``"in"``) or outputs (``"out"``) as a set
        (made again only when the tuple changes: a Sum of 16,000 inputs looks a port up
        in constant time)."""
        ports = self.inputs if direction == "in" else self.outputs
        cache = self.__dict__.setdefault("_port_sets", {})
        hit = cache.get(direction)
        if hit is None or hit[0] is not ports:
            hit = cache[direction] = (ports, frozenset(ports))
        return hit[1]

    def __getitem__(self, port: str) -> PortRef:
        if port not in self.port_names("in") and port not in self.port_names("out"):
            raise WiringError(
                f"block {self.name!r} ({type(self).__name__}) has no port {port!r}; "
                f"inputs are {list(self.inputs)}, outputs are {list(self.outputs)}"
            )
        return PortRef(self, port)

    def direct_inputs(self) -> frozenset:
        """The input ports that reach an output within the same step."""
        ft = self.feedthrough
        if ft is True:
            return self.port_names("in")
        if ft is False:
            return frozenset()
        return ft if isinstance(ft, frozenset) else frozenset(ft)

    #: parameters that may carry a leading batch axis (one value per batch member; see
    #: blockflow.run.batched): those the block's equations broadcast against its signals
    batchable: ClassVar[frozenset] = frozenset()

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

    # ------------------------------------------------------------- parameters
    def param(self, name: str, value: Any, *, trainable: bool = True, dtype=None,
              ndim: int | tuple | None = None) -> np.ndarray:
        """Register ``value`` as parameter ``name`` (an attribute too) and return it.

        The value must be numeric (``ndim`` dimensions when given) and finite unless the
        block was made with ``allow_nonfinite=True``; otherwise a ParameterError names
        the block and the parameter.
        """
        where = f"block {self.name!r} ({type(self).__name__}), parameter {name!r}"
        if dtype is None:  # floating arrays keep their precision; anything else is float64
            kind = getattr(value, "dtype", np.dtype(object)).kind
            dtype = value.dtype if kind == "f" else np.float64
        try:
            arr = np.array(value, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as e:
            raise ParameterError(f"{where}: must be a number or an array of numbers, got "
                                 f"{value!r:.60} ({e})") from None
        if ndim is not None and arr.ndim not in np.atleast_1d(ndim):
            raise ParameterError(f"{where}: must have {ndim} dimension(s), got shape "
                                 f"{arr.shape}")
        if not self.allow_nonfinite and not np.all(np.isfinite(arr)):
            raise ParameterError(f"{where}: holds NaN or infinite values; pass finite values "
                                 "(or allow_nonfinite=True if you mean it)")
        self._params[name] = trainable
        setattr(self, name, arr)
        return arr

    def copy(self, name: str | None = None) -> Block:
        """An independent deep copy (parameters too), in no model yet: to use a block or
        a subsystem a second time."""
        memo = {id(self.__dict__.get("_model")): None}  # the owner is not copied
        new = copy.deepcopy(self, memo)
        new._model = None
        if name is not None:
            new.name = name
        return new

    def scalar(self, name: str, value, *, integer: bool = False, minimum=None, above=None,
               below=None, finite: bool = True):
        """A scalar constructor argument, checked: a ParameterError names the block, the
        argument and the allowed range."""
        where = f"block {self.name!r} ({type(self).__name__}): {name}"
        try:
            if integer:
                if isinstance(value, bool):
                    raise TypeError
                if isinstance(value, float | np.floating) and float(value).is_integer():
                    value = int(value)
                v = operator.index(value)
            else:
                v = float(value)
        except (TypeError, ValueError, OverflowError):
            kind = "an integer" if integer else "a number"
            raise ParameterError(f"{where} must be {kind}, got {value!r:.60}") from None
        if finite and not integer and not math.isfinite(v) and not self.allow_nonfinite:
            raise ParameterError(f"{where} must be finite, got {v}")
        if not integer and math.isnan(v) and not self.allow_nonfinite:  # never a limit
            raise ParameterError(f"{where} must be a number, got NaN")
        if minimum is not None and v < minimum:
            raise ParameterError(f"{where} must be >= {minimum}, got {v}")
        if above is not None and not v > above:
            raise ParameterError(f"{where} must be > {above}, got {v}")
        if below is not None and not v < below:
            raise ParameterError(f"{where} must be < {below}, got {v}")
        return v

    def signal_type(self, shape, dtype) -> SignalType:
        """A SignalType from constructor arguments (a ParameterError names the block)."""
        if isinstance(shape, int | np.integer) and not isinstance(shape, bool):
            shape = (int(shape),)  # shape=3 means (3,)
        try:
            return SignalType(shape, dtype)
        except SignalTypeError as e:
            raise ParameterError(f"block {self.name!r} ({type(self).__name__}): {e}") from None

    def parameters(self, *, trainable_only: bool = True) -> dict[str, np.ndarray]:
        """The block's parameters by name (the arrays themselves, not copies)."""
        return {n: getattr(self, n) for n, t in self._params.items() if t or not trainable_only}

    def held(self) -> dict[str, np.ndarray]:
        """Elements of trainable parameters that training holds where they are
        (``{name: boolean mask}``): their gradients are exact, :func:`~blockflow.train`
        leaves them unchanged (a filter's ``a[0]``, which only scales ``b`` and ``a``)."""
        return {}

    def astype(self, dtype) -> Block:
        """Cast every parameter to ``dtype`` in place (returns the block)."""
        for n in self._params:
            setattr(self, n, getattr(self, n).astype(dtype))
        return self

    # ------------------------------------------------------------------ types
    def infer(self, *in_types: SignalType | None) -> tuple[SignalType | None, ...]:
        """Output types from input types; the default passes the first input's type on."""
        t = in_types[0] if in_types else None
        return tuple(t for _ in self.outputs)

    def type_error(self, msg: str, port: str | None = None) -> SignalTypeError:
        where = f"block {self.name!r} ({type(self).__name__})"
        if port:
            where += f", port {port!r}"
        return SignalTypeError(f"{where}: {msg}")

    # ---------------------------------------------------------------- forward
    def init_state(self, batch: int, in_types, out_types) -> Any:
        """Initial state for ``batch`` parallel runs (stateful blocks)."""
        return None

    #: the batch axis of the state's arrays (``(n, B, ...)`` delay lines: 1)
    state_batch_axis: int = 0

    def state_parts(self, x) -> tuple[np.ndarray, ...]:
        """The arrays of state ``x`` that evolve (what :func:`~blockflow.control.lti.linearize`
        perturbs), each with the batch on ``state_batch_axis``; constants carried in a
        state (filter coefficients) are left out."""
        return (x,)

    def with_state_parts(self, x, parts: tuple) -> Any:
        """State ``x`` with its evolving arrays replaced by ``parts``."""
        return parts[0]

    def output(self, x, *u):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} defines no output()")

    def update(self, x, *u):  # pragma: no cover - abstract
        raise NotImplementedError

    def sequence(self, x0, *U):
        """Whole-sequence rule: ``U`` are ``(T, B, ...)`` arrays; returns outputs likewise.

        The default runs ``output`` once on the whole arrays for stateless blocks (their
        step equations broadcast over leading axes) and steps through time otherwise.
        """
        if not self.stateful:
            return self.output(None, *U)
        return step_through(self, x0, U)

    def generate(self, T: int, batch: int, k0: int = 0):  # pragma: no cover - sources only
        """A source's samples for steps ``k0 .. k0+T-1`` (``(T, batch, *shape)``): a run
        continued from step ``k0`` (a Simulator's next chunk) reads the same samples as
        one long run."""
        raise NotImplementedError

    # --------------------------------------------------------------- gradient
    def vjp(self, u: tuple, y: tuple, *dy):
        """Reciprocal rule of a stateless block: input deltas ``J(k)^T dy(k)``.

        ``u`` and ``y`` are the forward inputs and outputs recorded at the same steps.
        """
        raise ReciprocalNotDefinedError(
            f"block {self.name!r} ({type(self).__name__}) has no reciprocal rule: define "
            "vjp() (stateless) or transposed() (stateful linear), or set "
            "nondifferentiable = True"
        )

    def jvp(self, u: tuple, y: tuple, *du):
        """Tangent rule of a stateless block: output tangents ``J(k) du(k)``.

        A ``linear`` block's tangent is its own output on the tangents (derived).
        """
        if self.linear:
            return self.output(None, *du)
        raise ReciprocalNotDefinedError(
            f"block {self.name!r} ({type(self).__name__}) has no tangent rule: define jvp()"
        )

    def param_grads(self, u: tuple, y: tuple, dy: tuple, resets: tuple = ()
                    ) -> dict[str, np.ndarray]:
        """``dJ/dw`` for each trainable parameter, from whole ``(T, B, ...)`` sequences.

        ``resets`` are the steps at which a truncated sweep holds the block's state as
        data (the deltas are zero before the first window; inputs and outputs before it
        are recorded data).  Only a block whose gradient runs a recursion over its own
        state (an IIR filter, a state-space block) needs them: it cuts that recursion
        there.  A rule written without the ``resets`` argument is taken as not needing
        them; such a block with unbounded memory refuses a truncated sweep.
        """
        if self.parameters():
            raise ReciprocalNotDefinedError(
                f"block {self.name!r} ({type(self).__name__}) has trainable parameters "
                f"{list(self.parameters())} but no param_grads(); define it or register "
                "them with trainable=False"
            )
        return {}

    def param_jvp(self, u: tuple, y: tuple, dparams: dict) -> tuple:
        """Output change caused by parameter directions ``dparams`` with the inputs held
        (forward mode), from whole ``(T, B, ...)`` sequences of ``u`` and ``y``."""
        if any(np.any(v) for v in dparams.values()):
            raise ReciprocalNotDefinedError(
                f"block {self.name!r} ({type(self).__name__}) has no param_jvp()"
            )
        return tuple(None for _ in self.outputs)

    def kernel(self):
        """The block's step equations for compiled loops (:class:`blockflow.backends.loops.Kernel`:
        ``@kernel`` functions and the current parameters), or ``None``: then a loop
        holding this block runs on the numpy path."""
        return None

    def why_no_kernel(self) -> str | None:
        """Why :meth:`kernel` gives ``None`` where the block can say more than "it has
        none" (``describe()`` shows it)."""
        return None

    def vjp_kernel(self):
        """The reciprocal rule for compiled loops: a Kernel whose output is
        ``f(*params, *dy, *u, *y)`` returning the input deltas, or ``None``."""
        return None

    def jvp_kernel(self):
        """The tangent rule for compiled loops: ``f(*params, *du, *u, *y)``, or ``None``.
        A linear block whose tangent is its own output (the default ``jvp``) gives its
        own kernel."""
        if self.linear and not self.stateful and type(self).jvp is Block.jvp:
            return self.kernel()
        return None

    def reciprocal(self) -> Block | None:
        """The whole reciprocal block (ports kept by name, directions swapped), or
        ``None`` to have it derived (:mod:`blockflow.gradient.derive`): zero for a
        nondifferentiable block, ``Anticausal(transposed())`` for an LTI block,
        ``J(k)^T`` from ``vjp`` for a stateless one."""
        return None

    def tangent(self) -> Block | None:
        """The linearised block of forward mode, or ``None`` to have it derived."""
        return None

    def transposed(self) -> Block | None:
        """LTI blocks: the transposed realisation ``H^T`` (ports swapped, zero initial
        state, sharing this block's parameter arrays).  Its reversed-time run is the
        reciprocal, and its own transpose is the tangent."""
        return None

    def reversed_taps(self) -> Block:
        """A causal block whose impulse response is this one's reversed within ``memory``.

        ``q^-memory H(q^+1)``: how the online sweep runs an advance causally.
        """
        raise ReciprocalNotDefinedError(
            f"block {self.name!r} ({type(self).__name__}) has no finite-memory reversal"
        )

    def residual_types(self, in_types: tuple, out_types: tuple) -> tuple:
        """The types of ``residuals`` from the port types (blocks that record some)."""
        return ()

    def read_type(self, read: Read) -> SignalType:
        """The type of the forward signal a trace read binds (from ``fwd_types``)."""
        for ports, types in zip(self.block_ports(), self.fwd_types, strict=False):
            if read.port in ports:
                return types[ports.index(read.port)]
        raise KeyError(read.port)

    def block_ports(self) -> tuple[tuple[str, ...], ...]:
        """(inputs, outputs, residuals) of the forward block a derived block stands for."""
        return self.inputs, self.outputs, self.residuals

    @property
    def recorded(self) -> tuple[str, ...]:
        """The signals ``output`` returns: the outputs, then the residuals."""
        return self.outputs + self.residuals

    # ------------------------------------------------------------------- misc
    def config(self) -> dict:
        """The constructor arguments that rebuild this block (model files)."""
        raise NotImplementedError(
            f"block {self.name!r} ({type(self).__name__}) defines no config(); return its "
            "constructor arguments as a dict (and @register_block the class) to save it"
        )

    def input_signs(self) -> str | None:
        """A summing junction's sign per input (``"+-"``), drawn at its inputs; else None."""
        return None

    def output_signs(self) -> str | None:
        """A branching point's sign per output (the reciprocal of a summing junction)."""
        return None

    def fraction(self) -> tuple[str, str] | None:
        """``(numerator, denominator)`` as diagrams write a transfer function, or None."""
        return None

    def label(self) -> str:
        """Short text for diagrams."""
        return self.symbol or type(self).__name__

    def reciprocal_label(self) -> str:
        """How the reciprocal block is drawn: ``Wᵀ`` for a linear block, else ``J(k)ᵀ``."""
        return f"{self.label()}ᵀ" if self.linear else f"J({self.label()})ᵀ"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def check_ports(name: str, inputs, outputs) -> None:
    """Port names: non-empty strings without ``. / :``, unique across inputs and outputs."""
    for p in (*inputs, *outputs):
        if not isinstance(p, str) or not p or any(c in p for c in "./:"):
            raise WiringError(f"block {name!r}: port name {p!r} must be a non-empty string "
                              "without '.', '/' or ':'")
    if len(set(inputs) | set(outputs)) != len(inputs) + len(outputs):
        raise WiringError(f"block {name!r}: port names must be unique, got inputs "
                          f"{list(inputs)} and outputs {list(outputs)}")


def _without_resets(rule):
    """Adapt a ``param_grads(u, y, dy)`` written without ``resets`` (see Block)."""

    @functools.wraps(rule)
    def param_grads(self, u, y, dy, resets=()):
        if resets and self.stateful and self.memory is None:
            raise ReciprocalNotDefinedError(
                f"block {self.name!r} ({type(self).__name__}) has unbounded memory, and its "
                "param_grads() takes no resets: a truncated sweep cannot hold its state at "
                "the window's start; add resets=() to param_grads, or sweep in full"
            )
        return rule(self, u, y, dy)

    return param_grads


def step_through(block: Block, x, U: tuple):
    """Run a stateful block step by step over ``(T, B, ...)`` inputs (generic sequence rule)."""
    T = U[0].shape[0] if U else 0
    outs = []
    for k in range(T):
        uk = tuple(a[k] for a in U)
        outs.append(block.output(x, *uk))
        x = block.update(x, *uk)
    if len(block.recorded) == 1:
        return np.stack(outs)
    return tuple(np.stack(col) for col in zip(*outs, strict=True))


def as_tuple(block: Block, result) -> tuple:
    """Normalise a block's return value to one entry per output port and residual."""
    return (result,) if len(block.recorded) == 1 else tuple(result)


def sum_to(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient over the axes that broadcasting added, down to ``shape``.

    The rule for any parameter used broadcast against ``(T, B, ...)`` signals.
    """
    g = np.asarray(g)
    lead = g.ndim - len(shape)
    if lead > 0:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g
