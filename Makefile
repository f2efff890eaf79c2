# The two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test docs bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m models.demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $$(mktemp -d)
	$(PY) -m pytest

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

BENCH  := $(VENV)/.bench-installed

$(BENCH): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $(BENCH)

bench: $(BENCH)
	$(PY) bench/bench_targets.py
	$(PY) bench/bench_simulate.py
	$(PY) bench/bench_gradient.py
	$(PY) bench/bench_compiled.py
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_sweep.py
	$(PY) bench/bench_solvers.py
	$(PY) bench/bench_memory.py
	$(PY) bench/bench_codegen.py

clean:
	rm -rf $(VENV) build *.egg-info site docs/generated
