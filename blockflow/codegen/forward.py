"""A model as portable C: ``export_c(model, directory)`` writes ``NAME.h`` and ``NAME.c``.

C99, no heap, nothing beyond ``<math.h>`` and ``<string.h>``; the parameters are
``static const`` arrays; the interface is the same for every model::

    typedef struct { ... } NAME_state;          /* every signal and state */
    void NAME_init(NAME_state *s);              /* initial state */
    void NAME_step(NAME_state *s, const double *in, double *out);   /* one base step */
    enum { NAME_N_IN = ..., NAME_N_OUT = ... }; /* Inports / Outports in order, each
                                                   flattened in C order */

The model is compiled step by step (every block in one schedule) and each block writes
its own C beside its forward rule (``Block.c_code``): one commented section per block in
schedule order, named from the model.  Blocks off the base rate run inside ``if`` on
their hits, their outputs held in between (the signals live in the state).  A block
that cannot be written as C (a user's Python function) is refused, naming it.  One
batch member runs per state.
"""

from __future__ import annotations

import re

import numpy as np

from blockflow.backends.ops import SegmentKind
from blockflow.core.ccode import number
from blockflow.core.rates import BASE, HOLD, SUM
from blockflow.errors import CodegenError
from blockflow.plan.compiler import compile

__all__ = ["CBlock", "CodegenError"]


_ASCII = {"⁻": "^-", "⁺": "^+", "¹": "1", "²": "2", "Σ": "sum ", "Π": "prod ", "ᵀ": "^T",
          "′": "'", "→": "->", "↑": "up ", "↓": "down ", "·": "*", "×": "x", "∫": "int"}


def _ascii(text: str) -> str:
    """A label for a C comment: ASCII only, no comment terminator."""
    for k, v in _ASCII.items():
        text = text.replace(k, v)
    return text.encode("ascii", "replace").decode().replace("*/", "* /")


def _ident(text: str) -> str:
    return re.sub(r"\W", "_", text)


class CBlock:
    """What a block's ``c_code(c)`` writes with: its inputs, outputs, parameters and
    states as C names, and the lines of its output and update phases."""

    def __init__(self, gen: _Generator, op, uid: str):
        self.gen, self.op, self.uid = gen, op, uid
        self.out_lines: list[str] = []
        self.update_lines: list[str] = []
        self.T = gen.ctype

    def u(self, j: int) -> str:
        """The C array holding input ``j`` (its sum over the held interval, for a block
        that sums its inputs off its hits: a reciprocal in reversed time)."""
        if self.gen.summed(self.op, j):
            return self.gen.accumulator(self.op, j)
        return self.gen.signal(self.op.ins[j])

    def y(self, j: int = 0) -> str:
        """The C array of output ``j`` (outputs, then residuals)."""
        return self.gen.signal(self.op.outs[j])

    def n_u(self, j: int = 0) -> int:
        return self.gen.size(self.op.ins[j])

    def n_y(self, j: int = 0) -> int:
        return self.gen.size(self.op.outs[j])

    def param(self, name: str, value) -> str:
        """A ``static const`` array holding ``value`` (flattened in C order)."""
        return self.gen.constant(f"{self.uid}_{name}", np.asarray(value, float))

    def state(self, name: str, init) -> str:
        """A state array in the struct, set to ``init`` by ``NAME_init``."""
        return self.gen.state_array(f"{self.uid}_{name}", np.asarray(init, float))

    def output(self, *lines: str) -> None:
        self.out_lines += lines

    def update(self, *lines: str) -> None:
        self.update_lines += lines

    def refuse(self, why: str) -> CodegenError:
        b = self.op.block
        return CodegenError(f"block {self.op.path!r} ({type(b).__name__}) cannot be written "
                            f"as C: {why}")


