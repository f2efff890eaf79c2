"""Run every experiment at full size over several seeds and print the README's results
table (markdown): mean ± standard deviation over the seeds, the baseline, and the
published number beside it where the experiment reproduces a published set-up."""

from __future__ import annotations

import argparse
import importlib
import platform
import time

import numpy as np

from models.experiments import EXPERIMENTS

#: name -> (set-up in one line, metric, published value and source, or "")
ROWS = {
    "arma_id": ("2nd-order ARMA, output noise std half the output's",
                "coefficient error, output error (least squares)", ""),
    "narendra_id": ("N&P plant, one 2-12-1 MLP, u in [-1, 1] (easier than the paper's)",
                    "validation NMSE, free-running MLP (linear model)", ""),
    "neural_control": ("tanh controller trained by BPTT through a plant",
                       "tracking MSE on unseen references, trained (untrained)", ""),
    "mackey_glass": ("tau = 17, sampled every 6, our window and split",
                     "held-out NMSE, FIR network (linear AR)", ""),
    "lstm_recall": ("recall the input 4 steps back", "test MSE (best memoryless)", ""),
    "santafe_laser": ("Santa Fe A, 1-12-12-1 FIR net 25:5:5, iterated 100 steps past 1,000",
                      "iterated NMSE, ensembles of 5 networks by L-BFGS with input "
                      "noise, mean of 5 ensembles (persistence)",
                      "0.0273 (Wan 1994, competition entry)"),
    "mackey_glass_standard": ("Jang's series (x = 0 before t = 0), x(t+6) from "
                              "x(t-18..t), t = 118..1117, 500/500",
                              "test NDEI, FIR net 1-10-1 on all 19 samples by BFGS, mean "
                              "of 5 seeds (AR by BIC)", "ANFIS 0.007 (on 4 of the samples), "
                              "backprop MLP 0.02, linear AR 0.19 (Jang 1993)"),
    "narendra_paper": ("N&P Ex. 3: N_f, N_g 1-20-10-1, u in [-2, 2], paper's validation input",
                       "free-running NMSE; tracking RMSE: inverted model; neural controller "
                       "by BPTT through the model", "no number: figures only (N&P 1990)"),
}
OWN_SEEDS = {"santafe_laser", "mackey_glass_standard"}  # they run their seeds themselves


def _fmt(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.4g}" if v.size == 1 else f"{v.mean():.4g} ± {v.std():.2g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per experiment (0, 1, ...)")
    ap.add_argument("--only", nargs="*", help="run only these experiments")
    args = ap.parse_args(argv)
    rows = []
    for name in args.only or EXPERIMENTS:
        mod = importlib.import_module(f"models.experiments.{name}")
        seeds = [0] if name in OWN_SEEDS else list(range(args.seeds))
        t0 = time.perf_counter()
        results = [mod.run(quick=args.quick, seed=s) for s in seeds]
        dt = (time.perf_counter() - t0) / len(seeds)
        print(results[0]["table"], "\n")
        setup, metric, published = ROWS[name]
        value = _fmt([r["metric"] for r in results])
        if "metric_std" in results[0]:  # an experiment that runs its own seeds
            value += f" ± {results[0]['metric_std']:.2g}"
        if name == "narendra_paper":
            value += "; " + _fmt([r["control"]["tracking RMSE"] for r in results])
            value += "; " + _fmt([r["control"]["neural controller: tracking RMSE"]
                                  for r in results])
        base = next((k for k in ("baseline", "persistence") if k in results[0]), None)
        if base is not None:
            value += f" ({_fmt([r[base] for r in results])})"
        n = ({"santafe_laser": "25 (own)"}.get(name, "5 (own)") if name in OWN_SEEDS
             else str(len(seeds)))
        rows.append(f"| `{name}` | {setup} | {n} | {metric} | {value} | {published or '—'} "
                    f"| {dt:.0f} s |")
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}\n")
    print("| experiment | set-up | seeds | metric | value (baseline) | published | time per run |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
