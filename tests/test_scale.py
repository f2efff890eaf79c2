"""Models wide in one block: a Sum of thousands of inputs builds, compiles and
differentiates in linear time, with the numbers of the sum written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, SignalTypeError, grad, simulate
from blocks import Gain, Sum, UnitDelay


def wide_sum(n: int, signs: str | None = None) -> Model:
    m = Model("wide")
    u = m.add(Inport("u"))
    s = m.add(Sum(signs or "+" * n, name="s"))
    for i in range(n):
        g = m.add(Gain(1.0 + i / n, name=f"g{i}"))
        m.connect(u, g)
        m.connect(g, s[f"u{i + 1}"])
    m.connect(s, m.add(Outport("y")))
    return m


def test_a_sum_of_thousands_of_inputs_runs_and_differentiates():
    n = 3000
    signs = "".join("+-"[i % 3 == 0] for i in range(n))
    m = wide_sum(n, signs)
    k = np.array([1.0 + i / n for i in range(n)])
    s = np.array([-1.0 if c == "-" else 1.0 for c in signs])
    u = np.sin(np.arange(7.0)) + 2.0  # non-zero at k = 0
    y = simulate(m, {"u": u})["y"][:, 0]
    np.testing.assert_allclose(y, u * (s @ k), rtol=1e-12)
    J, g = grad(m, {"u": u}, targets=np.zeros_like(u))  # J = sum y^2
    for i in (0, 1, 1234, n - 1):
        np.testing.assert_allclose(g[f"g{i}.K"], 2 * np.sum(y * s[i] * u), rtol=1e-10)


def test_connecting_a_wide_uniform_block_still_checks_every_type():
    m = wide_sum(50)
    v = m.add(Inport("v", shape=(2,)))
    s2 = m.add(Sum("++", name="s2"))
    m.connect(m.blocks["u"], s2.u1)
    with pytest.raises(SignalTypeError, match="same shape"):
        m.connect(v, s2.u2)


def test_a_long_sum_inside_a_loop_is_written_one_statement_per_term():
    """A Sum of more terms than one expression holds (SUM_EXPRESSION_MAX) inside a
    feedback loop: its kernels are statements; the loop's numbers are the hand-written
    recursion's, and numba compiles the statements (called directly: numba cannot
    inline a call of more than 30 arguments, which CPython passes as *args)."""
    from blockflow.core.kernel import SUM_EXPRESSION_MAX, into_form
    from blocks.math import sum_output

    n = SUM_EXPRESSION_MAX + 8
    m = Model("loop")
    u, y = m.add(Inport("u"), Outport("y"))
    s = m.add(Sum("-" + "+" * (n - 1), name="s"))
    z = m.add(UnitDelay(0.5, name="z"))
    m.connect(u, s.u1)
    for i in range(2, n + 1):
        m.connect(z, m.add(Gain(0.9 / n, name=f"g{i}")))
        m.connect(m.blocks[f"g{i}"], s[f"u{i}"])
    m.chain(s, z)
    m.connect(s, y)
    x = np.cos(np.arange(30) / 4.0) + 1.0
    got = simulate(m, {"u": x}, backend="numpy")["y"][:, 0]
    zk, want = 0.5, []
    for xk in x:
        yk = -xk + (n - 1) * (0.9 / n) * zk
        want.append(yk)
        zk = yk
    np.testing.assert_allclose(got, want, rtol=1e-12)
    k = sum_output("-" + "+" * (n - 1))
    assert into_form(k).kernel_source.count("acc +=") == n - 2
    numba = pytest.importorskip("numba")
    args = [np.full((2, 3), float(i + 1)) for i in range(n)]
    ref = -args[0] + sum(args[1:])
    np.testing.assert_array_equal(numba.njit(k)(*args), ref)
    np.testing.assert_array_equal(numba.njit(into_form(k))(*args, np.empty((2, 3))), ref)


def test_deferred_types_infer_once_what_each_connect_would_have():
    """Inside ``deferred_types`` nothing is inferred per wire; on leaving, the types are
    those that wiring one connect at a time gives, and a mismatch raises then, naming the
    block."""
    def build(m: Model, v_shape=(3,)) -> None:
        u, v = m.add(Inport("u", shape=(3,)), Inport("v", shape=v_shape))
        s, z, y = m.add(Sum("+-", name="s"), UnitDelay(name="z"), Outport("y"))
        m.connect(z, s.u2)  # the loop wired before its input: z's type comes around
        m.connect(u, s.u1)
        m.chain(s, m.add(Gain(2.0, name="g")), z)
        m.connect(z, y)
        s2 = m.add(Sum("++", name="s2"))
        m.connect(u, s2.u1)
        m.connect(v, s2.u2)
        m.connect(s2, m.add(Outport("y2")))

    step = Model("step")
    build(step)
    bulk = Model("bulk")
    with bulk.deferred_types():
        build(bulk)
        assert bulk._types == {}  # nothing inferred yet
    assert bulk._types == step._types
    x = {"u": np.arange(1.0, 16.0).reshape(5, 3), "v": np.ones((5, 3))}
    np.testing.assert_array_equal(simulate(bulk, x)["y"], simulate(step, x)["y"])

    bad = Model("bad")
    with pytest.raises(SignalTypeError, match="s2"), bad.deferred_types():
        build(bad, v_shape=(2,))


def test_deferred_types_unchecked_infer_at_first_use():
    """``check=False`` leaves the one inference pass to the first use that needs a type:
    the types are then those of a checked build, and a mismatch raises there (at
    ``signal_type``, the next ``connect`` or compiling), naming the block."""
    from blockflow import compile

    def build(m: Model, v_shape=(3,)) -> None:
        u, v = m.add(Inport("u", shape=(3,)), Inport("v", shape=v_shape))
        s2 = m.add(Sum("++", name="s2"))
        m.connect(u, s2.u1)
        m.connect(v, s2.u2)
        m.connect(s2, m.add(Outport("y2")))

    checked, lazy = Model("checked"), Model("lazy")
    with checked.deferred_types():
        build(checked)
    with lazy.deferred_types(check=False):
        build(lazy)
    assert lazy._types == {}  # nothing inferred on leaving
    assert lazy.signal_type("s2.y") == checked.signal_type("s2.y")
    assert lazy._types == checked._types

    for use in (lambda m: m.signal_type("s2.y"), compile,
                lambda m: m.connect("s2.y", m.add(Outport("y3")))):
        bad = Model("bad")
        with bad.deferred_types(check=False):
            build(bad, v_shape=(2,))  # no error on leaving
        with pytest.raises(SignalTypeError, match="s2"):
            use(bad)


def test_a_mux_of_thousands_of_inputs_checks_each_wire_alone():
    """A Mux is separable: each new wire checks its own width, and the output type is
    inferred once, when the last input's type arrives (a wrong width still raises at its
    connect, naming the port)."""
    from blocks import Mux

    n = 3000
    m = Model("wide_mux")
    u, mux, y = m.add(Inport("u"), Mux(n, name="mux"), Outport("y"))
    gains = [m.add(Gain(1.0 + i / n, name=f"g{i}")) for i in range(n)]
    for i in reversed(range(1, n)):  # the last inputs first
        m.chain(u, gains[i], mux[f"u{i + 1}"])
    m.connect(mux, y)
    assert m.signal_type(mux.y) is None  # u1 still open
    m.connect(gains[0], mux.u1)  # g0's own input is not wired yet: its type is unknown
    assert m.signal_type(mux.y) is None
    m.connect(u, gains[0])  # the type arrives through g0: the Mux is inferred now
    assert m.signal_type(mux.y).shape == (n,)

    k = np.array([1.0 + i / n for i in range(n)])
    x = np.cos(np.arange(5.0)) + 1.5  # non-zero at k = 0
    np.testing.assert_allclose(simulate(m, {"u": x})["y"][:, 0], np.outer(x, k), rtol=1e-13)
    J, g = grad(m, {"u": x}, targets=np.zeros((5, n)))  # J = sum y^2
    for i in (0, 7, n - 1):
        np.testing.assert_allclose(g[f"g{i}.K"], 2 * np.sum(k[i] * x * x), rtol=1e-10)

    bad = Model("bad")
    v, w, mx = bad.add(Inport("v"), Inport("w", shape=(2,)), Mux([1, 3], name="mx"))
    bad.connect(v, mx.u1)
    with pytest.raises(SignalTypeError, match=r"mx.*u2|u2.*mx"):
        bad.connect(w, mx.u2)
    assert bad.source_of("mx", "u2") is None  # the wrong wire is not kept
    w3 = bad.add(Inport("w3", shape=(3,)))
    bad.connect(w3, mx.u2)
    assert bad.signal_type(mx.y).shape == (4,)


def _mux_loop(n: int) -> Model:
    """``x(k+1) = 0.5 (u(k) + x(k))`` on a vector of ``n``, split and gathered again."""
    from blocks import Demux, Mux

    m = Model("mux_loop")
    with m.deferred_types():
        u, s, z = m.add(Inport("u", shape=(n,)), Sum("++", name="s"),
                        UnitDelay(np.zeros(n), name="z"))
        dm, mx, y = m.add(Demux(n, name="dm"), Mux(n, name="mx"), Outport("y"))
        m.connect(u, s.u1)
        m.connect(z, s.u2)
        m.connect(s, dm)
        for i in range(n):
            g = m.add(Gain(0.5 + i / (4 * n), name=f"g{i}"))
            m.chain(dm[f"y{i + 1}"], g, mx[f"u{i + 1}"])
        m.connect(mx, z)
        m.connect(mx, y)
    return m


def test_a_loop_through_a_wide_mux_compiles_calls_of_many_arguments(monkeypatch):
    """A kernel call of more than 30 arguments (CPython passes them as *args, which
    numba cannot inline) is called, not inlined, in compiled loops and interpreters; a
    block of more inputs than KERNEL_MAX_INPUTS keeps its loop on numpy, saying why."""
    pytest.importorskip("numba")
    from blockflow import backward, compile
    from blockflow.backends.loops import KERNEL_MAX_INPUTS

    n = 33
    m = _mux_loop(n)
    x = np.cos(np.arange(6.0)[:, None] + np.arange(n)) + 1.5  # non-zero at k = 0
    gain = 0.5 + np.arange(n) / (4 * n)
    want, xk = [], np.zeros(n)
    for uk in x:
        xk = gain * (uk + xk)
        want.append(xk)
    w = {"y": np.ones((6, 1, n))}
    res = {}
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
        tr = simulate(m, {"u": x})
        res[backend] = (tr, backward(m, trace=tr, dL_dy=w))
        np.testing.assert_allclose(tr["y"][:, 0], want, rtol=1e-13)
    tr = res["numba"][0]
    assert all(s.why_numpy is None for s in tr.plan.segments if s.loop is not None), \
        tr.plan.describe()
    for k, g in res["numpy"][1].params.items():
        np.testing.assert_allclose(res["numba"][1].params[k], g, rtol=1e-12)

    wide = compile(_mux_loop(KERNEL_MAX_INPUTS + 1), backend="numba")
    assert f"has {KERNEL_MAX_INPUTS + 1} inputs" in wide.describe()


def test_an_error_inside_deferred_types_leaves_the_wires_made_typed():
    m = Model("partial")
    with pytest.raises(KeyError), m.deferred_types():
        u, g = m.add(Inport("u", shape=(2,)), Gain(3.0, name="g"))
        m.connect(u, g)
        raise KeyError("the user's own mistake")
    assert m.signal_type(g.y).shape == (2,)
    y = m.add(Outport("y"))
    m.connect(g, y)  # wiring goes on, checked per connect again
    np.testing.assert_array_equal(simulate(m, {"u": np.ones((2, 2))})["y"], 3.0)


def test_the_graph_view_follows_the_wiring_and_is_read_only():
    import networkx as nx

    m = Model("view")
    u, g, h, y = m.add(Inport("u"), Gain(2.0, name="g"), Gain(3.0, name="h"), Outport("y"))
    m.chain(u, g, h, y)
    m.connect(u, m.add(Outport("y2")))
    first = m.graph
    assert sorted((s, d, e["src_port"], e["dst_port"]) for s, d, e in first.edges(data=True)) \
        == [("g", "h", "y", "u"), ("h", "y", "y", "u"), ("u", "g", "y", "u"),
            ("u", "y2", "y", "u")]
    assert m.graph is first  # shared until the wiring changes
    with pytest.raises(nx.NetworkXError, match="Frozen"):
        first.add_edge("u", "h")
    m.disconnect(h.u)
    assert not m.graph.has_edge("g", "h") and first.has_edge("g", "h")
    assert m.readers("u") == [("y", "g", "u"), ("y", "y2", "u")]
    m.connect(u, h)
    assert m.source_of("h", "u") == ("u", "y") and m.graph.has_edge("u", "h")
