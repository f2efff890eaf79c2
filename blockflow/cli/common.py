"""What every command shares: model files and scripts, input files, progress bars,
one-line errors."""

from __future__ import annotations

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
        # the step and its time (seconds where the model has a dt, else steps)
        cols, header = [np.arange(trace.k0, trace.k0 + trace.T), trace.time], ["k", "t"]
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
