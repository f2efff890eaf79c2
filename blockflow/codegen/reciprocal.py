"""The gradient as C: the reciprocal model's backward sweep over a recorded run.

``export_c(model, directory, reciprocal=True)`` adds to ``NAME.h`` / ``NAME.c``::

    enum { NAME_N_PARAM = ... };          /* every trainable parameter, flattened */
    void NAME_record(NAME_state *s, long T, const double *in, double *out,
                     NAME_state *trace);  /* T steps of NAME_step, trace[k] after step k */
    void NAME_grad(long T, const NAME_state *trace, const double *dy,
                   double *dparam, double *din);

``dy`` holds ``dL/dy(k)`` (``T x NAME_N_OUT``, Outports in order), ``din`` receives
``dL/dx(k)`` (``T x NAME_N_IN``) and ``dparam`` ``dL/dw`` (``NAME_N_PARAM``, the
parameters in ``model.parameters()`` order, each flattened in C order; the header lists
the offsets).  The sweep is the reciprocal model (:func:`blockflow.reciprocal`) compiled
step by step and run from ``k = T-1`` down to ``0``: in reversed time an advance is a
delay, so each reciprocal block writes its C like any block (an ``Anticausal`` block is
its transposed realisation; a linear block's ``J^T`` is read off its rule; a nonlinear
block writes ``c_vjp``).  Its reads of the forward run come from ``trace[k]``, and the
parameter gradients ``dJ/dw = sum_k delta(k) a(k)`` are accumulated step by step, each
block's written beside its rules (``c_param_grads``).  No heap: the sweep's own state
(every delta and adjoint state, a few times the model's) is a local of ``NAME_grad``.
"""

from __future__ import annotations

import numpy as np

from blockflow.codegen.forward import CBlock, _ascii, _Generator, _indent
from blockflow.errors import CodegenError
from blockflow.plan.compiler import compile
from blockflow.plan.integrate import param_owner


class CGrad:
    """What a block's ``c_param_grads(g)`` writes with, inside the reversed-time step
    ``k`` on the block's hits: its forward signals at ``k`` or earlier hits, the deltas
    at its outputs, and the arrays accumulating ``dJ/dw``."""

    def __init__(self, gen: _Reciprocal, c: CBlock, fop, rop):
        self.gen, self.c, self.fop, self.rop = gen, c, fop, rop
        self.block = fop.block
        self.T = gen.ctype
        self.lines: list[str] = []
        self.n_hit, self.offset = fop.rate.n, fop.rate.offset

    def _fwd(self, port: str, lag) -> str:
        slot = self.gen.fwd.plan.slots[(self.fop.path, port)]
        if lag is None or lag == 0:
            return f"tr->sig{slot}"
        step = f"({lag})" if self.n_hit == 1 else f"({lag}) * {self.n_hit}"
        return f"trace[k - {step}].sig{slot}"

    def u(self, j: int = 0, lag=None) -> str:
        """Forward input ``j`` at this step, or ``lag`` hits earlier (a C expression;
        guard it with :meth:`valid`)."""
        return self._fwd(self.block.inputs[j], lag)

    def y(self, j: int = 0, lag=None) -> str:
        """Forward output ``j`` (outputs, then residuals) at this step or ``lag`` hits
        earlier."""
        return self._fwd(self.block.recorded[j], lag)

    def valid(self, lag) -> str:
        """The C condition that ``lag`` hits before this step is in the run."""
        step = f"({lag})" if self.n_hit == 1 else f"({lag}) * {self.n_hit}"
        return f"k - {step} >= {self.offset}"

    def dy(self, j: int = 0) -> str:
        """The delta at forward output ``j`` at this step (summed over the held interval
        for a block off the base rate)."""
        port = self.block.outputs[j]
        return self.c.u(self.rop.block.inputs.index(port))

    def n_u(self, j: int = 0) -> int:
        return self.gen.fwd.size(self.gen.fwd.plan.slots[(self.fop.path, self.block.inputs[j])])

    def n_y(self, j: int = 0) -> int:
        return self.gen.fwd.size(self.gen.fwd.plan.slots[(self.fop.path,
                                                           self.block.recorded[j])])

    def grad(self, name: str) -> str:
        """The array accumulating ``dJ/d name`` (zero at the start of the sweep)."""
        return self.gen.grad_array(f"{param_owner(self.fop.path, self.block)}.{name}")

    def param(self, name: str, value) -> str:
        return self.c.param(f"grad_{name}", value)

    def state(self, name: str, init) -> str:
        """State of the sweep (reversed time), e.g. an adjoint recursion's past values."""
        return self.c.state(f"grad_{name}", init)

    def add(self, *lines: str) -> None:
        self.lines += lines

    def refuse(self, why: str) -> CodegenError:
        return CodegenError(f"block {self.fop.path!r} ({type(self.block).__name__}): its "
                            f"parameter gradient cannot be written as C: {why}")


