"""The compiled path (numba) against the numpy path: the same numbers, forward and in the
backward sweep, float64 to 1e-12 and float32 to 1e-5; loops without a compiled form fall
back and say why."""

import os
from contextlib import contextmanager

import numpy as np
import pytest

from blockflow import Block, Inport, Model, Outport, backward, compile, simulate
from blockflow.backends.policy import numba_available
from blockflow.core.kernel import Kernel, kernel
from blockflow.gradient.gradients import reciprocal_plan
from models import CATALOGUE
from models.closed_loop import tanh_loop
from tests.helpers import compiled

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba is not installed")

# (the LSTM drawn from elementary blocks compiles too; its Product and Mux kernels are
# covered by random model 96 below, which keeps the suite's cold compiles shorter)
LOOPED = ["tanh_loop", "pid_loop", "arma_blocks", "output_feedback_rnn", "lstm"]


def _both(monkeypatch, name, dtype=np.float64, T=40):
    build, make_inputs = CATALOGUE[name]
    out = {}
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
        m = build().astype(dtype)
        x = {k: v.astype(dtype) for k, v in make_inputs(T, 3, seed=1).items()}
        plan = compile(m)
        tr = simulate(m, x)
        w = {k: np.random.default_rng(2).standard_normal(a.shape).astype(dtype)
             for k, a in tr.outputs().items()}
        out[backend] = (plan, tr, backward(m, trace=tr, dL_dy=w))
    return out


@contextmanager
def _backend(name: str):
    """``BLOCKFLOW_BACKEND`` set to ``name`` inside (the default of every plan: the
    reciprocal's and the tangent's too)."""
    old = os.environ.get("BLOCKFLOW_BACKEND")
    os.environ["BLOCKFLOW_BACKEND"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["BLOCKFLOW_BACKEND"]
        else:
            os.environ["BLOCKFLOW_BACKEND"] = old


def _on_both_paths(m, x, w, params=None):
    """``(trace, gradients)`` of ``m`` on the numpy path, then on the compiled path (the
    forward run and the backward sweep)."""
    out = []
    for backend in ("numpy", "numba"):
        with _backend(backend):
            tr = simulate(m, x, params=params)
            out.append((tr, backward(m, trace=tr, dL_dy=w, params=params)))
    return out


def _compiled_reciprocal_loops(m) -> list:
    """The loops of ``m``'s reciprocal plan under the numba backend (the plan the
    compiled path's backward sweeps ran)."""
    with _backend("numba"):
        return [s for s in reciprocal_plan(m).segments if s.loop is not None]


@pytest.mark.parametrize("name", LOOPED)
def test_compiled_loops_give_the_numpy_numbers(monkeypatch, caplog, name):
    res = _both(monkeypatch, name)
    assert "numpy path" not in caplog.text  # the reciprocal's loops compiled too
    plan = res["numba"][0]
    assert plan.loops and all("compiled" in plan.loop_backend(s) for s in plan.segments
                              if s.loop is not None)
    (_, a, ga), (_, b, gb) = res["numpy"], res["numba"]
    for s in a.names():
        np.testing.assert_allclose(b[s], a[s], rtol=1e-12, atol=1e-13, err_msg=s)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=1e-12, atol=1e-12,
                                   err_msg=k)
    for k in ga.inputs:
        np.testing.assert_allclose(gb.inputs[k], ga.inputs[k], rtol=1e-12, atol=1e-13)


def test_float32_runs_compiled_to_1e_5(monkeypatch):
    res = _both(monkeypatch, "tanh_loop", np.float32)
    (_, a, ga), (_, b, gb) = res["numpy"], res["numba"]
    assert b["y"].dtype == np.float32
    np.testing.assert_allclose(b["y"], a["y"], rtol=1e-5, atol=1e-6)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=1e-5, atol=1e-5)


class Halve(Block):
    """``y(k) = u(k) / 2``: a user block with no kernel."""

    linear = True

    def output(self, x, u):
        return 0.5 * u


def test_a_loop_with_a_python_block_falls_back_and_says_why():
    from blocks import Sum, UnitDelay

    m = Model("fb")
    u, s, h, z, y = m.add(Inport("u"), Sum("++", name="s"), Halve(name="h"),
                          UnitDelay(name="z"), Outport("y"))
    m.connect(u, s.u1)
    m.chain(s, h, z)
    m.connect(z, s.u2)
    m.connect(h, y)
    plan = compile(m, backend="numba")
    assert "numpy path (block 'h' (Halve) has no kernel)" in plan.describe()
    x = {"u": np.ones((5, 1))}
    np.testing.assert_allclose(simulate(m, x, backend="numba")["y"][:, 0],
                               [0.5, 0.75, 0.875, 0.9375, 0.96875])


