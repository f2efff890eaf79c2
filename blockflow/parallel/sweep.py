"""Parameter sweeps, Monte-Carlo runs and many trainings: local processes by default, any
``concurrent.futures.Executor``, or a Dask cluster.

:func:`parameter_sweep` runs a model over a grid (or a list) of parameter sets times
seeds.  Runs are grouped into *chunks*: runs that differ only in parameters their blocks
take per batch member (``Block.batchable``, :mod:`blockflow.run.batched`) share one vectorised
simulation, one run per batch member; the others run in chunks of their own.  Chunks go
to the executor as plain data: the model as its model file (or pickled, when it holds
Python callables), the runs' parameter values and seeds.  A chunk that fails is retried
run by run, so a failure is reported with its parameter set and every other run
finishes.  With ``out=`` each finished chunk is written to its own file at once, and a
sweep started again with the same ``out`` loads those instead of running them again.

"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import logging
import os
import pickle
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blockflow.core.model import Model
from blockflow.errors import BlockflowError, ParameterError
from blockflow.fsutil import atomic_write
from blockflow.parallel.executors import (
    _executor,
    _name,
    _payload,
    _Serial,
    pack_model,
    unpack_model,
)

log = logging.getLogger(__name__)




# ----------------------------------------------------------------------- runs
@dataclass
class Run:
    """One run of a sweep: its position on the sweep axes, parameter values and seed."""

    index: tuple
    params: dict
    seed: int


@dataclass
class Chunk:
    """Runs sharing one simulation (their batchable parameters along the batch axis)."""

    number: int
    runs: list[Run]
    batched: list[str] = field(default_factory=list)

    def digest(self, model_key: str, spec: str, full: bool = False) -> str:
        """A digest of everything the chunk's results depend on (``full``: the whole
        digest, stored inside its file and checked before the file is reused)."""
        text = json.dumps([model_key, spec, [(r.index, r.seed, {k: np.asarray(v).tolist()
                                                                for k, v in r.params.items()})
                                             for r in self.runs]], sort_keys=True)
        d = hashlib.sha256(text.encode()).hexdigest()
        return d if full else d[:12]


MAX_RUNS = 10_000_000  # a larger sweep is refused before its run list is built


def _values(key: str, v) -> list:
    """A grid axis: a list (or 1-D array) of numbers, or a list of arrays."""
    if isinstance(v, str | bytes | dict) or np.ndim(v) == 0:
        raise ParameterError(f"parameter_sweep: the values of {key!r} must be a list of "
                             f"values (e.g. [0.5, 1.0] or np.linspace(...)), got {v!r:.60}")
    values = list(v)
    if not values:
        raise ParameterError(f"parameter_sweep: no values for {key!r}")
    for x in values:
        try:
            a = np.asarray(x, dtype=float)
        except (TypeError, ValueError):
            a = None
        if a is None or not np.isfinite(a).all():
            raise ParameterError(f"parameter_sweep: {key!r} takes numbers or arrays of "
                                 f"finite numbers, got {x!r:.60}")
    return [float(x) if np.ndim(x) == 0 else x for x in values]


def _axes(params) -> tuple[list[str], list[np.ndarray], list[dict], list[tuple]]:
    """Sweep axes from a grid ``{key: values}`` (every combination) or a list of
    parameter sets (one axis ``set``): names, coordinates, sets, their indices."""
    if isinstance(params, dict):
        if not params:
            raise ParameterError("parameter_sweep: the grid is empty; give {\"block.param\": "
                                 "[values]} (a run of the model as it is: simulate())")
        names = list(params)
        values = [_values(n, v) for n, v in params.items()]
        runs = int(np.prod([len(v) for v in values], dtype=object))
        if runs > MAX_RUNS:
            raise ParameterError(f"parameter_sweep: the grid has {runs:.3g} runs, more than "
                                 f"{MAX_RUNS:,}; sweep fewer values, or in parts")
        sets, idx = [], []
        for combo in itertools.product(*(range(len(v)) for v in values)):
            sets.append({n: values[i][j] for i, (n, j) in enumerate(zip(names, combo,
                                                                        strict=True))})
            idx.append(combo)
        coords = [np.asarray(v) for v in values]
        return names, coords, sets, idx
    if isinstance(params, str | bytes) or not hasattr(params, "__iter__"):
        sets = None
    else:
        sets = list(params)
    if not sets or not all(isinstance(s, dict) and s for s in sets):
        raise ParameterError("parameter_sweep: params is a dict {key: values} (a grid) or a "
                             f"non-empty list of dicts (parameter sets), got {params!r:.60}")
    for s in sets:
        for k, v in s.items():
            _values(k, [v])
    return ["set"], [np.arange(len(sets))], [dict(s) for s in sets], \
        [(i,) for i in range(len(sets))]


def _chunks(model: Model, sets, idx, seeds, chunk_size: int) -> list[Chunk]:
    keys = list(sets[0]) if sets else []
    for s in sets:
        if list(s) != keys:
            raise ParameterError("parameter_sweep: every parameter set must name the same "
                                 f"parameters; {sorted(s)} differs from {sorted(keys)}")
    known = model.parameters(trainable_only=False)
    batchable = []
    for k in keys:
        if k not in known:
            raise ParameterError(f"parameter_sweep: model {model.name!r} has no parameter "
                                 f"{k!r}; it has {sorted(known)}")
        path, _, name = k.rpartition(".")
        for st in sets:
            if np.shape(st[k]) != known[k].shape:
                raise ParameterError(f"parameter_sweep: {k!r} has shape {known[k].shape}, "
                                     f"got a value of shape {np.shape(st[k])}")
        if name in model.block(path).batchable:
            batchable.append(k)
    groups: dict = {}
    fixed_keys = [k for k in keys if k not in batchable]
    for s, i in zip(sets, idx, strict=True):
        fixed = json.dumps({k: np.asarray(s[k]).tolist() for k in fixed_keys},
                           sort_keys=True) if fixed_keys else ""
        for seed in seeds:
            groups.setdefault(fixed, []).append(Run(i, s, int(seed)))
    chunks = []
    for runs in groups.values():
        for a in range(0, len(runs), chunk_size):
            chunks.append(Chunk(len(chunks), runs[a:a + chunk_size], batchable))
    return chunks


@dataclass
class _Spec:
    """What every chunk of a sweep shares (sent with each chunk)."""

    model: tuple
    inputs: object
    steps: int | None
    outputs: list | None
    metric: Callable | None
    backend: str | None
    vectorized: bool = False  # the metric takes a chunk's runs at once


def _inputs_for(spec: _Spec, runs: list[Run], plan) -> dict | None:
    """The chunk's inputs: shared, or each run's ``inputs(seed)`` along the batch axis
    (a run's array may be ``(T, *shape)`` or ``(T, 1, *shape)``).  ``inputs`` is called
    once per seed of the chunk: a seed's runs (one per parameter set) share its data."""
    if spec.inputs is None:
        return None
    if not callable(spec.inputs):
        return spec.inputs
    seeds = list(dict.fromkeys(r.seed for r in runs))
    per = [spec.inputs(seed) for seed in seeds]
    at = {seed: i for i, seed in enumerate(seeds)}
    which = np.array([at[r.seed] for r in runs])
    out = {}
    for k in per[0]:
        n = len(plan.slot_types[plan.inports[k]].shape) if k in plan.inports else None
        arrays = [np.asarray(d[k]) for d in per]
        arrays = [a[:, 0] if n is not None and a.ndim == n + 2 and a.shape[1] == 1 else a
                  for a in arrays]
        out[k] = np.take(np.stack(arrays, axis=1), which, axis=1)  # (T, runs, ...), C order
    return out


def run_chunk(spec: _Spec, chunk: Chunk) -> dict:
    """Run one chunk (on a worker): signals ``(T, B_chunk, ...)`` or per-run metrics."""
    from blockflow.run.simulate import simulate

    model = unpack_model(spec.model)
    fixed = {k: v for k, v in chunk.runs[0].params.items() if k not in chunk.batched}
    own = model.parameters(trainable_only=False)
    saved = {k: own[k].copy() for k in fixed}
    try:
        for k, v in fixed.items():
            own[k][...] = v
        batched = {k: np.asarray([r.params[k] for r in chunk.runs], dtype=own[k].dtype)
                   for k in chunk.batched}
        B = len(chunk.runs)
        from blockflow.plan.compiler import compile

        plan = compile(model)
        names = spec.outputs or list(plan.outports)
        # each run's seed reaches its inputs(seed) and every random block of the model;
        # the signals kept are all it records
        tr = simulate(model, _inputs_for(spec, chunk.runs, plan), steps=spec.steps,
                      batch=B, params=batched or None, backend=spec.backend,
                      seed=[r.seed for r in chunk.runs], signals=names)
    finally:
        for k, v in saved.items():
            own[k][...] = v
    signals = {n: np.asarray(tr[n]) for n in names}
    if spec.metric is None:
        return {"signals": signals, "time": tr.time}
    time = tr.time  # (made once: every run's metric reads the same times)
    time.flags.writeable = False  # (and none of them may change it for the others)
    if spec.vectorized:
        return {"metrics": _metrics_of_batch(spec.metric, signals, time, B), "run_errors": {}}
    metrics, errors = [], {}
    for b in range(B):  # a metric failing for one run fails that run alone
        try:
            value = spec.metric({n: a[:, b] for n, a in signals.items()}, time)
            metrics.append(dict(value) if isinstance(value, dict) else {"metric": float(value)})
        except Exception as e:  # noqa: BLE001 - reported per run by the sweep
            metrics.append({})
            errors[b] = f"{type(e).__name__} in metric: {e}"
    return {"metrics": metrics, "run_errors": errors}


def _metrics_of_batch(metric: Callable, signals: dict, time: np.ndarray, B: int) -> list:
    """A vectorized metric's values, one dict per run: it takes ``{name: (T, runs, ...)}``
    and gives an array of one value per run, or ``{name: such an array}``.  An exception
    fails the chunk (then its runs are retried one by one, each alone in its batch)."""
    value = metric(signals, time)
    cols = dict(value) if isinstance(value, dict) else {"metric": value}
    values = {}
    for n, v in cols.items():
        a = np.asarray(v, dtype=float)
        if a.shape != (B,):
            raise ParameterError(
                f"the vectorized metric gave {n!r} of shape {a.shape} for {B} runs; it "
                f"takes signals of shape (T, runs, ...) and gives one value per run, shape "
                f"({B},)")
        values[n] = a.tolist()
    if len(values) == 1:  # (the common case, a dict literal per run)
        (n, col), = values.items()
        return [{n: v} for v in col]
    return [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]


def _save_chunk(path: Path, result: dict, errors: dict, key: str) -> None:
    buf = io.BytesIO()
    arrays = {f"s~{n}": a for n, a in result.get("signals", {}).items()}
    if "time" in result:
        arrays["time"] = result["time"]
    meta = {"metrics": result.get("metrics"), "errors": {str(k): v for k, v in errors.items()},
            "key": key}
    np.savez(buf, **arrays, meta=np.array(json.dumps(meta)))
    atomic_write(path, buf.getvalue())


def _load_chunk(path: Path, key: str) -> tuple[dict, dict] | None:
    """A finished chunk's results, or ``None`` where the file is damaged or holds another
    chunk's data (its stored key differs): then the chunk is computed again."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if not isinstance(meta, dict) or meta.get("key") != key:
                log.warning("chunk file %s holds another chunk's results (its key differs): "
                            "computed again", path)
                return None
            result = {"signals": {k[2:]: z[k] for k in z.files if k.startswith("s~")}}
            if "time" in z.files:
                result["time"] = z["time"]
            if meta["metrics"] is not None:
                result = {"metrics": meta["metrics"]}
            return result, {int(k): v for k, v in meta["errors"].items()}
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile,
            zlib.error) as e:
        log.warning("chunk file %s is damaged (%s: %s): computed again", path,
                    type(e).__name__, e)
        return None


def _array_key(v) -> str:
    a = np.ascontiguousarray(np.asarray(v))
    return f"{a.dtype.str}{a.shape}{hashlib.sha256(a.tobytes()).hexdigest()}"


def _function_key(f) -> str:
    """What a chunk's ``inputs``/``metric`` function computes from (its code and the values
    it reads, :mod:`blockflow.core.codekey`); unkeyable functions key by a fresh token, so their
    chunks are never reused."""
    from blockflow.core.codekey import function_key

    if f is None:
        return "none"
    key, why = function_key(f)
    if key is None:
        log.info("chunks of %s are not reused: %s", _name(f), why)
        return f"unkeyable-{os.getpid()}-{id(f)}-{os.urandom(8).hex()}"
    return key


def _run_packed(spec_bytes: bytes, chunk: Chunk) -> dict:
    return run_chunk(pickle.loads(spec_bytes), chunk)


def _check_result_size(model: Model, runs: int, inputs, steps, outputs) -> None:
    """Refuse a sweep whose kept signals cannot fit in memory, before it runs (as
    ``simulate`` refuses a run), with the estimate."""
    from blockflow.backends.execute import available_memory
    from blockflow.plan.compiler import compile

    if steps is None and isinstance(inputs, dict) and inputs:
        steps = len(np.asarray(next(iter(inputs.values()))))
    if steps is None:
        return  # (inputs(seed) decides; not called here)
    plan = compile(model)

    def size(name: str) -> int:  # samples per step of a kept signal (1 where unknown)
        path, _, port = name.partition(".")
        slot = plan.outports.get(name, plan.inports.get(name, plan.slots.get((path, port))))
        if slot is None and path in plan.flat.blocks and plan.flat.blocks[path].outputs:
            slot = plan.slots.get((path, plan.flat.blocks[path].outputs[0]))
        return 1 if slot is None else plan.slot_types[slot].size

    slots = list(outputs) if outputs else list(plan.outports)
    need = runs * int(steps) * sum(size(n) for n in slots) * 8
    have = available_memory()
    if need > 0.9 * have:
        gib = 1024.0**3
        raise ParameterError(f"parameter_sweep: {runs:,} runs x {steps:,} steps of "
                             f"{len(slots)} kept signals need about {need / gib:.3g} GiB, "
                             f"but {have / gib:.3g} GiB are available; pass metric= (one row "
                             "per run), keep fewer outputs=, or sweep in parts")


AUTO_CHUNK = 4096  # runs batched in one simulation by default
#: per block-step and run, serial, rough: compiled loops and the numpy path
_SECONDS_PER_BLOCK_STEP = {"numba": 1e-7, "numpy": 2e-6}


def _serial_seconds(model: Model, todo: list, inputs, steps, backend: str) -> float | None:
    """A rough estimate of the sweep's serial time (None where the steps are unknown:
    ``inputs(seed)`` decides them), to start local processes only where they pay."""
    from blockflow.plan.compiler import compile

    if steps is None and isinstance(inputs, dict) and inputs:
        steps = len(np.asarray(next(iter(inputs.values()))))
    if steps is None:
        return None
    plan = compile(model)
    blocks = max(1, sum(len(sg.ops) for sg in plan.segments))
    runs = sum(len(c.runs) for c, _ in todo)
    return runs * int(steps) * blocks * _SECONDS_PER_BLOCK_STEP.get(backend, 2e-6)


def _sweep_backend(model: Model, backend: str | None, chunks: list, inputs, steps) -> str:
    """One backend for every chunk of a sweep, whichever process runs it: the policy's
    decision for a chunk's batch over all the sweep's chunks (:mod:`blockflow.backends.policy`),
    made here once so that no chunk's numbers depend on where it ran."""
    from blockflow.backends.policy import plan_backend
    from blockflow.plan.compiler import compile

    plan = compile(model, backend=backend)
    if plan.backend != "auto":
        return plan.backend
    if steps is None and isinstance(inputs, dict) and inputs:
        steps = len(np.asarray(next(iter(inputs.values()))))
    if steps is None:  # (inputs(seed) is not called here: a sweep is work enough)
        steps = 10**9
    B = max(len(c.runs) for c in chunks)
    return plan_backend(plan, steps, B, runs=sum(len(c.runs) for c in chunks))


