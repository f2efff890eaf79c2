"""The second bad-input catalogue: hostile conditions for the loop cache's neighbours,
sweeps and their chunk folders, sample times, continuous blocks, python-control, trace
files and the train/sweep commands.  Each case a project error raised before anything
runs (or a silent wrong result made exact), naming what is wrong and what to do.  The
loop cache's own cases are in test_loop_cache.py."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from blockflow import (
    BlockflowError,
    Inport,
    Model,
    Outport,
    ParameterError,
    SimulationError,
    TraceFileError,
    backward,
    simulate,
)
from blockflow.cli import main
from blockflow.core.rates import RateError
from blockflow.parallel import parameter_sweep
from blockflow.run.trace import Trace
from models.closed_loop import tanh_loop

xr = pytest.importorskip("xarray")
control = pytest.importorskip("control")

SERIAL = {"executor": "serial", "progress": False}
R = {"r": np.ones(20)}


def _sweep(params, **kw):
    return lambda: parameter_sweep(tanh_loop(), params, **{"steps": 20, "inputs": R, **SERIAL,
                                                             **kw})


def _inner_dt():
    from blocks import TransferFcn

    inner = Model("inner", dt=0.5)
    u, tf, y = inner.add(Inport("u"), TransferFcn([1.0], [1.0, 1.0], name="tf"), Outport("y"))
    inner.chain(u, tf, y)
    outer = Model("outer", dt=0.1)
    r, out = outer.add(Inport("r"), Outport("y"))
    outer.chain(r, outer.add(inner), out)
    return simulate(outer, {"r": np.ones(5)})


def _discrete_tf_in_faster_model():
    from blockflow.control.lti import from_control

    m = Model("outer", dt=0.1)
    r, y = m.add(Inport("r"), Outport("y"))
    m.chain(r, m.add(from_control(control.tf([0.5], [1.0, -0.5], dt=0.5), name="p")), y)
    return simulate(m, {"r": np.ones(10)})


def _tustin_singular():
    from blocks import ContinuousStateSpace

    m = Model("t", dt=1.0)
    u, y = m.add(Inport("u", shape=(1,)), Outport("y"))
    m.chain(u, m.add(ContinuousStateSpace([[2.0]], [[1.0]], [[1.0]], method="tustin",
                                          name="css")), y)
    return simulate(m, {"u": np.ones((3, 1))})


def _improper_mimo():
    from blockflow.control.lti import from_control

    sys = control.tf([[[1, 2, 3], [1]], [[1], [1]]], [[[1, 1], [1, 1]], [[1, 1], [1, 1]]])
    return from_control(sys, name="p")


def _streamed_batched():
    from blockflow.gradient.schedules import Streamed

    r = np.ones((20, 2))
    return backward(tanh_loop(), {"r": r}, targets=r, schedule=Streamed(5),
                    params={"kc.K": np.array([1.0, 2.0])})


def _blocks():
    import blocks

    return blocks


CASES = [
    # silent wrong results, now refused or exact
    ("subsystem with its own dt", _inner_dt, RateError,
     r"subsystem 'inner' has dt=0.5 s but runs inside 'outer' stepped every 0.1 s"),
    ("discrete system of another period", _discrete_tf_in_faster_model, RateError,
     r"Ts=0.1.*Ts=0.5.*rate transition"),
    ("grid {}", _sweep({}), ParameterError, "the grid is empty"),
    ("workers=0", _sweep({"kc.K": [1.0]}, workers=0, executor=None), ParameterError,
     "workers must be a positive number"),
    ("DiscreteIntegrator(lower=NaN)",
     lambda: _blocks().DiscreteIntegrator(lower=float("nan"), name="di"), ParameterError,
     "lower must be a number, got NaN"),
    ("RateLimiter(rising=-1)", lambda: _blocks().RateLimiter(rising=-1.0, falling=-2.0,
                                                             name="rl"),
     ParameterError, r"rising is the fastest rise per second \(>= 0\)"),
    ("Switch(strict='no')", lambda: _blocks().Switch(strict="no", name="sw"), ParameterError,
     "strict must be True or False"),
    ("batched parameters under Streamed", _streamed_batched, SimulationError,
     "Streamed.*no per-member gradients"),
    # raw exceptions before, project errors now
    ("grid of strings", _sweep({"kc.K": ["a", "b"]}), ParameterError,
     "'kc.K' takes numbers"),
    ("grid of a bare number", _sweep({"kc.K": 3.0}), ParameterError,
     "the values of 'kc.K' must be a list"),
    ("workers=-1", _sweep({"kc.K": [1.0]}, workers=-1), ParameterError,
     "workers must be a positive number"),
    ("params=[1, 2]", _sweep([1, 2]), ParameterError, "non-empty list of dicts"),
    ("sample_time of three numbers",
     lambda: _blocks().Gain(1.0, name="g", sample_time=(0.2, 0.0, 1.0)), ParameterError,
     r"block 'g' \(Gain\): sample_time must be Ts or \(Ts, offset\)"),
    ("tustin with a singular I - hA/2", _tustin_singular, ParameterError,
     "block 'css'.*tustin cannot discretise it at h=1 s"),
    ("improper entry of a MIMO transfer function", _improper_mimo, ParameterError,
     r"entry \(0, 0\).*improper"),
    ("linearize(step=2.5)", lambda: __import__("blockflow.control.lti").control.lti.linearize(
        tanh_loop(), step=2.5), SimulationError, "step must be a whole step number"),
    ("linearize('model.json')", lambda: __import__("blockflow.control.lti").control.lti.linearize(
        "model.json"), SimulationError, "linearize takes a Model"),
    ("RateLimiter(rising='fast')", lambda: _blocks().RateLimiter(rising="fast", name="rl"),
     ParameterError, "rising must be a number, got 'fast'"),
    ("TransferFcn with NaN", lambda: _blocks().TransferFcn([1.0, float("nan")], [1.0, 1.0],
                                                           name="tf"),
     ParameterError, "block 'tf' .*: num holds NaN"),
    ("TransferFcn with None", lambda: _blocks().TransferFcn([1.0], [1.0, None], name="tf"),
     ParameterError, "block 'tf' .*: den holds NaN, None"),
    ("to_xarray(signals=5)", lambda: simulate(tanh_loop(), R).to_xarray(signals=5),
     SimulationError, "signals must be a signal name or a list"),
    # load
    ("a grid of 10^8 runs", _sweep({"kc.K": np.arange(10_000.0),
                                    "plant.b": [np.array([0.4, 0.2])] * 10_000}),
     ParameterError, "the grid has 1e\\+08 runs"),
    ("outputs of 10,000 runs beyond memory", lambda: parameter_sweep(
        tanh_loop(), {"kc.K": np.linspace(0.5, 2, 10_000)}, steps=10**7, **SERIAL),
     ParameterError, r"10,000 runs x 10,000,000 steps .* GiB, but .* GiB are available"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_catalogue(case):
    _, thunk, error, message = case
    with pytest.raises(error, match=message) as info:
        thunk()
    assert isinstance(info.value, BlockflowError)


# ----------------------------------------------------------------- trace files
def _npz(members: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def _trace_files(tmp: Path) -> dict:
    good = tmp / "good.npz"
    simulate(tanh_loop(), {"r": np.ones(6)}).save(good)
    raw = good.read_bytes()
    meta = {"model": "m", "T": 6, "B": 1, "dt": 1.0}
    files = {
        "truncated": raw[: len(raw) // 2],
        "empty": b"",
        "JSON": json.dumps({"T": 6}).encode(),
        "pickled metadata": _npz({"~meta": np.array([{"T": 6}], dtype=object),
                                  "~time": np.arange(6.0)}),
        "missing metadata": _npz({"~time": np.arange(6.0)}),
        "non-JSON metadata": _npz({"~meta": np.array("T=6"), "~time": np.arange(6.0)}),
        "metadata T=999 B=-1 dt='x'": _npz({"~meta": np.array(json.dumps(
            {"model": "m", "T": 999, "B": -1, "dt": "x"})), "~time": np.arange(6.0)}),
        "a time axis of another length": _npz({"~meta": np.array(json.dumps(meta)),
                                                "~time": np.arange(5.0)}),
    }
    # a 2 KB file declaring 10^12 elements (the header says so, the data is not there)
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w") as zf:
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False,
                                                    "shape": (10**6, 10**6)})
        zf.writestr("y.npy", head.getvalue() + b"\0" * 1024)
        zf.writestr("~meta.npy", _npy(np.array(json.dumps(meta))))
        zf.writestr("~time.npy", _npy(np.arange(6.0)))
    files["declares 10^12 elements"] = big.getvalue()
    out = {}
    for name, data in files.items():
        p = tmp / f"{name.replace(' ', '_').replace('^', '')}.npz"
        p.write_bytes(data)
        out[name] = p
    out["missing"] = tmp / "nope.npz"
    out["a directory"] = tmp
    return out


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


TRACE_CASES = ["truncated", "empty", "JSON", "pickled metadata", "missing metadata",
               "non-JSON metadata", "metadata T=999 B=-1 dt='x'",
               "a time axis of another length", "declares 10^12 elements", "missing",
               "a directory"]


@pytest.mark.parametrize("case", TRACE_CASES)
def test_every_trace_load_failure_names_the_file(case, tmp_path):
    path = _trace_files(tmp_path)[case]
    with pytest.raises(TraceFileError, match=f"cannot load trace {str(path)!r}"):
        Trace.load(path)


def test_trace_save_refuses_a_folder_and_a_path_under_a_file(tmp_path):
    tr = simulate(tanh_loop(), {"r": np.ones(4)})
    with pytest.raises(TraceFileError, match="it is a folder"):
        tr.save(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(TraceFileError, match="is a file, not a folder"):
        tr.save(tmp_path / "f" / "t.npz")
    back = Trace.load(tr.save(tmp_path / "ok.npz"))
    np.testing.assert_array_equal(back["y"], tr["y"])


# ---------------------------------------------------------------- sweep folders
GRID = {"plant.a": [np.array([1.0, -a]) for a in (0.2, 0.4, 0.6)]}


def _rms(signals, time):
    return float(np.sqrt(np.mean(signals["y"] ** 2)))


def _mean(signals, time):
    return float(np.mean(signals["y"]))


def _run(folder, metric=_rms, inputs=R):
    return parameter_sweep(tanh_loop(), GRID, steps=20, inputs=inputs, metric=metric,
                           out=folder, **SERIAL)


def test_a_chunk_file_copied_over_another_is_not_taken_for_it(tmp_path, caplog):
    first = _run(tmp_path)
    files = sorted(tmp_path.glob("chunk-*.npz"))
    assert len(files) == 3
    files[1].write_bytes(files[0].read_bytes())  # chunk 0's data under chunk 1's name
    with caplog.at_level("WARNING"):
        again = _run(tmp_path)
    assert "holds another chunk's results" in caplog.text
    assert again["metric"].tolist() == first["metric"].tolist()


def test_an_edited_function_of_the_same_name_never_reuses_stale_chunks(tmp_path):
    first = _run(tmp_path, metric=_rms)
    ns: dict = {"np": np}
    exec("def _rms(signals, time):\n    return float(np.mean(signals['y']))\n", ns)
    edited = _run(tmp_path, metric=ns["_rms"])  # same name, new code
    assert edited["metric"].tolist() == _run(tmp_path / "fresh", metric=_mean)[
        "metric"].tolist()
    assert edited["metric"].tolist() != first["metric"].tolist()
    scale = {"v": 1.0}

    def reads_a_dict(seed):  # what it computes from cannot be keyed: never reused
        return {"r": scale["v"] * np.ones(20)}

    a = _run(tmp_path / "d", inputs=reads_a_dict)
    scale["v"] = 2.0
    b = _run(tmp_path / "d", inputs=reads_a_dict)
    assert b["metric"].tolist() == pytest.approx([2 * v for v in a["metric"]], rel=0.5)
    assert b["metric"].tolist() != a["metric"].tolist()


def test_a_truncated_chunk_file_is_computed_again(tmp_path, caplog):
    first = _run(tmp_path)
    f = sorted(tmp_path.glob("chunk-*.npz"))[1]
    f.write_bytes(f.read_bytes()[:40])
    with caplog.at_level("WARNING"):
        again = _run(tmp_path)
    assert "is damaged" in caplog.text
    assert again["metric"].tolist() == first["metric"].tolist()


def test_a_metric_failing_for_one_run_fails_that_run_alone():
    last = simulate(tanh_loop(), {"r": np.ones((30, 2))}, params={
        "kc.K": np.array([0.2, 50.0])})["y"][-1]
    assert last[0] < last[1]

    def picky(signals, time):
        if signals["y"][-1] > last.mean():
            raise ValueError("too high")
        return float(signals["y"][-1])

    table = parameter_sweep(tanh_loop(), {"kc.K": [0.2, 50.0]}, steps=30,
                            inputs={"r": np.ones(30)}, metric=picky, **SERIAL)
    assert table["error"].isna().tolist() == [True, False]
    assert "ValueError in metric: too high" in table["error"].iloc[1]
    assert np.isfinite(table["metric"].iloc[0]) and np.isnan(table["metric"].iloc[1])


# ------------------------------------------------------------------------ CLI
def test_cli_train_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    np.save(tmp_path / "r.npy", np.ones(10))
    code = main(["train", "models/closed_loop.py", "--input", f"r={tmp_path / 'r.npy'}",
                 "--target", f"y={tmp_path / 'r.npy'}", "--epochs", "2", "--resume"])
    assert code != 0
    assert "--resume continues from a checkpoint: give --checkpoint" in capsys.readouterr().err


def test_cli_sweep_checks_its_arguments_before_running(tmp_path, capsys):
    np.save(tmp_path / "q.npy", np.ones(10))
    cases = [
        (["--param", "kc.K=1,2", "--param", "kc.K=3"], "--param names ['kc.K'] more than once"),
        (["--param", "kc.K=1,2", "--input", f"q={tmp_path / 'q.npy'}"],
         "the model has no Inport 'q'"),
        (["--param", "kc.K=1,2", "--out", str(tmp_path / "r.csv")],
         "--out without --metric: use .nc"),
    ]
    for extra, message in cases:
        code = main(["sweep", "models/closed_loop.py", "--steps", "10", "--seeds", "1",
                     "--quiet", *extra])
        err = capsys.readouterr().err
        assert code != 0 and message in err, (extra, err)
        assert "swept" not in err and len(err.strip().splitlines()) == 1