def test_parameters_are_read_when_the_loop_runs(monkeypatch):
    """Nothing is baked into the compiled code: a new gain takes effect at once."""
    build, make_inputs = CATALOGUE["tanh_loop"]
    m = build()
    x = make_inputs(30, 2, seed=0)
    a = simulate(m, x, backend="numba")["y"]
    m.blocks["kc"].K[...] *= 2.0
    b = simulate(m, x, backend="numba")["y"]
    c = simulate(m, x, backend="numpy")["y"]
    assert not np.allclose(a, b)
    np.testing.assert_allclose(b, c, rtol=1e-12)


@pytest.mark.parametrize("name", ["lstm", "lstm_from_blocks"])
def test_tangent_loops_compile_and_agree(monkeypatch, name):
    from blockflow.gradient.tangent import directional, tangent

    build, make_inputs = CATALOGUE[name]
    res = {}
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
        m = build()
        x = make_inputs(30, 2, seed=3)
        dx = {k: np.random.default_rng(4).standard_normal(np.shape(v)) for k, v in x.items()}
        res[backend] = directional(m, simulate(m, x), dx)
        if backend == "numba":
            plan = compile(tangent(m))
            assert all("compiled" in plan.loop_backend(s) for s in plan.segments
                       if s.loop is not None)
    loops = [s for s in res["numba"].plan.segments if s.loop is not None]
    assert loops and all("_nrt=False" in compiled(s).source for s in loops)  # into forms
    for k in res["numpy"].plan.outports:
        np.testing.assert_allclose(res["numba"][k], res["numpy"][k], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("seed,dtype", [(96, np.float64), (106, np.float64),
                                        (106, np.float32)])
def test_random_models_agree_on_both_paths(monkeypatch, seed, dtype):
    """Random models (feedback through delays, filters, state-space blocks, MLPs, FIR
    layers, subsystems): every loop compiles or says why not, and the numbers agree
    (float64 to 1e-12, float32 to 1e-5)."""
    from .test_random_models import inputs, random_model

    tol = 1e-12 if dtype == np.float64 else 1e-5
    res = {}
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
        m = random_model(seed).astype(dtype)
        x = {k: v.astype(dtype) for k, v in inputs(seed).items()}
        tr = simulate(m, x)
        w = {k: np.ones_like(a) for k, a in tr.outputs().items()}
        res[backend] = (compile(m), tr, backward(m, trace=tr, dL_dy=w))
    plan = res["numba"][0]
    for s in plan.segments:
        if s.loop is not None:
            assert "compiled" in plan.loop_backend(s), plan.describe()
    (_, a, ga), (_, b, gb) = res["numpy"], res["numba"]
    for s in a.names():
        assert b[s].dtype == a[s].dtype, s
        np.testing.assert_allclose(b[s], a[s], rtol=tol, atol=tol, err_msg=s)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=10 * tol, atol=tol)


def test_inputs_shared_by_the_batch_stay_on_the_compiled_path():
    # (T,) inputs arrive as read-only broadcast views; the loop must still compile
    m = tanh_loop()
    r = np.random.default_rng(0).standard_normal(300)
    for batch in (1, 3):
        a = simulate(m, {"r": r}, batch=batch, backend="numba")
        assert all(s.why_numpy is None for s in a.plan.segments if s.loop is not None)
        np.testing.assert_allclose(a["y"], simulate(m, {"r": r}, batch=batch,
                                                    backend="numpy")["y"], rtol=1e-12)


def _broadcast_loop(K) -> Model:
    """``e = r - z^-1 y``, ``y = tanh(K e)`` on (3, 4) samples, K broadcast against them."""
    from blocks import Function, Gain, Sum, UnitDelay

    m = Model("bcast")
    r, y = m.add(Inport("r", shape=(3, 4)), Outport("y"))
    e, k, f, z = m.add(Sum("+-", name="e"), Gain(K, name="k"), Function("tanh", name="f"),
                       UnitDelay(0.25, name="z"))
    m.connect(r, e.u1)
    m.chain(e, k, f, y)
    m.chain(f, z, e.u2)
    return m


