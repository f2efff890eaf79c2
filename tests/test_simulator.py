"""A simulation you can step, pause and continue (issue 23, first step): running T steps
in one call, in chunks of any sizes, or step by step gives the same trace bit for bit;
the state can be read, saved, set; sources continue from the current step."""

from __future__ import annotations

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, SimulationError, simulate
from blockflow.run.simulator import Simulator
from models import CATALOGUE

CHUNKS = [(0, 1), (1, 17), (17, 18), (18, 40)]


def _chunked(sim, x):
    return [sim.run({k: v[a:b] for k, v in x.items()}) for a, b in CHUNKS]


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_chunks_of_any_size_and_single_steps_give_one_runs_bits(name):
    build, make = CATALOGUE[name]
    x = make(40, 2, 0)
    whole = Simulator(build(), backend="numpy", batch=2).run(x)
    parts = _chunked(Simulator(build(), backend="numpy", batch=2), x)
    stepper = Simulator(build(), backend="numpy", batch=2)
    steps = [stepper.step({k: v[i] for k, v in x.items()}) for i in range(40)]
    for out in whole.plan.outports:
        np.testing.assert_array_equal(np.concatenate([p[out] for p in parts]), whole[out])
        np.testing.assert_array_equal(np.stack([s[out] for s in steps]), whole[out])
        # and the same signals as simulate()'s whole run (which may run loop-free blocks
        # over whole sequences: to rounding)
        np.testing.assert_allclose(whole[out], simulate(build(), x)[out], rtol=1e-9,
                                   atol=1e-12)
    assert stepper.k == 40 and parts[-1].k0 == 18


@pytest.mark.parametrize("name", ["tanh_loop", "pid_loop", "lstm", "fir_network"])
def test_the_compiled_path_chunks_bit_for_bit_too(name):
    pytest.importorskip("numba")
    build, make = CATALOGUE[name]
    x = make(40, 2, 1)
    whole = Simulator(build(), backend="numba", batch=2).run(x)
    parts = _chunked(Simulator(build(), backend="numba", batch=2), x)
    for out in whole.plan.outports:
        np.testing.assert_array_equal(np.concatenate([p[out] for p in parts]), whole[out])


def test_a_saved_state_continues_the_run_exactly():
    build, make = CATALOGUE["pid_loop"]
    x = make(60, 1, 2)
    ref = Simulator(build(), backend="numpy").run(x)["y"]
    a = Simulator(build(), backend="numpy")
    a.run({"r": x["r"][:25]})
    saved, k = a.state, a.k
    a.run({"r": np.zeros((5, 1))})  # wander off, then come back
    b = Simulator(build(), backend="numpy", initial_state=saved)
    np.testing.assert_array_equal(b.run({"r": x["r"][25:]})["y"], ref[25:])
    a.reset(saved)
    np.testing.assert_array_equal(a.run({"r": x["r"][25:]})["y"], ref[25:])
    assert k == 25 and a.k == 35  # (reset starts counting at 0 again)


def test_sources_and_noise_continue_from_the_current_step():
    from blocks import Gain, Noise, Sine, Square, Step, Sum

    m = Model("sources", dt=0.5)
    s = m.add(Sum("+++", name="s"))
    m.connect(m.add(Step(3, before=0.5, after=2.0, name="st")), s.u1)
    m.connect(m.add(Sine(freq_hz=0.2, name="sin")), s.u2)
    m.connect(m.add(Square(period=4, name="sq")), s.u3)
    m.connect(m.add(Noise(0.1, name="n")), m.add(Gain(1.0, name="g")))
    m.connect(s, m.add(Outport("y")))
    m.connect(m.blocks["g"], m.add(Outport("w")))
    whole = Simulator(m, batch=2, seed=[4, 5], backend="numpy").run(steps=600)
    sim = Simulator(m, batch=2, seed=[4, 5], backend="numpy")
    parts = [sim.run(steps=n) for n in (1, 255, 2, 300, 42)]
    for out in ("y", "w"):
        np.testing.assert_array_equal(np.concatenate([p[out] for p in parts]), whole[out])
    assert whole["y"][0, 0] != 0  # k = 0 is a real sample
    np.testing.assert_allclose(parts[1].time[:2], [0.5, 1.0])
    np.testing.assert_array_equal(whole["w"], simulate(m, steps=600, batch=2,
                                                        seed=[4, 5])["w"])