class _Reciprocal(_Generator):
    """The reciprocal model's step in reversed time, reading the forward ``trace``."""

    def __init__(self, model, fwd: _Generator):
        from blockflow.gradient.reciprocal import reciprocal

        rplan = compile(reciprocal(model), mode="step")
        trace = {}
        for r in rplan.trace_reads:
            if r.read.forcing:  # pragma: no cover - forward mode only
                raise CodegenError(f"block {r.path!r} reads a forcing term; C export writes "
                                   "the reciprocal (reverse mode) only")
            trace[r.slot] = fwd.plan.slots[(r.path, r.read.port)]
        super().__init__(model, fwd.name, fwd.ctype, plan=rplan, trace=trace,
                         names=fwd.names, constants=fwd.constants)
        self.fwd = fwd
        self.fwd_ops = {op.path: op for seg in fwd.plan.segments for op in seg.ops}
        self.params = model.parameters()
        self.grads: dict[str, str] = {}

    def grad_array(self, key: str) -> str:
        if key not in self.params:
            raise CodegenError(f"no trainable parameter {key!r} in model {self.model.name!r}")
        if key not in self.grads:
            p = np.asarray(self.params[key])
            self.grads[key] = self.state_array(f"d_{key}", np.zeros(p.size))
        return self.grads[key]

    def after_step(self, op, c: CBlock) -> list[str]:
        fop = self.fwd_ops.get(op.path)
        if fop is None or not fop.block.parameters():
            return []
        fb = fop.block
        rule = getattr(fb, "c_param_grads", None)
        if rule is None:
            raise CodegenError(
                f"block {op.path!r} ({type(fb).__name__}) has trainable parameters "
                f"{sorted(fb.parameters())} but no C form of their gradient "
                "(c_param_grads); write one beside its param_grads, or register them with "
                "trainable=False")
        g = CGrad(self, c, fop, op)
        rule(g)
        return [f"/* dJ/dw of {_ascii(op.path)} */", *g.lines]

    def parts(self) -> tuple[list[str], list[str]]:
        """(header lines, source lines) of the sweep."""
        N, T, fwd = self.name, self.ctype, self.fwd
        self.signal_fields()
        body, updates = self.statements()
        for key in self.params:  # every parameter has its array, in order
            self.grad_array(key)
        offsets, o = [], 0
        for key, p in self.params.items():
            offsets.append((key, o, np.shape(p)))
            o += int(np.size(p))
        n_in = sum(fwd.size(s) for s in fwd.plan.inports.values())
        n_out = sum(fwd.size(s) for s in fwd.plan.outports.values())
        copy_dy, off = [], 0
        for port, fs in fwd.plan.outports.items():
            n, rs = fwd.size(fs), self.plan.inports.get(port)
            if rs is not None:
                copy_dy.append(f"        for (int i = 0; i < {n}; ++i) s->sig{rs}[i] = "
                               f"({T})dy[k * {n_out} + {off} + i];  /* dL/d {_ascii(port)} */")
            off += n
        copy_din, off = [], 0
        for port, fs in fwd.plan.inports.items():
            n, rs = fwd.size(fs), self.plan.outports.get(port)
            value = f"(double)s->sig{rs}[i]" if rs is not None else "0.0"
            copy_din.append(f"        for (int i = 0; i < {n}; ++i) din[k * {n_in} + {off} + i] "
                            f"= {value};  /* dL/d {_ascii(port)} */")
            off += n
        copy_grads = [f"    for (int i = 0; i < {int(np.size(self.params[key]))}; ++i) "
                      f"dparam[{o} + i] = (double){self.grads[key]}[i];"
                      for key, o, _ in offsets]
        header = [
            f"enum {{ {N}_N_PARAM = {o} }};  /* dparam: the trainable parameters, in order */",
            *(f"/*   {_ascii(k)}{list(shape)} at {off} */" for k, off, shape in offsets),
            "",
            f"/* T steps of {N}_step from s, the signals of step k kept in trace[k] */",
            f"void {N}_record({N}_state *s, long T, const double *in, double *out, "
            f"{N}_state *trace);",
            "/* the backward sweep (reciprocal model) over a recorded run: dy is dL/dy(k),",
            f"   T x {N}_N_OUT; gives dL/dw (dparam, {N}_N_PARAM) and dL/dx(k) (din, T x "
            f"{N}_N_IN) */",
            f"void {N}_grad(long T, const {N}_state *trace, const double *dy, double *dparam, "
            "double *din);", ""]
        source = [
            f"void {N}_record({N}_state *s, long T, const double *in, double *out, "
            f"{N}_state *trace) {{",
            "    for (long k = 0; k < T; ++k) {",
            f"        {N}_step(s, in + k * {N}_N_IN, out + k * {N}_N_OUT);",
            "        trace[k] = *s;", "    }", "}", "",
            f"/* the reciprocal model {_ascii(repr(self.model.name))}: every delta and adjoint "
            "state */",
            "typedef struct {", "    long k;  /* the step being swept */", *self.fields,
            f"}} {N}_sweep;", "",
            f"void {N}_grad(long T, const {N}_state *trace, const double *dy, double *dparam, "
            "double *din) {",
            f"    {N}_sweep sweep, *s = &sweep;",
            "    (void)dy; (void)dparam; (void)din;  /* (a model may have none of them) */",
            "    memset(s, 0, sizeof *s);", *self.inits,
            "    for (long k = T - 1; k >= 0; --k) {",
            f"        const {N}_state *tr = &trace[k];",
            "        (void)tr;",
            "        s->k = k;",
            *copy_dy, *_indent(body), *copy_din,
            "        /* adjoint state updates (reversed time) */", *_indent(updates),
            "    }", *copy_grads, "}", ""]
        return header, source


def reciprocal_parts(model, fwd: _Generator) -> tuple[list[str], list[str]]:
    return _Reciprocal(model, fwd).parts()

