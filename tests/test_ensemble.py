"""Parameters along the batch axis, parameter sweeps (serial, local processes, a real Dask
cluster), failures, resuming a killed sweep, many trainings, and traces as data."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from blockflow import ParameterError, SimulationError, backward, simulate
from blockflow.parallel import parameter_sweep, train_many
from blockflow.run.trace import Trace
from models.closed_loop import tanh_loop

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")

GAINS = np.linspace(0.5, 2.0, 4)


def noise_inputs(seed):
    return {"r": np.random.default_rng(seed).standard_normal((60,))}


def peak(signals, t):
    return {"peak": float(np.abs(signals["y"]).max()), "last": float(signals["y"][-1])}


def with_gain(k):
    m = tanh_loop()
    m.block("kc").K[...] = k
    return m


def test_batched_parameters_equal_one_run_per_value():
    m = tanh_loop()
    r = np.sin(np.arange(40) / 4.0)
    tr = simulate(m, {"r": r}, params={"kc.K": GAINS})
    g = backward(m, {"r": r}, targets={"y": np.zeros(40)}, params={"kc.K": GAINS})
    assert m.block("kc").K == 1.5  # the model is unchanged
    for i, k in enumerate(GAINS):
        one = with_gain(k)
        np.testing.assert_array_equal(tr["y"][:, i], simulate(one, {"r": r})["y"][:, 0])
        ref = backward(one, {"r": r}, targets={"y": np.zeros(40)}).params
        assert g.params["kc.K"][i] == pytest.approx(float(ref["kc.K"]), rel=1e-12)
        assert g.params["plant.b"].shape == (2,)  # not batched: summed over the batch


def test_batched_parameters_are_refused_where_a_block_cannot_take_them():
    m = tanh_loop()
    with pytest.raises(ParameterError, match="cannot take 'b' per batch member"):
        simulate(m, {"r": np.zeros(5)}, params={"plant.b": np.ones((3, 2))})
    with pytest.raises(ParameterError, match=r"shape \(B, \*\(\)\)"):
        simulate(m, {"r": np.zeros(5)}, params={"kc.K": np.ones((3, 2))})
    with pytest.raises(SimulationError, match="batch=3 but the inputs have batch size 2"):
        simulate(m, {"r": np.zeros((5, 2))}, params={"kc.K": np.ones(3)})


def test_sweep_result_is_tidy_and_equals_single_runs():
    ds = parameter_sweep(tanh_loop(), {"kc.K": GAINS}, seeds=3, inputs=noise_inputs,
                         executor="serial", progress=False)
    assert ds["y"].dims == ("kc.K", "seed", "time")
    np.testing.assert_array_equal(ds["kc.K"], GAINS)
    for k in (GAINS[0], GAINS[2]):
        for seed in (0, 2):
            ref = simulate(with_gain(k), noise_inputs(seed))["y"][:, 0]
            np.testing.assert_array_equal(ds["y"].sel({"kc.K": k, "seed": seed}), ref)


def test_metrics_come_as_a_data_frame_in_sweep_order():
    sets = [{"kc.K": 0.5, "plant.a": np.array([1.0, -0.5])},
            {"kc.K": 1.0, "plant.a": np.array([1.0, -0.2])}]
    df = parameter_sweep(tanh_loop(), sets, seeds=2, inputs=noise_inputs, metric=peak,
                         executor="serial", progress=False)
    assert list(df.columns) == ["kc.K", "plant.a", "seed", "peak", "last", "error"]
    assert list(df["seed"]) == [0, 1, 0, 1] and list(df["kc.K"]) == [0.5, 0.5, 1.0, 1.0]
    m = with_gain(1.0)
    m.block("plant").a[...] = [1.0, -0.2]
    y = simulate(m, noise_inputs(1))["y"][:, 0]
    assert df["peak"].iloc[3] == np.abs(y).max() and df["error"].isna().all()


def test_a_vectorized_metric_gives_the_per_run_metrics_in_one_call_per_chunk():
    calls = {"inputs": [], "metric": 0}

    def inputs(seed):
        calls["inputs"].append(seed)
        return noise_inputs(seed)

    def peaks(signals, t):  # every run of the chunk at once: (T, runs)
        calls["metric"] += 1
        y = signals["y"]
        return {"peak": np.abs(y).max(axis=0), "last": y[-1]}

    sets = [{"kc.K": k, "plant.a": np.array([1.0, a])} for k, a in
            ((0.5, -0.5), (1.0, -0.2), (1.5, -0.1))]
    per_run = parameter_sweep(tanh_loop(), sets, seeds=3, inputs=noise_inputs, metric=peak,
                              executor="serial", progress=False)
    at_once = parameter_sweep(tanh_loop(), sets, seeds=3, inputs=inputs, metric=peaks,
                              vectorized=True, executor="serial", progress=False)
    pd.testing.assert_frame_equal(at_once, per_run)
    # the parameter sets differ in plant.a (not batchable): a chunk per set, each calling
    # the metric once and inputs(seed) once per seed
    assert calls["metric"] == 3 and sorted(calls["inputs"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # a metric giving one number for the chunk fails it; its runs, retried alone, say why
    bad = parameter_sweep(tanh_loop(), {"kc.K": GAINS[:1]}, seeds=3, inputs=noise_inputs,
                          metric=lambda s, t: 1.0, vectorized=True, executor="serial",
                          progress=False)
    assert bad["error"].str.contains(r"one value per run, shape \(1,\)").all()
    with pytest.raises(ParameterError, match="give metric="):
        parameter_sweep(tanh_loop(), {"kc.K": GAINS}, inputs=noise_inputs, vectorized=True)


def test_a_run_recording_some_signals_keeps_them_and_says_so_of_the_others(tmp_path):
    m = tanh_loop()
    r = np.random.default_rng(0).standard_normal((50, 4))
    full = simulate(m, {"r": r})
    some = simulate(m, {"r": r}, signals=["kc.y"])
    np.testing.assert_array_equal(some["y"], full["y"])  # the Outports: always
    np.testing.assert_array_equal(some["kc.y"], full["kc.y"])
    with pytest.raises(SimulationError, match="leave signals out to record every one"):
        some["tanh.y"]
    assert some.bufs[some.slot("tanh.y")] is None
    # the Inport, the signal named, the Outport's; the loop's others: one row each
    assert some.recorded() == ["r.y", "kc.y", "plant.y"]
    assert "3 more not recorded" in some._repr_html_()
    saved = Trace.load(some.save(tmp_path / "t.npz"))  # what it recorded, and no more
    np.testing.assert_array_equal(saved["kc.y"], full["kc.y"])
    with pytest.raises(Exception, match="no signal 'nope'"):
        simulate(m, {"r": r}, signals="nope")


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the diverging run, on purpose
def test_a_failing_parameter_set_is_reported_and_the_rest_complete():
    grid = {"plant.a": [np.array([1.0, -0.5]), np.array([1.0, -10.0]), np.array([1.0, 0.3])],
            "kc.K": GAINS}  # a = (1, -10): the loop diverges -> non-finite -> error
    inputs = {"r": np.ones(400)}
    ds = parameter_sweep(tanh_loop(), grid, seeds=1, inputs=inputs, executor="serial",
                         progress=False)
    import json

    failed = json.loads(ds.attrs["failed_runs"])
    assert len(failed) == len(GAINS)
    assert all(f["params"]["plant.a"] == [1.0, -10.0] and "non-finite" in f["error"]
               for f in failed)
    assert np.isnan(ds["y"][1]).all() and np.isfinite(ds["y"][[0, 2]]).all()


def test_local_processes_and_a_dask_cluster_give_the_serial_result_bit_for_bit():
    distributed = pytest.importorskip("distributed")
    grid = {"kc.K": GAINS, "plant.b": [np.array([0.1, 0.0]), np.array([0.2, 0.05])]}
    kw = dict(seeds=2, inputs=noise_inputs, chunk_size=3, progress=False)
    serial = parameter_sweep(tanh_loop(), grid, executor="serial", **kw)
    procs = parameter_sweep(tanh_loop(), grid, executor="processes", workers=2, **kw)
    xr.testing.assert_identical(serial, procs)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dask = parameter_sweep(tanh_loop(), grid, executor=client, **kw)
        bad = parameter_sweep(tanh_loop(), {"plant.a": [np.array([1.0, -10.0]),
                                                        np.array([1.0, -0.5])]},
                              inputs={"r": np.ones(400)}, metric=peak, executor=client,
                              progress=False)
    xr.testing.assert_identical(serial, dask)
    assert bad["error"].iloc[0].startswith("SimulationError") and pd.isna(bad["error"].iloc[1])


SCRIPT = """
import sys
import numpy as np
from blockflow.parallel import parameter_sweep
from models.closed_loop import tanh_loop
from tests.sweep_inputs import slow