def offsets_model():
    """Blocks at three rates (one with an offset): a slow delay, held outputs, and a
    base-rate loop reading them."""
    from blocks import Gain, Sum, UnitDelay, ZeroOrderHold

    m = Model("rates", dt=0.01)
    u, y = m.add(Inport("u"), Outport("y"))
    fast = m.add(Gain(0.9, name="fast"))
    slow = m.add(UnitDelay(0.5, name="slow", sample_time=0.03))
    odd = m.add(Gain(2.0, name="odd", sample_time=(0.04, 0.01)))
    hold_s, hold_o = m.add(ZeroOrderHold(3, name="hold_s"), ZeroOrderHold(4, name="hold_o"))
    s, z = m.add(Sum("+++", name="s"), UnitDelay(name="z"))
    m.chain(u, fast)
    m.chain(fast, m.add(_rate_transition(0.03, "to_slow")), slow, hold_s, s.u1)
    m.chain(fast, m.add(_rate_transition((0.04, 0.01), "to_odd")), odd, hold_o, s.u2)
    m.chain(s, z, s.u3)
    m.connect(s.y, y)
    return m


def _rate_transition(ts, name):
    from blocks import RateTransition

    return RateTransition(ts, name=name)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("which", ["dc_motor", "offsets"])
def test_multirate_models_chunk_bit_for_bit(which, backend):
    """A slow block's hits and held outputs follow the global step across chunks: any
    chunking, and single steps, give one run's bits (numpy and compiled)."""
    if backend == "numba":
        pytest.importorskip("numba")
    from models.dc_motor import motor_loop

    build = motor_loop if which == "dc_motor" else offsets_model
    rng = np.random.default_rng(0)
    r = 1.0 + rng.standard_normal((50, 2))
    key = "w" if which == "dc_motor" else "y"
    whole = Simulator(build(), backend=backend, batch=2).run({"r" if which == "dc_motor"
                                                              else "u": r})
    name = "r" if which == "dc_motor" else "u"
    np.testing.assert_array_equal(whole[key], simulate(build(), {name: r}, mode="step",
                                                       backend=backend)[key])
    for cuts in ([0, 1, 2, 3, 7, 11, 12, 23, 50], [0, 13, 50], [0, 4, 8, 12, 50]):
        sim = Simulator(build(), backend=backend, batch=2)
        parts = [sim.run({name: r[a:b]})[key] for a, b in zip(cuts, cuts[1:], strict=False)]
        np.testing.assert_array_equal(np.concatenate(parts), whole[key])
    sim = Simulator(build(), backend=backend, batch=2)
    steps = np.stack([sim.step({name: r[i]})[key] for i in range(50)])
    np.testing.assert_array_equal(steps, whole[key])


def test_a_multirate_run_continues_from_its_saved_state_elsewhere():
    """The saved state holds what slow blocks hold between hits ("path:held"): a new
    simulator, or simulate(initial_state=, k0=), continues the run bit for bit."""
    from models.dc_motor import motor_loop

    r = 1.0 + np.random.default_rng(5).standard_normal((40, 1))
    whole = Simulator(motor_loop(), backend="numpy").run({"r": r})["w"]
    sim = Simulator(motor_loop(), backend="numpy")
    first = sim.run({"r": r[:17]})
    saved = sim.state
    assert {"sample:held", "hold:held"} <= set(saved)
    again = Simulator(motor_loop(), backend="numpy", initial_state=saved)
    again.k = 17
    np.testing.assert_array_equal(again.run({"r": r[17:]})["w"], whole[17:])
    rest = simulate(motor_loop(), {"r": r[17:]}, backend="numpy",
                    initial_state=first.final_state, k0=17)
    np.testing.assert_array_equal(rest["w"], whole[17:])


