"""The loop cache loads code: it must be private, and a damaged entry must be rebuilt.

The cases of another local user run unprivileged: where the suite runs as root, a child
process imports everything first, then drops to ``nobody`` before the victim's run."""

from __future__ import annotations

import errno
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]

# a loop of its own (a structure no other test compiles), run compiled
VICTIM = """
import os, sys, logging
logging.basicConfig(level=logging.WARNING, format="%(message)s")
import numpy as np
from blockflow import Inport, Model, Outport, simulate
from blocks import Gain, Saturation, Sum, UnitDelay

def victim(gain):
    m = Model("victim")
    r, y = m.add(Inport("r"), Outport("y"))
    s, g, q = m.add(Sum("+-", name="s"), Gain(gain, name="g"), Saturation(-2, 2, name="q"))
    m.connect(r, s.u1); m.chain(s, g, q, y); m.chain(q, m.add(UnitDelay(0.25, name="z")), s.u2)
    return m

def run(gain=0.7):
    return float(simulate(victim(gain), {"r": np.ones(50)}, backend="numba")["y"].sum())
"""


def expected(gain=0.7) -> float:
    z, total = 0.25, 0.0
    for _ in range(50):
        y = min(max(gain * (1.0 - z), -2.0), 2.0)
        total += y
        z = y
    return total


def child(body: str, env: dict, tmp: Path) -> subprocess.CompletedProcess:
    script = tmp / f"child_{abs(hash(body)) % 10**8}.py"
    script.write_text(VICTIM + textwrap.dedent(body))
    full = dict(os.environ, PYTHONPATH=str(ROOT))
    full.pop("NUMBA_OPT", None)  # (the suite's level 0 leaves code numba will not cache)
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    out = subprocess.run([sys.executable, str(script)], env=full, cwd=tmp,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_a_planted_cache_folder_of_another_user_is_refused(tmp_path):
    """Another user pre-creates the fallback folder ``<tmp>/blockflow-<uid>`` (mode 777)
    with a module of the victim's loop name and a ``.pyc``: the victim warns, runs
    uncached with the right numbers, and none of the planted code runs."""
    if os.getuid() != 0:
        pytest.skip("needs root to act as two users (the suite drops to nobody)")
    import shutil
    import tempfile

    victim_uid = 65534
    shared_tmp = Path(tempfile.mkdtemp(prefix="bf-shared-tmp-", dir="/tmp"))  # reachable
    os.chmod(shared_tmp, 0o1777)
    try:
        _planted(tmp_path, shared_tmp, victim_uid)
    finally:
        shutil.rmtree(shared_tmp, ignore_errors=True)


def _planted(tmp_path: Path, shared_tmp: Path, victim_uid: int) -> None:
    planted = shared_tmp / f"blockflow-{victim_uid}"
    (planted / "loops" / "__pycache__").mkdir(parents=True)
    marker = shared_tmp / "pwned"  # (where the victim could write it)
    evil = f"open({str(marker)!r}, 'w').write('x')\nloop = None\n"
    for folder in (planted, planted / "loops", planted / "loops" / "__pycache__"):
        os.chmod(folder, 0o777)
    home = tmp_path / "home"  # the victim's home cache cannot be made (root's folder)
    home.mkdir(mode=0o755)
    body = f"""
    import glob, tempfile
    from blockflow.backends.loops import loop_name, _register_all
    from blockflow.plan.compiler import compile
    m = victim(0.7)
    plan = compile(m, backend="numba")
    seg = next(s for s in plan.segments if s.loop is not None)
    name = loop_name(seg.ops, [op.block.kernel() for op in seg.ops], plan.slot_types)[0]
    for d in ({str(planted / "loops")!r},):
        open(d + "/" + name + ".py", "w").write({evil!r})
        open(d + "/__pycache__/" + name + ".cpython-311.pyc", "wb").write(b"garbage")
    # warm up as root in a cache of root's own (imports numba's lazy modules), then drop
    os.environ["BLOCKFLOW_CACHE"] = {str(tmp_path / "root_cache")!r}
    from models.closed_loop import tanh_loop
    simulate(tanh_loop(), {{"r": np.ones(5)}}, backend="numba")
    del os.environ["BLOCKFLOW_CACHE"]
    os.environ["XDG_CACHE_HOME"] = {str(home / "cache")!r}
    tempfile.tempdir = {str(shared_tmp)!r}
    os.setgid({victim_uid}); os.setuid({victim_uid})
    print(repr(run()))
    """
    out = child(body, {"BLOCKFLOW_CACHE": None}, tmp_path)
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected(), rel=1e-12)
    assert not marker.exists()
    assert "is not used" in out.stderr and "another user" in out.stderr, out.stderr
    # the victim wrote nothing into the planted folder either
    assert not any(p.name.endswith(".nbi") for p in (planted / "loops" / "__pycache__").iterdir())


