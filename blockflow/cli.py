"""The ``blockflow`` command: run, check, draw, grad, train, sweep.

A model file is a saved JSON model, or a Python file defining ``build()`` returning a
Model (``file.py:function`` names another builder).  Errors print one line and exit 1;
bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

import numpy as np

from blockflow.core.model import Model
from blockflow.errors import BlockflowError


class CliError(Exception):
    """A user mistake on the command line: printed as one line, exit status 1."""


def load_model(spec: str) -> Model:
    """A Model from ``file.json``, ``file.py`` (its ``build()``) or ``file.py:builder``."""
    path, _, func = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    p = Path(path)
    if not p.exists():
        raise CliError(f"model file {path!r} not found")
    if p.suffix == ".json":
        from blockflow.io.modelfile import load

        return load(p)
    if p.suffix != ".py":
        raise CliError(f"model file {path!r}: expected a .json model or a .py file with build()")
    if not p.is_file():
        raise CliError(f"model file {path!r} is not a regular file")
    func = func or "build"
    try:
        namespace = runpy.run_path(str(p))
        builder = namespace.get(func)
        if not callable(builder):
            raise CliError(f"{path} defines no {func}() returning a Model")
        model = builder()
    except (CliError, BlockflowError):
        raise
    except SystemExit as e:  # the user's file called sys.exit() instead of returning
        raise CliError(f"{path}: exited with sys.exit({e.code!r}) while building the model; "
                       "define build() returning a Model and leave exiting to blockflow") \
            from None
    except Exception as e:  # the user's own file failed: say where, in one line
        raise CliError(f"{path}: {type(e).__name__}: {e}") from None
    if not isinstance(model, Model):
        raise CliError(f"{path}:{func}() returned {type(model).__name__}, not a Model")
    return model


def _read_array(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"data file {path!r} not found")
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if p.suffix in (".csv", ".txt"):
            return np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=1)
    except ValueError as e:
        raise CliError(f"cannot read {path!r}: {e}") from None
    raise CliError(f"data file {path!r}: use .npy or .csv")


def _named_files(items, flag: str, kind: str, known=None) -> dict:
    """``NAME=FILE`` arguments read as arrays; ``known``: the names that may be given."""
    out = {}
    for item in items or []:
        name, eq, file = item.partition("=")
        if not eq:
            raise CliError(f"{flag} takes {kind}=FILE, got {item!r}")
        if known is not None and name not in known:
            raise CliError(f"{flag} {name!r}: the model has no {kind.title()} {name!r}; its "
                           f"{kind.title()}s are {sorted(known)}")
        out[name] = _read_array(file)
    return out


def _inputs(model: Model, args) -> dict:
    from blockflow.plan.compiler import compile

    plan = compile(model)
    inputs = _named_files(args.input, "--input", "NAME")
    missing = [n for n in plan.inports if n not in inputs]
    if missing and args.random_inputs is not None:
        rng = np.random.default_rng(args.random_inputs)
        if args.steps is None:
            raise CliError("--random-inputs needs --steps")
        from blockflow.backends.execute import check_memory

        check_memory(plan, args.steps, args.batch or 1)  # before generating the inputs
        for n in missing:
            t = plan.slot_types[plan.inports[n]]
            inputs[n] = rng.standard_normal((args.steps, args.batch or 1, *t.shape))
    elif missing:
        raise CliError(f"model {model.name!r} has Inports {missing}: give --input NAME=FILE "
                       "(.npy or .csv) or --random-inputs SEED")
    return inputs


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return lambda ks, total: tqdm(ks, total=total, unit="step", mininterval=0.2,
                                  disable=total < 20_000, leave=False)


def _writable(path: str | None, suffixes: tuple, what: str) -> None:
    """Check an output file before any work starts: its suffix and its folder."""
    if path is None:
        return
    p = Path(path)
    if p.suffix not in suffixes:
        raise CliError(f"{what} {path!r}: use {' or '.join(suffixes)}")
    if p.is_dir():
        raise CliError(f"{what} {path!r} is a directory; give a file name")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"{what} {path!r}: cannot write into {str(folder)!r}")


def _save_trace(trace, path: str) -> None:
    from blockflow.fsutil import atomic_write

    p = Path(path)
    names = trace.names()
    if p.suffix == ".npz":
        trace.save(p)
    elif p.suffix == ".csv":
        cols, header = [np.arange(trace.T)], ["k"]
        for n in list(trace.plan.outports) or names:
            a = trace[n].reshape(trace.T, -1)
            cols.append(a)
            header += [n] if a.shape[1] == 1 else [f"{n}[{i}]" for i in range(a.shape[1])]
        import io

        buf = io.StringIO()
        np.savetxt(buf, np.column_stack(cols), delimiter=",", header=",".join(header),
                   comments="")
        atomic_write(p, buf.getvalue().encode())
    else:
        raise CliError(f"--out {path!r}: use .npz (every signal) or .csv (the outputs)")


def cmd_run(args) -> int:
    from blockflow.run.simulate import simulate

    _writable(args.out, (".npz", ".csv"), "--out")
    _writable(args.plot, (".png", ".svg", ".pdf"), "--plot")
    model = load_model(args.model)
    inputs = _inputs(model, args)
    trace = simulate(model, inputs, steps=args.steps, batch=args.batch,
                     progress=_progress(args.quiet))
    print(f"simulated {model.name!r}: T={trace.T}, B={trace.B}, {len(trace.names())} signals")
    for n, a in trace.outputs().items():
        print(f"  {n}: shape {a.shape}, mean {a.mean():.4g}, rms {np.sqrt((a ** 2).mean()):.4g}")
    if args.out:
        _save_trace(trace, args.out)
        print(f"trace written to {args.out}")
    if args.plot:  # what went in and what came out
        trace.plot([*trace.plan.inports, *trace.plan.outports] or None, path=args.plot)
        print(f"plot written to {args.plot}")
    return 0


def cmd_check(args) -> int:
    from blockflow.plan.compiler import compile

    model = load_model(args.model)
    plan = compile(model)
    params = model.parameters()
    n_params = sum(int(a.size) for a in params.values())
    print(f"model {model.name!r}: {len(plan.flat.blocks)} blocks, "
          f"{plan.flat.graph.number_of_edges()} connections, types OK, no algebraic loop")
    print(f"inputs:  {', '.join(f'{n} {plan.slot_types[s]}' for n, s in plan.inports.items())}")
    print(f"outputs: {', '.join(f'{n} {plan.slot_types[s]}' for n, s in plan.outports.items())}")
    print(f"parameters: {len(params)} arrays, {n_params} numbers")
    delays = [p for p, b in plan.flat.blocks.items() if b.stateful]
    print(f"stateful blocks (delays, filters): {', '.join(delays) or 'none'}")
    print(f"feedback loops run step by step: {len(plan.loops)}")
    for loop in plan.loops:
        print(f"  {' -> '.join(loop)}")
    print(plan.describe())
    if args.types:
        for path, b in plan.flat.blocks.items():
            for p in b.outputs:
                print(f"  {path}.{p}: {plan.types[(path, p)]}")
    return 0


def cmd_draw(args) -> int:
    model = load_model(args.model)
    if args.reciprocal:
        from blockflow.gradient.reciprocal import reciprocal

        model = reciprocal(model)
    out = args.output or f"{Path(args.model.split(':')[0]).stem}" \
                         f"{'_reciprocal' if args.reciprocal else ''}.svg"
    model.draw(out, collapse=args.collapse)
    print(f"diagram written to {out}")
    return 0


def cmd_grad(args) -> int:
    from blockflow.gradient.sweep import backward
    from blockflow.run.simulate import simulate

    model = load_model(args.model)
    inputs = _inputs(model, args)
    trace = simulate(model, inputs, steps=args.steps, batch=args.batch,
                     progress=_progress(args.quiet))
    if args.target:
        targets = _named_files(args.target, "--target", "OUTPORT")
    else:
        targets = {n: np.zeros_like(a) for n, a in trace.outputs().items()}
    g = backward(model, trace=trace, targets=targets, loss=args.loss)
    print(f"loss ({args.loss}) = {g.loss:.10g}")
    for name, v in g.params.items():
        print(f"  |dJ/d{name}| = {np.linalg.norm(v):.6g}")
    for name, v in g.inputs.items():
        print(f"  |dJ/d{name}(k)| = {np.linalg.norm(v):.6g}  (input)")
    if args.fd_check:
        bad = _fd_check(model, inputs, targets, args, g)
        if bad:
            for name, ana, num, rel in bad:
                print(f"blockflow: error: the gradient of {name} disagrees with finite "
                      f"differences: {ana:.10g} by the reciprocal sweep, {num:.10g} by "
                      f"central differences (relative difference {rel:.2e} > tolerance "
                      f"{FD_TOLERANCE:g})", file=sys.stderr)
            return 1
    return 0


FD_TOLERANCE = 1e-5  # relative, between the sweep and Richardson-extrapolated differences


def _fd_check(model, inputs, targets, args, g) -> list:
    """Each parameter's directional derivative along a random direction against central
    differences (a step relative to the parameter's size, Richardson-extrapolated);
    returns the disagreements ``(name, sweep, differences, relative difference)``."""
    from blockflow.gradient.check import central_difference, relative_step
    from blockflow.gradient.sweep import backward

    rng = np.random.default_rng(0)
    worst, bad = 0.0, []
    for name, p in model.parameters().items():
        v = rng.standard_normal(p.shape)
        old = p.copy()

        def J(t, p=p, v=v, old=old):
            p[...] = old + t * v
            return backward(model, inputs, targets=targets, loss=args.loss,
                            steps=args.steps, batch=args.batch).loss

        try:
            num = central_difference(J, relative_step(old, v))
        finally:
            p[...] = old
        ana = float(np.vdot(g.params[name], v))
        rel = abs(num - ana) / max(abs(num), abs(ana), 1e-8)
        worst = max(worst, rel)
        print(f"  {name}: directional derivative {ana:.10g} (finite differences {num:.10g})")
        if rel > FD_TOLERANCE:
            bad.append((name, ana, num, rel))
    print(f"finite-difference check: worst relative difference {worst:.2e} "
          f"(tolerance {FD_TOLERANCE:g})")
    return bad


def _is_script(spec: str) -> bool:
    """An experiment script (a .py file without build()) rather than a model file."""
    import ast

    p = Path(spec)
    if ".py:" in spec or p.suffix != ".py" or not p.is_file():
        return False
    try:
        tree = ast.parse(p.read_text())
    except SyntaxError:
        return False
    return not any(isinstance(n, ast.FunctionDef) and n.name == "build" for n in tree.body)


def cmd_train(args) -> int:
    return _train_model(args)


def _run_script(path: str, argv: list) -> int:
    script = Path(path)
    old = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except BlockflowError:
        raise
    except Exception as e:
        raise CliError(f"{path}: {type(e).__name__}: {e}") from None
    finally:
        sys.argv = old
    return 0


OPTIMIZERS = ("adam", "sgd", "momentum")


def _train_model(args) -> int:
    from blockflow.train import SGD, Adam, Momentum, train

    if not Path(args.model.split(".py:")[0] + (".py" if ".py:" in args.model else "")
                ).exists():
        raise CliError(f"model file {args.model!r} not found")
    _writable(args.save, (".json",), "--save")
    _writable(args.plot, (".png", ".svg", ".pdf"), "--plot")
    if args.resume and not args.checkpoint:
        raise CliError("--resume continues from a checkpoint: give --checkpoint FILE too")
    model = load_model(args.model)
    if not args.target:
        raise CliError(f"training {model.name!r} needs targets: --target OUTPORT=FILE (.npy "
                       "or .csv, (T, ...) or (T, B, ...))")
    from blockflow.plan.compiler import compile

    targets = _named_files(args.target, "--target", "OUTPORT", compile(model).outports)
    inputs = _inputs(model, args)
    opt = {"adam": Adam, "sgd": SGD, "momentum": Momentum}[args.optimizer](args.lr)
    from blockflow.train import showing_progress

    with showing_progress(not args.quiet and sys.stderr.isatty()):
        hist = train(model, inputs, targets, loss=args.loss, params=args.params,
                     optimizer=opt, epochs=args.epochs, mode=args.mode, window=args.window,
                     checkpoint=args.checkpoint, resume=args.resume)
    losses = hist.losses
    print(f"trained {model.name!r}: {len(losses)} epochs, loss ({args.loss}) "
          f"{losses[0]:.6g} -> {losses[-1]:.6g}")
    if args.save:
        from blockflow.io.modelfile import save

        save(model, args.save)
        print(f"trained model written to {args.save}")
    if args.plot:
        from blockflow.run.plot import plot_history

        plot_history(losses, args.plot, title=f"training {model.name}")
        print(f"loss curve written to {args.plot}")
    return 0


class _Help(argparse.HelpFormatter):
    """Shows a default where there is one worth showing (not None or off)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("blockflow")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def _seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return n


def _common(p, data: bool = True) -> None:
    p.add_argument("model", help="model file: .json, or .py defining build() (file.py:func)")
    if data:
        p.add_argument("--steps", type=_positive, help="number of steps T")
        p.add_argument("--batch", type=_positive, help="batch size B (parallel runs)")
        p.add_argument("--input", action="append", metavar="NAME=FILE",
                       help="data for an Inport (.npy or .csv, (T, ...) or (T, B, ...))")
        p.add_argument("--random-inputs", type=_seed, metavar="SEED",
                       help="drive Inports without --input by seeded Gaussian noise")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="blockflow", description="Discrete-time block diagrams "
                                 "with exact gradients by reciprocal networks.")
    ap.add_argument("--version", action="version", version=f"blockflow {_version()}")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="log what the library does (-v: info, -vv: debug)")
    sub = ap.add_subparsers(dest="command", required=True)
    fmt = _Help
    p = sub.add_parser("run", formatter_class=fmt, help="simulate a model, save and plot its trace")
    _common(p)
    p.add_argument("--out", help="save the trace: .npz (every signal) or .csv (the outputs)")
    p.add_argument("--plot", help="plot the inputs and outputs to an image (.png, .svg, .pdf)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", formatter_class=fmt,
                       help="types, schedule, loops and delays, parameter count")
    _common(p, data=False)
    p.add_argument("--types", action="store_true", help="list every signal's type")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("draw", formatter_class=fmt, help="draw the diagram (or its reciprocal)")
    _common(p, data=False)
    p.add_argument("-o", "--output", help="output file: .svg (default), .dot, .png, .pdf")
    p.add_argument("--reciprocal", action="store_true", help="draw the reciprocal network")
    p.add_argument("--collapse", action="store_true", help="subsystems as single nodes")
    p.set_defaults(func=cmd_draw)
    p = sub.add_parser("grad", formatter_class=fmt,
                       help="loss and gradient norms, optionally checked")
    _common(p)
    p.add_argument("--target", action="append", metavar="OUTPORT=FILE",
                   help="desired output (default: zero)")
    p.add_argument("--loss", default="sse", choices=["sse", "mse", "cross_entropy", "sum"],
                   help="'sum': the outputs are losses already (a loss block)")
    p.add_argument("--fd-check", action="store_true",
                   help="check each gradient against central finite differences")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_grad)
    p = sub.add_parser("train", formatter_class=fmt,
                       help="train a model's parameters, or run an experiment script",
                       description="Train a model's parameters on targets; given an "
                       "experiment script (a .py file without build(), such as "
                       "models/experiments/narendra_id.py) run it with its own arguments.")
    _common(p)
    p.add_argument("--target", action="append", metavar="OUTPORT=FILE",
                   help="desired output (.npy or .csv, (T, ...) or (T, B, ...))")
    p.add_argument("--epochs", type=_positive, default=100, help="passes over the data")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="update rule")
    p.add_argument("--loss", default="mse", choices=["sse", "mse", "cross_entropy", "sum"],
                   help="loss on the targets")
    p.add_argument("--params", action="append", metavar="PREFIX",
                   help="train only parameters with these name prefixes (e.g. kc.)")
    p.add_argument("--mode", default="bptt", choices=["bptt", "truncated", "online"],
                   help="gradient mode")
    p.add_argument("--window", type=_positive, help="truncated mode: steps per window")
    p.add_argument("--checkpoint", help="checkpoint file (.npz), written every 10 epochs")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--save", help="write the trained model (.json)")
    p.add_argument("--plot", help="plot the loss curve (.png, .svg, .pdf)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("sweep", formatter_class=fmt,
                       help="run a model over a parameter grid x seeds (local or Dask)")
    p.add_argument("model", help="model file: .json, or .py defining build() (file.py:func)")
    p.add_argument("--param", action="append", metavar="BLOCK.PARAM=START:STOP:COUNT",
                   help="a swept parameter (or =V1,V2,...); several make a grid")
    p.add_argument("--seeds", type=_positive, default=1, help="runs per parameter set")
    p.add_argument("--steps", type=_positive,
                   help="number of steps; Inports without --input get seeded noise")
    p.add_argument("--input", action="append", metavar="NAME=FILE",
                   help="data for an Inport shared by every run (.npy or .csv)")
    p.add_argument("--metric", action="append", metavar="FUNCTION:OUTPORT",
                   help=f"a metric per run, FUNCTION one of {', '.join(METRICS)}")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a Dask scheduler (tcp://host:8786); default: local processes")
    p.add_argument("--workers", type=_positive, help="local worker processes (default: cores)")
    p.add_argument("--chunks", metavar="DIR",
                   help="write each finished chunk there; a rerun resumes from them")
    p.add_argument("--out", help="results: .nc (outputs of every run) or .csv (--metric)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    return ap


METRICS = {
    "rms": lambda a: float(np.sqrt(np.mean(a ** 2))),
    "mean": lambda a: float(np.mean(a)),
    "max": lambda a: float(np.max(a)),
    "min": lambda a: float(np.min(a)),
    "final": lambda a: float(np.ravel(a[-1])[0]) if a[-1].size == 1 else float(np.mean(a[-1])),
    "overshoot": lambda a: float((np.max(a) - a[-1].mean()) / abs(a[-1].mean()) * 100)
    if a[-1].mean() else float("nan"),
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
    """Built-in metrics of output signals, picklable for the workers."""

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


def _script_call(argv: list[str]) -> tuple[str, list[str], int] | None:
    """``[global flags] train SCRIPT.py args...``: the script, its own arguments and the
    verbosity, when the file given to ``train`` is an experiment script."""
    verbose = 0
    for i, a in enumerate(argv):
        if a in ("-v", "--verbose"):
            verbose += 1
        elif a == "-vv":
            verbose += 2
        elif a == "train" and i + 1 < len(argv) and _is_script(argv[i + 1]):
            return argv[i + 1], argv[i + 2:], verbose
        else:
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    script = _script_call(argv)
    if script is not None:  # an experiment script takes its own arguments
        if script[2]:
            import logging

            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return _run_script(script[0], script[1])
        except (BlockflowError, CliError) as e:
            print(f"blockflow: error: {e}", file=sys.stderr)
            return 1
    args = parser().parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (BlockflowError, CliError) as e:
        print(f"blockflow: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file could not be read or written
        print(f"blockflow: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 1
    except MemoryError:
        print("blockflow: error: out of memory; run fewer steps or a smaller batch",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("blockflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