parameter_sweep(tanh_loop(), {"plant.a": [np.array([1.0, -a]) for a in np.linspace(0.1, 0.8, 8)]},
                seeds=2, inputs=slow, executor="serial", out=sys.argv[1], progress=False)
"""


def test_a_killed_sweep_resumes_without_recomputing_finished_chunks(tmp_path, monkeypatch):
    folder = tmp_path / "chunks"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), BF_SLOW="0.4")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SCRIPT), str(folder)],
                            env=env)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(folder.glob("chunk-*.npz"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in folder.glob("chunk-*.npz")}
    assert 3 <= len(done) < 8  # killed midway

    from tests.sweep_inputs import slow

    calls = tmp_path / "calls"
    calls.mkdir()
    monkeypatch.setenv("BF_CALLS", str(calls))
    monkeypatch.delenv("BF_SLOW", raising=False)
    grid = {"plant.a": [np.array([1.0, -a]) for a in np.linspace(0.1, 0.8, 8)]}
    resumed = parameter_sweep(tanh_loop(), grid, seeds=2, inputs=slow, executor="serial",
                              out=folder, progress=False)
    assert len(list(calls.iterdir())) == 2 * (8 - len(done))  # only unfinished chunks ran
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())
    fresh = parameter_sweep(tanh_loop(), grid, seeds=2, inputs=noise_like, executor="serial",
                            progress=False)
    xr.testing.assert_identical(resumed, fresh)


def noise_like(seed):
    return {"r": np.random.default_rng(seed).standard_normal(50)}


def build_loop(seed, **_):
    m = tanh_loop()
    m.block("kc").K[...] = 0.5 + 0.25 * seed
    return m


def test_train_many_returns_every_history_and_the_best(tmp_path):
    r = np.sin(np.arange(80) / 6.0)[:, None]  # (T, B)
    d = 0.5 * r
    tasks = [{"seed": s, "lr": lr} for s in range(2) for lr in (0.01, 0.05)]
    results, best = train_many(build_loop, tasks, {"r": r}, {"y": d}, loss="mse",
                               epochs=5, params=["kc."], executor="serial",
                               checkpoint_dir=tmp_path, progress=False)
    assert len(results) == 4 and all(len(res.losses) == 5 for res in results)
    assert best.final_loss == min(res.final_loss for res in results)
    assert len(list(tmp_path.glob("task-*.npz"))) == 4
    again, _ = train_many(build_loop, tasks, {"r": r}, {"y": d}, loss="mse", epochs=5,
                          params=["kc."], executor="serial", checkpoint_dir=tmp_path,
                          progress=False)  # resumed from the checkpoints: the same result
    for a, b in zip(results, again, strict=True):
        np.testing.assert_array_equal(a.params["kc.K"], b.params["kc.K"])


def test_traces_as_data(tmp_path):
    tr = simulate(tanh_loop(), {"r": np.ones((6, 2))})
    ds = tr.to_xarray()
    assert ds["y"].dims == ("time", "batch") and ds.attrs["model"] == "tanh_loop"
    df = tr.to_pandas()
    assert len(df) == 12 and {"time", "batch", "r", "y"} <= set(df.columns)
    tr.save(tmp_path / "t.npz")
    saved = Trace.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(saved["y"], tr["y"])
    np.testing.assert_array_equal(saved["kc.y"], tr["kc.y"])
    assert saved.T == 6 and saved.B == 2


def test_cli_sweep_writes_metrics_and_traces(tmp_path, capsys):
    from blockflow.cli import main

    csv, nc = tmp_path / "m.csv", tmp_path / "t.nc"
    names = ["rms", "mean", "max", "min", "final", "overshoot"]
    metrics = [a for f in names for a in ("--metric", f"{f}:y")]
    assert main(["sweep", "models/closed_loop.py", "--param", "kc.K=0.5:2.0:4", "--seeds", "2",
                 "--steps", "50", *metrics, "--out", str(csv), "--quiet"]) == 0
    df = pd.read_csv(csv)
    assert list(df.columns) == ["kc.K", "seed", *(f"{f}(y)" for f in names), "error"]
    assert len(df) == 8
    m = with_gain(df["kc.K"][3])
    y = simulate(m, {"r": np.random.default_rng(1).standard_normal(50)})["y"][:, 0]
    want = [np.sqrt(np.mean(y ** 2)), y.mean(), y.max(), y.min(), y[-1],
            (y.max() - y[-1]) / abs(y[-1]) * 100]  # (each run's own, of all at once)
    np.testing.assert_allclose(df.loc[3, [f"{f}(y)" for f in names]].to_numpy(float), want,
                               rtol=1e-12)
    assert main(["sweep", "models/closed_loop.py", "--param", "kc.K=1,2", "--steps", "20",
                 "--out", str(nc), "--quiet"]) == 0
    with xr.open_dataset(nc) as ds:
        assert ds["y"].shape == (2, 1, 20)
    assert main(["sweep", "models/closed_loop.py", "--param", "kc.K=1", "--steps", "5",
                 "--metric", "bogus:y"]) == 1
    assert "FUNCTION one of" in capsys.readouterr().err


def test_gain_sweep_model_finds_the_trade_off():
    from models.gain_sweep import sweep

    df = sweep(gains=np.array([1.0, 6.0, 18.0]), seeds=3, executor="serial", progress=False)
    med = df.groupby("kc.K")["rms_error"].median()
    assert med[6.0] < med[1.0] and med[6.0] < med[18.0]
    over = df.groupby("kc.K")["overshoot_pct"].median()
    assert over[1.0] < over[6.0] < over[18.0]


def test_a_sweep_decides_auto_once_for_every_worker(monkeypatch):
    """The compiled and numpy paths agree to rounding only: a sweep picks one backend
    from its whole work, so a chunk's bits do not depend on the worker that ran it."""
    pytest.importorskip("numba")
    from blockflow.backends.policy import AUTO_MAX_ELEMENTS
    from blockflow.parallel.sweep import _chunks, _sweep_backend

    m = tanh_loop()

    def backend(n_sets, steps, chunk=256, inputs=None, asked="auto"):
        sets = [{"kc.K": g} for g in np.linspace(0.5, 2.0, n_sets)]
        chunks = _chunks(m, sets, [(i,) for i in range(n_sets)], [0], chunk)
        return _sweep_backend(m, asked, chunks, inputs, steps)

    assert backend(200, 1000) == "numba"  # 200 runs x 1,000 steps: compiled
    assert backend(2, 100) == "numpy"  # too little work to pay for compiling
    assert backend(2, None, inputs={"r": np.ones(100)}) == "numpy"  # steps from inputs
    assert backend(2, None, inputs=noise_inputs) == "numba"  # (not called to find out)
    assert backend(AUTO_MAX_ELEMENTS, 1000, chunk=AUTO_MAX_ELEMENTS) == "numpy"  # wide
    assert backend(200, 1000, asked="numpy") == "numpy"  # asked: kept


