"""Each experiment at reduced size: it learns (the loss falls by a stated factor) and its
metric beats its baseline."""

import pytest

from models.experiments import (
    arma_id,
    lstm_recall,
    mackey_glass,
    narendra_id,
    neural_control,
    santafe_laser,
)


@pytest.fixture
def plot(tmp_path):
    return tmp_path / "figure.png"


def _figure_written(res):
    assert res["plot"].exists() and res["plot"].stat().st_size > 10_000


def test_arma_output_error_beats_least_squares_under_output_noise(plot):
    res = arma_id.run(quick=True, plot=plot)
    assert res["loss_last"] < res["loss_first"] / 4  # down to the output-noise floor
    assert res["metric"] < 0.5 * res["baseline"]
    assert res["val"]["output error"] < res["val"]["least squares"] / 10
    _figure_written(res)


def test_narendra_mlp_beats_the_linear_model_in_free_run(plot):
    res = narendra_id.run(quick=True, plot=plot)
    assert res["loss_last"] < res["loss_first"] / 20
    assert res["metric"] < 0.05 < res["baseline"]
    _figure_written(res)


def test_trained_controller_tracks_unseen_references(plot):
    res = neural_control.run(quick=True, plot=plot)
    assert res["loss_last"] < res["loss_first"] / 5
    assert res["metric"] < res["baseline"] / 5
    _figure_written(res)


def test_online_fir_network_beats_the_ar_predictor(plot):
    res = mackey_glass.run(quick=True, plot=plot)
    assert res["delay"] == 8
    assert res["loss_last"] < res["loss_first"] / 3
    assert res["metric"] < res["baseline"] / 3
    _figure_written(res)


def test_lstm_learns_to_recall(plot):
    res = lstm_recall.run(quick=True, plot=plot)
    assert res["loss_last"] < res["loss_first"] / 20
    assert res["metric"] < 0.05 and res["accuracy"] > 0.98
    _figure_written(res)


def test_santafe_fir_network_learns_and_its_closed_loop_feeds_itself(plot):
    pytest.importorskip("reservoirpy")
    import numpy as np

    from blockflow import simulate

    res = santafe_laser.run(quick=True, plot=plot)
    assert res["loss_last"] < res["loss_first"] / 5
    assert res["one_step"] < res["persistence"] / 2  # one step ahead: better than x(k)
    _figure_written(res)
    net = santafe_laser.network((3,), (4, 2), seed=0)
    s = np.sin(np.arange(30) / 3.0)
    teach = (np.arange(30) < 20).astype(float)
    tr = simulate(santafe_laser.iterated(net), {"x": (s * teach)[:, None, None],
                                                "teach": teach[:, None, None]})
    np.testing.assert_array_equal(tr["input.y"][:20, 0, 0], s[:20])  # the true series
    np.testing.assert_array_equal(tr["input.y"][20:, 0, 0], tr["y"][19:-1, 0, 0])  # fed back
