"""Every bad wiring and bad simulate call raises blockflow's own error, naming the block
and port, before anything runs."""

import numpy as np
import pytest

from blockflow import (
    AlgebraicLoopError,
    BlockflowError,
    Inport,
    Model,
    Outport,
    SignalTypeError,
    SimulationError,
    WiringError,
    compile,
    simulate,
)
from blocks import Dense, Function, Gain, Sum, UnitDelay
from models.closed_loop import tanh_loop


def test_unknown_port_names_block_and_port():
    m = Model()
    g = m.add(Gain(2.0, name="g"))
    with pytest.raises(WiringError, match=r"block 'g' \(Gain\) has no port 'x'"):
        g["x"]
    with pytest.raises(WiringError, match="has no input port 'y'"):
        m.connect(m.add(Inport("u")), "g.y")


def test_input_with_two_sources():
    m = Model()
    a, b, g = m.add(Inport("a"), Inport("b"), Gain(1.0, name="g"))
    m.connect(a, g)
    with pytest.raises(WiringError, match=r"input g\.u is already driven by a\.y"):
        m.connect(b, g)


def test_block_not_in_model():
    m = Model("m")
    a = m.add(Inport("a"))
    with pytest.raises(WiringError, match="'stray' is not in model 'm'"):
        m.connect(a, Gain(1.0, name="stray"))


def test_duplicate_block_name():
    m = Model("m")
    m.add(Gain(1.0, name="g"))
    with pytest.raises(WiringError, match="already has a block named 'g'"):
        m.add(Gain(2.0, name="g"))


def test_unconnected_input_is_reported_at_compile():
    m = Model()
    s = m.add(Sum("++", name="s"))
    m.chain(m.add(Inport("u")), s.u1)
    m.connect(s, m.add(Outport("y")))
    with pytest.raises(WiringError, match=r"input s\.u2 of block 's' \(Sum\) is not connected"):
        compile(m)


def test_shape_mismatch_raises_at_connect_and_rolls_back():
    m = Model()
    a, b = m.add(Inport("a", shape=(2,)), Inport("b", shape=(3,)))
    s = m.add(Sum("++", name="s"))
    m.connect(a, s.u1)
    with pytest.raises(SignalTypeError, match=r"connecting b\.y -> s\.u2: .*'s'.*same shape"):
        m.connect(b, s.u2)
    assert m.source_of("s", "u2") is None
    m.connect(m.add(Inport("c", shape=(2,))), s.u2)  # the model is still usable


def test_matrix_gain_rejects_wrong_width():
    m = Model()
    u = m.add(Inport("u", shape=(3,)))
    d = m.add(Dense(np.ones((2, 4)), name="dense"))
    with pytest.raises(SignalTypeError, match=r"'dense'.*takes \(4,\) samples, got \(3,\)"):
        m.connect(u, d)


def test_algebraic_loop_lists_the_blocks_in_order():
    m = Model()
    u = m.add(Inport("u"))
    s = m.add(Sum("+-", name="s"))
    g = m.add(Gain(0.5, name="g"))
    f = m.add(Function("tanh", name="f"))
    m.connect(u, s.u1)
    m.chain(s, g, f, s.u2)
    m.connect(f, m.add(Outport("y")))
    with pytest.raises(AlgebraicLoopError, match=r"s\.y -> g\.y -> f\.y -> s") as e:
        compile(m)
    assert e.value.loop == ["s", "g", "f"]


def test_a_delay_breaks_the_loop():
    m = Model()
    u = m.add(Inport("u"))
    s, g, z = m.add(Sum("+-", name="s"), Gain(0.5, name="g"), UnitDelay(name="z"))
    m.connect(u, s.u1)
    m.chain(s, g, z, s.u2)
    m.connect(g, m.add(Outport("y")))
    assert compile(m).loops == [["z", "s", "g"]]


def test_untypeable_signal_is_reported():
    m = Model()
    z1, z2 = m.add(UnitDelay(name="z1"), UnitDelay(name="z2"))
    m.chain(z1, z2, z1)
    with pytest.raises(SignalTypeError, match=r"z1\.u \(block UnitDelay\) cannot be inferred"):
        compile(m)


@pytest.fixture
def loop():
    return tanh_loop()


def test_missing_input_names_the_inport(loop):
    with pytest.raises(SimulationError, match=r"Inport 'r' of model 'tanh_loop' \(port 'y'\)"):
        simulate(loop, {})


def test_unknown_input(loop):
    with pytest.raises(SimulationError, match="has no Inport 'x'; its inputs are"):
        simulate(loop, {"r": np.ones(3), "x": np.ones(3)})


