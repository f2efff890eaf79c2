"""Diagrams (DOT parses back, SVG is well-formed and names every block), the command line
(the real console script in a subprocess), and plots (non-blank PNG files)."""

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pydot
import pytest

from blockflow import BlockflowError, reciprocal, simulate
from blockflow.io.export import render_svg, to_pydot
from blockflow.io.modelfile import save
from blockflow.plan.compiler import flatten
from blockflow.run.plot import plot_history, plot_scopes
from models.closed_loop import tanh_loop
from models.dc_motor import motor_loop
from models.paper import lstm_from_blocks
from models.pid import pid_loop

ROOT = Path(__file__).resolve().parents[1]


def _dot(model, **kw):
    text = to_pydot(model, **kw).to_string()
    (g,) = pydot.graph_from_dot_data(text)
    return text, g


def _all_nodes(g):
    nodes = list(g.get_nodes())
    for sub in g.get_subgraphs():
        nodes += _all_nodes(sub)
    return nodes


def _all_edges(g):
    edges = list(g.get_edges())
    for sub in g.get_subgraphs():
        edges += _all_edges(sub)
    return edges


def _attr(node, key):
    v = node.get(key)
    return (v or "").strip('"')


@pytest.mark.parametrize("build", [tanh_loop, pid_loop, lstm_from_blocks])
def test_dot_draws_every_block_port_and_connection(build):
    m = build()
    text, g = _dot(m)
    flat = flatten(m)
    nodes = _all_nodes(g)
    tips = {_attr(n, "tooltip") for n in nodes}
    for path in flat.blocks:
        if path.rsplit("/", 1)[-1] in ("in", "out"):
            continue
        assert path in tips, path  # every block has its node
    for n in nodes:  # a block drawn as a box lists its ports
        if _attr(n, "shape") == "record":
            b = flat.blocks[_attr(n, "tooltip")]
            for p in (*b.inputs, *b.outputs):
                assert p in _attr(n, "label")
    n_edges = sum(1 for _ in m.graph.edges) + sum(
        sub.graph.number_of_edges() for sub in m.blocks.values() if hasattr(sub, "graph"))
    branches = sum(1 for n in nodes if _attr(n, "shape") == "point")
    assert len(_all_edges(g)) == n_edges + branches  # a branching point adds one edge
    if build is pid_loop:
        assert any(s.get_name().startswith("cluster") for s in g.get_subgraphs())
        collapsed, gc = _dot(m, collapse=True)
        assert not gc.get_subgraphs() and "pid" in collapsed


def test_diagrams_speak_the_visual_language_of_block_diagrams():
    from models.paper import cascaded

    _, g = _dot(tanh_loop())
    by_tip = {_attr(n, "tooltip"): n for n in _all_nodes(g)}
    assert _attr(by_tip["err"], "shape") == "circle" and _attr(by_tip["err"], "label") == "Σ"
    heads = sorted(_attr(e, "headlabel") for e in _all_edges(g) if _attr(e, "headlabel"))
    assert heads == ["+", "−"]  # the Sum's signs at its inputs
    assert _attr(by_tip["kc"], "shape") == "triangle"  # its name and gain inside
    assert _attr(by_tip["kc"], "label") == "kc\\n1.5"
    assert "0.4 + 0.2z⁻¹" in _attr(by_tip["plant"], "label")  # a fraction in z^-1
    assert "─" in _attr(by_tip["plant"], "label") and "1 - 0.5z⁻¹" in _attr(by_tip["plant"],
                                                                            "label")
    assert _attr(by_tip["z"], "label") == "z⁻¹"
    assert sum(_attr(n, "shape") == "point" for n in _all_nodes(g)) == 1  # plant.y branches
    assert not any(_attr(e, "label") for e in _all_edges(g))  # scalars: no edge labels
    _, gn = _dot(tanh_loop(), labels="names")
    assert "plant.y" in {_attr(e, "label") for e in _all_edges(gn)}

    _, rg = _dot(reciprocal(tanh_loop()))
    rtips = {_attr(n, "tooltip"): n for n in _all_nodes(rg)}
    assert _attr(rtips["err"], "shape") == "point"  # the Sum's reciprocal: a branching point
    assert sorted(_attr(e, "label") for e in _all_edges(rg) if _attr(e, "label")) \
        == ["+", "−"]  # its signs on its wires
    assert _attr(rtips["plant+y"], "shape") == "circle"  # the branch's reciprocal: a sum
    assert _attr(rtips["plant+y"], "label") == "+"  # that only adds: no signs at its inputs
    assert not any(_attr(e, "headlabel") for e in _all_edges(rg))
    assert "dashed" in _attr(rtips["z"], "style") and "anticausal" in _attr(rtips["z"], "label")
    assert "z⁺¹" in _attr(rtips["plant"], "label")

    text, cg = _dot(cascaded())  # a long cascade is wrapped into rows, joined by tags
    tags = sorted(_attr(n, "label") for n in _all_nodes(cg) if _attr(n, "shape") == "cds")
    assert tags == ["A", "A", "B", "B"]
    svg = render_svg(text).decode()
    w, h = (float(re.search(rf'{k}="([0-9.]+)pt"', svg).group(1)) for k in ("width", "height"))
    assert w / h < 3
    assert {_attr(e, "label") for e in _all_edges(cg)} >= {"3", "1"}  # vector sizes shown


