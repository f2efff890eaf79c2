"""Reciprocal and tangent blocks built from a forward block's rules.

- :class:`JacobianT`: the reciprocal of a stateless block, ``delta_u(k) = J(k)^T delta_y(k)``,
  a linear time-varying block reading the forward values ``u(k), y(k)`` from the trace.
- :class:`JacobianV`: its tangent, ``du -> J(k) du`` (forward mode).
- :class:`Anticausal`: a linear time-invariant block run in reversed time; the reciprocal
  of a causal realisation is the anticausal realisation of its transpose (a unit delay
  becomes a unit advance).
- :class:`Zero`: the reciprocal of a nondifferentiable block, of a source or of a sink.
- :class:`Forced`: a tangent block plus the output change that parameter directions cause.
- :class:`Junction` (a branching point's reciprocal) and :class:`ZeroSource` (the delta of
  an output nothing reads), made by the reciprocal transform.

Each keeps the forward block's port names with the directions swapped, and is named
like the forward block, so the reciprocal model mirrors the forward one name for name.
"""

from __future__ import annotations

import functools

import numpy as np

from blockflow.core.block import Block, Read, as_tuple
from blockflow.core.ccode import VjpView, linear_map
from blockflow.core.kernel import Kernel, generated_kernel, sum_lines, sum_np_into
from blockflow.core.rates import HOLD, place, sample
from blockflow.core.rules import scalar_form
from blockflow.core.types import SignalType, delta_type


class JacobianT(Block):
    """``delta_u(k) = J(k)^T delta_y(k)``, with ``J(k)`` the Jacobian of ``block`` at step k."""

    def __init__(self, block: Block, types: tuple | None = None):
        super().__init__(name=block.name, inputs=block.outputs, outputs=block.inputs)
        self.block = block
        self.fwd_types = types  # (input types, output types) of the forward block
        self.trace_reads = () if block.linear else \
            tuple(Read(p) for p in block.inputs + block.recorded)
        n_y = len(block.outputs)
        self._split = (n_y, n_y + (0 if block.linear else len(block.inputs)))
        self._vjp = block.vjp

    def block_ports(self):
        return self.block.inputs, self.block.outputs, self.block.residuals

    @property
    def alias(self) -> bool:  # type: ignore[override]
        # a branching point of + signs at the base rate: no operation, the inputs' deltas
        # share the output delta's record (off the base rate it sums over held steps and
        # writes impulses, the op it also is)
        return self.rate_hint is None and self.block.branches_deltas()

    def infer(self, *dy_types):
        if self.fwd_types is None:
            return tuple(None for _ in self.outputs)
        return tuple(delta_type(t) for t in self.fwd_types[0])

    def output(self, x, *args):
        # args: deltas at the forward outputs, then the forward inputs and outputs read
        # from the trace (none for a linear block); the usual shapes skip the slicing
        n_y, n_yu = self._split
        if len(args) == 1:  # a linear block with one output
            return self._vjp((), (), args[0])
        if n_y == 1 and n_yu == 2 and len(args) == 3:  # one input, one output, no residual
            return self._vjp((args[1],), (args[2],), args[0])
        return self._vjp(args[n_y:n_yu], args[n_yu:], *args[:n_y])

    def kernel(self):
        return self.block.vjp_kernel()

    def why_no_kernel(self):
        return self.block.why_no_kernel()

    def c_code(self, c):
        """A linear block's ``J^T`` read off its rule as a constant map; a nonlinear
        block writes its own (``c_vjp``)."""
        if self.block.linear:
            shapes = [t.shape for t in self.fwd_types[1]]
            dtype = np.result_type(*(t.dtype for t in self.fwd_types[1]))
            linear_map(c, lambda *dy: self.output(None, *dy), shapes, dtype)
            return None
        rule = getattr(self.block, "c_vjp", None)
        if rule is None:
            raise c.refuse("its reciprocal rule has no C form (c_vjp); write one beside "
                           "its vjp")
        return rule(VjpView(c, self.block))

    def reciprocal(self) -> Block:
        return JacobianV(self.block, self.fwd_types)

    def label(self) -> str:
        return self.block.reciprocal_label()

    @property
    def glyph(self):  # type: ignore[override]
        # a gain's reciprocal is a gain, a summing junction's a branching point
        if self.block.linear and self.block.glyph in ("gain", "sum"):
            return "gain" if self.block.glyph == "gain" else "branch"
        return None

    def output_signs(self) -> str | None:
        """The signs a branching point (a summing junction's reciprocal) puts on its
        outputs."""
        return self.block.input_signs()

    def config(self) -> dict:
        return {"block": self.block, "types": self.fwd_types}


