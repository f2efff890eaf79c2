"""C code generation (blockflow.codegen): every model of the catalogue and the multirate
DC motor exported, compiled with the system C compiler, run from a small harness over
the same inputs, against simulate() (1e-12 in double, 1e-5 in float); refusals name the
block."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, simulate
from blockflow.codegen import CodegenError, export_c
from blocks import Function
from models import CATALOGUE
from models.dc_motor import motor_loop

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on this machine")

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "NAME.h"
int main(int argc, char **argv) {
    (void)argc;
    long T = atol(argv[1]);
    NAME_state s;
    NAME_init(&s);
    double in[NAME_N_IN + 1], out[NAME_N_OUT + 1];
    for (long k = 0; k < T; ++k) {
        if (NAME_N_IN && fread(in, sizeof(double), NAME_N_IN, stdin) != NAME_N_IN) return 2;
        NAME_step(&s, in, out);
        fwrite(out, sizeof(double), NAME_N_OUT, stdout);
    }
    return 0;
}
"""


def run_c(model, inputs: dict, T: int, directory: Path, dtype="double") -> np.ndarray:
    name = "m"
    _, c = export_c(model, directory, name, dtype=dtype)
    (directory / "main.c").write_text(HARNESS.replace("NAME", name))
    exe = directory / "run"
    r = subprocess.run([CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                        str(c), str(directory / "main.c"), "-lm"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    data = (np.concatenate([np.asarray(v, float).reshape(T, -1) for v in inputs.values()], 1)
            if inputs else np.zeros((T, 0)))
    p = subprocess.run([str(exe), str(T)], input=np.ascontiguousarray(data).tobytes(),
                       capture_output=True)
    assert p.returncode == 0
    return np.frombuffer(p.stdout).reshape(T, -1)


def dc_motor_inputs(T, B, seed=0):
    return {"r": 1.0 + np.random.default_rng(seed).standard_normal((T, B))}


MODELS = {**CATALOGUE, "dc_motor": (motor_loop, dc_motor_inputs)}


@needs_cc
@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_generated_c_computes_what_simulate_does(name, tmp_path):
    build, make = MODELS[name]
    x = make(60, 1, 0)
    model = build()
    got = run_c(model, {k: v[:, 0] for k, v in x.items()}, 60, tmp_path)
    tr = simulate(model, x, mode="step", backend="numpy")
    want = np.concatenate([tr[o].reshape(60, -1) for o in tr.plan.outports], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@needs_cc
@pytest.mark.parametrize("name", ["tanh_loop", "dc_motor", "fir_network", "lstm"])
def test_single_precision_c_agrees_to_1e_5(name, tmp_path):
    build, make = MODELS[name]
    x = make(60, 1, 1)
    got = run_c(build(), {k: v[:, 0] for k, v in x.items()}, 60, tmp_path, dtype="float")
    tr = simulate(build(), x, mode="step", backend="numpy")
    want = np.concatenate([tr[o].reshape(60, -1) for o in tr.plan.outports], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_code_is_readable_and_the_interface_fixed(tmp_path):
    h, c = export_c(motor_loop(), tmp_path, "motor")
    head, body = h.read_text(), c.read_text()
    assert "typedef struct {" in head and "} motor_state;" in head
    assert "enum { motor_N_IN = 1, motor_N_OUT = 1 };" in head
    assert "void motor_step(motor_state *s, const double *in, double *out);" in head
    assert "/* pid/P (Gain: K=100) */" in body               # a section per block, named
    assert "if (s->k >= 0 && (s->k - 0) % 5 == 0) {" in body  # the PID at 1 kHz
    assert "malloc" not in body and body.isascii()


def test_a_block_without_a_c_form_is_refused_naming_it(tmp_path):
    m = Model("user")
    u, y = m.add(Inport("u"), Outport("y"))
    m.chain(u, m.add(Function(np.arctan, lambda a, y: 1 / (1 + a * a), name="atan")), y)
    with pytest.raises(CodegenError, match="block 'atan' .Function. cannot be written as C: "
                                           "its function 'arctan' is Python"):
        export_c(m, tmp_path)
    with pytest.raises(CodegenError, match="dtype must be 'double' or 'float'"):
        export_c(m, tmp_path, dtype="half")


def test_the_command_line_writes_the_c(tmp_path, capsys):
    from blockflow.cli import main

    root = Path(__file__).resolve().parents[1]
    assert main(["codegen", str(root / "models" / "pid.py"), "-o", str(tmp_path),
                 "--name", "pid", "--float"]) == 0
    assert "C code written to" in capsys.readouterr().out
    assert "static const float" in (tmp_path / "pid.c").read_text()