def parameter_sweep(model: Model, params, *, seeds=1, inputs=None, steps: int | None = None,
                    outputs: Sequence[str] | None = None, metric: Callable | None = None,
                    executor=None, workers: int | None = None, chunk_size: int | None = None,
                    out: str | Path | None = None, progress: bool = True,
                    backend: str | None = None, vectorized: bool = False):
    """Run ``model`` for every parameter set times every seed.

    A chunk file under ``out`` is reused when everything its results depend on matches:
    the model file, the runs' parameter values and seeds, ``steps``, ``outputs``, the
    backend, the shared inputs' bytes, and the ``inputs`` and ``metric`` functions' code
    and the values they read (:mod:`blockflow.core.codekey`).  The key is stored inside each
    file and checked before it is reused; a damaged file or one holding another chunk's
    results is computed again.

    Parameters
    ----------
    params : dict or list of dict
        ``{"block.param": values}`` sweeps every combination (a grid; one axis per
        parameter, scalar values or arrays of the parameter's shape); a list of dicts is
        a list of parameter sets (one axis, ``set``).
    seeds : int or sequence of int
        ``n`` means seeds ``0 .. n-1``; each seed is one run per parameter set.  A run's
        seed is passed to ``inputs(seed)`` and is the run seed of every random block in
        the model (``Noise``: see ``simulate(seed=)``), so one seed gives the same noise
        for every parameter value, whatever the chunking, backend or executor.
    inputs : dict or callable, optional
        Inport data shared by every run (``(T, *shape)``), or ``inputs(seed)`` returning
        one run's ``{inport: (T, *shape)}`` (noise, random references).
    steps : int, optional
        Needed when the model has no Inports.
    outputs : list of str, optional
        Signals to keep (default: the Outports).
    metric : callable, optional
        ``metric(signals, time) -> float or {name: float}`` per run, with ``signals`` the
        run's ``{name: (T, *shape)}``; the result is then a ``pandas.DataFrame`` of
        metrics instead of traces.
    vectorized : bool, default False
        ``metric`` takes the runs simulated together at once: ``signals`` is
        ``{name: (T, runs, *shape)}`` and it gives an array of one value per run (or
        ``{name: array}``), e.g. ``lambda s, t: np.sqrt(np.mean(s["y"] ** 2, axis=0))``;
        one call per chunk instead of one per run.  A failure fails the chunk's runs,
        which are then run one by one.
    executor : None, "serial", concurrent.futures.Executor or dask.distributed.Client
        Where chunks run.  By default local processes, one per core, where they pay: a
        sweep of one chunk, or whose estimated serial time is short, runs in this process.
    chunk_size : int, optional
        The most runs simulated together.  By default every run that batches with the
        others (they differ only in batchable parameters and seeds) runs in one
        simulation, up to :data:`AUTO_CHUNK` runs; with ``out=``, chunks of 256 (finer
        steps to resume from).
    out : path, optional
        A folder: each chunk's result is written there as it finishes, and a sweep
        started again with the same folder reuses the finished chunks.

    Returns
    -------
    xarray.Dataset or pandas.DataFrame
        Without ``metric``: every kept signal with dims (sweep axes, ``seed``, ``time``,
        sample axes), a coordinate per swept parameter and ``time`` in seconds; runs
        that failed hold NaN and are listed in ``attrs["failed_runs"]``.  With ``metric``:
        one row per run (parameter values, seed, metrics, ``error``).
    """
    names, coords, sets, idx = _axes(params)
    seed_list = list(range(seeds)) if isinstance(seeds, int | np.integer) else list(seeds)
    if not seed_list:
        raise ParameterError("parameter_sweep: seeds must give at least one seed")
    if chunk_size is None:
        chunk_size = 256 if out is not None else AUTO_CHUNK
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunks = _chunks(model, sets, idx, seed_list, chunk_size)
    if metric is None:
        _check_result_size(model, sum(len(c.runs) for c in chunks), inputs, steps, outputs)
    backend = _sweep_backend(model, backend, chunks, inputs, steps)
    if vectorized and metric is None:
        raise ParameterError("parameter_sweep(vectorized=True) describes the metric: give "
                             "metric= as well")
    spec = _Spec(pack_model(model), inputs, steps, list(outputs) if outputs else None,
                 metric, backend, bool(vectorized))
    packed = functools.cache(lambda: _payload(spec))  # (pickled for workers alone)
    folder = Path(out) if out is not None else None
    model_key = spec_key = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        model_key = hashlib.sha1(spec.model[1]).hexdigest()
        # what a finished chunk's file must match to be reused: the model file, the
        # settings, the functions' code and the values they read, the shared inputs' bytes
        spec_key = json.dumps(
            [steps, spec.outputs, str(backend), _function_key(metric),
             _function_key(inputs) if callable(inputs) else None
             if inputs is None else {k: _array_key(v) for k, v in inputs.items()}]
            + (["vectorized metric"] if vectorized else []))

    results: dict[int, dict] = {}
    errors: dict[int, dict] = {}  # chunk -> {run position: message}
    todo = []
    for c in chunks:
        f = folder / f"chunk-{c.number:05d}-{c.digest(model_key, spec_key)}.npz" \
            if folder else None
        loaded = _load_chunk(f, c.digest(model_key, spec_key, full=True)) \
            if f is not None and f.exists() else None
        if loaded is not None:
            results[c.number], errors[c.number] = loaded
            log.info("chunk %d: loaded from %s", c.number, f)
        else:
            todo.append((c, f))
    pool, owned = _executor(executor, workers, len(todo),
                            _serial_seconds(model, todo, inputs, steps, backend))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(c.runs) for c, _ in todo), desc=model.name, unit="run")
    def finished():  # (chunk, file, future) as each chunk finishes
        if isinstance(pool, _Serial):  # one by one, each saved before the next starts
            for c, f in todo:
                yield c, f, pool.submit(run_chunk, spec, c)
            return
        futures = {pool.submit(_run_packed, packed(), c): (c, f) for c, f in todo}
        for fut in as_completed(futures):
            yield (*futures[fut], fut)

    try:
        for c, f, fut in finished():
            try:
                res = fut.result()
                errs = res.pop("run_errors", {})
            except Exception as e:  # noqa: BLE001 - isolate the failing runs
                res, errs = _retry_runs(pool, spec, packed, c, e)
            results[c.number], errors[c.number] = res, errs
            if f is not None:
                _save_chunk(f, res, errs, c.digest(model_key, spec_key, full=True))
            if bar is not None:
                bar.update(len(c.runs))
    finally:
        if bar is not None:
            bar.close()
        if owned:
            pool.shutdown()
    return _assemble(model, names, coords, seed_list, chunks, results, errors, metric)