class JacobianV(Block):
    """``dy(k) = J(k) du(k)``: the tangent (linearisation) of a stateless block."""

    def __init__(self, block: Block, types: tuple | None = None):
        super().__init__(name=block.name, inputs=block.inputs, outputs=block.outputs)
        self.block = block
        self.fwd_types = types
        self.trace_reads = () if block.linear else \
            tuple(Read(p) for p in block.inputs + block.recorded)
        n_u = len(block.inputs)
        self._split = (n_u, n_u + (0 if block.linear else n_u))
        self._jvp = block.jvp

    def block_ports(self):
        return self.block.inputs, self.block.outputs, self.block.residuals

    def infer(self, *du_types):
        if self.fwd_types is None:
            return tuple(None for _ in self.outputs)
        return tuple(delta_type(t) for t in self.fwd_types[1])

    def output(self, x, *args):
        n_u, n_uu = self._split
        return self._jvp(args[n_u:n_uu], args[n_uu:], *args[:n_u])

    def kernel(self):
        return self.block.jvp_kernel()

    def why_no_kernel(self):
        return self.block.why_no_kernel()

    def reciprocal(self) -> Block:
        return JacobianT(self.block, self.fwd_types)

    def label(self) -> str:
        return self.block.label() if self.block.linear else f"J({self.block.label()})"

    @property
    def glyph(self):  # type: ignore[override]
        return self.block.glyph if self.block.linear and self.block.glyph == "gain" else None

    def config(self) -> dict:
        return {"block": self.block, "types": self.fwd_types}


class Forced(Block):
    """``dy(k) = T du(k) + f(k)``: a tangent block plus the output change ``f`` that
    parameter directions cause with the inputs held (``block.param_jvp`` over the whole
    forward trace, precomputed and read like a trace signal named ``~port``)."""

    def __init__(self, inner: Block, block: Block, dparams: dict, types: tuple):
        super().__init__(name=block.name, inputs=inner.inputs, outputs=inner.outputs,
                         type_hints=inner.type_hints)
        self.inner, self.block, self.dparams, self.fwd_types = inner, block, dparams, types
        self.feedthrough = inner.feedthrough
        self.stateful = inner.stateful
        own = inner.trace_reads
        self._n = len(inner.inputs) + len(own)
        self.trace_reads = own + tuple(Read(p, forcing=True) for p in inner.outputs)

    def block_ports(self):
        return self.block.inputs, self.block.outputs, self.block.residuals

    def forcing(self, trace, path: str) -> tuple:
        u = tuple(trace[(path, p)] for p in self.block.inputs)
        y = tuple(trace[(path, p)] for p in self.block.recorded)
        rate = trace.plan.rates.get(path, (None,))[0]
        if rate is None:
            return tuple(self.block.param_jvp(u, y, self.dparams))  # one array per output
        # a block off the base rate: on its hits, then held like its outputs
        u, y = tuple(sample(a, rate) for a in u), tuple(sample(a, rate) for a in y)
        return tuple(place(np.asarray(f), rate, trace.T, HOLD)
                     for f in self.block.param_jvp(u, y, self.dparams))

    def infer(self, *t):
        return self.inner.infer(*t)

    def init_state(self, batch, in_types, out_types):
        return self.inner.init_state(batch, in_types, out_types)

    def _add(self, y, f):
        out = tuple(a + b for a, b in zip(as_tuple(self.inner, y), f, strict=True))
        return out[0] if len(out) == 1 else out

    def output(self, x, *args):
        if not self.inner.inputs:  # a source's tangent is zero: only the forcing remains
            return args[0] if len(args) == 1 else tuple(args)
        return self._add(self.inner.output(x, *args[:self._n]), args[self._n:])

    def update(self, x, *args):
        return self.inner.update(x, *args[:len(self.inner.inputs)])

    def sequence(self, x0, *U):
        if not self.inner.inputs:
            return self.output(x0, *U)
        return self._add(self.inner.sequence(x0, *U[:self._n]), U[self._n:])

    def label(self) -> str:
        return f"{self.inner.label()} + dθ"


