"""The ``blockflow`` command: run, check, draw, grad, train, sweep.

A model file is a saved JSON model, or a Python file defining ``build()`` returning a
Model (``file.py:function`` names another builder).  Errors print one line and exit 1;
bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import sys

from blockflow.cli.commands import (
    OPTIMIZERS,
    cmd_check,
    cmd_codegen,
    cmd_draw,
    cmd_grad,
    cmd_run,
    cmd_train,
)
from blockflow.cli.common import CliError, _is_script, _progress, _run_script, load_model
from blockflow.cli.sweep import METRICS, cmd_sweep
from blockflow.errors import BlockflowError

__all__ = ["CliError", "_progress", "load_model", "main", "parser"]


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
    p = sub.add_parser("codegen", formatter_class=fmt,
                       help="write the model as portable C (NAME.h, NAME.c)")
    _common(p, data=False)
    p.add_argument("-o", "--output", default=".",
                   help="directory for NAME.h and NAME.c (with --fmu: the .fmu file)")
    p.add_argument("--name", help="the C prefix (default: the model's name)")
    p.add_argument("--float", action="store_true", help="single precision (default double)")
    p.add_argument("--reciprocal", action="store_true",
                   help="add the gradient: NAME_record and NAME_grad, the backward sweep of "
                        "the reciprocal model over a recorded run")
    p.add_argument("--fmu", action="store_true",
                   help="an FMI 2.0 co-simulation FMU (needs cc and the extra 'fmu')")
    p.set_defaults(func=cmd_codegen)
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
