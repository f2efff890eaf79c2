"""The examples of Wan & Beaufays (1994) as block diagrams, plus an LSTM (seed 002).

Each builder takes its parameters (random ones by default, seeded) and returns a Model
whose reciprocal gives the gradients the paper derives:

- :func:`mlp`: backpropagation (eq. 2);
- :func:`output_feedback_rnn`: ``y(k) = N(x(k), y(k-1))``, BPTT (Fig. 2, eq. 4);
- :func:`cascaded`: two networks fed by tapped delay lines (Fig. 3, eqs. 5-9);
- :func:`fir_network`: FIR synapses, temporal backprop (Case II, eq. 13);
- :func:`iir_neuron`: IIR synapses into a tanh neuron (Case III);
- :func:`lstm` and :func:`lstm_from_blocks`: an LSTM cell with its state fed back
  through unit delays, as one block and drawn from elementary blocks.
"""

from __future__ import annotations

import numpy as np

from blockflow import Inport, Model, Outport
from blocks import (
    MLP,
    Demux,
    Dense,
    DiscreteFilter,
    FIRDense,
    Function,
    LSTMCell,
    Mux,
    Product,
    Sum,
    UnitDelay,
)


def _rng(seed):
    return np.random.default_rng(seed)


def mlp(W1=None, b1=None, W2=None, b2=None, *, sizes=(3, 5, 2), seed=0) -> Model:
    """``net1 = W1 x + b1``, ``h = tanh(net1)``, ``y = W2 h + b2``."""
    r = _rng(seed)
    n, H, m = sizes
    W1 = r.normal(0, 0.5, (H, n)) if W1 is None else W1
    W2 = r.normal(0, 0.5, (m, H)) if W2 is None else W2
    mdl = Model("mlp")
    mdl.chain(mdl.add(Inport("x", shape=(W1.shape[1],))),
              mdl.add(Dense(W1, b1, name="layer1")), mdl.add(Function("tanh", name="h")),
              mdl.add(Dense(W2, b2, name="layer2")), mdl.add(Outport("y")))
    return mdl


def output_feedback_rnn(W1=None, b1=None, W2=None, b2=None, *, sizes=(2, 6, 3), seed=0):
    """``z = [x(k); y(k-1)]``, ``h = tanh(W1 z + b1)``, ``y = tanh(W2 h + b2)``, ``y(-1)=0``."""
    r = _rng(seed)
    n, H, m = sizes
    W1 = r.normal(0, 0.5, (H, n + m)) if W1 is None else W1
    W2 = r.normal(0, 0.5, (m, H)) if W2 is None else W2
    n, m = W1.shape[1] - W2.shape[0], W2.shape[0]
    mdl = Model("output_feedback_rnn")
    x, y = mdl.add(Inport("x", shape=(n,)), Outport("y"))
    z = mdl.add(Mux([n, m], name="z"))
    out = mdl.add(Function("tanh", name="out"))
    mdl.connect(x, z.u1)
    mdl.chain(z, mdl.add(Dense(W1, b1, name="layer1")), mdl.add(Function("tanh", name="h")),
              mdl.add(Dense(W2, b2, name="layer2")), out, y)
    mdl.chain(out, mdl.add(UnitDelay(np.zeros(m), name="delay")), z.u2)
    return mdl


def _tapped(mdl: Model, src, name: str, taps: int):
    """A tapped delay line on a scalar signal: ``[s(k), s(k-1), ..., s(k-taps+1)]``."""
    mux = mdl.add(Mux(taps, name=f"{name}_taps"))
    prev = src
    for i in range(taps):
        if i:
            d = mdl.add(UnitDelay(name=f"{name}_z{i}"))
            mdl.connect(prev, d)
            prev = d
        mdl.connect(prev, mux[f"u{i + 1}"])
    return mux


def cascaded(N1=None, N2=None, *, taps: int = 3, hidden: int = 4, seed=0) -> Model:
    """``u(k) = N1(x(k), ..., x(k-taps+1))``, ``y(k) = N2(u(k), ..., u(k-taps+1))``.

    ``N1``, ``N2`` are ``(W1, b1, W2, b2)`` of tanh-hidden, linear-output nets.  The delta
    at ``u`` is ``delta_u(k) = delta_1(k) + delta_2(k+1) + delta_3(k+2)`` (paper eq. 7),
    read as ``deltas["u.y1"]``; the ``delta_i`` are ``deltas["N2.u"]``.
    """
    r = _rng(seed)
    nets = []
    for N in (N1, N2):
        if N is None:
            N = (r.normal(0, 0.5, (hidden, taps)), r.normal(0, 0.1, hidden),
                 r.normal(0, 0.5, (1, hidden)), r.normal(0, 0.1, 1))
        nets.append(MLP([N[0], N[2]], [N[1], N[3]]))
    mdl = Model("cascaded")
    x, y = mdl.add(Inport("x"), Outport("y"))
    n1, n2 = nets
    n1.name, n2.name = "N1", "N2"
    mdl.add(n1, n2)
    mdl.chain(_tapped(mdl, x, "x", taps), n1, mdl.add(Demux(1, name="u")))
    mdl.chain(_tapped(mdl, mdl.blocks["u"].y1, "u", taps), n2, mdl.add(Demux(1, name="yd")), y)
    return mdl