def test_wrong_input_shape(loop):
    with pytest.raises(SimulationError, match=r"Inport 'r' \(port 'y'\) takes samples of shape"):
        simulate(loop, {"r": np.ones((3, 2, 2))})


@pytest.mark.parametrize("steps", [-1, 0, 2.5, "10", True])
def test_bad_steps(loop, steps):
    with pytest.raises(SimulationError, match="steps must be a positive integer"):
        simulate(loop, {"r": np.ones(3)}, steps=steps)


def test_steps_disagree_with_inputs(loop):
    with pytest.raises(SimulationError, match="steps=5 but the inputs have 3 steps"):
        simulate(loop, {"r": np.ones(3)}, steps=5)


def test_dtype_mismatch(loop):
    with pytest.raises(SimulationError, match=r"Inport 'r' \(port 'y'\) takes float64 samples, "
                                              "got complex128"):
        simulate(loop, {"r": np.ones(3, dtype=complex)})
    m = tanh_loop().astype(np.float32)
    with pytest.raises(SimulationError, match="takes float32 samples, got float64"):
        simulate(m, {"r": np.ones(3)})


def test_inputs_not_a_dict(loop):
    with pytest.raises(SimulationError, match="inputs must be a dict"):
        simulate(loop, np.ones(3))


def test_every_error_is_a_blockflow_error():
    for cls in (WiringError, SignalTypeError, AlgebraicLoopError, SimulationError):
        assert issubclass(cls, BlockflowError)


def test_bad_block_parameters():
    with pytest.raises(ValueError, match="Sum signs"):
        Sum("+*")
    with pytest.raises(ValueError, match="unknown function 'tanhh'"):
        Function("tanhh")
    with pytest.raises(ValueError, match="takes a callable f and its derivative"):
        Function(np.tanh)


def test_gradient_api_mistakes_name_the_outport_or_argument():
    from blockflow import backward, grad, output_gradient

    m = tanh_loop()
    r = np.ones((5, 2))
    with pytest.raises(SimulationError, match=r"target for Outport 'y' must have shape \(5, 2\)"):
        grad(m, {"r": r}, targets=np.zeros((4, 2)))
    with pytest.raises(SimulationError, match="targets name 'z', which is not an Outport"):
        grad(m, {"r": r}, targets={"z": np.zeros((5, 2))})
    with pytest.raises(SimulationError, match="dL_dy names \\['q'\\], which are not Outports"):
        backward(m, {"r": r}, dL_dy={"q": np.zeros((5, 2))})
    with pytest.raises(SimulationError, match=r"dL_dy\['y'\] must have shape"):
        backward(m, {"r": r}, dL_dy={"y": np.zeros((5, 3))})
    with pytest.raises(SimulationError, match="unknown loss 'hinge'"):
        grad(m, {"r": r}, loss="hinge", targets=np.zeros((5, 2)))
    with pytest.raises(SimulationError, match="give targets"):
        backward(m, {"r": r})
    with pytest.raises(SimulationError, match="window must be a positive integer"):
        backward(m, {"r": r}, targets=np.zeros((5, 2)), window=0)
    with pytest.raises(SimulationError, match="'v' is not an Outport"):
        output_gradient(m, {"r": r}, output="v")


def test_bad_parameters_raise_parameter_errors_naming_the_block():
    from blockflow import ParameterError
    from blocks import FIR, Delay, DiscreteFilter, DiscreteTransferFcn, StateSpace

    with pytest.raises(ParameterError, match="block 'g'.*'elementwise' or 'matrix'"):
        Gain(1.0, multiplication="x", name="g")
    with pytest.raises(ParameterError, match=r"\(Delay\): n must be >= 1, got 0"):
        Delay(0)
    with pytest.raises(ParameterError, match="block 'h'.*non-empty"):
        FIR([], name="h")
    with pytest.raises(ParameterError, match="block 'f'.*a\\[0\\] != 0"):
        DiscreteFilter([1.0], [0.0], name="f")
    with pytest.raises(ParameterError, match="improper"):
        DiscreteTransferFcn([1, 2, 3], [1, 2])
    with pytest.raises(ParameterError, match="block 'ss'.*StateSpace needs"):
        StateSpace(np.eye(2), np.ones((3, 1)), np.ones((1, 2)), name="ss")
    with pytest.raises(SimulationError, match="simulate\\(\\) takes a Model"):
        simulate(3, steps=2)
    assert issubclass(ParameterError, BlockflowError) and issubclass(ParameterError, ValueError)