def _retry_runs(pool, spec: _Spec, packed: Callable, chunk: Chunk,
                error: Exception) -> tuple[dict, dict]:
    """A failed chunk, run by run: what succeeds is kept, each failure is recorded."""
    if len(chunk.runs) == 1:
        return {}, {0: f"{type(error).__name__}: {error}"}
    parts, errs = [], {}
    singles = [Chunk(chunk.number, [r], chunk.batched) for r in chunk.runs]
    if isinstance(pool, _Serial):
        futs = [pool.submit(run_chunk, spec, s) for s in singles]
    else:
        futs = [pool.submit(_run_packed, packed(), s) for s in singles]
    for i, fut in enumerate(futs):
        try:
            part = fut.result()
            failed = part.pop("run_errors", {})
            parts.append(part)
            if failed:
                errs[i] = failed[0]
        except Exception as e:  # noqa: BLE001
            parts.append(None)
            errs[i] = f"{type(e).__name__}: {e}"
            log.warning("run %s (seed %d) failed: %s", chunk.runs[i].params,
                        chunk.runs[i].seed, errs[i])
    good = next((p for p in parts if p is not None), None)
    if good is None:
        return {}, errs
    if "metrics" in good:
        return {"metrics": [p["metrics"][0] if p else {} for p in parts]}, errs
    sig = {}
    for n, a in good["signals"].items():
        sig[n] = np.concatenate([p["signals"][n] if p else np.full_like(a, np.nan)
                                 for p in parts], axis=1)
    return {"signals": sig, "time": good["time"]}, errs