def zero_kernel(n: int):
    """``y = 0`` of the template's type for a block of ``n`` inputs, as a kernel."""
    args = ", ".join(["z"] + [f"u{i}" for i in range(n)])
    into = (f"def f({args}, out):\n    for i in range(out.size):\n"
            "        out.flat[i] = 0.0\n    return out\n")
    return generated_kernel(f"blockflow.gradient.adjoint.zero_{n}",
                            f"def f({args}):\n    return np.zeros((u0.shape[0],) + z.shape, "
                            "z.dtype)\n", "f", {"np": np}, into=into)


class Zero(Block):
    """Zero gradient: the reciprocal of a nondifferentiable block, a source or a sink.

    ``tangent=True`` keeps the forward direction (forward mode), otherwise the ports
    are swapped.  A zero block with no inputs is a source of zeros.
    """

    def __init__(self, block: Block, types: tuple | None = None, *, tangent: bool = False):
        ins, outs = (block.inputs, block.outputs) if tangent else (block.outputs, block.inputs)
        super().__init__(name=block.name, inputs=ins, outputs=outs)
        self.block = block
        self.fwd_types = types
        self.is_tangent = tangent
        self.source = not ins and bool(outs)

    def _out_types(self):
        if self.fwd_types is None:
            return tuple(None for _ in self.outputs)
        return tuple(delta_type(t) for t in
                     (self.fwd_types[1] if self.is_tangent else self.fwd_types[0]))

    def infer(self, *in_types):
        return self._out_types()

    def output(self, x, *u):
        lead = u[0].shape[: u[0].ndim - len(self.fwd_types[1 - self.is_tangent][0].shape)]
        res = tuple(t.zeros(*lead) for t in self._out_types())
        return res[0] if len(res) == 1 else res

    def generate(self, T: int, batch: int, k0: int = 0):
        res = tuple(t.zeros(T, batch) for t in self._out_types())
        return res[0] if len(res) == 1 else res

    def c_code(self, c):
        c.output(*(f"memset({c.y(j)}, 0, sizeof({c.T}) * {c.n_y(j)});"
                   for j in range(len(self.outputs))))

    def kernel(self):
        """Zeros of the output's type (one output, read by compiled loops: a reciprocal
        loop through a quantiser or a relay stays compiled)."""
        types = self._out_types()
        if len(types) != 1 or types[0] is None or not self.inputs:
            return None
        return Kernel(zero_kernel(len(self.inputs)), params=(types[0].zeros(),))

    def reciprocal(self) -> Block:
        return Zero(self.block, self.fwd_types, tangent=not self.is_tangent)

    def label(self) -> str:
        return "0"

    def config(self) -> dict:
        return {"block": self.block, "types": self.fwd_types, "tangent": self.is_tangent}


