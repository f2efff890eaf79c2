"""Many runs at once: parameter sweeps and Monte-Carlo (``sweep``), many trainings
(``trainings``), on this process, local processes or Dask (``executors``)."""

from blockflow.parallel.sweep import parameter_sweep
from blockflow.parallel.trainings import TrainResult, train_many

__all__ = ["TrainResult", "parameter_sweep", "train_many"]
