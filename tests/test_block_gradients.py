"""Every block's reciprocal rule (and parameter gradients) against central finite
differences, float64, with hypothesis drawing shapes, parameters and inputs; plus the
meta-test that every library block has a rule and an equation in its docstring."""

import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import blocks
from blockflow import Block, Inport, Model, Outport, simulate
from blockflow.core.block import as_tuple
from blocks import (
    FIR,
    MLP,
    Delay,
    Demux,
    Dense,
    DiscreteFilter,
    DiscreteTransferFcn,
    FIRDense,
    Function,
    Gain,
    LSTMCell,
    Mux,
    Product,
    RNNCell,
    Saturation,
    Softmax,
    StateSpace,
    Sum,
    UnitDelay,
)

from .helpers import dot_check, fd_check

seeds = st.integers(0, 2**16)
dims = st.integers(1, 4)


def wrap(block, in_shapes):
    """A model around one block: an Inport per input, an Outport per output."""
    m = Model("one")
    m.add(block)
    for p, shape in zip(block.inputs, in_shapes, strict=True):
        m.connect(m.add(Inport(f"in_{p}", shape=shape)), block[p])
    for p in block.outputs:
        m.connect(block[p], m.add(Outport(f"out_{p}")))
    return m


def check(block, in_shapes, seed, T=6, B=2, scale=1.0):
    rng = np.random.default_rng(seed)
    m = wrap(block, in_shapes)
    x = {f"in_{p}": scale * rng.standard_normal((T, B, *s))
         for p, s in zip(block.inputs, in_shapes, strict=True)}
    fd_check(m, x, seed=seed)
    dot_check(m, x, seed=seed)


@given(seed=seeds, n=dims, name=st.sampled_from(["tanh", "sigmoid", "identity", "exp", "sin",
                                                  "cos", "square", "softplus"]))
def test_function(seed, n, name):
    check(Function(name), [(n,)], seed)


@given(seed=seeds, n=dims, signs=st.text("+-", min_size=1, max_size=4))
def test_sum(seed, n, signs):
    check(Sum(signs), [(n,)] * len(signs), seed)


@given(seed=seeds, n=dims, ops=st.text("*/", min_size=1, max_size=3))
def test_product(seed, n, ops):
    rng = np.random.default_rng(seed)
    b = Product(ops)
    m = wrap(b, [(n,)] * len(ops))
    x = {f"in_{p}": rng.uniform(0.5, 2.0, (5, 2, n)) * rng.choice([-1, 1], (5, 2, n))
         for p in b.inputs}  # away from zero, for the quotients
    fd_check(m, x, seed=seed)


@given(seed=seeds, m_=dims, n=dims, matrix=st.booleans())
def test_gain(seed, m_, n, matrix):
    rng = np.random.default_rng(seed)
    K = rng.standard_normal((m_, n)) if matrix else rng.standard_normal(n)
    check(Gain(K), [(n,)], seed)


@given(seed=seeds, m_=dims, n=dims)
def test_dense_and_mlp(seed, m_, n):
    check(Dense.random(n, m_, seed=seed), [(n,)], seed)
    check(MLP.random([n, 3, m_], seed=seed, activation="sigmoid"), [(n,)], seed)


@given(seed=seeds, n=st.integers(2, 5))
def test_softmax(seed, n):
    check(Softmax(), [(n,)], seed)


@given(seed=seeds)
def test_saturation_away_from_the_corners(seed):
    rng = np.random.default_rng(seed)
    m = wrap(Saturation(-0.5, 0.5), [(3,)])
    x = rng.choice([-1.0, 1.0], (5, 2, 3)) * rng.uniform(0.0, 0.4, (5, 2, 3))
    x += rng.choice([0.0, 0.6, -0.6], (5, 2, 3)) * 1.5  # inside or clearly outside
    fd_check(m, {"in_u": x}, seed=seed)