def test_bad_states_and_multirate_continuations_are_refused_naming_why():
    from blocks import Sine, ZeroOrderHold
    from models.dc_motor import motor_loop

    sim = Simulator(motor_loop(20.0, 20.0, 0.5), backend="numpy")
    sim.run({"r": np.ones(7)})
    blocks_only = {p: x for p, x in sim.state.items() if not p.endswith(":held")}
    again = Simulator(motor_loop(20.0, 20.0, 0.5), backend="numpy", initial_state=blocks_only)
    again.k = 7
    with pytest.raises(SimulationError, match="values its slow blocks hold at step 7"):
        again.run({"r": np.ones(3)})
    slow = Model("slow_source", dt=0.01)
    y = slow.add(Outport("y"))
    src = slow.add(Sine(1.0, sample_time=0.02, name="src"))
    slow.chain(src, slow.add(ZeroOrderHold(2, name="h")), y)
    with pytest.raises(SimulationError, match=r"source\(s\) \['src'\] .* off the base rate"):
        Simulator(slow)
    build, _ = CATALOGUE["tanh_loop"]
    sim = Simulator(build(), backend="numpy")
    with pytest.raises(SimulationError, match=r"not stateful blocks .* they are \['plant', 'z'\]"):
        sim.state = {"nope": np.zeros(1)}
    with pytest.raises(SimulationError, match="state of 'z' has shape"):
        sim.state = {"z": np.zeros((3, 3))}
    m = Model("plain")
    m.chain(*m.add(Inport("u"), Outport("y")))
    with pytest.raises(SimulationError, match="batch=1 but the inputs have batch size 3"):
        Simulator(m, backend="numpy").run({"u": np.ones((4, 3))})


def test_simulate_to_a_final_time_in_seconds():
    from blocks import Step

    m = Model("timed", dt=0.01)
    m.connect(m.add(Step(0, name="s")), m.add(Outport("y")))
    tr = simulate(m, t_final=2.0)
    assert tr.T == 201 and tr.time[-1] == pytest.approx(2.0)
    with pytest.raises(SimulationError, match="not a whole number of the model's periods"):
        simulate(m, t_final=0.015)
    with pytest.raises(SimulationError, match="has no dt"):
        plain = Model("plain")
        plain.connect(plain.add(Step(0, name="s")), plain.add(Outport("y")))
        simulate(plain, t_final=1.0)


def test_to_control_continuous_converts_a_model_back_or_refuses():
    control = pytest.importorskip("control")
    from blockflow.control.lti import to_control
    from blocks import TransferFcn, UnitDelay

    m = Model("plant", dt=0.1)
    m.chain(*m.add(Inport("u"), TransferFcn([2.0], [1.0, 3.0, 2.0], name="tf"),
                   Outport("y")))
    c = to_control(m, continuous=True)
    assert c.isctime()
    np.testing.assert_allclose(sorted(np.real(c.poles())), [-2.0, -1.0], rtol=1e-9)
    assert control.dcgain(c) == pytest.approx(1.0, rel=1e-9)
    d = Model("delay", dt=0.1)
    d.chain(*d.add(Inport("u"), UnitDelay(name="z"), Outport("y")))
    with pytest.raises(Exception, match="closed negative real axis"):
        to_control(d, continuous=True)
    assert not to_control(d).isctime()


