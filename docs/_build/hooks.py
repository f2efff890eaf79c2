"""MkDocs hooks: pages drawn and written by the project itself at build time, so the
documentation cannot drift from the code: the reciprocal rules' diagrams, the
command-line reference and the API reference (every public name of ``blockflow`` and
``blocks``)."""

from __future__ import annotations

import contextlib
import io
import re
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


def on_pre_build(config, **kw):
    sys.path.insert(0, str(ROOT))
    from blockflow import reciprocal
    from blockflow.cli import parser
    from blockflow.io.export import draw

    OUT.mkdir(parents=True, exist_ok=True)
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
    (OUT / "api.md").write_text(_api_reference())


#: the API reference's sections: (title, module, names or None for every public name the
#: module defines)
API = [
    ("The package: `from blockflow import ...`", "blockflow", "__all__"),
    ("Errors", "blockflow.errors", None),
    ("Kernels (for your own blocks)", "blockflow.core.kernel", ["kernel", "Kernel"]),
    ("Signal types", "blockflow.core.types", None),
    ("Gradient schedules", "blockflow.gradient.schedules", None),
    ("Losses", "blockflow.gradient.losses", None),
    ("Gradient checks", "blockflow.gradient.check", None),
    ("Gradient checks for your own blocks", "blockflow.gradient.testing", None),
    ("Training: optimizers, schedules, checkpoints", "blockflow.train", None),
    ("Sweeps", "blockflow.parallel.sweep", None),
    ("Many trainings", "blockflow.parallel.trainings", None),
    ("Linear systems and python-control", "blockflow.control.lti", None),
    ("Step and frequency responses", "blockflow.control.response", None),
    ("Step by step", "blockflow.run.simulator", None),
    ("Traces and plots", "blockflow.run.plot", None),
    ("Model files", "blockflow.io.modelfile", None),
    ("Diagrams", "blockflow.io.export", None),
    ("The backend policy", "blockflow.backends.policy", None),
    ("The block library: `from blocks import ...`", "blocks", "__all__"),
]


def _api_reference() -> str:
    """Every public name of ``blockflow`` and ``blocks`` (and of the modules users reach
    into), each rendered from its docstring; nothing is listed by hand."""
    import importlib
    import inspect

    lines = ["# API reference", "",
             "Generated from the package at build time: every public name of `blockflow` "
             "and `blocks`, from its docstring.", ""]
    seen = set()
    for title, modname, names in API:
        module = importlib.import_module(modname)
        if names == "__all__":
            names = sorted(module.__all__)
        elif names is None:
            names = [n for n, v in vars(module).items() if not n.startswith("_")
                     and (inspect.isclass(v) or inspect.isfunction(v))
                     and getattr(v, "__module__", None) == modname and v.__doc__]
        entries = []
        for n in names:
            obj = getattr(module, n)
            if inspect.ismodule(obj):  # blockflow.simulate & co: callable modules
                obj = getattr(obj, n)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not obj.__doc__:
                continue
            path = f"{obj.__module__}.{obj.__qualname__}"
            if path in seen:
                continue
            seen.add(path)
            entries.append(f"::: {path}\n    options:\n      heading_level: 3\n")
        if entries:
            lines += [f"## {title}", "", *entries]
    return "\n".join(lines) + "\n"


_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|exc|obj):<code>~?([^<]*)</code>")


def on_page_content(html, **kw):
    """Docstrings' Sphinx roles (``:func:`x```) as plain code, not raw text."""
    return _ROLE.sub(lambda m: f"<code>{m.group(1)}</code>", html)
