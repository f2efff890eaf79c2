"""Ready-made models and experiments.

``CATALOGUE`` maps a name to ``(build, make_inputs)``: ``build()`` returns the model and
``make_inputs(T, B, seed)`` a dict of example inputs for it (``None`` for no inputs).
"""

from __future__ import annotations

import numpy as np

from .arma import arma_blocks, arma_filter
from .closed_loop import tanh_loop
from .pid import pid_loop


def _noise(name: str, shape=()):
    def make(T: int, B: int, seed: int = 0) -> dict:
        return {name: np.random.default_rng(seed).standard_normal((T, B, *shape))}
    return make


CATALOGUE = {
    "arma_blocks": (arma_blocks, _noise("u")),
    "arma_filter": (arma_filter, _noise("u")),
    "pid_loop": (pid_loop, _noise("r")),
    "tanh_loop": (tanh_loop, _noise("r")),
}
