"""The bad-input catalogue: every user mistake found so far, each a project error
(a BlockflowError subclass) raised before anything runs, with a message that names the
block, port, argument or file and says what to do.  Add a case for every new finding:
the catalogue only grows."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockflow import (
    BlockflowError,
    Inport,
    Model,
    ModelFileError,
    Outport,
    ParameterError,
    SignalTypeError,
    SimulationError,
    TrainingError,
    WiringError,
    backward,
    simulate,
)
from blockflow.cli import main
from blockflow.io.modelfile import dumps, load, loads, save
from blockflow.train import SGD, train
from blocks import (
    MLP,
    Constant,
    Delay,
    Demux,
    Dense,
    DiscreteFilter,
    FIRDense,
    FromArray,
    Function,
    Gain,
    LSTMCell,
    Mux,
    Noise,
    RNNCell,
    Saturation,
    Sine,
    Square,
    StateSpace,
    Step,
    Sum,
    UnitDelay,
)
from models.closed_loop import tanh_loop


def gain_model() -> Model:
    m = Model("m")
    u, g, y = m.add(Inport("u"), Gain(0.5, name="g"), Outport("y"))
    m.chain(u, g, y)
    return m


X = {"u": np.ones((6, 2))}
D = np.zeros((6, 2))


def _nan_at(step: int) -> np.ndarray:
    a = np.ones((6, 2))
    a[step, 1] = np.nan
    return a


def _two_models():
    g = Gain(1.0, name="g")
    Model("a").add(g)
    Model("b").add(g)


def _connect_unknown_port():
    m = Model("m")
    a, s = m.add(Inport("a"), Sum("++", name="s"))
    m.connect(a, s.u9)


def _user_derivative_saved():
    m = Model("m")
    u, f, y = m.add(Inport("u"), Function(np.tanh, lambda a, y: 2 * (1 - y * y), name="f"),
                    Outport("y"))
    m.chain(u, f, y)
    dumps(m)


def _model_text(mutate) -> str:
    m = Model("m")
    u, g, s, y = m.add(Inport("u"), Gain(0.5, name="g"), Sum("++", name="s"), Outport("y"))
    m.chain(u, g)
    m.connect(g, s.u1)
    m.connect(u, s.u2)
    m.connect(s, y)
    doc = json.loads(dumps(m))
    mutate(doc)
    return json.dumps(doc)


def _dup_ports(doc):
    doc["model"]["blocks"][2]["inputs"] = ["a", "a"]


def _input_named_like_output(doc):
    doc["model"]["blocks"][1]["outputs"] = ["u"]


def _int8_overflow(doc):
    doc["model"]["blocks"][1]["config"]["K"] = {
        "__array__": {"dtype": "int8", "shape": [], "data": [300]}}


CASES = [
    # --- training arguments (once silently wrong) ---------------------------------
    ("clip_norm<0", lambda: train(gain_model(), X, D, clip_norm=-1.0, epochs=1),
     ParameterError, "clip_norm must be a positive number"),
    ("batch_size<0", lambda: train(gain_model(), X, D, batch_size=-2, epochs=1),
     ParameterError, "batch_size must be a positive integer"),
    ("batch_size>B", lambda: train(gain_model(), X, D, batch_size=5, epochs=1),
     ParameterError, "larger than the 2 runs"),
    ("epochs<0", lambda: train(gain_model(), X, D, epochs=-1),
     ParameterError, "epochs must be a positive integer"),
    ("checkpoint_every=0", lambda: train(gain_model(), X, D, epochs=1, checkpoint_every=0),
     ParameterError, "checkpoint_every must be a positive integer"),
    ("train mode", lambda: train(gain_model(), X, D, mode="fast"),
     SimulationError, "mode must be 'bptt', 'truncated' or 'online'"),
    ("train window", lambda: train(gain_model(), X, D, mode="truncated", window=0),
     SimulationError, "window must be a positive integer"),
    ("learning rate", lambda: SGD(-0.1), ParameterError, "learning rate must be positive"),
    # --- model files that would mean something else ---------------------------------
    ("user derivative saved as tanh", _user_derivative_saved,
     ModelFileError, "block 'f' \\(Function\\): a Function with a user callable cannot"),
    ("duplicate JSON keys", lambda: loads('{"format": "blockflow-model", "format": 1}'),
     ModelFileError, "duplicate key 'format'"),
    ("duplicate port names", lambda: loads(_model_text(_dup_ports)),
     ModelFileError, "port names must be unique"),
    ("input named like output", lambda: loads(_model_text(_input_named_like_output)),
     ModelFileError, "port names must be unique"),
    ("int8 overflow", lambda: loads(_model_text(_int8_overflow)),
     ModelFileError, "do not fit dtype int8"),
    ("5000-digit integer", lambda: loads('{"format": "blockflow-model", "version": ' +
                                         "9" * 5000 + "}"),
     ModelFileError, "not a blockflow model file"),
    ("deep nesting", lambda: loads("[" * 100_000), ModelFileError, "nested too deeply"),
    ("/dev/zero", lambda: load("/dev/zero"), ModelFileError, "not a regular file"),
    ("a directory", lambda: load("/"), ModelFileError, "not a regular file"),
    ("cross-entropy label -1",
     lambda: backward(_logits_model(), {"u": np.ones((4, 3))}, targets=np.full(4, -1),
                      loss="cross_entropy"),
     SimulationError, "class labels must lie in 0..2"),
    # --- a block in two models --------------------------------------------------------
    ("block in two models", _two_models, WiringError, "already belongs to model 'a'.*copy"),
    # --- non-finite parameters and data --------------------------------------------------
    ("NaN gain", lambda: Gain(np.nan, name="g"), ParameterError, "'g' \\(Gain\\).*NaN"),
    ("inf filter coefficient", lambda: DiscreteFilter([1.0], [1.0, np.inf], name="f"),
     ParameterError, "'f'.*parameter 'a'.*infinite"),
    ("NaN Dense weight", lambda: Dense([[np.nan]], name="d"), ParameterError, "'d'.*'W'"),
    ("NaN Constant", lambda: Constant(np.nan, name="c"), ParameterError, "'c'.*'value'"),
    ("inf Sine", lambda: Sine(amplitude=np.inf, name="s"), ParameterError,
     "'s' \\(Sine\\): amplitude must be finite"),
    ("negative Noise std", lambda: Noise(std=-1, name="n"), ParameterError,
     "'n' \\(Noise\\): std must be >= 0"),
    ("NaN input", lambda: simulate(gain_model(), {"u": _nan_at(3)}),
     SimulationError, "Inport 'u' holds nan at step 3"),
    ("NaN target", lambda: backward(gain_model(), X, targets=_nan_at(4)),
     SimulationError, "target .* holds nan at step 4"),
    ("NaN dL_dy", lambda: backward(gain_model(), X, dL_dy={"y": _nan_at(2)}),
     SimulationError, "dL_dy 'y' holds nan at step 2"),
    ("NaN training data", lambda: train(gain_model(), {"u": _nan_at(1)}, D, epochs=1),
     SimulationError, "Inport 'u' holds nan at step 1"),
    ("non-finite produced", lambda: simulate(_blowup(), {"u": np.full((8, 1), 800.0)}),
     SimulationError, "non-finite value, first at e.y, step 0"),
    # --- wrong-shaped parameters, at construction -------------------------------------
    ("Dense bias", lambda: Dense(np.ones((2, 3)), np.zeros(4), name="d"),
     ParameterError, "'d' \\(Dense\\): bias b must have shape \\(2,\\)"),
    ("3-D Dense", lambda: Dense(np.ones((2, 3, 4)), name="d"),
     ParameterError, "'W': must have 2 dimension"),
    ("MLP does not chain", lambda: MLP([np.ones((3, 2)), np.ones((1, 4))],
                                       [np.zeros(3), np.zeros(1)], name="n"),
     ParameterError, "layers do not chain: W0 gives 3 outputs but W1 takes 4"),
    ("MLP activation", lambda: MLP.random([2, 3, 1], activation="tanhh", name="n"),
     ParameterError, "unknown activation 'tanhh'"),
    ("RNNCell bias", lambda: RNNCell(np.ones((3, 5)), np.zeros(2), name="r"),
     ParameterError, "'r' \\(RNNCell\\): bias b must have shape \\(3,\\)"),
    ("LSTMCell shape", lambda: LSTMCell(np.ones((8, 2)), np.zeros(8), name="l"),
     ParameterError, "'l' \\(LSTMCell\\): W must be \\(4H, n \\+ H\\)"),
    ("FIRDense bias", lambda: FIRDense(np.ones((2, 3, 2)), np.zeros(5), name="f"),
     ParameterError, "bias b must have shape \\(3,\\)"),
    ("StateSpace x0", lambda: StateSpace(np.eye(2), np.ones((2, 1)), np.ones((1, 2)),
                                         x0=np.ones(5), name="s"),
     ParameterError, "x0 must have shape \\(2,\\)"),
    ("Demux width", lambda: Demux([2, -1]), ParameterError, "every width >= 1"),
    ("Mux sizes", lambda: Mux("ab"), ParameterError, "Mux sizes must be an integer"),
    ("negative Inport shape", lambda: Inport("u", shape=(-2,)),
     ParameterError, "'u' \\(Inport\\).*non-negative integers"),
    ("object Inport", lambda: Inport("u", dtype=object),
     ParameterError, "signals carry numbers"),
    ("UnitDelay shape vs x0", lambda: UnitDelay(np.ones(3), shape=(2,), name="z"),
     ParameterError, "'z' \\(UnitDelay\\): initial value of shape \\(3,\\)"),
    ("FromArray empty", lambda: FromArray(np.zeros((0, 2)), name="a"),
     ParameterError, "T >= 1"),
    ("Square duty", lambda: Square(duty=1.5, name="q"), ParameterError, "duty must be < 1"),
    ("Step time", lambda: Step(time="soon", name="st"), ParameterError,
     "time must be a number"),
    ("Saturation order", lambda: Saturation(1.0, -1.0, name="sat"),
     ParameterError, "upper must be > 1.0"),
    # --- raw Python exceptions that became project errors ------------------------------
    ("empty filter", lambda: DiscreteFilter([], [1], name="f"),
     ParameterError, "'f'.*non-empty"),
    ("Gain('abc')", lambda: Gain("abc", name="g"), ParameterError,
     "'g' \\(Gain\\), parameter 'K': must be a number"),
    ("unknown dtype", lambda: Inport("u", dtype="float99"),
     ParameterError, "unknown dtype 'float99'"),
    ("unknown port attribute", _connect_unknown_port, WiringError,
     "block 's' \\(Sum\\) has no port or attribute 'u9'"),
    ("Delay(n=0)", lambda: Delay(0, name="d"), ParameterError, "n must be >= 1"),
    ("Delay(n=1.5)", lambda: Delay(1.5, name="d"), ParameterError, "n must be an integer"),
    ("delay line too long", lambda: simulate(_long_delay(), {"u": np.ones((3, 1))}),
     SimulationError, "delay lines: .* GiB"),
    ("too many steps", lambda: simulate(_source_model(), steps=10**13),
     SimulationError, "needs about .* GiB"),
    ("port name with a dot", lambda: Gain(1.0, inputs=("a.b",)), WiringError,
     "port name 'a.b'"),
    ("optimizer not an Optimizer", lambda: train(gain_model(), X, D, optimizer="adam"),
     ParameterError, "optimizer must be an Optimizer"),
    ("negative schedule", lambda: train(gain_model(), X, D, epochs=2,
                                        schedule=lambda e: -1.0),
     ParameterError, "schedule returned -1.0 for epoch 0"),
    ("batch of zero runs", lambda: simulate(gain_model(), {"u": np.ones((5, 0))}),
     SimulationError, "batch size 0"),
    ("named function with a derivative", lambda: Function("tanh", lambda a, y: a),
     ParameterError, "has its derivative already"),
    ("function not callable", lambda: Function(3, lambda a, y: a),
     ParameterError, "takes a callable f"),
    ("block name not a string", lambda: Gain(1.0, name=3), WiringError,
     "block name must be a string"),
]


def _logits_model() -> Model:
    m = Model("c")
    u, y = m.add(Inport("u", shape=(3,)), Outport("y"))
    m.connect(u, y)
    return m


def _blowup() -> Model:
    m = Model("b")
    u, e, y = m.add(Inport("u"), Function("exp", name="e"), Outport("y"))
    m.chain(u, e, y)
    return m


def _long_delay() -> Model:
    m = Model("d")
    u, d, y = m.add(Inport("u"), Delay(10**15, name="d"), Outport("y"))
    m.chain(u, d, y)
    return m


def _source_model() -> Model:
    m = Model("s")
    c, y = m.add(Constant(1.0, name="c"), Outport("y"))
    m.connect(c, y)
    return m


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_catalogue(case):
    _, thunk, error, message = case
    with pytest.raises(error, match=message) as info:
        thunk()
    assert isinstance(info.value, BlockflowError)


def test_catalogue_size():
    """The catalogue only grows (update the number when you add cases)."""
    assert len(CASES) >= 62


# ------------------------------------------------------------------- files on disk
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.json"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):
        load(fifo)


def test_oversized_model_file_is_refused(tmp_path, monkeypatch):
    import blockflow.io.modelfile as mf

    path = tmp_path / "m.json"
    save(gain_model(), path)
    monkeypatch.setattr(mf, "MAX_FILE_BYTES", 100)
    with pytest.raises(ModelFileError, match="larger than"):
        load(path)


def test_saving_over_a_directory_or_into_a_read_only_one(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        save(gain_model(), tmp_path)
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ModelFileError, match="cannot save model 'm'"):
            save(gain_model(), ro / "m.json")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip", "not a zip", "bad meta"])
def test_every_corrupt_checkpoint_is_a_training_error_naming_the_file(tmp_path, damage):
    ck = tmp_path / "run.npz"
    m = gain_model()
    train(m, X, D, optimizer=SGD(0.01), epochs=2, checkpoint=ck, checkpoint_every=1)
    data = ck.read_bytes()
    if damage == "truncate":
        ck.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        ck.write_bytes(b"")
    elif damage == "flip":
        i = len(data) // 3
        ck.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif damage == "not a zip":
        ck.write_text("hello")
    else:
        with zipfile.ZipFile(ck, "w") as z:
            z.writestr("meta.npy", b"\x93NUMPY garbage")
    before = m.blocks["g"].K.copy()
    try:
        train(m, X, D, optimizer=SGD(0.01), epochs=4, checkpoint=ck, resume=True)
    except TrainingError as e:
        assert "run.npz" in str(e)
        np.testing.assert_array_equal(m.blocks["g"].K, before)  # nothing half-restored
    else:  # a flipped byte inside stored data can leave a readable, valid checkpoint
        assert damage == "flip"


# ------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("argv, message", [
    (["run", "models/pid.py", "--steps", "-1", "--random-inputs", "0"],
     "--steps: must be a positive integer"),
    (["run", "models/pid.py", "--steps", "5", "--batch", "-3", "--random-inputs", "0"],
     "--batch: must be a positive integer"),
])
def test_cli_argument_errors_exit_2_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "models/pid.py", "--steps", "5", "--random-inputs", "0", "--out", "t.png"],
     "--out 't.png': use .npz or .csv"),
    (["run", "models/pid.py", "--steps", str(10**12), "--random-inputs", "0"],
     "needs about"),
    (["check", "{deep}"], "nested too deeply"),
    (["check", "{exit}"], "exited with sys.exit(3)"),
    (["train", "{deep}"], "nested too deeply"),
    (["run", "models/pid.py", "--steps", "5", "--random-inputs", "0", "--input", "q=x.npy"],
     "data file 'x.npy' not found"),
])
def test_cli_user_mistakes_print_one_line_and_exit_1(argv, message, capsys, tmp_path):
    deep, script = tmp_path / "deep.json", tmp_path / "exit.py"
    deep.write_text("[" * 50_000)
    script.write_text("import sys\nsys.exit(3)\n")
    argv = [a.format(deep=deep, exit=script) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------ fuzzed model files
TEXT = dumps(tanh_loop())


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_fuzzed_model_files_raise_only_model_file_errors(data):
    """Random bytes spliced into a valid file: it loads, or raises ModelFileError."""
    raw = TEXT.encode()
    i = data.draw(st.integers(0, len(raw)))
    j = data.draw(st.integers(i, min(len(raw), i + 40)))
    junk = data.draw(st.binary(max_size=12))
    try:
        loads(raw[:i] + junk + raw[j:])
    except ModelFileError:
        pass


def test_every_catalogue_error_is_a_blockflow_error():
    for cls in (ParameterError, WiringError, SignalTypeError, SimulationError,
                ModelFileError, TrainingError):
        assert issubclass(cls, BlockflowError)
