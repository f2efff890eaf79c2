"""A block's gradient rules: what the reciprocal and tangent transforms read.

The reciprocal of a block comes from one of these, in this order (see
:mod:`blockflow.gradient.derive`): a whole ``reciprocal()`` block; zero for a
``nondifferentiable`` block; ``Anticausal(transposed())`` for a linear time-invariant
block; ``J(k)^T`` from ``vjp`` for a stateless one.  ``param_grads`` gives
``dJ/dw = sum_k delta(k) a(k)`` over whole recorded sequences.  The ``*_kernel`` methods
hand the same rules to compiled loops.  A block's rules are written right under its
forward rule; the defaults here refuse, naming the block and what to define.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from blockflow.core.kernel import scalar_of
from blockflow.core.types import PortTypes, SignalType
from blockflow.errors import ReciprocalNotDefinedError


class Read(NamedTuple):
    """A forward signal a derived block reads at every step (bound to a slot by the plan).

    ``forcing=False``: the recorded value of the forward block's port ``port``;
    ``forcing=True``: the output change at ``port`` that parameter directions cause
    (forward mode, :class:`~blockflow.gradient.adjoint.Forced`).
    """

    port: str
    forcing: bool = False


class GradientRules:
    """The gradient part of :class:`~blockflow.core.block.Block` (a mixin of it)."""

    #: stateful linear blocks: how many steps back the output reaches (None: unbounded)
    memory: int | None = None

    #: derived blocks: the forward block's port types
    fwd_types: PortTypes | None = None

    #: a stage of a solver's step (:mod:`blockflow.plan.integrate`): the name of the block
    #: in the same model whose parameter arrays this copy shares; its gradients add to
    #: that block's
    shares_parameters_with: str | None = None

    #: a wrapper block (a gated block of an enabled subsystem): the block it runs, whose
    #: reciprocal and tangent it wraps again with :meth:`wrap_rule`
    wraps: GradientRules | None = None

    def wrap_rule(self, rule: GradientRules, *, reciprocal: bool) -> GradientRules:
        """A wrapper's reciprocal (or tangent) from the wrapped block's ``rule``."""
        raise NotImplementedError(f"{type(self).__name__} wraps a block but defines no "
                                  "wrap_rule()")

    #: derived blocks: forward signals read at every step, after the block's inputs
    trace_reads: tuple[Read, ...] = ()

    #: whether :meth:`param_grads` reads the recorded outputs ``y``; ``False`` (a gain's
    #: or a dense layer's weights: ``dy`` against ``u`` alone) gives it ``None`` for each,
    #: and a run for the gradient alone need not record them
    grads_read_outputs: bool = True

    def branches_deltas(self) -> bool:
        """Whether every input's delta *is* the output's (``J^T`` copies ``dy`` to each
        input: a Sum of ``+`` signs).  Its reciprocal is then a plain branching point
        that the plan runs as no operation at all (the inputs' deltas share the output
        delta's record)."""
        return False

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

    def scalar_kernel(self):
        """The block's step equations on numbers (:class:`blockflow.core.kernel.Scalar`),
        or ``None``: the form of a loop whose signals are all single numbers (batch of
        one), run with its signals and states in local variables.  By default the
        kernel itself, where its functions are marked ``numbers=True``."""
        return scalar_of(self.kernel())

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
        if self.linear and not self.stateful and type(self).jvp is GradientRules.jvp:
            return self.kernel()
        return None

    def reciprocal(self) -> GradientRules | None:
        """The whole reciprocal block (ports kept by name, directions swapped), or
        ``None`` to have it derived (:mod:`blockflow.gradient.derive`): zero for a
        nondifferentiable block, ``Anticausal(transposed())`` for an LTI block,
        ``J(k)^T`` from ``vjp`` for a stateless one."""
        return None

    def tangent(self) -> GradientRules | None:
        """The linearised block of forward mode, or ``None`` to have it derived."""
        return None

    def transposed(self) -> GradientRules | None:
        """LTI blocks: the transposed realisation ``H^T`` (ports swapped, zero initial
        state, sharing this block's parameter arrays).  Its reversed-time run is the
        reciprocal, and its own transpose is the tangent."""
        return None

    def reversed_taps(self) -> GradientRules:
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


def scalar_form(block):
    """``block.scalar_kernel()``, unless a subclass redefined ``kernel()`` below the class
    that wrote its ``scalar_kernel()`` (the numbers might no longer be the kernel's: the
    array form runs); the default, derived from ``kernel()`` itself, always holds."""
    return block.scalar_kernel() if _numbers_hold(type(block)) else None


@functools.cache
def _numbers_hold(cls) -> bool:
    owner = {name: next(c for c in cls.__mro__ if name in c.__dict__)
             for name in ("kernel", "scalar_kernel")}
    return owner["scalar_kernel"] is GradientRules or owner["kernel"] is \
        owner["scalar_kernel"] or not issubclass(owner["kernel"], owner["scalar_kernel"])
