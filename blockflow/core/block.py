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

Everything the engine reads from a block is declared on :class:`Block`, with its default,
in one module per concern: this one (ports, class flags, types, the forward rule, model
files), :mod:`~blockflow.core.parameters` (``param``, checked arguments),
:mod:`~blockflow.core.timing` (sample times and rates), :mod:`~blockflow.core.rules` (the
gradient rules and their kernels, ``fwd_types``, ``trace_reads``) and
:mod:`~blockflow.core.notation` (how diagrams draw it).  The engine never probes for them
with ``getattr``.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any, ClassVar

import numpy as np

from blockflow.core.notation import Notation
from blockflow.core.parameters import Parameters
from blockflow.core.rules import GradientRules, Read, _without_resets, sum_to
from blockflow.core.timing import Timing
from blockflow.core.types import SignalType
from blockflow.errors import PortError, SignalTypeError, WiringError

__all__ = ["Block", "PortRef", "Read", "as_tuple", "check_ports", "step_through", "sum_to"]

_counter = itertools.count()


class PortRef:
    """A reference to one port of one block, as used by ``Model.connect``."""

    __slots__ = ("block", "port")

    def __init__(self, block: Block, port: str):
        self.block = block
        self.port = port

    def __repr__(self) -> str:
        return f"{self.block.name}.{self.port}"


class Block(Parameters, Timing, GradientRules, Notation):
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
    #: each input's type is checked on its own (:meth:`check_input`) and the outputs are
    #: known once every input is (Mux): wiring one more input checks that input alone,
    #: and the block is inferred once, when its last input's type arrives
    separable: ClassVar[bool] = False
    #: transcendental evaluations (tanh, exp, sin, ...) per element of the first output
    #: and step: compiled, each is a libm call; the backend policy keeps a loop on
    #: numpy's vectorised ufuncs when a batch makes many (blockflow.backends.policy)
    libm: ClassVar[float] = 0
    #: ``y(k) = u(k-1)`` after the initial state ``y(0) = x(0)``, in the direction a run
    #: steps (a unit delay; in reversed time its reciprocal): inside a loop its record is
    #: its input's, one row on (one array of T + 1 rows, not two of T)
    unit_shift: ClassVar[bool] = False
    #: a model's external input, supplied by the caller (Inport)
    external: ClassVar[bool] = False
    #: random sources: ``generate(T, B, streams)`` draws member ``b`` from ``streams[b]``
    #: (a ``numpy.random.SeedSequence`` per member, from its run seed and the block's path)
    random: ClassVar[bool] = False
    #: a pass-through: its output *is* its input's signal (no operation, no slot)
    alias: ClassVar[bool] = False
    #: the reciprocal of a branching point: a summing junction made by the transform
    junction: ClassVar[bool] = False
    #: a sink whose input plots show (Scope)
    display: ClassVar[bool] = False
    #: output types a transform knew from the forward model, used where ``infer`` cannot
    #: tell (a loop of delays with no shape of its own)
    type_hints: tuple | None = None
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

    def port_names(self, direction: str) -> tuple | frozenset:
        """The names of the block's inputs (``"in"``) or outputs (``"out"``), for ``in``
        tests: the tuple itself for a few ports, else a set made again only when the
        tuple changes (a Sum of 16,000 inputs looks a port up in constant time; a model
        of 16,000 small blocks keeps no set per block)."""
        ports = self.inputs if direction == "in" else self.outputs
        if len(ports) <= 8:
            return ports
        cache = self.__dict__.get("_port_sets")
        if cache is None:
            cache = self.__dict__["_port_sets"] = {}
        hit = cache.get(direction)
        if hit is None or hit[0] is not ports:
            hit = cache[direction] = (ports, frozenset(ports))
        return hit[1]

    def input_index(self, port: str) -> int:
        """The position of input ``port`` (constant time, like :meth:`port_names`)."""
        hit = self.__dict__.get("_input_index")
        if hit is None or hit[0] is not self.inputs:
            hit = self.__dict__["_input_index"] = (
                self.inputs, {p: i for i, p in enumerate(self.inputs)})
        return hit[1][port]

    def check_input(self, port: str, t: SignalType) -> None:
        """Raise a type error if input ``port`` cannot take a signal of type ``t`` (what a
        :attr:`separable` block checks of each input on its own)."""

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
            ins = self.port_names("in")
            return ins if isinstance(ins, frozenset) else frozenset(ins)
        if ft is False:
            return frozenset()
        return ft if isinstance(ft, frozenset) else frozenset(ft)

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

    def c_code(self, c) -> bool | None:
        """Write one step of the block as C (:mod:`blockflow.codegen`): ``c.output(...)``
        the lines computing its outputs, ``c.update(...)`` its state update (``c.u(j)``,
        ``c.y(j)``, ``c.param(...)``, ``c.state(...)`` name the arrays).  ``False``: the
        block has no C form (the generator refuses it, naming it)."""
        return False

    def generate(self, T: int, batch: int, k0: int = 0):  # pragma: no cover - sources only
        """A source's samples for steps ``k0 .. k0+T-1`` (``(T, batch, *shape)``): a run
        continued from step ``k0`` (a Simulator's next chunk) reads the same samples as
        one long run."""
        raise NotImplementedError

    # ------------------------------------------------------------ model files
    def config(self) -> dict:
        """The constructor arguments that rebuild this block (model files)."""
        raise NotImplementedError(
            f"block {self.name!r} ({type(self).__name__}) defines no config(); return its "
            "constructor arguments as a dict (and @register_block the class) to save it"
        )

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


