"""blockflow.gradient.testing.check_grads: passes on correct rules, names the wrong gradient of a
block whose rule is wrong, works on models and blocks already in a model."""

import numpy as np
import pytest

from blockflow import Block
from blockflow.gradient.testing import GradientCheckError, check_grads, wrap
from blocks import Dense, DiscreteFilter, Gain, StateSpace
from models.closed_loop import tanh_loop


class Cube(Block):
    """``y = u^3`` with a deliberately wrong reciprocal rule when ``wrong=True``."""

    def __init__(self, wrong=False, **kw):
        super().__init__(**kw)
        self.wrong = wrong

    def output(self, x, u):
        return u ** 3

    def vjp(self, u, y, dy):
        return dy * (2.0 if self.wrong else 3.0) * u[0] ** 2


def test_correct_rules_pass_and_count_what_was_checked():
    res = check_grads(Cube())
    assert res.checked == 1 and "skipped" in res.dot and "jvp" in res.dot  # no tangent rule
    W = np.random.default_rng(0).standard_normal((2, 3))
    assert check_grads(Dense(W, np.zeros(2)), in_shapes=[(3,)]).checked == 3  # W, b, input
    assert check_grads(DiscreteFilter([0.5, 0.1], [1.0, -0.4])).checked == 3
    assert check_grads(StateSpace([[0.5]], [[1.0]], [[2.0]], elementwise=True)).checked == 4
    assert check_grads(tanh_loop(), inputs={"r": np.ones((10, 2))}).checked == 4


def test_a_wrong_rule_is_named():
    with pytest.raises(GradientCheckError, match=r"block 'cube' \(Cube\): gradient of input "
                                                 r"in_u .* from the reciprocal sweep"):
        check_grads(Cube(wrong=True, name="cube"))


def test_a_block_in_a_model_is_checked_on_a_copy():
    g = Gain(2.0, name="g")
    m = wrap(g)
    check_grads(g)
    assert m.blocks["g"] is g and g.K == 2.0