@pytest.mark.parametrize("shape,per_member", [((), False), ((4,), False), ((), True),
                                              ((4,), True)])
def test_elementwise_parameters_broadcast_in_compiled_loops(shape, per_member):
    # the element loops of the compiled path index K the way numpy broadcasts it: a
    # scalar, a row of the sample, and one per batch member ((B, 1, 1) or (B, 1, 4))
    K = 0.5 + np.arange(int(np.prod(shape))).reshape(shape) / 7.0
    m = _broadcast_loop(K)
    x = {"r": np.random.default_rng(3).standard_normal((30, 2, 3, 4))}
    w = {"y": np.random.default_rng(4).standard_normal((30, 2, 3, 4))}
    params = {"k.K": np.stack([K, 1.5 - K])} if per_member else None
    (a, ga), (b, gb) = _on_both_paths(m, x, w, params)
    assert all(s.why_numpy is None for s in b.plan.segments if s.loop is not None)
    np.testing.assert_allclose(b["y"], a["y"], rtol=1e-12, atol=1e-14)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gb.inputs["r"], ga.inputs["r"], rtol=1e-12, atol=1e-14)


def test_states_handed_to_a_compiled_loop_are_not_changed():
    # compiled loops update their states in place, on their own copies: a state handed
    # in (a stream's next chunk, linearize's operating point) stays the caller's
    from blockflow.backends.execute import run_plan

    plan = compile(CATALOGUE["pid_loop"][0](), backend="numba")
    x = np.random.default_rng(5).standard_normal((2, 20, 2))

    def run(chunk, states):
        bufs = [None] * len(plan.slot_types)
        bufs[plan.inports["r"]] = x[chunk]
        finals = run_plan(plan, 20, 2, bufs, states=states)
        return bufs[plan.outports["y"]], finals

    _, finals = run(0, None)
    kept = {p: [np.copy(v) for v in (s if isinstance(s, tuple) else (s,))]
            for p, s in finals.items()}
    y1, _ = run(1, finals)
    y2, _ = run(1, finals)
    np.testing.assert_array_equal(y1, y2)
    for p, s in finals.items():
        for a, b in zip(s if isinstance(s, tuple) else (s,), kept[p], strict=True):
            np.testing.assert_array_equal(a, b)


def _rnn_loop(dtype=np.float64) -> Model:
    """An RNN cell whose state returns through a delay and a matrix gain; a Dense head."""
    from blocks import Dense, Gain, RNNCell, UnitDelay

    m = Model("rnn")
    x, y = m.add(Inport("x", shape=(3,)), Outport("y"))
    cell = m.add(RNNCell.random(3, 5, seed=1, name="cell"))
    mix = m.add(Gain(np.eye(5) + 0.1 * np.random.default_rng(2).standard_normal((5, 5)),
                     name="mix"))
    m.connect(x, cell.x)
    m.chain(cell, m.add(UnitDelay(np.full(5, 0.3), name="z")), mix, cell.h_prev)
    m.chain(cell, m.add(Dense.random(5, 2, seed=3, name="out")), y)
    return m.astype(dtype)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_rnn_cells_and_matrix_gains_compile_in_loops(dtype, tol):
    m = _rnn_loop(dtype)
    rng = np.random.default_rng(6)
    x = {"x": rng.standard_normal((25, 2, 3)).astype(dtype)}
    w = {"y": rng.standard_normal((25, 2, 2)).astype(dtype)}
    (a, ga), (b, gb) = _on_both_paths(m, x, w)
    assert all(s.why_numpy is None for s in b.plan.segments if s.loop is not None)
    assert b["y"].dtype == dtype
    np.testing.assert_allclose(b["y"], a["y"], rtol=tol, atol=tol)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=tol, atol=tol, err_msg=k)
    np.testing.assert_allclose(gb.inputs["x"], ga.inputs["x"], rtol=tol, atol=tol)
    # forward mode: the cells' tangents, element loops too
    from blockflow.gradient.tangent import directional

    dx = {"x": rng.standard_normal((25, 2, 3)).astype(dtype)}
    tangents = []
    for backend in ("numpy", "numba"):
        with _backend(backend):
            tangents.append(directional(m, simulate(m, x), dx))
    loops = [s for s in tangents[1].plan.segments if s.loop is not None]
    assert loops and all("_nrt=False" in compiled(s).source for s in loops)
    np.testing.assert_allclose(tangents[1]["y"], tangents[0]["y"], rtol=tol, atol=tol)


