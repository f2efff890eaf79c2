"""The generated C against the engine, in one run: the forward step (NAME_step) beside
`simulate`, and the gradient (NAME_record + NAME_grad) beside `backward`, per step, with
the size of the code.  The engine's loops compiled (numba), as "auto" does over a long
run or a training.  Needs a C compiler (cc)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["BLOCKFLOW_BACKEND"] = "numba"  # the engine compiled, as in a long run
from timing import best  # noqa: E402

from blockflow import backward, flush_denormals, simulate  # noqa: E402
from blockflow.codegen import export_c  # noqa: E402
from blockflow.plan.compiler import compile  # noqa: E402
from models import CATALOGUE  # noqa: E402
from models.dc_motor import motor_loop  # noqa: E402

HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "m.h"
#define T TSTEPS
static m_state s, trace[T];
static double in[T * (m_N_IN + 1)], out[T * (m_N_OUT + 1)], dy[T * (m_N_OUT + 1)];
static double din[T * (m_N_IN + 1)], dp[m_N_PARAM + 1];
static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec;
}
int main(void) {
    for (long i = 0; i < T * m_N_IN; ++i) in[i] = 1.0 + 0.001 * (i % 97);
    for (long i = 0; i < T * m_N_OUT; ++i) dy[i] = 1.0;
    double fwd = 1e9, grad = 1e9, sink = 0;
    for (int r = 0; r < 5; ++r) {
        double t0 = now();
        m_init(&s);
        for (long k = 0; k < T; ++k) m_step(&s, in + k * m_N_IN, out + k * m_N_OUT);
        double t1 = now();
        m_init(&s);
        m_record(&s, T, in, out, trace);
        m_grad(T, trace, dy, dp, din);
        double t2 = now();
        sink += out[0] + dp[0];
        if (t1 - t0 < fwd) fwd = t1 - t0;
        if (t2 - t1 < grad) grad = t2 - t1;
    }
    printf("%.6e %.6e %g\n", fwd / T, grad / T, sink);
    return 0;
}
"""

CASES = {"pid_loop": CATALOGUE["pid_loop"][0], "tanh_loop": CATALOGUE["tanh_loop"][0],
         "fir_network": CATALOGUE["fir_network"][0], "dc_motor": motor_loop,
         "cart_pole (rk4 + MLP)": CATALOGUE["cart_pole"][0]}


def c_times(model, T: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _, c = export_c(model, d, "m", reciprocal=True)
        (d / "main.c").write_text(HARNESS.replace("TSTEPS", str(T)))
        subprocess.run(["cc", "-std=c99", "-O2", "-o", str(d / "run"), str(c),
                        str(d / "main.c"), "-lm"], check=True)
        fwd, grad, _ = subprocess.run([str(d / "run")], capture_output=True, text=True,
                                      check=True).stdout.split()
        return float(fwd), float(grad), len(c.read_text().splitlines())


def main() -> None:
    if shutil.which("cc") is None:
        print("bench_codegen: no C compiler (cc); skipped")
        return
    T = 20_000
    print(f"generated C (-O2) against the engine, T = {T:,} steps, ns/step")
    print("(backward FTZ: inside flush_denormals(), subnormal numbers flushed to zero)")
    print(f"{'model':24s} {'C lines':>8s} {'C step':>8s} {'simulate':>9s} {'C grad':>8s} "
          f"{'backward':>9s} {'backward FTZ':>13s}", flush=True)
    for name, build in CASES.items():
        model = build()
        fwd, grad, lines = c_times(model, T)
        plan = compile(model)
        x = {p: np.ones((T, 1, *plan.slot_types[s].shape)) for p, s in plan.inports.items()}
        sim = best(lambda m=model, x=x: simulate(m, x), repeat=2) / T
        dL = {o: np.ones_like(a) for o, a in simulate(model, x).outputs().items()}
        bwd = best(lambda m=model, x=x, dL=dL: backward(m, x, dL_dy=dL), repeat=2) / T
        with flush_denormals():
            ftz = best(lambda m=model, x=x, dL=dL: backward(m, x, dL_dy=dL), repeat=2) / T
        print(f"{name:24s} {lines:8d} {fwd * 1e9:8.1f} {sim * 1e9:9.1f} {grad * 1e9:8.1f} "
              f"{bwd * 1e9:9.1f} {ftz * 1e9:13.1f}", flush=True)


if __name__ == "__main__":
    main()