def test_a_sweep_starts_processes_only_where_they_pay(monkeypatch):
    """Runs that all batch are one simulation in this process; short work that does not
    batch runs serially; long work (or unknown steps) gets the pool."""
    from blockflow.parallel import executors, sweep

    started = []

    class Refuse(executors.ProcessPoolExecutor):
        def __init__(self, *a, **k):
            started.append(k.get("max_workers"))
            raise RuntimeError("no pool here")

    monkeypatch.setattr(executors, "ProcessPoolExecutor", Refuse)
    chunks_seen = []
    real = sweep.run_chunk
    monkeypatch.setattr(sweep, "run_chunk", lambda spec, c: chunks_seen.append(
        len(c.runs)) or real(spec, c))
    gains = np.linspace(0.5, 2.0, 600)  # 600 x 3 seeds: batchable, one chunk
    ds = parameter_sweep(tanh_loop(), {"kc.K": gains}, seeds=3, inputs={"r": np.ones(50)},
                         progress=False)
    assert started == [] and chunks_seen == [1800]
    one = simulate(tanh_loop(), {"r": np.ones(50)}, params={"kc.K": gains[[7]]})["y"][:, 0]
    np.testing.assert_array_equal(ds["y"].values[7, 2], one)
    chunks_seen.clear()
    plants = [np.array([0.1 + 0.01 * i, 0.0]) for i in range(6)]  # not batchable: 6 chunks
    parameter_sweep(tanh_loop(), {"plant.b": plants}, inputs={"r": np.ones(50)},
                    progress=False)
    assert started == [] and len(chunks_seen) == 6  # 300 block-steps each: serial
    monkeypatch.setattr(executors, "POOL_MIN_SECONDS", 0.0)
    with pytest.raises(RuntimeError, match="no pool here"):
        parameter_sweep(tanh_loop(), {"plant.b": plants}, inputs={"r": np.ones(50)},
                        progress=False)
    assert len(started) == 1


def _blas_threads(_=None) -> list:
    import numpy  # noqa: F401  (its BLAS loaded)
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_local_worker_processes_run_their_blas_on_one_thread():
    """A pool has a worker per core: each one's BLAS runs one thread (a thread per core
    in each made them fight for the cores)."""
    pytest.importorskip("threadpoolctl")
    from blockflow.parallel.executors import _executor

    pool, owned = _executor("processes", 2, 2)
    try:
        seen = list(pool.map(_blas_threads, range(2)))
    finally:
        pool.shutdown()
    assert owned and all(n == [1] * len(n) and n for n in seen), seen
