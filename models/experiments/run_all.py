"""Run every experiment at full size and print the README's results table (markdown)."""

from __future__ import annotations

import argparse
import importlib
import platform
import time

from models.experiments import EXPERIMENTS

METRICS = {
    "arma_id": "coefficient error, output error (least squares)",
    "narendra_id": "validation NMSE, free-running MLP (linear model)",
    "neural_control": "tracking MSE on unseen references, trained (untrained)",
    "mackey_glass": "held-out NMSE, FIR network (linear AR)",
    "lstm_recall": "test MSE of recall at delay 4 (memoryless best)",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = []
    for name in EXPERIMENTS:
        mod = importlib.import_module(f"models.experiments.{name}")
        t0 = time.perf_counter()
        res = mod.run(quick=args.quick, seed=args.seed)
        dt = time.perf_counter() - t0
        print(res["table"], "\n")
        rows.append(f"| `.venv/bin/python -m models.experiments.{name}` | {args.seed} | "
                    f"{METRICS[name]} | "
                    f"{res['metric']:.4g} ({res['baseline']:.4g}) | {dt:.1f} s |")
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}\n")
    print("| command | seed | metric | value (baseline) | time |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
