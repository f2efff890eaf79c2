"""The gradient as C (export_c(..., reciprocal=True)): NAME_record runs the model and
keeps each step, NAME_grad sweeps the reciprocal model back over it.  Every model of the
catalogue and the multirate DC motor, compiled with the system C compiler, against
backward() (1e-10), one parameter against a central difference of the C model's own
loss, and the refusals naming the block."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, backward, simulate
from blockflow.codegen import CodegenError, export_c
from blockflow.core.block import Block
from blocks import (
    DeadZone,
    Delay,
    Demux,
    Dense,
    Function,
    Gain,
    Lookup1D,
    Quantizer,
    Relay,
    RNNCell,
    Saturation,
    Scope,
    Sine,
    Square,
    StateSpace,
    Step,
    Sum,
    Switch,
    UnitDelay,
)
from models import CATALOGUE
from models.closed_loop import tanh_loop
from models.dc_motor import motor_loop

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on this machine")

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "m.h"
#define TMAX 200
static m_state s, trace[TMAX];
static double in[TMAX * (m_N_IN + 1)], out[TMAX * (m_N_OUT + 1)];
static double dy[TMAX * (m_N_OUT + 1)], din[TMAX * (m_N_IN + 1)], dp[m_N_PARAM + 1];
int main(int argc, char **argv) {
    (void)argc;
    long T = atol(argv[1]);
    if (T > TMAX) return 4;
    if (fread(in, sizeof(double), T * m_N_IN, stdin) != (size_t)(T * m_N_IN)) return 2;
    if (fread(dy, sizeof(double), T * m_N_OUT, stdin) != (size_t)(T * m_N_OUT)) return 3;
    m_init(&s);
    m_record(&s, T, in, out, trace);
    m_grad(T, trace, dy, dp, din);
    fwrite(out, sizeof(double), T * m_N_OUT, stdout);
    fwrite(dp, sizeof(double), m_N_PARAM, stdout);
    fwrite(din, sizeof(double), T * m_N_IN, stdout);
    return 0;
}
"""


