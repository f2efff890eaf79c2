"""Loops too large to compile as one function run through the interpreter of their
operations' kinds: the numpy path's numbers, forward and back, float64 and float32; a
loop it cannot run stays on the numpy path and says why.  (The limit is lowered here so
that small loops take the interpreter's path; bench/bench_scale.py runs 5,000 blocks.)"""

import logging

import numpy as np
import pytest

from blockflow import Block, Inport, Model, Outport, backward, compile, simulate
from blockflow.backends import loops as kernels_module
from blockflow.backends.policy import numba_available
from blockflow.core.kernel import Kernel, kernel
from blockflow.gradient.gradients import reciprocal_plan
from tests.helpers import compiled

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba is not installed")


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(kernels_module, "INTERP_MIN_OPS", 4)
    monkeypatch.setattr(kernels_module, "MAX_COMPILED_OPS", 6)


def ring(n: int, shape=(2,)) -> Model:
    """A feedback ring of ``n`` gains (scalar and per-element), tanh, saturation and
    filter blocks (a tuple state: delay line and constants) behind a sum, closed by a
    delay whose initial value is non-zero."""
    from blocks import DiscreteFilter, Function, Gain, Saturation, Sum, UnitDelay

    m = Model("ring")
    u, s, y = m.add(Inport("u", shape=shape), Sum("+-", name="s"), Outport("y"))
    m.connect(u, s.u1)
    prev = s
    for i in range(n):
        b = [Gain(0.9 - 0.01 * i, name=f"g{i}"), Function("tanh", name=f"f{i}"),
             Gain(np.linspace(0.5, 1.2, shape[0]), name=f"v{i}"),
             Saturation(-0.8, 0.8, name=f"sat{i}"),
             DiscreteFilter([0.5, 0.3], [1.0, -0.4], name=f"h{i}")][i % 5]
        m.connect(prev, m.add(b))
        prev = b
    z = m.add(UnitDelay(np.full(shape, 0.7), name="z"))
    m.connect(prev, z)
    m.connect(z, s.u2)
    m.connect(prev, y)
    return m


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_a_large_loop_runs_interpreted_with_the_numpy_numbers(small_limit, monkeypatch,
                                                              caplog, dtype, tol):
    rng = np.random.default_rng(3)
    m = ring(13).astype(dtype)
    x = {"u": rng.standard_normal((25, 3, 2)).astype(dtype)}
    w = {"y": rng.standard_normal((25, 3, 2)).astype(dtype)}
    out = []
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)  # (the reciprocal's plan too)
        tr = simulate(m, x)
        out.append((tr, backward(m, trace=tr, dL_dy=w)))
    (a, ga), (b, gb) = out
    assert "numpy path" not in caplog.text, caplog.text
    back = next(s for s in reciprocal_plan(m).segments if s.loop is not None)
    seg = next(s for s in b.plan.segments if s.loop is not None)
    for s in (seg, back):
        assert "interp(" in compiled(s).source and "_nrt=False" in compiled(s).source
    assert "by the interpreter" in b.plan.loop_backend(seg)
    # a few kinds of operation, whatever the loop's length: one branch each
    assert compiled(seg).source.count("elif c ==") < 8
    assert a["y"][0, 0, 0] != 0  # the delay's first sample (x0 = 0.7) reaches y at k = 0
    for s in a.names():
        assert b[s].dtype == dtype
        np.testing.assert_allclose(b[s], a[s], rtol=tol, atol=tol, err_msg=s)
    np.testing.assert_allclose(gb.inputs["u"], ga.inputs["u"], rtol=tol, atol=tol)
    for k in ga.params:
        np.testing.assert_allclose(gb.params[k], ga.params[k], rtol=10 * tol, atol=tol,
                                   err_msg=k)


def test_interpreted_loops_continue_from_given_states_and_leave_them(small_limit):
    """A run in two chunks (the first's final states handed to the second) equals one
    run, and the states handed in are not changed."""
    from blockflow.backends.execute import run_plan

    m = ring(9)
    plan = compile(m, backend="numba")
    u = np.random.default_rng(4).standard_normal((30, 2, 2))

    def run(U, states=None):
        bufs = [None] * len(plan.slot_types)
        bufs[plan.inports["u"]] = U
        finals = run_plan(plan, U.shape[0], 2, bufs, states=states)
        return bufs[plan.outports["y"]], finals

    whole, _ = run(u)
    first, mid = run(u[:12])
    def parts(v):  # (a filter's state is a tuple)
        return [np.copy(p) for p in v] if isinstance(v, tuple) else [np.copy(v)]

    kept = {k: parts(v) for k, v in mid.items()}
    assert any(isinstance(v, tuple) for v in mid.values())
    second, _ = run(u[12:], mid)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-13)
    for k in mid:
        for a, b in zip(parts(mid[k]), kept[k], strict=True):
            np.testing.assert_array_equal(a, b)


