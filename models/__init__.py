"""Ready-made models and experiments.

``CATALOGUE`` maps a name to ``(build, make_inputs)``: ``build()`` returns the model and
``make_inputs(T, B, seed)`` a dict of example inputs for it (``None`` for no inputs).
"""

from __future__ import annotations

import numpy as np

from .arma import arma_blocks, arma_filter
from .closed_loop import tanh_loop
from .paper import (
    cascaded,
    fir_network,
    iir_neuron,
    lstm,
    lstm_from_blocks,
    mlp,
    output_feedback_rnn,
)
from .pid import pid_loop


def cart_pole():
    """The cart-pole loop (imported when built: ``python -m models.cart_pole`` runs it)."""
    from .cart_pole import cart_pole as build

    return build()


def _noise(name: str, shape=()):
    def make(T: int, B: int, seed: int = 0) -> dict:
        return {name: np.random.default_rng(seed).standard_normal((T, B, *shape))}
    return make


CATALOGUE = {
    "arma_blocks": (arma_blocks, _noise("u")),
    "arma_filter": (arma_filter, _noise("u")),
    "pid_loop": (pid_loop, _noise("r")),
    "tanh_loop": (tanh_loop, _noise("r")),
    "cart_pole": (cart_pole, _noise("push")),
    "mlp": (mlp, _noise("x", (3,))),
    "output_feedback_rnn": (output_feedback_rnn, _noise("x", (2,))),
    "cascaded": (cascaded, _noise("x")),
    "fir_network": (fir_network, _noise("x", (1,))),
    "iir_neuron": (iir_neuron, lambda T, B, seed=0: {**_noise("x1")(T, B, seed),
                                                    **_noise("x2")(T, B, seed + 1)}),
    "lstm": (lstm, _noise("x", (2,))),
    "lstm_from_blocks": (lstm_from_blocks, _noise("x", (2,))),
}
