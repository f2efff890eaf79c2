"""The commands run, check, draw, grad and train."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from blockflow.cli.common import (
    CliError,
    _inputs,
    _named_files,
    _progress,
    _save_trace,
    _writable,
    load_model,
)


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


def cmd_codegen(args) -> int:
    from blockflow.codegen import export_c

    model = load_model(args.model)
    if args.fmu:
        from blockflow.fmu import export_fmu

        out = Path(args.output)
        if out.suffix != ".fmu":
            out = out / f"{args.name or model.name}.fmu"
        print(f"FMU written to {export_fmu(model, out, args.name)}")
        return 0
    h, c = export_c(model, args.output, args.name, dtype="float" if args.float else "double",
                    reciprocal=args.reciprocal)
    print(f"C code{' with its gradient' if args.reciprocal else ''} written to {h} and {c}")
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


def cmd_train(args) -> int:
    return _train_model(args)


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