def test_sources_count_time_in_seconds_where_the_model_has_a_dt():
    from blocks import Square, Step

    def run(block, dt, steps=12):
        m = Model("src", dt=dt)
        m.connect(m.add(block), m.add(Outport("y")))
        return simulate(m, steps=steps)["y"][:, 0]

    np.testing.assert_array_equal(run(Step(0.03, name="s"), 0.01, 6), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(run(Step(0.5, time_steps=2, name="s"), 0.01, 4),
                                  [0, 0, 1, 1])
    np.testing.assert_array_equal(run(Square(period=0.2, name="q"), 0.05, 8),
                                  [1, 1, -1, -1, 1, 1, -1, -1])
    with pytest.raises(Exception, match=r"block 's' \(Step\): time = 0.015 s is not a whole "
                                        r"number of the model's period dt=0.01 s"):
        run(Step(0.015, name="s"), 0.01)
    plain = Model("steps")  # no dt: counted in steps, as before
    plain.connect(plain.add(Step(2, name="s")), plain.add(Outport("y")))
    np.testing.assert_array_equal(simulate(plain, steps=4)["y"][:, 0], [0, 0, 1, 1])


def test_a_continuous_block_needs_the_models_sample_period():
    from blocks import TransferFcn

    m = Model("no_period")
    m.chain(*m.add(Inport("u"), TransferFcn([1.0], [1.0, 1.0], name="tf"), Outport("y")))
    with pytest.raises(SimulationError, match=r"block 'tf' \(TransferFcn\) is continuous, "
                                              r"and model 'no_period' has no sample period"):
        simulate(m, {"u": np.ones(3)})
    m.dt = 0.1
    np.testing.assert_allclose(simulate(m, {"u": np.ones(3)})["y"][:, 0],
                               [0.0, 1 - np.exp(-0.1), 1 - np.exp(-0.2)], rtol=1e-12)


def test_step_and_frequency_responses_of_a_first_order_plant():
    from blockflow.control import frequency_response, step_response
    from blocks import TransferFcn

    m = Model("lag", dt=0.01)
    m.chain(*m.add(Inport("u"), TransferFcn([1.0], [1.0, 1.0], name="p"), Outport("y")))
    tr = step_response(m, t_final=3.0)
    assert tr.T == 301
    np.testing.assert_allclose(tr["y"][:, 0], 1.0 - np.exp(-tr.time), rtol=1e-10,
                               atol=1e-14)  # zero-order hold: exact at the samples
    pytest.importorskip("control")
    mag, phase, w = frequency_response(m, [0.01, 1.0, 10.0])
    np.testing.assert_allclose(mag, 1 / np.abs(1j * w + 1), rtol=0.02)  # the continuous
    np.testing.assert_allclose(phase[:2], -np.arctan(w[:2]), atol=0.02)  # plant, to dt
    with pytest.raises(SimulationError, match=r"omega must lie in \(0, pi/dt"):
        frequency_response(m, [1e4])
    with pytest.raises(SimulationError, match="no Inport 'v'"):
        step_response(m, steps=3, input="v")


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_simulate_continues_a_run_from_its_final_state(name):
    """simulate(..., initial_state=trace.final_state, k0=) after a step-mode run gives
    the rest of one run bit for bit (every catalogue model, sources continuing)."""
    build, make = CATALOGUE[name]
    x = make(30, 2, 3)
    whole = simulate(build(), x, mode="step", backend="numpy")
    first = simulate(build(), {k: v[:12] for k, v in x.items()}, mode="step",
                     backend="numpy")
    rest = simulate(build(), {k: v[12:] for k, v in x.items()}, backend="numpy",
                    initial_state=first.final_state, k0=12)
    assert rest.k0 == 12
    for out in whole.plan.outports:
        np.testing.assert_array_equal(np.concatenate([first[out], rest[out]]), whole[out])


def test_a_whole_sequence_run_says_it_kept_no_state():
    build, make = CATALOGUE["arma_filter"]
    tr = simulate(build(), make(10, 1, 0))
    with pytest.raises(SimulationError, match="over whole sequences and kept no final state"):
        _ = tr.final_state
    with pytest.raises(SimulationError, match="k0 must be a whole step number"):
        simulate(build(), make(10, 1, 0), k0=-1)


@pytest.mark.parametrize("name", ["output_feedback_rnn", "lstm_from_blocks", "cart_pole"])
def test_bptt_over_chunks_equals_bptt_over_the_whole_run(name):
    """Chunks of a Simulator swept back last to first, each from the adjoint state the
    later one hands back: the deltas and the summed parameter gradients of one sweep over
    the whole run (issue 23, item 2)."""
    from blockflow import backward
    from blockflow.gradient.sweep import backward_chunk

    build, make = CATALOGUE[name]
    x = make(36, 2, 4)
    m = build()
    whole_tr = Simulator(m, backend="numpy", batch=2).run(x)
    w = {o: np.random.default_rng(1).standard_normal(a.shape)
         for o, a in whole_tr.outputs().items()}
    whole = backward(m, trace=whole_tr, dL_dy=w)
    sim = Simulator(m, backend="numpy", batch=2)
    spans = [(0, 11), (11, 12), (12, 25), (25, 36)]
    traces = [sim.run({k: v[a:b] for k, v in x.items()}) for a, b in spans]
    state, total, deltas = None, {}, []
    for (a, b), tr in reversed(list(zip(spans, traces, strict=True))):
        g = backward_chunk(m, tr, dL_dy={o: v[a:b] for o, v in w.items()},
                           adjoint_state=state)
        state = g.adjoint_state
        total = {k: total.get(k, 0) + v for k, v in g.params.items()}
        deltas.insert(0, g.inputs)
    assert set(total) == set(whole.params)
    for k, v in whole.params.items():
        np.testing.assert_allclose(total[k], v, rtol=1e-10, atol=1e-13)
    for n, v in whole.inputs.items():
        np.testing.assert_allclose(np.concatenate([d[n] for d in deltas]), v, rtol=1e-10,
                                   atol=1e-13)


def test_bptt_over_chunks_refuses_blocks_with_their_own_recursion():
    from blockflow.gradient.sweep import backward_chunk

    build, make = CATALOGUE["tanh_loop"]
    tr = Simulator(build(), backend="numpy").run(make(10, 1, 0))
    with pytest.raises(SimulationError, match=r"block\(s\) \['plant'\] .* own recursion"):
        backward_chunk(build(), tr, dL_dy={"y": np.ones((10, 1))})


@pytest.mark.parametrize(("name", "loss"), [("output_feedback_rnn", "sse"),
                                            ("output_feedback_rnn", "mse"),
                                            ("lstm_from_blocks", "mse")])
def test_checkpointed_bptt_equals_the_stored_sweep(name, loss):
    """Bounded memory: states kept at segment starts only, each segment recomputed and
    swept back from the later one's adjoint state; loss and gradients of the full sweep."""
    from blockflow import backward
    from blockflow.gradient.sweep import backward_checkpointed

    build, make = CATALOGUE[name]
    x = make(50, 3, 5)
    m = build()
    tr = simulate(m, x, backend="numpy")
    d = {o: np.random.default_rng(2).standard_normal(a.shape) for o, a in tr.outputs().items()}
    full = backward(m, x, targets=d, loss=loss)
    for seg in (None, 7, 50):  # sqrt(T) by default, uneven, one segment
        ck = backward_checkpointed(m, x, targets=d, loss=loss, segment=seg, backend="numpy")
        assert ck.loss == pytest.approx(full.loss, rel=1e-12)
        for k, v in full.params.items():
            np.testing.assert_allclose(ck.params[k], v, rtol=1e-10, atol=1e-13)
        for n, v in full.inputs.items():
            np.testing.assert_allclose(ck.inputs[n], v, rtol=1e-10, atol=1e-13)