def test_svg_is_well_formed_and_names_every_block(tmp_path):
    m = pid_loop()
    for model, name in ((m, "m.svg"), (reciprocal(m), "r.svg")):
        path = model.draw(tmp_path / name)
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")
        text = "".join(root.itertext())
        for block in ("err", "plant", "P", "I", "D"):
            assert block in text
    assert m._repr_svg_().lstrip().startswith("<?xml")
    assert (tmp_path / "m.dot").exists() is False
    m.draw(tmp_path / "m.dot")
    assert pydot.graph_from_dot_file(tmp_path / "m.dot")
    with pytest.raises(BlockflowError, match="use .svg, .dot, .png or .pdf"):
        m.draw(tmp_path / "m.jpeg")


def test_png_and_pdf_need_no_system_graphviz(tmp_path, monkeypatch):
    """PNG (resvg) and PDF (svglib) from the in-process SVG: pip alone, no `dot`."""
    import blockflow.io.export as export

    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    png = tanh_loop().draw(tmp_path / "m.png")
    _nonblank_png(png)
    import matplotlib.image

    h, w = matplotlib.image.imread(png).shape[:2]
    assert 2.0 < w / h < 6.0  # one row, left to right, with the feedback beneath
    pdf = tanh_loop().draw(tmp_path / "m.pdf")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000


def _nonblank_png(path):
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05  # lines and text, not a blank canvas


def test_trace_plot_scopes_and_history(tmp_path):
    from blockflow import Inport, Model
    from blocks import Gain, Scope, UnitDelay

    m = Model("scoped")
    u, g, z = m.add(Inport("u"), Gain(2.0, name="g"), UnitDelay(name="z"))
    m.chain(u, g, z, m.add(Scope(name="delayed")))
    m.connect(g, m.add(Scope(name="gained")))
    tr = simulate(m, {"u": np.random.default_rng(0).standard_normal((60, 12))})
    tr.plot(["g", "z"], tmp_path / "trace.png")  # 12 runs: summarised
    tr.plot(["g"], tmp_path / "one.png", batch=3)
    plot_scopes(tr, tmp_path / "scopes.png")
    plot_history([1.0, 0.4, 0.1, 0.05], tmp_path / "history.png")
    for name in ("trace", "one", "scopes", "history"):
        _nonblank_png(tmp_path / f"{name}.png")


