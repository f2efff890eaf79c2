"""Model files: exact round trips, atomic writes, and a clear ModelFileError for every
malformed file (hypothesis feeds corrupted files to load)."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blockflow import Block, Inport, Model, ModelFileError, Outport, reciprocal, simulate
from blockflow.io.modelfile import dumps, load, loads, register_block, save
from blocks import Function, Gain
from models import CATALOGUE
from models.closed_loop import tanh_loop


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_round_trip_is_exact(name, tmp_path):
    build, make = CATALOGUE[name]
    m, x = build(), make(15, 2, 0)
    m2 = load(save(m, tmp_path / "m.json"))
    a, b = simulate(m, x), simulate(m2, x)
    assert a.names() == b.names()
    for s in a.names():
        np.testing.assert_array_equal(a[s], b[s])
    assert dumps(m2) == dumps(m)
    assert m2.parameters().keys() == m.parameters().keys()
    r = reciprocal(m)
    assert dumps(load(save(r, tmp_path / "r.json"))) == dumps(r)


def test_float32_and_odd_values_round_trip(tmp_path):
    m = tanh_loop().astype(np.float32)
    m.blocks["kc"].K[...] = np.float32(1 / 3)
    m2 = load(save(m, tmp_path / "m.json"))
    assert m2.blocks["kc"].K.dtype == np.float32 and m2.blocks["kc"].K == np.float32(1 / 3)


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    save(tanh_loop(), path)
    before = path.read_bytes()
    import blockflow.fsutil as fsutil

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(fsutil.os, "replace", crash)
    m = tanh_loop(kc=9.0)
    with pytest.raises(ModelFileError, match="disk full"):
        save(m, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary left behind


@register_block
class Twice(Block):
    """y(k) = 2 u(k) (a user block registered for loading)."""

    def output(self, x, u):
        return 2 * u

    def vjp(self, u, y, dy):
        return 2 * dy

    def config(self):
        return {}


class Unregistered(Twice):
    pass


def test_user_blocks_load_through_the_registry(tmp_path):
    m = Model("user")
    m.chain(*m.add(Inport("u"), Twice(name="t"), Outport("y")))
    m2 = load(save(m, tmp_path / "m.json"))
    assert isinstance(m2.blocks["t"], Twice)
    m = Model("user")
    m.chain(*m.add(Inport("u"), Unregistered(name="t"), Outport("y")))
    with pytest.raises(ModelFileError, match="unknown block type 'Unregistered'.*register_block"):
        loads(dumps(m))


def test_callable_function_cannot_be_saved():
    m = Model("f")
    m.chain(*m.add(Inport("u"), Function(np.arctan, lambda a, y: 1 / (1 + a * a), name="at"),
                   Outport("y")))
    with pytest.raises(ModelFileError, match="block 'at' \\(Function\\).*user callable"):
        dumps(m)


def _doc():
    return json.loads(dumps(tanh_loop()))


def _blocks(doc):
    return {b["name"]: b for b in doc["model"]["blocks"]}


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(version=2), "format version 2, newer than"),
    (lambda d: d.update(format="other"), "not a blockflow model file"),
    (lambda d: d.update(version="1"), "'version' must be an integer"),
    (lambda d: _blocks(d)["kc"].update(type="Gainz"), "block 'kc'.*unknown block type 'Gainz'"),
    (lambda d: d["model"]["connections"].append(["kc", "y", "ghost", "u"]),
     r"connections\[\d+\]: connection to unknown block 'ghost'"),
    (lambda d: d["model"]["connections"].append(["kc", "nope", "err", "u1"]),
     "has no port 'nope'"),
    (lambda d: _blocks(d)["plant"]["config"]["b"]["__array__"].update(shape=[3]),
     "block 'plant'.*shape \\[3\\] needs 3 numbers, got 2"),
    (lambda d: _blocks(d)["kc"]["config"].update(K={"__array__": {
        "dtype": "float64", "shape": [2], "data": [1.0, 2.0]}}),
     "block 'kc'.*does not fit samples of shape"),
    (lambda d: _blocks(d)["kc"]["config"].update(multiplication=5), "block 'kc' \\(Gain\\)"),
    (lambda d: d["model"].update(blocks="x"), "'blocks' must be a list"),
    (lambda d: _blocks(d)["z"].update(name=3), "block name must be a string"),
])
def test_malformed_files_name_what_and_where(mutate, message):
    doc = _doc()
    mutate(doc)
    with pytest.raises(ModelFileError, match=message):
        loads(json.dumps(doc))


def test_truncated_and_missing_files(tmp_path):
    text = dumps(tanh_loop())
    with pytest.raises(ModelFileError, match="invalid JSON, truncated"):
        loads(text[: len(text) // 2])
    with pytest.raises(ModelFileError, match="cannot read model file"):
        load(tmp_path / "absent.json")


TEXT = dumps(tanh_loop())


@given(cut=st.integers(0, len(TEXT) - 1), junk=st.text(max_size=5))
def test_corrupted_files_raise_only_model_file_errors(cut, junk):
    corrupted = TEXT[:cut] + junk + TEXT[cut + len(junk):]
    try:
        loads(corrupted)
    except ModelFileError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3)
                           | st.floats(allow_nan=False),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(
                               st.text(max_size=4), c, max_size=3), max_leaves=8)


@given(path=st.lists(st.integers(0, 50), min_size=1, max_size=6), value=json_values)
def test_structurally_corrupted_files_raise_only_model_file_errors(path, value):
    doc = _doc()
    node = doc
    for i in path:  # walk somewhere into the document and replace what is there
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = keys[i % len(keys)]
        if not isinstance(node[key], dict | list) or i % 3 == 0:
            node[key] = value
            break
        node = node[key]
    try:
        m = loads(json.dumps(doc))
    except ModelFileError:
        return
    assert isinstance(m, Model)


def test_gain_keeps_working_after_load():
    m = Model("g")
    m.chain(*m.add(Inport("u", shape=(2,)), Gain(np.eye(2) * 3, name="g"), Outport("y")))
    m2 = loads(dumps(m))
    assert m2.blocks["g"].matrix
    x = {"u": np.ones((3, 2))}
    np.testing.assert_array_equal(simulate(m2, x)["y"], simulate(m, x)["y"])


def test_engine_loads_library_blocks_without_importing_the_library(tmp_path):
    """The engine finds the standard library through its entry point, not by name."""
    import subprocess
    import sys

    from models.closed_loop import tanh_loop

    save(tanh_loop(), tmp_path / "m.json")
    code = ("import sys, blockflow; assert 'blocks' not in sys.modules; "
            f"m = blockflow.load({str(tmp_path / 'm.json')!r}); "
            "print(sorted(type(b).__name__ for b in m.blocks.values())[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "Constant" in out or "Gain" in out or "DiscreteFilter" in out


def test_a_user_block_without_config_is_refused_at_save(tmp_path):
    from blockflow import Block, Inport, Model, ModelFileError, Outport

    class Twice(Block):
        """``y(k) = 2 u(k)``."""

        linear = True

        def output(self, x, u):
            return 2 * u

    m = Model("t")
    u, b, y = m.add(Inport("u"), Twice(name="tw"), Outport("y"))
    m.chain(u, b, y)
    with pytest.raises(ModelFileError, match=r"'tw' \(Twice\) defines no config\(\)"):
        save(m, tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()