def _assemble(model, names, coords, seeds, chunks, results, errors, metric):
    failed = []
    for c in chunks:
        for i, msg in errors.get(c.number, {}).items():
            r = c.runs[i]
            failed.append({"params": {k: np.asarray(v).tolist() for k, v in r.params.items()},
                           "seed": r.seed, "error": msg})
    if metric is not None:
        from blockflow.run.trace import _require

        pd = _require("pandas", "data")
        runs, metrics, errs = [], [], []
        for c in chunks:
            res = results.get(c.number, {})
            runs += c.runs
            metrics += res.get("metrics", [{}] * len(c.runs))
            errs += [errors.get(c.number, {}).get(i) for i in range(len(c.runs))]
        order = sorted(range(len(runs)), key=lambda j: (runs[j].index, runs[j].seed))
        runs = [runs[j] for j in order]  # sweep order, whatever the chunking
        cols: dict = {}
        for k in runs[0].params if runs else ():  # (one shape per parameter: _chunks)
            vals = np.asarray([r.params[k] for r in runs])
            cols[k] = vals if vals.ndim == 1 else [v.tolist() for v in vals]
        cols["seed"] = [r.seed for r in runs]
        names_m = list(dict.fromkeys(n for m in metrics for n in m))
        for n in names_m:  # (a run without a metric, failed, holds NaN)
            cols[n] = [metrics[j].get(n, np.nan) for j in order]
        cols["error"] = [errs[j] for j in order]
        return pd.DataFrame(cols)
    from blockflow.run.trace import _require

    xr = _require("xarray", "data")
    sample = next((res for res in results.values() if res.get("signals")), None)
    if sample is None:
        raise BlockflowError(f"every run of the sweep of {model.name!r} failed; the first: "
                             f"{failed[0]['error'] if failed else '?'}")
    time = sample["time"]
    shape = [len(c) for c in coords] + [len(seeds)]
    seed_pos = {s: i for i, s in enumerate(seeds)}
    data = {}
    for n, a in sample["signals"].items():
        arr = np.full((*shape, len(time), *a.shape[2:]), np.nan)
        for c in chunks:
            res = results.get(c.number, {}).get("signals")
            if res is None:
                continue
            for i, r in enumerate(c.runs):
                arr[(*r.index, seed_pos[r.seed])] = res[n][:, i]
        dims = (*names, "seed", "time", *(f"{n}_dim{j}" for j in range(a.ndim - 2)))
        data[n] = (dims, arr)
    coord = {nm: c for nm, c in zip(names, coords, strict=True) if np.ndim(c) == 1}
    coord.update(seed=np.asarray(seeds), time=time)
    return xr.Dataset(data, coords=coord, attrs={"model": model.name, "dt": model.dt,
                                                 "failed_runs": json.dumps(failed)})