@kernel(allocates=False)
def _clip_into(c, u, out):
    limit = c.flat[0]  # a 0-d parameter arrives as a 1-element array
    for i in range(out.size):
        out.flat[i] = min(max(u.flat[i], -limit), limit)
    return out


@kernel(into=_clip_into)
def _clip(c, u):
    return np.clip(u, -c, c)


class Clip(Block):
    """``y = clip(u, -c, c)``: a user's block with a kernel and its into form."""

    def __init__(self, c, **kw):
        super().__init__(**kw)
        self.param("c", c, trainable=False)

    def output(self, x, u):
        return _clip(self.c, u)

    def vjp(self, u, y, dy):
        return dy * (np.abs(u[0]) < self.c)

    def kernel(self):
        return Kernel(_clip, params=(self.c,))


def test_a_users_kernel_with_an_into_form_runs_in_the_compiled_loop():
    from blocks import Sum, UnitDelay

    m = Model("clipped")
    r, y = m.add(Inport("r"), Outport("y"))
    e, c, z = m.add(Sum("+-", name="e"), Clip(0.8, name="c"),
                    UnitDelay(0.5, name="z"))
    m.connect(r, e.u1)
    m.chain(e, c, y)
    m.chain(c, z, e.u2)
    x = {"r": 2.0 * np.random.default_rng(7).standard_normal((40, 2))}
    a, b = simulate(m, x, backend="numpy"), simulate(m, x, backend="numba")
    seg = next(s for s in b.plan.segments if s.loop is not None)
    assert compiled(seg) is not None and "_clip_into" in compiled(seg).source
    assert "_nrt=False" in compiled(seg).source  # every form allocation-free
    np.testing.assert_allclose(b["y"], a["y"], rtol=1e-12, atol=0)
    assert np.abs(a["y"]).max() == pytest.approx(0.8)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_an_mlp_controller_in_a_loop_compiles_and_agrees(monkeypatch, caplog, dtype, tol):
    # a 3-layer MLP (Mux of the reference and the delayed output in, a filter as plant):
    # its forward form writes every layer into its rows, its reciprocal and tangent the
    # deltas of each row through a work row: all allocation-free, in the signals'
    # precision (float literals would make float32 float64)
    from blockflow.gradient.tangent import directional
    from blocks import MLP, Demux, DiscreteFilter, Mux, UnitDelay

    m = Model("mlp_loop")
    r, y = m.add(Inport("r"), Outport("y"))
    mux = m.add(Mux(2, name="mux"))
    net = m.add(MLP.random((2, 5, 4, 1), seed=4, name="net"))
    plant = m.add(DiscreteFilter((0.3, 0.1), (1.0, -0.6), name="plant"))
    m.connect(r, mux.u1)
    m.chain(mux, net, m.add(Demux(1, name="u")), plant, y)
    m.chain(plant, m.add(UnitDelay(0.0, shape=(), name="z")), mux.u2)
    m = m.astype(dtype)
    x = {"r": np.random.default_rng(8).standard_normal((30, 3)).astype(dtype)}
    w = {"y": np.random.default_rng(9).standard_normal((30, 3)).astype(dtype)}
    (a, ga), (b, gb) = _on_both_paths(m, x, w)
    seg = next(s for s in b.plan.segments if s.loop is not None)
    assert compiled(seg) is not None and "_nrt=False" in compiled(seg).source
    np.testing.assert_allclose(b["y"], a["y"], rtol=tol, atol=tol)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=10 * tol, atol=tol,
                                   err_msg=k)
    dx = {"r": np.ones((30, 3), dtype)}
    tangents = []
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
        tangents.append(directional(m, simulate(m, x), dx))
    ta, tb = tangents
    assert "numpy path" not in caplog.text, caplog.text  # reciprocal and tangent compiled
    back = _compiled_reciprocal_loops(m)
    assert back and all("_nrt=False" in compiled(s).source for s in back)
    assert all(tb[s].dtype == dtype for s in tb.names())  # the tangent's delay included
    np.testing.assert_allclose(tb["y"], ta["y"], rtol=tol, atol=tol)


