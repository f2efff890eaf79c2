"""The notebook example runs from top to bottom in a real kernel, and what it shows is
shown: the model and its reciprocal as SVG, the trace as a table, the trace plot and the
training history as images."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_executes_and_displays(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.read(ROOT / "docs" / "notebooks" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    outs = [c.outputs for c in nb.cells if c.cell_type == "code"]
    for cell in outs:
        assert not any(o.output_type == "error" for o in cell)

    def kinds(cell):
        return {k for o in cell if o.output_type in ("execute_result", "display_data")
                for k in o.data}

    model, recip, trace, plot, grads, history = (kinds(c) for c in outs)
    assert "image/svg+xml" in model and "image/svg+xml" in recip
    assert "text/html" in trace
    assert "image/png" in plot and "image/png" in history
    svg = next(o.data["image/svg+xml"] for o in outs[1] if "image/svg+xml" in o.data)
    assert "reciprocal of tanh_loop" in svg


def test_the_committed_notebook_shows_its_outputs_without_running():
    """A reader on GitHub or in the docs sees the diagrams, table and figures: the file
    is committed executed, every code cell with its outputs and none an error."""
    nb = nbformat.read(ROOT / "docs" / "notebooks" / "quickstart.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs for c in code)
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    shown = {k for c in code for o in c.outputs if "data" in o for k in o.data}
    assert {"image/svg+xml", "image/png", "text/html"} <= shown