def blockflow(*args, cwd):
    exe = Path(sys.executable).parent / "blockflow"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "blockflow.cli"]
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_cli_run_check_draw_grad(tmp_path):
    pid = ROOT / "models" / "pid.py"
    r = blockflow("check", pid, cwd=tmp_path)
    assert r.returncode == 0 and "feedback loops run step by step: 1" in r.stdout
    r = blockflow("run", pid, "--steps", 50, "--random-inputs", 3, "--out", "t.npz",
                  "--plot", "t.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = np.load(tmp_path / "t.npz")
    assert data["plant.y"].shape == (50, 1)
    _nonblank_png(tmp_path / "t.png")
    np.save(tmp_path / "r.npy", np.ones(40))
    r = blockflow("run", pid, "--input", "r=r.npy", "--out", "t.csv", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "t.csv").read_text().startswith("k,t,y")
    save(motor_loop(plant_hz=1000, pid_hz=1000), tmp_path / "motor.json")  # dt = 1 ms
    np.save(tmp_path / "r.npy", np.ones(5))
    r = blockflow("run", "motor.json", "--input", "r=r.npy", "--out", "m.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    table = np.loadtxt(tmp_path / "m.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 1], np.arange(5) * 1e-3)  # t in seconds
    r = blockflow("draw", ROOT / "models" / "paper.py:cascaded", "--reciprocal", "-o",
                  "c.svg", cwd=tmp_path)
    assert r.returncode == 0 and ET.parse(tmp_path / "c.svg").getroot().tag.endswith("svg")
    save(tanh_loop(), tmp_path / "loop.json")
    r = blockflow("grad", "loop.json", "--steps", 30, "--random-inputs", 0, "--fd-check",
                  cwd=tmp_path)
    assert r.returncode == 0 and "worst relative difference" in r.stdout, r.stderr


def test_cli_errors_are_one_line_and_nonzero(tmp_path):
    r = blockflow("run", "missing.json", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == \
        "blockflow: error: model file 'missing.json' not found"
    r = blockflow("run", ROOT / "models" / "pid.py", cwd=tmp_path)
    assert r.returncode == 1 and "has Inports ['r']" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "bad.json").write_text("{not json")
    r = blockflow("check", "bad.json", cwd=tmp_path)
    assert r.returncode == 1 and "invalid JSON" in r.stderr and "Traceback" not in r.stderr
    r = blockflow("frobnicate", cwd=tmp_path)
    assert r.returncode == 2
    for sub in ("run", "check", "draw", "grad", "train"):
        assert blockflow(sub, "--help", cwd=tmp_path).returncode == 0


def test_names_with_record_syntax_are_escaped(tmp_path):
    from blockflow import Inport, Model, Outport
    from blocks import Gain, Sum

    m = Model("odd {names}")
    u = m.add(Inport("u<1>"))
    s = m.add(Sum("+-", name='s|"q"', inputs=("a{", "b>")))
    m.connect(u, s["a{"])
    m.connect(m.add(Gain(2.0, name="g\\x")), s["b>"])
    m.connect(u, m.blocks["g\\x"])
    m.connect(s, m.add(Outport("y")))
    text, g = _dot(m)
    assert len(_all_edges(g)) == 5  # four wires, and one from u to its branching point
    root = ET.parse(m.draw(tmp_path / "odd.svg")).getroot()
    assert 's|"q"' in "".join(root.itertext())


def test_progress_bar_only_on_a_terminal_and_not_quiet(monkeypatch):
    from blockflow import cli

    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: False)
    assert cli._progress(quiet=False) is None
    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: True)
    assert cli._progress(quiet=True) is None
    bar = cli._progress(quiet=False)
    from tqdm import tqdm

    wrapped = bar(range(50_000), 50_000)
    assert isinstance(wrapped, tqdm) and not wrapped.disable
    wrapped.close()
    short = bar(range(10), 10)
    assert short.disable  # short runs stay quiet
    trace = simulate(tanh_loop(), {"r": np.ones((30_000, 1))}, progress=lambda ks, n: ks)
    assert trace.T == 30_000


