"""Every page of the manual runs on its own: its Python examples, executed in order in a
fresh namespace per page (in a scratch folder, so the files they write go there)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md")
               if re.search(r"```python\n", p.read_text(encoding="utf-8")))


def test_the_manual_has_examples():
    assert {p.name for p in PAGES} >= {"tutorial.md", "gradients.md", "training.md",
                                       "control.md", "sweeps.md"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_a_page_runs_on_its_own(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    root = str(DOCS.parent)
    monkeypatch.syspath_prepend(root)
    monkeypatch.chdir(tmp_path)
    os.symlink(DOCS.parent / "models", tmp_path / "models")  # examples name model files
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for code in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102