@given(seed=seeds)
def test_mux_demux(seed):
    check(Mux([1, 2, 1]), [(), (2,), ()], seed)
    check(Demux([2, 1]), [(3,)], seed)


@given(seed=seeds, n=dims, h=st.integers(1, 3))
def test_rnn_and_lstm_cells(seed, n, h):
    check(RNNCell.random(n, h, seed=seed), [(n,), (h,)], seed)
    check(LSTMCell.random(n, h, seed=seed), [(n,), (h,), (h,)], seed)


@given(seed=seeds, taps=st.integers(1, 5), n=dims)
def test_fir_and_fir_layer(seed, taps, n):
    rng = np.random.default_rng(seed)
    check(FIR(rng.standard_normal(taps)), [(n,)], seed, T=9)
    check(FIRDense.random(n, 2, taps, seed=seed), [(n,)], seed, T=9)


@given(seed=seeds, nb=st.integers(1, 3), na=st.integers(1, 2))
def test_discrete_filter_and_transfer_fcn(seed, nb, na):
    rng = np.random.default_rng(seed)
    a = np.concatenate([[1.0], rng.uniform(-0.4, 0.4, na)])
    check(DiscreteFilter(rng.standard_normal(nb), a), [()], seed, T=12)
    check(DiscreteTransferFcn(rng.standard_normal(min(nb, na)), a), [()], seed, T=12)


@given(seed=seeds, n=st.integers(1, 3))
def test_state_space_with_initial_state(seed, n):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    A *= 0.7 / max(abs(np.linalg.eigvals(A)))
    ss = StateSpace(A, rng.standard_normal((n, 2)), rng.standard_normal((2, n)),
                    rng.standard_normal((2, 2)), x0=rng.standard_normal(n), train_x0=True)
    check(ss, [(2,)], seed, T=10)


@given(seed=seeds, n=st.integers(1, 3))
def test_delays_with_trainable_initial_values(seed, n):
    check(UnitDelay(np.ones(2), train_x0=True), [(2,)], seed)
    check(Delay(n, x0=0.5, train_x0=True), [(2,)], seed)


def library_blocks():
    return [c for _, c in inspect.getmembers(blocks, inspect.isclass)
            if issubclass(c, Block) and c.__module__.startswith("blocks.")]


def test_every_library_block_has_a_rule_and_an_equation():
    for cls in library_blocks():
        doc = inspect.getdoc(cls) or ""
        equation = "=" in doc.split("Parameters")[0]
        assert equation or cls.source or not cls.outputs, f"{cls.__name__}: no equation"
        # a library subsystem (a Model) gets its rule from the blocks it is made of
        has_rule = (issubclass(cls, Model) or cls.nondifferentiable
                    or cls.reciprocal is not Block.reciprocal
                    or cls.transposed is not Block.transposed or cls.vjp is not Block.vjp)
        assert has_rule, f"{cls.__name__} has no reciprocal rule"


@given(seed=seeds, n=dims)
def test_loss_blocks(seed, n):
    from blocks import CrossEntropy, SquaredError

    check(SquaredError(), [(n,), (n,)], seed)
    check(SquaredError(), [(), ()], seed)
    rng = np.random.default_rng(seed)
    m = wrap(CrossEntropy(), [(n + 1,), (n + 1,)])
    x = {"in_z": rng.standard_normal((5, 2, n + 1)),
         "in_d": rng.dirichlet(np.ones(n + 1), (5, 2))}
    fd_check(m, x, seed=seed)
    dot_check(m, x, seed=seed)