def test_a_saturating_loop_compiles_allocation_free_and_agrees():
    from blocks import Gain, Saturation, Sum, UnitDelay

    m = Model("saturating")
    r, y = m.add(Inport("r"), Outport("y"))
    e, k, s, z = m.add(Sum("+-", name="e"), Gain(3.0, name="k"),
                       Saturation(-0.5, 0.7, name="s"), UnitDelay(0.2, name="z"))
    m.connect(r, e.u1)
    m.chain(e, k, s, y)
    m.chain(s, z, e.u2)
    x = {"r": np.random.default_rng(10).standard_normal((40, 3))}
    w = {"y": np.random.default_rng(11).standard_normal((40, 3))}
    (a, ga), (b, gb) = _on_both_paths(m, x, w)
    assert all("_nrt=False" in compiled(s).source for s in b.plan.segments if s.loop is not None)
    assert a["y"].min() == -0.5 and a["y"].max() == 0.7  # both limits are reached
    np.testing.assert_allclose(b["y"], a["y"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(gb.params["k.K"], ga.params["k.K"], rtol=1e-12)
    np.testing.assert_allclose(gb.inputs["r"], ga.inputs["r"], rtol=1e-12, atol=1e-15)


def test_fir_delay_lines_in_loops_compile_allocation_free_and_agree():
    # FIR taps and an FIR layer inside feedback loops: their delay lines shift in place
    from blocks import FIR, Demux, FIRDense, Function, Mux, Sum, UnitDelay

    m = Model("fir_loops")
    r, y = m.add(Inport("r"), Outport("y"))
    e, fir, f = m.add(Sum("+-", name="e"), FIR([0.5, 0.3, -0.2, 0.1], name="fir"),
                      Function("tanh", name="f"))
    mux, layer = m.add(Mux(2, name="mux"), FIRDense.random(2, 1, 3, seed=5, name="layer"))
    m.connect(r, e.u1)
    m.chain(e, fir, f, mux.u1)
    m.chain(mux, layer, m.add(Demux(1, name="d")), y)
    m.chain(layer, m.add(UnitDelay(np.zeros(1), name="z1")), m.add(Demux(1, name="d1")),
            mux.u2)
    m.chain(f, m.add(UnitDelay(0.1, shape=(), name="z2")), e.u2)
    x = {"r": np.random.default_rng(12).standard_normal((40, 2))}
    w = {"y": np.random.default_rng(13).standard_normal((40, 2))}
    (a, ga), (b, gb) = _on_both_paths(m, x, w)
    loops = [s for s in b.plan.segments if s.loop is not None]
    assert loops and all("_nrt=False" in compiled(s).source for s in loops)
    np.testing.assert_allclose(b["y"], a["y"], rtol=1e-12, atol=1e-14)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=1e-11, atol=1e-13,
                                   err_msg=k)


def _libm_loop() -> Model:
    """The closed loop of :func:`tanh_loop` with a sine for its controller (libm's)."""
    from blocks import DiscreteFilter, Function, Gain, Sum, UnitDelay

    m = Model("sin_loop")
    r, y = m.add(Inport("r"), Outport("y"))
    err, k, f = m.add(Sum("+-", name="err"), Gain(1.5, name="kc"), Function("sin", name="f"))
    plant, z = m.add(DiscreteFilter((0.4, 0.2), (1.0, -0.5), name="plant"), UnitDelay(0.0))
    m.connect(r, err.u1)
    m.chain(err, k, f, plant, y)
    m.chain(plant, z, err.u2)
    return m


def test_auto_decides_from_the_run_alone_never_from_the_process_history(monkeypatch):
    """``auto`` is a pure function of the run: short runs stay on the numpy path however
    many ran before (a resumed training or a second process would otherwise differ in
    the last bits); runs announced together (``expected_runs``: a training's epochs)
    compile from the first one; a large signal stays on numpy's arrays."""
    from blockflow.backends import execute, policy

    compiled = []

    def record(plan, seg, ks, bufs, states, rec, st):
        compiled.append(len(ks))
        return None  # (then the numpy path runs, as when numba cannot compile a loop)

    monkeypatch.setattr(execute, "_run_compiled", record)
    monkeypatch.setattr(policy, "AUTO_MIN_WORK", 1000)
    m = tanh_loop()
    n = len(next(s for s in compile(m).segments if s.loop is not None).ops)
    runs = -(-1000 // (25 * n))  # runs of 25 steps whose work together reaches 1,000
    for _ in range(2 * runs):
        simulate(m, {"r": np.ones((25, 1))}, backend="auto")
    assert compiled == []
    with policy.expected_runs(runs):
        simulate(m, {"r": np.ones((25, 1))}, backend="auto")
    assert compiled == [25]
    with policy.expected_runs(runs - 1):
        simulate(m, {"r": np.ones((25, 1))}, backend="auto")
    assert compiled == [25]
    assert "decided from the run alone" in compile(m, backend="auto").describe()
    wide = 1 + policy.AUTO_MAX_ELEMENTS  # batch x samples past the limit: numpy
    with policy.expected_runs(10**6):
        simulate(m, {"r": np.ones((25, wide))}, backend="auto")
    assert compiled == [25]
    # tanh is compiled as vectorised arithmetic: a batch of any size below the limit
    # compiles; one sin per member (libm's, per element): from this batch numpy's
    # vectorised sin, one less the compiled loop
    many = policy.LIBM_PER_OP * n
    with policy.expected_runs(10**6):
        simulate(m, {"r": np.ones((25, many))}, backend="auto")
        assert compiled == [25, 25]
        m = _libm_loop()
        simulate(m, {"r": np.ones((25, many))}, backend="auto")
        assert compiled == [25, 25]
        simulate(m, {"r": np.ones((25, many - 1))}, backend="auto")
    assert compiled == [25, 25, 25]
    assert f"transcendental evaluations per step < {many}" in compile(
        m, backend="auto").describe()


def test_the_multirate_motor_loop_compiles_with_a_batch_forward_and_back(caplog):
    """The DC-motor loop (a discretised TransferFcn, PID gains scaled by the period,
    zero-order hold, downsampling) compiles in both directions with a batch: states
    whatever their layout (init_state broadcasts x0) and a period gain's K given as a
    number."""
    from models.dc_motor import motor_loop

    m = motor_loop(20.0, 20.0, 0.5)
    R = np.linspace(0.5, 1.5, 3) * np.ones((60, 3))
    (ta, ga), (tb, gb) = _on_both_paths(m, {"r": R}, {"w": np.ones((60, 3))})
    assert "numpy path" not in caplog.text, caplog.text
    loops = [s for s in tb.plan.segments if s.loop is not None]
    # allocation-free: held record rows copied element by element, the plant's state
    # updated in place
    assert loops and all("_nrt=False" in compiled(s).source for s in loops)
    # and its reciprocal too: inputs summed over held intervals go into buffers the loop
    # is given, by element loops (they allocated twice per step and turned the mode off)
    back = _compiled_reciprocal_loops(m)
    assert back and all("_nrt=False" in compiled(s).source for s in back)
    assert any("add_into" in compiled(s).source for s in back)  # it sums held intervals
    np.testing.assert_allclose(tb["w"], ta["w"], rtol=1e-12, atol=1e-14)
    assert np.ptp(ta["w"][-1]) > 1e-3  # the batch members differ
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=1e-10, atol=1e-12,
                                   err_msg=k)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_state_space_blocks_in_loops_compile_allocation_free_and_agree(dtype, tol):
    """A MIMO StateSpace (feedthrough, a vector x0) and an elementwise SISO one (a
    discretised TransferFcn on a vector signal) inside a feedback loop: outputs row by
    row, states updated in place through one work row; a batch of 3."""
    from blocks import Function, StateSpace, Sum, TransferFcn

    rng = np.random.default_rng(14)
    A = 0.5 * rng.standard_normal((3, 3)) / np.sqrt(3)
    m = Model("ss_loop", dt=0.05)
    r, y = m.add(Inport("r", shape=(2,)), Outport("y"))
    e, f = m.add(Sum("+-", name="e"), Function("tanh", name="f"))
    ss = m.add(StateSpace(A, rng.standard_normal((3, 2)), rng.standard_normal((2, 3)),
                          0.3 * rng.standard_normal((2, 2)), x0=[0.5, -1.0, 2.0],
                          name="ss"))
    tf = m.add(TransferFcn([1.0], [0.2, 1.0], x0=0.3, name="tf"))
    m.connect(r, e.u1)
    m.chain(e, f, ss, y)
    m.chain(ss, tf, e.u2)  # tf (no feedthrough) closes the loop
    m = m.astype(dtype)
    x = {"r": rng.standard_normal((30, 3, 2)).astype(dtype)}
    w = {"y": rng.standard_normal((30, 3, 2)).astype(dtype)}
    (a, ga), (b, gb) = _on_both_paths(m, x, w)
    loops = [s for s in b.plan.segments if s.loop is not None]
    assert loops and all("_nrt=False" in compiled(s).source for s in loops)
    assert b["y"].dtype == dtype
    np.testing.assert_allclose(b["y"], a["y"], rtol=tol, atol=tol)
    np.testing.assert_allclose(gb.inputs["r"], ga.inputs["r"], rtol=tol, atol=tol)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=10 * tol, atol=tol,
                                   err_msg=k)