@kernel
def _halve(u):  # a user's kernel without an into form
    return 0.5 * u


class Halve(Block):
    linear = True

    def output(self, x, u):
        return _halve(u)

    def kernel(self):
        return Kernel(_halve)

    def vjp(self, u, y, dy):
        return 0.5 * dy


@pytest.mark.parametrize("gains", [3, 6])
def test_a_loop_the_interpreter_cannot_run_compiles_whole_or_says_why(small_limit, caplog,
                                                                      gains):
    """A block whose kernel has no into form: a loop holding it compiles as one function
    up to MAX_COMPILED_OPS blocks, and past that stays on the numpy path and says why."""
    from blocks import Gain, Sum, UnitDelay

    m = Model("halving_loop")
    u, s, y = m.add(Inport("u"), Sum("+-", name="s"), Outport("y"))
    chain = m.add(*(Gain(0.5, name=f"g{i}") for i in range(gains)))
    h = m.add(Halve(name="h"))
    m.connect(u, s.u1)
    m.chain(s, *chain, h, m.add(UnitDelay(name="z")), s.u2)
    m.connect(h, y)
    plan = compile(m, backend="numba")
    seg = next(s for s in plan.segments if s.loop is not None)
    why = plan.loop_backend(seg)
    if gains == 3:  # 6 blocks: one function
        assert why == "compiled (numba)" and not seg.interpreted
    else:
        assert why.startswith("numpy path (a loop of 9 blocks, too large")
        assert "block 'h' (Halve) has no kernel writing into its buffers" in why
    x = {"u": np.linspace(-1, 1, 10)[:, None]}
    with caplog.at_level(logging.WARNING):
        b = simulate(m, x, backend="numba")
    assert any(compiled(s) is not None for s in b.plan.segments) == (gains == 3)
    np.testing.assert_allclose(b["y"], simulate(m, x, backend="numpy")["y"], rtol=1e-15)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_an_overflow_in_an_interpreted_loop_is_named_as_on_the_numpy_path(small_limit):
    """The finite check looks at an interpreted loop's stacked records once; where they
    hold an infinity it still names the first block and step, as the numpy path does."""
    from blockflow.errors import SimulationError
    from blocks import Function, Gain, Sum, UnitDelay

    m = Model("blow_up")
    u, s, y = m.add(Inport("u"), Sum("++", name="s"), Outport("y"))
    chain = m.add(*(Gain(1.5, name=f"g{i}") for i in range(5)))
    e = m.add(Function("exp", name="e"))
    m.connect(u, s.u1)
    m.chain(s, *chain, e, m.add(UnitDelay(name="z")), s.u2)
    m.connect(e, y)
    x = {"u": np.full((40, 2), 0.5)}
    messages = []
    for backend in ("numpy", "numba"):
        with pytest.raises(SimulationError, match=r"'e\.y'|e\.y") as info:
            simulate(m, x, backend=backend)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "step" in messages[0]


def test_auto_counts_the_work_of_every_loop_one_interpreter_serves(small_limit, monkeypatch):
    """Four separate loops of the same kinds: each alone is too short to pay for the
    interpreter, together they are, so all run interpreted from the first run."""
    from blockflow.backends import policy

    monkeypatch.setattr(policy, "AUTO_MIN_WORK", 1000)
    from blocks import Gain, Sum, UnitDelay

    m = Model("four_loops")
    for c in range(4):
        u, s, y = m.add(Inport(f"u{c}"), Sum("++", name=f"s{c}"), Outport(f"y{c}"))
        chain = m.add(*(Gain(0.5, name=f"g{c}_{i}") for i in range(6)))
        m.connect(u, s.u1)
        m.chain(s, *chain, m.add(UnitDelay(0.3, name=f"z{c}")), s.u2)
        m.connect(chain[-1], y)
    # (a batch of 2: a run of batch 1 would make each a loop of numbers, compiled whole)
    x = {f"u{c}": np.ones((40, 2)) for c in range(4)}
    tr = simulate(m, x, backend="auto")
    loops = [s for s in tr.plan.segments if s.loop is not None]
    assert len(loops) == 4 and all(s.interpreted for s in loops)
    assert 40 * len(loops[0].ops) < 1000 <= 40 * sum(len(s.ops) for s in loops)
    assert all(compiled(s) is not None for s in loops)
    np.testing.assert_allclose(tr["y0"], simulate(m, x, backend="numpy")["y0"], rtol=1e-14)