def test_a_loss_block_gives_the_same_gradient_as_the_loss_function():
    from blockflow import grad
    from blocks import SquaredError
    from models.paper import mlp

    rng = np.random.default_rng(0)
    x, d = rng.standard_normal((9, 2, 3)), rng.standard_normal((9, 2, 2))
    plain = mlp(seed=4)
    J1, g1 = grad(plain, {"x": x}, targets=d)
    inner = mlp(seed=4)
    inner.name = "net"
    m = Model("with_loss")
    m.add(inner)
    m.connect(m.add(Inport("x", shape=(3,))), inner.x)
    sq = m.add(SquaredError(name="loss"))
    m.connect(inner.y, sq.y)
    m.connect(m.add(Inport("d", shape=(2,))), sq.d)
    m.connect(sq, m.add(Outport("J")))
    J2, g2 = grad(m, {"x": x, "d": d}, loss="sum")
    assert J2 == pytest.approx(J1, rel=1e-13)
    for k, v in g1.items():
        np.testing.assert_allclose(g2[f"net/{k}"], v, rtol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_cell_parameter_gradients_by_slices_equal_the_whole_contraction(cell, monkeypatch):
    """A cell's dJ/dW is made GRAD_ROWS rows at a time (bounded temporaries); over
    5,000 rows (three slices of 2,000) it equals the contraction over all rows at once."""
    from blocks import recurrent
    from blocks.recurrent import LSTMCell, RNNCell

    rng = np.random.default_rng(3)
    T, B, n, H = 2500, 2, 2, 3
    b = RNNCell.random(n, H, seed=1) if cell == "rnn" else LSTMCell.random(n, H, seed=1)
    u = tuple(rng.standard_normal((T, B, k)) for k in ((n, H) if cell == "rnn" else (n, H, H)))
    y = as_tuple(b, b.output(None, *u))  # the recorded outputs (an LSTM's z among them)
    dy = tuple(rng.standard_normal((T, B, H)) for _ in b.outputs)
    monkeypatch.setattr(recurrent, "GRAD_ROWS", 10**9)
    whole = b.param_grads(u, y, dy)
    monkeypatch.setattr(recurrent, "GRAD_ROWS", 2000)
    sliced = b.param_grads(u, y, dy)
    for k in whole:
        np.testing.assert_allclose(sliced[k], whole[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T, taps, n_in", [(40, 26, 1), (40, 6, 3), (4, 9, 2)])
def test_fir_layers_over_whole_sequences_equal_their_taps_one_by_one(T, taps, n_in,
                                                                     monkeypatch):
    """``FIRDense`` over a whole sequence is one product of the lagged inputs per span of
    time (a few spans here, as for a sequence longer than ``LAG_ELEMENTS``); it equals
    the sum over taps and the step-by-step run, and its ``dJ/dW`` the per-tap sums."""
    import blocks.temporal as temporal
    from blocks.temporal import fir_apply, fir_grad

    monkeypatch.setattr(temporal, "LAG_ELEMENTS", 3 * taps * n_in * 2)  # spans of 3 steps
    rng = np.random.default_rng(taps)
    U, W = rng.standard_normal((T, 2, n_in)), rng.standard_normal((taps, 4, n_in))
    dY = rng.standard_normal((T, 2, 4))
    Y, G = np.zeros((T, 2, 4)), np.zeros_like(W)
    for m in range(min(taps, T)):
        Y[m:] += U[:T - m] @ W[m].T
        G[m] = np.einsum("kbo,kbi->oi", dY[m:], U[:T - m])
    np.testing.assert_allclose(fir_apply(W, U), Y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fir_grad(dY, U, taps), G, rtol=1e-12, atol=1e-12)
    f = FIRDense(W, rng.standard_normal(4), name="f")
    m = Model("m")
    x, y = m.add(Inport("x", shape=(n_in,)), Outport("y"))
    m.chain(x, m.add(f), y)
    whole = simulate(m, {"x": U})["y"]
    np.testing.assert_allclose(whole, Y + f.b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(simulate(m, {"x": U}, mode="step")["y"], whole, rtol=1e-12,
                               atol=1e-12)
    assert fir_apply(W.astype(np.float32), U.astype(np.float32)).dtype == np.float32