class Anticausal(Block):
    """A block run in reversed time: a causal ``block`` becomes anticausal (q^-1 -> q^+1).

    The scheduler runs a reciprocal model from ``k = T-1`` down to ``0``, so step by step
    this is ``block`` itself; over whole sequences it is ``flip(block(flip(U)))``.
    """

    def __init__(self, block: Block, type_hints: tuple | None = None):
        super().__init__(name=block.name, inputs=block.inputs, outputs=block.outputs,
                         type_hints=type_hints)
        self.block = block
        self.feedthrough = block.feedthrough
        self.stateful = block.stateful
        self.unit_shift = block.unit_shift  # (in reversed time: the run's direction)

    def infer(self, *t):
        return self.block.infer(*t)

    def init_state(self, batch, in_types, out_types):
        return self.block.init_state(batch, in_types, out_types)

    @property
    def state_batch_axis(self) -> int:  # type: ignore[override]
        return self.block.state_batch_axis

    def state_parts(self, x):
        return self.block.state_parts(x)

    def with_state_parts(self, x, parts):
        return self.block.with_state_parts(x, parts)

    def output(self, x, *u):
        return self.block.output(x, *u)

    def update(self, x, *u):
        return self.block.update(x, *u)

    def sequence(self, x0, *U):
        Y = self.block.sequence(x0, *(np.flip(a, 0) for a in U))
        if len(self.outputs) == 1:
            return np.flip(Y, 0)
        return tuple(np.flip(a, 0) for a in Y)

    def kernel(self):  # step by step, reversed time is the block itself
        return self.block.kernel()

    def scalar_kernel(self):
        return scalar_form(self.block)

    def c_code(self, c):
        return self.block.c_code(c)

    def reciprocal(self) -> Block:
        return self.block.transposed()  # (H^T)^T: the causal block again

    def tangent(self) -> Block:
        return self

    def label(self) -> str:
        return self.block.label().replace("z⁻", "z⁺").replace("q^-", "q^+")

    @property
    def glyph(self):  # type: ignore[override]
        return self.block.glyph

    def fraction(self):  # the same realisation in the advance operator z^+1
        f = self.block.fraction()
        return None if f is None else tuple(t.replace("z⁻", "z⁺") for t in f)

    def config(self) -> dict:
        return {"block": self.block}


class ZeroSource(Block):
    """``y(k) = 0``: the delta of a forward output that nothing reads."""

    inputs = ()
    source = True
    linear = True

    def __init__(self, type_: SignalType, **kw):
        super().__init__(**kw)
        self.type = type_

    def infer(self):
        return (self.type,)

    def generate(self, T: int, batch: int, k0: int = 0):
        return self.type.zeros(T, batch)

    def c_code(self, c):
        c.output(f"memset({c.y()}, 0, sizeof({c.T}) * {c.n_y()});")

    def label(self) -> str:
        return "0"

    def config(self) -> dict:
        return {"type_": self.type}


@functools.cache
def junction_kernel(n: int):
    """``y = u_1 + ... + u_n`` as a kernel for ``n`` inputs (and its element loop)."""
    args = ", ".join(f"u{i}" for i in range(n))
    src = "\n".join([f"def f({args}):",
                     *sum_lines([("+", f"u{i}") for i in range(n)], "y", "    ", fresh=True),
                     "    return y"]) + "\n"
    def into():  # (made when a compiled loop asks for it)
        return "\n".join([f"def f({args}, out):", "    for i in range(out.size):",
                          *sum_lines([("+", f"u{i}.flat[i]") for i in range(n)], "acc",
                                     "        "),
                          "        out.flat[i] = acc", "    return out"]) + "\n"

    return generated_kernel(f"blockflow.gradient.adjoint.junction{n}", src, "f", {"np": np},
                            into=into, numbers=n > 1,  # (one input: a copy, of an array)
                            np_into=sum_np_into("+" * n))


class Junction(Block):
    """``y(k) = sum_i u_i(k)``: the summing junction made from a forward branching point.

    Taking the reciprocal again turns it back into a branching point (fan-out).
    """

    uniform = True  # every input and the output share one type

    linear = True
    junction = True
    symbol = "+"
    glyph = "sum"

    def __init__(self, n: int, **kw):
        super().__init__(inputs=tuple(f"u{i + 1}" for i in range(n)), **kw)

    def infer(self, *t):
        from blockflow.core.types import same_type

        return (same_type(f"junction {self.name!r}", *t),)

    def output(self, x, *u):
        return junction_kernel(len(u))(*u)

    def kernel(self):
        return Kernel(junction_kernel(len(self.inputs)))

    def c_code(self, c):
        terms = " + ".join(f"{c.u(j)}[i]" for j in range(len(self.inputs)))
        c.output(f"for (int i = 0; i < {c.n_y()}; ++i) {c.y()}[i] = {terms};")

    def vjp(self, u, y, dy):
        return dy if len(self.inputs) == 1 else tuple(dy for _ in self.inputs)

    def input_signs(self) -> str:
        return "+" * len(self.inputs)

    def config(self) -> dict:
        return {"n": len(self.inputs)}


