"""Experiments: training block diagrams with reciprocal gradients.

Each module is a runnable script (``python -m models.experiments.<name>`` or
``blockflow train models/experiments/<name>.py``) with ``run(quick=..., seed=...)``
returning its results, and ``main(argv)`` printing a table and saving a plot.
"""

EXPERIMENTS = ("arma_id", "narendra_id", "neural_control", "mackey_glass", "lstm_recall",
               "santafe_laser", "mackey_glass_standard", "narendra_paper")
