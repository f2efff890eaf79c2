"""MkDocs hooks: pages drawn and written by the project itself at build time, so the
documentation cannot drift from the code: the reciprocal rules' diagrams and the
command-line reference."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "generated"


def _rule_models():
    from blockflow import Inport, Model, Outport
    from blocks import Function, Gain, Sum, UnitDelay

    def one(name, *blocks, fan=False):
        m = Model(name)
        u = m.add(Inport("u"))
        body = m.add(*blocks)
        body = body if isinstance(body, tuple) else (body,)
        m.chain(u, *body, m.add(Outport("y")))
        if fan:
            m.connect(body[-1], m.add(Outport("y2")))
        return m

    s = Model("sum")
    a, b, sm, y = s.add(Inport("a"), Inport("b"), Sum("+-", name="sum"), Outport("y"))
    s.connect(a, sm.u1)
    s.connect(b, sm.u2)
    s.connect(sm, y)
    return {
        "summing_junction": s,
        "branching_point": one("branch", Gain(1.0, name="g"), fan=True),
        "gain": one("gain", Gain(2.0, name="w")),
        "function": one("function", Function("tanh", name="f")),
        "delay": one("delay", UnitDelay(name="z")),
    }


#: README sections the site shows (written to docs/generated/readme_<key>.md at build
#: time, so the pages cannot drift from the README): key -> (first heading, next heading)
SECTIONS = {
    "tour": ("## A tour", "## Gradients by reciprocal networks"),
    "gradients": ("## Gradients by reciprocal networks", "## Diagrams, model files"),
    "diagrams": ("## Diagrams, model files", "## Training and experiments"),
    "training": ("## Training and experiments", "## Control engineering"),
    "control": ("## Control engineering", "## Sweeps, Monte-Carlo"),
    "sweeps": ("## Sweeps, Monte-Carlo", "## How it works"),
    "how": ("## How it works", "## Performance"),
}


def _readme_sections() -> None:
    text = (ROOT / "README.md").read_text()
    for key, (first, nxt) in SECTIONS.items():
        i = text.index(first)
        part = text[i:text.index(nxt, i)]
        # the README's paths are relative to the repository; the site's to docs/
        (OUT / f"readme_{key}.md").write_text(part.replace("](docs/", "]("))


def on_pre_build(config, **kw):
    sys.path.insert(0, str(ROOT))
    from blockflow import reciprocal
    from blockflow.cli import parser
    from blockflow.io.export import draw

    OUT.mkdir(parents=True, exist_ok=True)
    _readme_sections()
    for name, m in _rule_models().items():
        draw(m, OUT / f"{name}.svg")
        draw(reciprocal(m), OUT / f"{name}_reciprocal.svg")
    ap = parser()
    text = ["# Command line\n", "Generated from `blockflow --help` at build time.\n"]
    subs = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    for cmd in [None, *subs.choices]:
        p = ap if cmd is None else subs.choices[cmd]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            p.print_help()
        text += [f"\n## blockflow {cmd or ''}\n", "```text", buf.getvalue().rstrip(), "```"]
    (OUT / "cli.md").write_text("\n".join(text) + "\n")