def test_float32_tangent_loops_stay_float32_and_compile(monkeypatch, caplog):
    """Random model 13: a delay reached before its input's type is known (the loop
    [delay, MLP]); its tangent delay starts from a zero in the model's precision, so the
    tangent loop is float32 throughout and compiles."""
    from blockflow.gradient.tangent import directional

    from .test_random_models import inputs, random_model

    m = random_model(13).astype(np.float32)
    x = {k: v.astype(np.float32) for k, v in inputs(13, B=3).items()}
    dx = {k: np.ones_like(v) for k, v in x.items()}
    out = []
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
        out.append(directional(m, simulate(m, x), dx))
    assert "numpy path" not in caplog.text, caplog.text
    for s in out[0].names():
        assert out[0][s].dtype == out[1][s].dtype == np.float32, s
        np.testing.assert_allclose(out[1][s], out[0][s], rtol=1e-5, atol=1e-5, err_msg=s)


def _plant(v):  # a user's plant nonlinearity, plain Python on numbers or arrays
    return v / (1.0 + v * v)


def _dplant(v, y):
    return (1.0 - v * v) / (1.0 + v * v) ** 2


def _untypable(v):  # numba cannot type a dict of strings in nopython mode
    return v * {"a": 1.0}["a"]


def _dlike(v, y):
    return v * 0.0 + 1.0