class _Generator:
    """One model's step as C: the struct of its signals and states, the constants, and
    the step's statements (outputs in schedule order, then state updates).

    ``trace``: slots read from another model's recorded step (a reciprocal's reads of
    the forward run) -> that model's slot, written ``tr->sigN``.
    """

    def __init__(self, model, name: str, ctype: str, *, plan=None, trace: dict | None = None,
                 names: set | None = None, constants: list | None = None):
        self.model, self.name, self.ctype = model, name, ctype
        self.plan = compile(model, mode="step") if plan is None else plan
        self.trace = trace or {}
        self.constants: list[str] = [] if constants is None else constants
        self.fields: list[str] = []
        self.inits: list[str] = []
        self.names: set[str] = set() if names is None else names
        self.accumulators: dict[tuple[int, int], str] = {}
        st = self.plan.slot_types
        for t in st:
            if t.dtype.kind not in "fiub":
                raise CodegenError(f"model {model.name!r} carries {t.dtype} signals; C export "
                                   "writes real-valued ones")

    def size(self, slot: int) -> int:
        return int(np.prod(self.plan.slot_types[slot].shape, dtype=int))

    def signal(self, slot: int) -> str:
        if slot in self.trace:
            return f"tr->sig{self.trace[slot]}"
        return f"s->sig{slot}"

    @staticmethod
    def summed(op, j: int) -> bool:
        """Whether input ``j`` of ``op`` is summed over the held interval."""
        return op.io[0] == SUM and j < len(op.block.inputs)

    def accumulator(self, op, j: int) -> str:
        key = (id(op), j)
        if key not in self.accumulators:
            self.accumulators[key] = self.state_array(
                f"{op.path}_sum_{op.block.inputs[j]}", np.zeros(self.size(op.ins[j])))
        return self.accumulators[key]

    def _unique(self, base: str) -> str:
        base, i = _ident(base), 1
        name = base
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def constant(self, base: str, a: np.ndarray) -> str:
        name = f"{self.name}_{self._unique(base)}"
        flat = a.ravel()
        body = ", ".join(number(v, self.ctype) for v in flat) or "0"
        self.constants.append(f"static const {self.ctype} {name}[{max(flat.size, 1)}] = "
                              f"{{{body}}};")
        return name

    def state_array(self, base: str, init: np.ndarray) -> str:
        name = self._unique(base)
        flat = init.ravel()
        self.fields.append(f"    {self.ctype} {name}[{max(flat.size, 1)}];")
        if np.any(flat):
            src = self.constant(f"{base}_init", flat)
            self.inits.append(f"    memcpy(s->{name}, {src}, sizeof s->{name});")
        return f"s->{name}"

    def signal_fields(self) -> None:
        for s in range(len(self.plan.slot_types)):
            if s not in self.trace:
                self.fields.append(f"    {self.ctype} sig{s}[{max(self.size(s), 1)}];  "
                                   f"/* {_ascii(self._label(s))} */")

    def after_step(self, op, c: CBlock) -> list[str]:
        """Lines run on ``op``'s hits once its inputs at this step are known: after its
        outputs (a block without state) or before its update (a reciprocal's parameter
        gradients)."""
        return []

    def statements(self) -> tuple[list[str], list[str]]:
        """The step: every block's outputs in schedule order, then the state updates;
        blocks off the base rate inside ``if`` on their hits, inputs summed over a held
        interval accumulated on every step."""
        body, updates = [], []
        for seg in self.plan.segments:
            for op in seg.ops:
                if seg.kind is SegmentKind.EXTERNAL:
                    continue
                c = CBlock(self, op, _ident(op.path))
                summed = [j for j in range(len(op.block.inputs)) if self.summed(op, j)]
                direct = op.block.direct_inputs() if summed else ()
                accs = {j: self.accumulator(op, j) for j in summed}
                code = op.block.c_code(c)
                if code is False or code is None and not (c.out_lines or c.update_lines):
                    raise CodegenError(
                        f"block {op.path!r} ({type(op.block).__name__}) has no C form "
                        "(c_code); write one beside its forward rule, or leave the block out")
                extra = self.after_step(op, c)
                out_lines = c.out_lines + (extra if op.state is None else [])

                resets = [f"memset({a}, 0, sizeof {a});" for a in accs.values()]
                if op.state is None:
                    out_lines = out_lines + resets
                guard = None
                if op.rate != BASE:
                    n, o = op.rate.n, op.rate.offset
                    guard = f"s->k >= {o} && (s->k - {o}) % {n} == 0"
                head = (f"    /* {_ascii(op.path)} ({type(op.block).__name__}: "
                        f"{_ascii(op.block.label())}) */")
                body.append(head)
                body += [self._accumulate(op, j, accs[j]) for j in summed
                         if op.block.inputs[j] in direct]
                if guard:
                    body.append(f"    if ({guard}) {{")
                    body += ["    " + ln for ln in _indent(out_lines)]
                    if op.io[1] != HOLD:  # impulses: zero between hits
                        body.append("    } else {")
                        body += [f"        memset({self.signal(s)}, 0, sizeof "
                                 f"{self.signal(s)});" for s in op.outs]
                    body.append("    }")
                else:
                    body += _indent(out_lines)
                if op.state is not None and (c.update_lines or summed or extra):
                    updates.append(head)
                    updates += [self._accumulate(op, j, accs[j]) for j in summed
                                if op.block.inputs[j] not in direct]
                    lines = extra + c.update_lines + resets
                    if guard:
                        updates.append(f"    if ({guard}) {{")
                        updates += ["    " + ln for ln in _indent(lines)]
                        updates.append("    }")
                    else:
                        updates += _indent(lines)
        return body, updates

    def _accumulate(self, op, j: int, acc: str) -> str:
        return (f"    for (int i = 0; i < {self.size(op.ins[j])}; ++i) {acc}[i] += "
                f"{self.signal(op.ins[j])}[i];")

    def source(self, extra_header=(), extra_source=()) -> tuple[str, str]:
        plan, N = self.plan, self.name
        self.signal_fields()
        body, updates = self.statements()
        n_in = sum(self.size(s) for s in plan.inports.values())
        n_out = sum(self.size(s) for s in plan.outports.values())
        copy_in = self._copies(plan.inports, "s->sig{s}[i] = ({T})in[{o} + i];", "Inport")
        copy_out = self._copies(plan.outports, "out[{o} + i] = (double)s->sig{s}[i];",
                                "Outport")
        guard = f"{N.upper()}_H"
        header = "\n".join([
            f"/* {N}: model {_ascii(repr(self.model.name))}, generated by blockflow.codegen "
            f"(dt = {self.model.dt!r} s) */",
            f"#ifndef {guard}", f"#define {guard}", "",
            "typedef struct {", "    long k;  /* the step about to run */", *self.fields,
            f"}} {N}_state;", "",
            f"enum {{ {N}_N_IN = {n_in}, {N}_N_OUT = {n_out} }};", "",
            f"void {N}_init({N}_state *s);",
            f"void {N}_step({N}_state *s, const double *in, double *out);", "",
            *extra_header, f"#endif /* {guard} */", ""])
        source = "\n".join([
            f"/* {N}: model {_ascii(repr(self.model.name))}, generated by blockflow.codegen */",
            "#include <math.h>", "#include <string.h>", f'#include "{N}.h"', "",
            *self.constants, "",
            f"void {N}_init({N}_state *s) {{", "    memset(s, 0, sizeof *s);", *self.inits,
            "}", "",
            f"void {N}_step({N}_state *s, const double *in, double *out) {{",
            "    (void)in; (void)out;  /* (a model may have no Inport or no Outport) */",
            *copy_in, *body, *copy_out, "    /* state updates */", *updates,
            "    s->k += 1;", "}", "", *extra_source])
        return header, source

    def _copies(self, ports: dict, statement: str, kind: str) -> list[str]:
        """One loop per port copying between the flat in/out array (at offset ``o``) and
        its signal ``s``."""
        lines, o = [], 0
        for name, s in ports.items():
            n = self.size(s)
            body = statement.format(s=s, o=o, T=self.ctype)
            lines.append(f"    for (int i = 0; i < {n}; ++i) {body}  /* {kind} {_ascii(name)} */")
            o += n
        return lines

    def _label(self, slot: int) -> str:
        for (path, port), s in self.plan.slots.items():
            if s == slot:
                return f"{path}.{port}"
        return ""


def _indent(lines: list[str]) -> list[str]:
    return ["    " + ln for ln in lines]