def test_cli_broken_user_files_fail_in_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("def build():\n    return undefined_name\n")
    r = blockflow("check", "broken.py", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "broken.py: NameError: name 'undefined_name' is not defined" in r.stderr
    (tmp_path / "nobuild.py").write_text("x = 1\n")
    r = blockflow("check", "nobuild.py", cwd=tmp_path)
    assert r.returncode == 1 and "defines no build()" in r.stderr
    (tmp_path / "exp.py").write_text("raise RuntimeError('diverged')\n")
    r = blockflow("train", "exp.py", cwd=tmp_path)
    assert r.returncode == 1 and "exp.py: RuntimeError: diverged" in r.stderr


def test_trace_displays_as_a_table_in_notebooks():
    tr = simulate(tanh_loop(), {"r": np.ones((4, 2))})
    page = tr._repr_html_()
    assert "Trace of tanh_loop" in page and "T=4, B=2" in page
    assert page.count("<tr>") == len(tr.names()) + 1 and "<td>kc.y</td>" in page


def test_cli_trains_a_model_and_runs_scripts_with_their_own_arguments(tmp_path, capsys):
    from blockflow import cli
    from blockflow.io.modelfile import load

    r = np.sin(np.arange(120) / 8.0)
    np.save(tmp_path / "r.npy", r)
    np.save(tmp_path / "d.npy", 0.5 * r)
    model = str(ROOT / "models" / "closed_loop.py")
    args = ["train", model, "--input", f"r={tmp_path / 'r.npy'}", "--target",
            f"y={tmp_path / 'd.npy'}", "--epochs", "15", "--lr", "0.05", "--params", "kc.",
            "--save", str(tmp_path / "t.json"), "--plot", str(tmp_path / "loss.png"),
            "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    first, last = (float(v) for v in re.search(r"loss \(mse\) (\S+) -> (\S+)", out).groups())
    assert last < first / 10
    trained = load(tmp_path / "t.json")
    assert trained.block("kc").K != 1.5 and trained.block("plant").b[0] == 0.4  # kc only
    _nonblank_png(tmp_path / "loss.png")
    assert cli.main(["train", model, "--input", f"r={tmp_path / 'r.npy'}", "--target",
                     f"q={tmp_path / 'd.npy'}"]) == 1
    assert "has no Outport 'q'; its Outports are ['y']" in capsys.readouterr().err
    assert cli.main(["train", model, "--input", f"r={tmp_path / 'r.npy'}"]) == 1
    assert "needs targets" in capsys.readouterr().err
    (tmp_path / "exp.py").write_text("import sys\nprint('args', sys.argv[1:])\n")
    assert cli.main(["-v", "train", str(tmp_path / "exp.py"), "--plot", "x.png"]) == 0
    assert "args ['--plot', 'x.png']" in capsys.readouterr().out


def test_a_loop_is_laid_out_along_its_forward_path_with_the_feedback_beneath():
    """The forward path ranks left to right in one row (no wrapped cascade for a loop);
    only the wire that closes the loop after its delay (into the error summing junction)
    leaves the ranking; a summing junction's signs sit beside the arrowheads."""
    from models.pid import pid_loop

    for model in (tanh_loop(), pid_loop()):
        g = to_pydot(model)
        shapes = {n.get_name().strip('"'): n.get("shape") for n in g.get_nodes()}
        for sub in g.get_subgraphs():
            shapes.update({n.get_name().strip('"'): n.get("shape") for n in sub.get_nodes()})
        free = [e for e in g.get_edges() if str(e.get("constraint")).strip('"') == "false"]
        assert len(free) == 1, [e.to_string() for e in free]
        head = free[0].get_destination().strip('"').split(":")[0]
        assert shapes[head] == "circle"  # the error Σ
    signs = [e for e in to_pydot(tanh_loop()).get_edges() if e.get("headlabel")]
    assert {e.get("headlabel").strip('"') for e in signs} == {"+", "−"}
    assert all(e.get("labeldistance") for e in signs)


def test_rates_are_explained_by_one_legend():
    """Each block off the base rate has its rate's border colour; the sample times are
    written once, in the legend, not on every block."""
    g = to_pydot(motor_loop())
    text = g.to_string()
    assert text.count("sample times") == 1
    assert "Ts=0.001 s" in text and "base: dt=0.0002 s" in text
    assert text.count("Ts=0.001") == 1
    assert to_pydot(tanh_loop()).to_string().count("sample times") == 0


DIAGRAMS = {  # the shipped models and the docs' figures, each with its reciprocal
    "tanh loop": (tanh_loop, {}), "PID": (pid_loop, {}), "DC motor": (motor_loop, {}),
    "DC motor collapsed": (motor_loop, {"collapse": True}),
    "cascade": ("cascaded", {}), "FIR network": ("fir_network", {}),
}


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
@pytest.mark.parametrize("recip", [False, True], ids=["forward", "reciprocal"])
def test_measured_layout_of_the_shipped_diagrams(name, recip):
    """On Graphviz's laid-out geometry (not pixels): no crossing wires, no label on a
    node, another label, a wire or a subsystem's frame, and between 1:2 and 3:1."""
    import models.paper as paper
    from blockflow.io.geometry import geometry

    build, kw = DIAGRAMS[name]
    m = (getattr(paper, build) if isinstance(build, str) else build)()
    g = geometry(reciprocal(m) if recip else m, **kw)
    assert g.crossings == 0
    assert g.overlaps == []
    assert 0.5 <= g.aspect <= 3.0


def test_the_forward_path_runs_left_to_right_and_the_reciprocal_back():
    from blockflow.io.geometry import geometry

    g = geometry(tanh_loop())
    x = {p: g.nodes[p][0] for p in ("r", "err", "kc", "tanh", "plant", "y")}
    assert list(x) == sorted(x, key=x.get)
    assert g.nodes["z"][1] < g.nodes["plant"][1]  # the feedback path beneath (y up)
    r = geometry(reciprocal(tanh_loop())).nodes
    assert r["y"][0] > r["plant"][0] > r["kc"][0]  # the reciprocal flows right to left


def test_the_layout_measure_sees_crossings_and_overlaps():
    """The measure itself, on a hand-made layout: it must be able to fail."""
    from blockflow.io.geometry import measure

    text = [{"op": "F", "size": 10.0}, {"op": "T", "pt": [50.0, 50.0], "align": "c",
                                         "width": 20.0, "text": "on a"}]
    js = {"bb": "0,0,400,100", "objects": [
        {"_gvid": 0, "name": "a", "pos": "50,50", "width": "1", "height": "0.5"},
        {"_gvid": 1, "name": "b", "pos": "300,50", "width": "1", "height": "0.5",
         "_ldraw_": [{"op": "F", "size": 10.0},
                     {"op": "T", "pt": [50.0, 48.0], "align": "c", "width": 20.0,
                      "text": "b's name, on a"}]}],
        "edges": [{"tail": 0, "head": 1, "_draw_": [{"op": "b", "points": [
            [86, 40], [150, 90], [200, 10], [264, 60]]}]},
                  {"tail": 0, "head": 1, "_draw_": [{"op": "b", "points": [
                      [86, 60], [150, 10], [200, 90], [264, 40]]}], "_ldraw_": text}]}
    g = measure(js)
    assert g.crossings == 1 and g.aspect == 4.0
    assert any("b's name" in o and "overlaps node a" in o for o in g.overlaps)
    assert any("'on a'" in o and "overlaps node a" in o for o in g.overlaps)


def test_trace_plots_draw_samples_as_stairs_and_overlay_on_request(tmp_path):
    tr = simulate(tanh_loop(), {"r": np.ones((30, 1))})
    fig = tr.plot(["r", "y"], tmp_path / "ry.png", shared=True, units={"y": "V"})
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and {ln.get_drawstyle() for ln in lines} == {"steps-post"}
    assert lines[0].get_color() != lines[1].get_color()  # told apart on the shared axis
    assert fig.axes[0].get_ylabel() == "r, y (V)"
    fig = tr.plot(["y"], stairs=False)
    assert fig.axes[0].get_lines()[0].get_drawstyle() == "default"
    _nonblank_png(tmp_path / "ry.png")