def run_grad_c(model, x: dict, dL: np.ndarray, T: int, directory: Path, dtype="double"):
    """(outputs, dL/dw flat, dL/dx) from the generated C."""
    export_c(model, directory, "m", dtype=dtype, reciprocal=True)
    (directory / "main.c").write_text(HARNESS)
    exe = directory / "run"
    r = subprocess.run([CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                        str(directory / "m.c"), str(directory / "main.c"), "-lm"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    data = (np.concatenate([np.asarray(v, float).reshape(T, -1) for v in x.values()], 1)
            if x else np.zeros((T, 0)))
    p = subprocess.run([str(exe), str(T)], input=data.tobytes() + dL.tobytes(),
                       capture_output=True)
    assert p.returncode == 0
    buf = np.frombuffer(p.stdout)
    n_out, n_in = dL.shape[1], data.shape[1]
    n_p = sum(np.size(v) for v in model.parameters().values())
    y = buf[:T * n_out].reshape(T, n_out)
    return y, buf[T * n_out:T * n_out + n_p], buf[T * n_out + n_p:].reshape(T, n_in)


def dc_motor_inputs(T, B, seed=0):
    return {"r": 1.0 + np.random.default_rng(seed).standard_normal((T, B))}


MODELS = {**CATALOGUE, "dc_motor": (motor_loop, dc_motor_inputs)}


def cell_loop():
    """An Elman cell in its loop, then a switch and a saturation (nonlinear routing)."""
    m = Model("cell_loop")
    x, y = m.add(Inport("x", shape=(2,)), Outport("y"))
    cell = m.add(RNNCell.random(2, 3, seed=1, name="cell"))
    z = m.add(UnitDelay(np.zeros(3), shape=(3,), name="z"))
    read = m.add(Dense.random(3, 1, seed=2, name="read"))
    pick = m.add(Demux(1, name="pick"))
    sw = m.add(Switch(0.1, name="sw"))
    sat = m.add(Saturation(-0.3, 0.3, name="sat"))
    m.connect(x, cell.x)
    m.connect(cell.h, z)
    m.connect(z, cell.h_prev)
    m.chain(cell.h, read, pick)
    m.connect(pick.y1, sw.u1)
    m.connect(pick.y1, sw.u2)
    m.connect(pick.y1, sat)
    m.connect(sat, sw.u3)
    m.connect(sw, y)
    return m


def cell_inputs(T, B, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((T, B, 2))}


def zoo():
    """Sources (sine in cycles/sample and in Hz, step, square), a dead zone, a trainable
    lookup table, a quantiser and a relay (nondifferentiable: zero gradient), a scope."""
    m = Model("zoo", dt=0.01)
    u, y1, y2 = m.add(Inport("u"), Outport("y1"), Outport("y2"))
    s = m.add(Sum("+++++", name="s"))
    sources = (u, m.add(Sine(0.8, 0.03, 0.4, 0.1, name="sine")),
               m.add(Sine(1.0, freq_hz=2.0, name="sine_hz")),
               m.add(Step(0.1, -0.2, 0.7, name="step")),
               m.add(Square(0.5, 0.08, 0.3, 0.05, name="square")))
    for i, src in enumerate(sources):
        m.connect(src, s[f"u{i + 1}"])
    m.chain(s, m.add(DeadZone(-0.3, 0.4, name="dz")),
            m.add(Lookup1D([-2.0, -0.5, 0.0, 0.7, 2.0], [-1.0, -0.2, 0.1, 0.5, 1.5],
                           name="lookup")), m.add(Gain(1.3, name="g")), y1)
    s2 = m.add(Sum("++", name="s2"))
    m.chain(s, m.add(Quantizer(0.25, name="q")), s2.u1)
    m.chain(s, m.add(Relay(0.3, -0.3, 1.0, -1.0, name="relay")), s2.u2)
    m.connect(s2, y2)
    m.connect(m.block("g"), m.add(Scope(name="scope")))
    return m


def state_space():
    """A trainable two-state StateSpace (A, B, C, D and x0), a vector delay line."""
    m = Model("state_space")
    u, y = m.add(Inport("u", shape=(1,)), Outport("y"))
    ss = StateSpace([[0.5, 0.1], [0.0, 0.3]], [[1.0], [0.5]], [[1.0, -1.0]], [[0.2]],
                    x0=[0.3, -0.2], train_x0=True, name="ss")
    m.chain(u, m.add(ss), m.add(Delay(2, shape=(1,), name="d")), y)
    return m


def sourced():
    """No Inport: a sine through a trainable gain and a tanh."""
    m = Model("sourced")
    m.chain(m.add(Sine(1.0, 0.3, name="sine")), m.add(Gain(2.0, name="g")),
            m.add(Function("tanh", name="f")), m.add(Outport("y")))
    return m


def scalar_inputs(T, B, seed=0):
    return {"u": np.random.default_rng(seed).standard_normal((T, B))}


def vector_inputs(T, B, seed=0):
    return {"u": np.random.default_rng(seed).standard_normal((T, B, 1))}


MODELS["cell_loop"] = (cell_loop, cell_inputs)
MODELS["zoo"] = (zoo, scalar_inputs)
MODELS["state_space"] = (state_space, vector_inputs)
MODELS["sourced"] = (sourced, lambda T, B, seed=0: {})
DIFFERENTIABLE_IN_C = sorted(MODELS)


@needs_cc
@pytest.mark.parametrize("name", DIFFERENTIABLE_IN_C)
def test_the_generated_gradient_equals_backward(name, tmp_path):
    build, make = MODELS[name]
    T = 50
    x = make(T, 1, 2)  # random inputs: non-zero at k = 0
    model = build()
    tr = simulate(model, x, steps=T, mode="step", backend="numpy")
    outs = list(tr.plan.outports)
    rng = np.random.default_rng(7)
    dL = {o: rng.standard_normal(tr[o].shape) for o in outs}
    flat_dL = np.concatenate([dL[o].reshape(T, -1) for o in outs], axis=1)
    y, dp, din = run_grad_c(model, {k: v[:, 0] for k, v in x.items()}, flat_dL, T, tmp_path)
    g = backward(model, x, dL_dy=dL, steps=T)
    np.testing.assert_allclose(y, np.concatenate([tr[o].reshape(T, -1) for o in outs], 1),
                               rtol=1e-12, atol=1e-12)
    want = np.concatenate([np.ravel(g.params[k]) for k in model.parameters()])
    assert want.size == dp.size and np.any(want != 0)
    np.testing.assert_allclose(dp, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
    if din.size:
        want_in = np.concatenate([g.inputs[k].reshape(T, -1) for k in tr.plan.inports], 1)
        np.testing.assert_allclose(din, want_in, rtol=1e-10,
                                   atol=1e-10 * max(1.0, np.abs(want_in).max()))


@needs_cc
@pytest.mark.parametrize("name", ["tanh_loop", "fir_network", "dc_motor"])
def test_the_single_precision_gradient_agrees_to_1e_4(name, tmp_path):
    build, make = MODELS[name]
    T = 50
    x = make(T, 1, 4)
    model = build()
    dL = {o: np.ones_like(a) for o, a in simulate(model, x).outputs().items()}
    flat = np.concatenate([v.reshape(T, -1) for v in dL.values()], axis=1)
    _, dp, _ = run_grad_c(model, {k: v[:, 0] for k, v in x.items()}, flat, T, tmp_path,
                          dtype="float")
    g = backward(model, x, dL_dy=dL)
    want = np.concatenate([np.ravel(g.params[k]) for k in model.parameters()])
    np.testing.assert_allclose(dp, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@needs_cc
def test_the_c_gradient_matches_a_central_difference_of_the_c_loss(tmp_path):
    T, eps = 40, 1e-6
    r = 1.0 + np.random.default_rng(3).standard_normal(T)
    target = np.sin(0.3 * np.arange(T))

    def loss_and_grad(K, d):
        m = tanh_loop()
        m.blocks["kc"].K[...] = K
        y, dp, _ = run_grad_c(m, {"r": r}, np.zeros((T, 1)), T, d)  # (forward only)
        resid = y[:, 0] - target
        _, dp, _ = run_grad_c(m, {"r": r}, resid[:, None], T, d)  # sse: dL/dy = y - d
        return 0.5 * resid @ resid, dp[list(m.parameters()).index("kc.K")]

    K0 = float(tanh_loop().blocks["kc"].K)
    _, g = loss_and_grad(K0, tmp_path)
    up, _ = loss_and_grad(K0 + eps, tmp_path)
    down, _ = loss_and_grad(K0 - eps, tmp_path)
    assert abs(g - (up - down) / (2 * eps)) < 1e-6 * max(1.0, abs(g))


def test_the_header_lists_the_gradient_interface(tmp_path):
    h, c = export_c(tanh_loop(), tmp_path, "loop", reciprocal=True)
    head, body = h.read_text(), c.read_text()
    assert "enum { loop_N_PARAM = 5 };" in head
    assert "/*   kc.K[] at 0 */" in head and "/*   plant.a[2] at 3 */" in head
    assert ("void loop_grad(long T, const loop_state *trace, const double *dy, "
            "double *dparam, double *din);") in head
    assert "void loop_record(" in head
    assert "/* dJ/dw of plant */" in body and "malloc" not in body and body.isascii()
    assert "for (long k = T - 1; k >= 0; --k) {" in body   # reversed time


def test_a_block_without_a_c_gradient_is_refused_naming_it(tmp_path):
    class Cube(Block):  # a forward C form, no C reciprocal
        def output(self, x, u):
            return u ** 3

        def vjp(self, u, y, dy):
            return 3 * u[0] ** 2 * dy

        def c_code(self, c):
            c.output(f"{c.y()}[0] = {c.u(0)}[0] * {c.u(0)}[0] * {c.u(0)}[0];")

    m = Model("cubic")
    u, out = m.add(Inport("u"), Outport("y"))
    m.chain(u, m.add(Cube(name="cube")), out)
    export_c(m, tmp_path)  # its forward step exports
    with pytest.raises(CodegenError, match=r"block 'cube' \(JacobianT\) cannot be written "
                                           r"as C: its reciprocal rule has no C form"):
        export_c(m, tmp_path, reciprocal=True)

    class Scaled(UnitDelay):  # a trainable parameter with no C gradient
        def __init__(self, **kw):
            super().__init__(**kw)
            self.param("w", 2.0)

        def param_grads(self, u, y, dy, resets=()):
            return {"w": 0.0}

    m = Model("user")
    u, out = m.add(Inport("u"), Outport("y"))
    m.chain(u, m.add(Scaled(name="odd")), m.add(Gain(1.5, name="g")), out)
    with pytest.raises(CodegenError, match=r"block 'odd' \(Scaled\) has trainable "
                                           r"parameters \['w'\] but no C form"):
        export_c(m, tmp_path, reciprocal=True)


def test_the_command_line_writes_the_gradient(tmp_path, capsys):
    from blockflow.cli import main

    root = Path(__file__).resolve().parents[1]
    assert main(["codegen", str(root / "models" / "pid.py"), "-o", str(tmp_path),
                 "--name", "pid", "--reciprocal"]) == 0
    assert "C code with its gradient written to" in capsys.readouterr().out
    assert "void pid_grad(" in (tmp_path / "pid.h").read_text()