def test_a_folder_others_may_write_is_refused_and_a_private_one_is_made_0700(tmp_path):
    out = child(f"""
    os.umask(0)  # folders and files come out private whatever the umask
    os.environ["BLOCKFLOW_CACHE"] = {str(tmp_path / "mine")!r}
    print(repr(run()))
    """, {}, tmp_path)
    assert float(out.stdout.split()[-1]) == pytest.approx(expected(), rel=1e-12)
    loops = tmp_path / "mine" / "loops"
    assert stat.S_IMODE(os.stat(loops).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(loops / "__pycache__").st_mode) == 0o700
    modules = list(loops.glob("bf_*.py"))
    assert modules and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in modules)

    shared = tmp_path / "shared"
    (shared / "loops").mkdir(parents=True)
    os.chmod(shared / "loops", 0o777)
    out = child(f"""
    os.environ["BLOCKFLOW_CACHE"] = {str(shared)!r}
    print(repr(run()))
    """, {}, tmp_path)
    assert float(out.stdout.split()[-1]) == pytest.approx(expected(), rel=1e-12)
    assert "others may write to it (mode 777)" in out.stderr
    assert not list((shared / "loops").glob("*.py"))


def test_a_symlink_at_a_temporary_name_is_never_followed(tmp_path):
    """The cache writes through a fresh file of a random name: a symlink planted at the
    name earlier versions used (``<module>.<pid>.tmp``) is left alone, and so is its
    target."""
    cache = tmp_path / "cache"
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    body = f"""
    os.environ["BLOCKFLOW_CACHE"] = {str(cache)!r}
    from blockflow.backends.loops import loop_name
    from blockflow.backends.scalar import scalar_forms, scalar_loop_name
    from blockflow.plan.compiler import compile
    from blockflow.backends.diskcache import loop_dir
    plan = compile(victim(0.7), backend="numba")
    seg = next(s for s in plan.segments if s.loop is not None)
    names = [loop_name(seg.ops, [op.block.kernel() for op in seg.ops], plan.slot_types)[0],
             scalar_loop_name(seg.ops, scalar_forms(seg.ops, plan.slot_types, 1),
                              plan.slot_types)[0]]
    folder = loop_dir()
    for name in names:  # the loop's array form and its loop of numbers (this run's)
        for pid in range(os.getpid() - 5, os.getpid() + 50):
            os.symlink({str(target)!r}, folder / f"{{name}}.{{pid}}.tmp")
    print(repr(run()))
    """
    out = child(body, {}, tmp_path)
    assert float(out.stdout.split()[-1]) == pytest.approx(expected(), rel=1e-12)
    assert target.read_text() == "keep me"


def test_a_damaged_entry_is_discarded_and_rebuilt(tmp_path):
    """A truncated numba index, a garbage machine-code file, a module replaced by text or
    by bytes: each next run rebuilds the entry (same numbers), the one after is served
    from the cache again."""
    cache = tmp_path / "cache"
    env = {"BLOCKFLOW_CACHE": str(cache)}
    first = child("print(repr(run()))", env, tmp_path).stdout.split()[-1]
    loops = cache / "loops"
    for damage in ["nbi", "nbc", "module", "module-binary"]:
        if damage == "module":
            for p in loops.glob("bf_*.py"):
                p.write_text("garbage = (")
        elif damage == "module-binary":
            for p in loops.glob("bf_*.py"):
                p.write_bytes(b"\xff\xfe\x00garbage")
        else:
            files = list((loops / "__pycache__").glob(f"*.{damage}"))
            assert files, damage
            for p in files:
                p.write_bytes(p.read_bytes()[:50] if damage == "nbi" else b"garbage\n")
        again = child("print(repr(run()))", env, tmp_path)
        assert again.stdout.split()[-1] == first, damage
    assert list((loops / "__pycache__").glob("*.nbi"))


def test_a_cache_that_cannot_grow_runs_uncached(tmp_path, monkeypatch, caplog):
    """A full disk: neither the module nor numba's files can be written; the run warns
    once and compiles in memory, with the compiled numbers."""

    from blockflow.backends import diskcache

    monkeypatch.setenv("BLOCKFLOW_CACHE", str(tmp_path / "full"))
    monkeypatch.setattr(diskcache, "_DISABLED", [])
    namespace: dict = {}
    exec(VICTIM, namespace)

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(diskcache, "write_private", no_space)
    for name in [k for k in sys.modules if k.startswith("bf_")]:
        monkeypatch.delitem(sys.modules, name)  # (loaded by another test: made anew)
    with caplog.at_level(logging.WARNING):
        assert namespace["run"](0.61) == pytest.approx(expected(0.61), rel=1e-12)
    assert "cannot write the loop cache" in caplog.text

    # numba's own files cannot be written either (in a child: the suite's NUMBA_OPT=0
    # leaves code numba does not cache at all)
    out = child("""
    import errno
    import numba.core.caching as caching
    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    caching.IndexDataCacheFile.save = no_space
    print(repr(run(0.62)), repr(run(0.63)))
    """, {"BLOCKFLOW_CACHE": str(tmp_path / "full2")}, tmp_path)
    got = [float(v) for v in out.stdout.split()[-2:]]
    assert got == pytest.approx([expected(0.62), expected(0.63)], rel=1e-12)
    assert "uncached" in out.stderr
