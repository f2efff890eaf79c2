"""The sweep command: a parameter grid x seeds, locally or on Dask."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blockflow.cli.common import (
    CliError,
    _named_files,
    _writable,
    load_model,
)


def _runs(a: np.ndarray) -> tuple:
    """The axes of ``(T, runs, *shape)`` signals but the runs'."""
    return (0, *range(2, a.ndim))


def _final(a: np.ndarray) -> np.ndarray:
    """Each run's last sample (the mean of its elements for a vector signal)."""
    last = a[-1]
    return last if last.ndim == 1 else last.reshape(last.shape[0], -1).mean(axis=1)


def _overshoot(a: np.ndarray) -> np.ndarray:
    f = _final(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f != 0, (np.max(a, axis=_runs(a)) - f) / np.abs(f) * 100, np.nan)


#: built-in metrics of a chunk's runs at once: ``(T, runs, *shape)`` -> one value per run
METRICS = {
    "rms": lambda a: np.sqrt(np.mean(a ** 2, axis=_runs(a))),
    "mean": lambda a: np.mean(a, axis=_runs(a)),
    "max": lambda a: np.max(a, axis=_runs(a)),
    "min": lambda a: np.min(a, axis=_runs(a)),
    "final": _final,
    "overshoot": _overshoot,
}


def _grid_value(item: str) -> tuple[str, np.ndarray]:
    """``kc.K=0.5:2.0:50`` (start:stop:count, both ends in) or ``kc.K=1,2,5``."""
    key, eq, spec = item.partition("=")
    if not eq or not key or not spec.strip():
        raise CliError(f"--param takes BLOCK.PARAM=START:STOP:COUNT or =V1,V2,..., got {item!r}")
    try:
        if ":" in spec:
            a, b, n = spec.split(":")
            count = int(n)
            if count < 1:
                raise ValueError("COUNT must be >= 1")
            return key, np.linspace(float(a), float(b), count)
        return key, np.array([float(v) for v in spec.split(",")])
    except ValueError as e:
        raise CliError(f"--param {item!r}: {e}") from None


class _Metrics:
    """Built-in metrics of output signals, picklable for the workers; vectorized (every
    run of a chunk in one call)."""

    def __init__(self, specs: list[tuple[str, str]]):
        self.specs = specs
        self.__qualname__ = "cli:" + ",".join(f"{f}:{n}" for f, n in specs)

    def __call__(self, signals: dict, time) -> dict:
        return {f"{f}({n})": METRICS[f](signals[n]) for f, n in self.specs}


class _RandomInputs:
    """Seeded Gaussian inputs per run (``--random-inputs``): seed = the run's seed."""

    def __init__(self, shapes: dict, steps: int, fixed: dict):
        self.shapes, self.steps, self.fixed = shapes, steps, fixed
        self.__qualname__ = f"cli-random-{steps}"

    def __call__(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        out = dict(self.fixed)
        out.update({n: rng.standard_normal((self.steps, *s)) for n, s in self.shapes.items()})
        return out


def cmd_sweep(args) -> int:
    from blockflow.parallel import parameter_sweep
    from blockflow.plan.compiler import compile

    _writable(args.out, (".nc", ".csv", ".npz"), "--out")
    if args.out and Path(args.out).suffix != (".csv" if args.metric else ".nc"):
        raise CliError("--out with --metric: use .csv (a table of runs)" if args.metric else
                       "--out without --metric: use .nc (every run's outputs), or give "
                       "--metric FUNCTION:OUTPORT for a .csv table")
    model = load_model(args.model)
    pairs = [_grid_value(p) for p in args.param or []]
    grid = dict(pairs)
    if len(grid) < len(pairs):
        twice = sorted({k for k, _ in pairs if [q for q, _ in pairs].count(k) > 1})
        raise CliError(f"--param names {twice} more than once; give each parameter once "
                       "(=V1,V2,... lists several values)")
    if not grid:
        raise CliError("give at least one --param BLOCK.PARAM=START:STOP:COUNT")
    plan = compile(model)
    fixed = _named_files(args.input, "--input", "Inport", plan.inports)
    missing = {n: plan.slot_types[s].shape for n, s in plan.inports.items() if n not in fixed}
    inputs: object = fixed or None
    if missing:
        if args.steps is None:
            raise CliError(f"model {model.name!r} has Inports {sorted(missing)}: give --input "
                           "NAME=FILE or --steps with random inputs per seed")
        inputs = _RandomInputs(missing, args.steps, fixed)
    metric = None
    if args.metric:
        specs = []
        for m in args.metric:
            f, _, n = m.partition(":")
            if f not in METRICS or n not in plan.outports:
                raise CliError(f"--metric {m!r}: use FUNCTION:OUTPORT with FUNCTION one of "
                               f"{sorted(METRICS)} and OUTPORT one of {sorted(plan.outports)}")
            specs.append((f, n))
        metric = _Metrics(specs)
    executor, client = None, None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise CliError("--scheduler needs Dask: pip install 'blockflow[parallel]'") \
                from None
        client = executor = Client(args.scheduler)
    elif args.workers == 1:
        executor = "serial"
    try:
        result = parameter_sweep(model, grid, seeds=args.seeds, inputs=inputs,
                                 steps=args.steps if not missing else None, metric=metric,
                                 vectorized=metric is not None,
                                 executor=executor, workers=args.workers,
                                 out=args.chunks, progress=not args.quiet)
    finally:
        if client is not None:
            client.close()
    n_runs = int(np.prod([len(v) for v in grid.values()])) * args.seeds
    print(f"swept {model.name!r}: {n_runs} runs over {', '.join(grid)} x {args.seeds} seeds")
    if metric is not None:
        print(result.describe().loc[["mean", "min", "max"]].to_string())
    if args.out:
        out = Path(args.out)
        if metric is not None:
            if out.suffix != ".csv":
                raise CliError("--out with --metric: use .csv (a table of runs)")
            result.to_csv(out, index=False)
        elif out.suffix == ".nc":
            result.to_netcdf(out, engine=_netcdf_engine())
        else:
            raise CliError("--out without --metric: use .nc (every run's outputs)")
        print(f"results written to {args.out}")
    return 0


def _netcdf_engine() -> str:
    import importlib.util

    for engine, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5netcdf")):
        if importlib.util.find_spec(module):
            return engine
    return "scipy"  # netCDF 3, with scipy alone