def fir_network(sizes=(1, 6, 1), taps=(5, 3), *, seed=0) -> Model:
    """FIR synapses everywhere (Case II): ``s = FIR layer(x)``, ``a = tanh(s)``,
    ``y = FIR layer(a)``; the reciprocal is temporal backprop (eq. 13).  More ``sizes``
    (one ``taps`` per layer) stack more tanh layers (``layer1, a1, layer2, a2, ...``;
    with one hidden layer its activation is ``a``)."""
    if len(taps) != len(sizes) - 1:
        raise ValueError(f"fir_network: one taps count per layer, got sizes {sizes} and "
                         f"taps {taps}")
    mdl = Model("fir_network")
    chain = [mdl.add(Inport("x", shape=(sizes[0],)))]
    L = len(taps)
    for i, (a, b, n) in enumerate(zip(sizes, sizes[1:], taps, strict=False)):
        chain.append(mdl.add(FIRDense.random(a, b, n, seed=seed + i, name=f"layer{i + 1}")))
        if i < L - 1:
            chain.append(mdl.add(Function("tanh", name="a" if L == 2 else f"a{i + 1}")))
    mdl.chain(*chain, mdl.add(Outport("y")))
    return mdl


def iir_neuron(*, seed=0) -> Model:
    """Two IIR synapses into one tanh neuron (Case III):
    ``y = tanh(B1/A1 x1 + B2/A2 x2)``; the reciprocal filters run backwards in time."""
    r = _rng(seed)
    mdl = Model("iir_neuron")
    x1, x2, y = mdl.add(Inport("x1"), Inport("x2"), Outport("y"))
    s = mdl.add(Sum("++", name="s"))
    for i, x in enumerate((x1, x2)):
        f = mdl.add(DiscreteFilter(r.normal(0, 0.5, 2), [1.0, r.uniform(-0.7, 0.7),
                                   r.uniform(-0.2, 0.2)], name=f"syn{i + 1}"))
        mdl.chain(x, f, s[f"u{i + 1}"])
    mdl.chain(s, mdl.add(Function("tanh", name="f")), y)
    return mdl


def lstm(n_in: int = 2, hidden: int = 4, n_out: int = 1, *, seed=0) -> Model:
    """An LSTM cell, its ``h`` and ``c`` fed back through unit delays, a Dense readout."""
    mdl = Model("lstm")
    x, y = mdl.add(Inport("x", shape=(n_in,)), Outport("y"))
    cell = mdl.add(LSTMCell.random(n_in, hidden, seed=seed, name="cell"))
    mdl.connect(x, cell.x)
    mdl.chain(cell.h, mdl.add(UnitDelay(name="h_delay")), cell.h_prev)
    mdl.chain(cell.c, mdl.add(UnitDelay(name="c_delay")), cell.c_prev)
    mdl.chain(cell.h, mdl.add(Dense.random(hidden, n_out, seed=seed + 1, name="readout")), y)
    return mdl


def lstm_cell_from_blocks(W, b, name: str = "cell") -> Model:
    """The LSTM cell drawn with the graphical rules' blocks (seed 002): a weight matrix,
    a split into gates, sigmoid/tanh functions, elementwise products and a sum."""
    H = W.shape[0] // 4
    n = W.shape[1] - H
    c = Model(name)
    x, h_prev, c_prev = c.add(Inport("x", shape=(n,)), Inport("h_prev", shape=(H,)),
                              Inport("c_prev", shape=(H,)))
    h, c_out = c.add(Outport("h"), Outport("c"))
    xh = c.add(Mux([n, H], name="xh"))
    c.connect(x, xh.u1)
    c.connect(h_prev, xh.u2)
    gates = c.add(Demux([H] * 4, name="gates"))
    c.chain(xh, c.add(Dense(W, b, name="W")), gates)
    acts = {}
    for port, g, f in (("y1", "i", "sigmoid"), ("y2", "f", "sigmoid"), ("y3", "g", "tanh"),
                       ("y4", "o", "sigmoid")):
        acts[g] = c.add(Function(f, name=g))
        c.connect(gates[port], acts[g])
    fc, ig = c.add(Product(name="f_c"), Product(name="i_g"))
    c.connect(acts["f"], fc.u1)
    c.connect(c_prev, fc.u2)
    c.connect(acts["i"], ig.u1)
    c.connect(acts["g"], ig.u2)
    cs = c.add(Sum("++", name="c_sum"))
    c.connect(fc, cs.u1)
    c.connect(ig, cs.u2)
    c.connect(cs, c_out)
    oh = c.add(Product(name="o_tc"))
    c.connect(acts["o"], oh.u1)
    c.chain(cs, c.add(Function("tanh", name="tc")), oh.u2)
    c.connect(oh, h)
    return c


def lstm_from_blocks(n_in: int = 2, hidden: int = 4, n_out: int = 1, *, seed=0) -> Model:
    """:func:`lstm` with the cell as a subsystem of elementary blocks (same parameters)."""
    ref = lstm(n_in, hidden, n_out, seed=seed)
    mdl = Model("lstm_blocks")
    x, y = mdl.add(Inport("x", shape=(n_in,)), Outport("y"))
    cell = mdl.add(lstm_cell_from_blocks(ref.blocks["cell"].W.copy(), ref.blocks["cell"].b.copy()))
    mdl.connect(x, cell.x)
    mdl.chain(cell.h, mdl.add(UnitDelay(name="h_delay")), cell.h_prev)
    mdl.chain(cell.c, mdl.add(UnitDelay(name="c_delay")), cell.c_prev)
    ro = ref.blocks["readout"]
    mdl.chain(cell.h, mdl.add(Dense(ro.W.copy(), ro.b.copy(), name="readout")), y)
    return mdl