def _user_loop(f, df) -> Model:
    from blocks import Function, Gain, Sum, UnitDelay

    m = Model("user_fn_loop")
    r, y = m.add(Inport("r"), Outport("y"))
    s, p, g = m.add(Sum("+-", name="s"), Function(f, df, name="p"), Gain(0.8, name="g"))
    m.connect(r, s.u1)
    m.chain(s, p, g, y)
    m.chain(g, m.add(UnitDelay(0.5, name="z")), s.u2)
    return m


def test_a_functions_user_callables_compile_in_loops(caplog):
    """Function(f, df) with a user's plain functions compiles (f element by element, its
    reciprocal dy f'(a)); a closure stays on the numpy path; a function numba cannot
    type falls back and says why.  All give the numpy path's numbers."""
    x = {"r": np.random.default_rng(15).standard_normal((30, 3))}
    w = {"y": np.random.default_rng(16).standard_normal((30, 3))}
    (a, ga), (b, gb) = _on_both_paths(_user_loop(_plant, _dplant), x, w)
    assert "numpy path" not in caplog.text, caplog.text
    loops = [s for s in b.plan.segments if s.loop is not None]
    assert loops and all("_nrt=False" in compiled(s).source for s in loops)
    np.testing.assert_allclose(b["y"], a["y"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb.inputs["r"], ga.inputs["r"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb.params["g.K"], ga.params["g.K"], rtol=1e-12)
    # the block pickles as its functions (process pools send models to workers)
    import pickle

    back = pickle.loads(pickle.dumps(_user_loop(_plant, _dplant)))
    np.testing.assert_allclose(simulate(back, x, backend="numba")["y"], a["y"], rtol=1e-12)

    scale = 1.0  # a closure over a number: keyed by its value, compiled
    closure = _user_loop(lambda v: scale * v, lambda v, y: scale + 0.0 * v)
    assert "compiled (numba)" in compile(closure, backend="numba").describe()
    table = {"scale": 1.0}  # a closure over a dict: what it reads cannot be keyed
    closure = _user_loop(lambda v: table["scale"] * v, lambda v, y: table["scale"] + 0.0 * v)
    plan = compile(closure, backend="numba")
    assert "numpy path (block 'p' (Function) has no kernel: what its f or df computes " \
        "from cannot be keyed (it reads a dict" in plan.describe()

    m = _user_loop(_untypable, _dlike)
    caplog.clear()
    with caplog.at_level("WARNING"):
        got = simulate(m, x, backend="numba")["y"]
    assert "numba could not compile it" in caplog.text
    np.testing.assert_allclose(got, simulate(m, x, backend="numpy")["y"], rtol=1e-15)


def test_products_and_lookup_tables_in_loops_compile_allocation_free(caplog):
    """Product (a multiply and a divide) and Lookup1D (inputs across and beyond its
    breakpoints) inside a loop: element loops forward and back, the numpy numbers."""
    from blocks import Gain, Lookup1D, Product, Sum, UnitDelay

    m = Model("product_lookup")
    r, y = m.add(Inport("r"), Outport("y"))
    s, lut = m.add(Sum("+-", name="s"), Lookup1D([-1.0, 0.0, 0.5, 2.0],
                                                 [0.3, -1.0, 2.0, 4.0], name="lut"))
    prod, g = m.add(Product("*/", name="prod"), Gain(0.3, name="g"))
    z = m.add(UnitDelay(0.4, name="z"))
    m.connect(r, s.u1)
    m.chain(s, lut, prod.u1)
    m.connect(m.add(Inport("d")), prod.u2)
    m.chain(prod, g, y)
    m.chain(g, z, s.u2)
    rng = np.random.default_rng(17)
    x = {"r": 2.0 * rng.standard_normal((40, 3)),
         "d": 1.5 + rng.uniform(-1.0, 1.0, (40, 3))}  # (kept away from 0: the divisor)
    w = {"y": rng.standard_normal((40, 3))}
    (a, ga), (b, gb) = _on_both_paths(m, x, w)
    assert "numpy path" not in caplog.text, caplog.text
    loops = [s for s in b.plan.segments if s.loop is not None]
    back = _compiled_reciprocal_loops(m)
    assert loops and back and all("_nrt=False" in compiled(s).source for s in loops + back)
    lut_in = a["s"]
    assert lut_in.min() < -1.0 < 0.5 < lut_in.max()  # below, inside and across the table
    np.testing.assert_allclose(b["y"], a["y"], rtol=1e-12, atol=1e-15)
    for k in ("r", "d"):
        np.testing.assert_allclose(gb.inputs[k], ga.inputs[k], rtol=1e-12, atol=1e-15)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=1e-11, atol=1e-14,
                                   err_msg=k)


def test_auto_ignores_what_is_loaded_or_in_the_disk_cache(monkeypatch):
    """A loop compiled before in this process (or found in the disk cache) does not
    change the decision: a short run takes the numpy path in a warm process as in a cold
    one, a long run the compiled path in both; their numbers agree to the bit run to
    run."""
    from blockflow.backends import execute, policy

    m = tanh_loop()
    n = len(next(s for s in compile(m).segments if s.loop is not None).ops)
    long = 1 + policy.AUTO_MIN_WORK // n
    r = np.sin(np.arange(long) / 7.0)[:, None] + 1.0
    cold = simulate(m, {"r": r[:10]}, backend="auto")["y"]
    first = simulate(m, {"r": r}, backend="auto")["y"]  # compiles (or loads) the loop
    compiled = []
    real = execute._run_compiled
    monkeypatch.setattr(execute, "_run_compiled",
                        lambda plan, seg, ks, *a: compiled.append(len(ks)) or real(
                            plan, seg, ks, *a))
    warm = simulate(m, {"r": r[:10]}, backend="auto")["y"]
    assert compiled == []
    np.testing.assert_array_equal(warm, cold)
    np.testing.assert_array_equal(simulate(m, {"r": r}, backend="auto")["y"], first)
    assert compiled == [long]


def test_auto_leaves_a_wide_cell_run_alone_to_numpy_and_compiles_a_narrow_one():
    """B=1 RNN cells over a training's runs: H=64 compiles (numba 3.3 ms vs numpy 7.1
    ms fwd+grad at T=1000), H=256 keeps numpy's BLAS and vectorised tanh (19 ms vs 32):
    ``B x H`` tanh per step against ``LIBM_PER_OP`` per block of the loop."""
    pytest.importorskip("numba")
    from blockflow.backends import policy
    from blocks import Dense, RNNCell, UnitDelay

    def cell_loop(H):
        m = Model("rnn")
        x, y = m.add(Inport("x", shape=(4,)), Outport("y"))
        cell = m.add(RNNCell.random(4, H, name="cell"))
        z, out = m.add(UnitDelay(np.zeros(H), name="h"), Dense.random(H, 1, name="out"))
        m.connect(x, cell.x)
        m.chain(cell, z, cell.h_prev)
        m.chain(cell, out, y)
        return compile(m, backend="auto")

    for H, want in ((64, True), (256, False)):
        plan = cell_loop(H)
        (seg,) = [s for s in plan.segments if s.loop is not None]
        limit = policy.LIBM_PER_OP * len(seg.ops)
        assert (H < limit) is want
        assert policy.loop_compiled(plan, seg, 1000, 1, runs=1000) is want
