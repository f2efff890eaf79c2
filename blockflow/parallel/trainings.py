"""Many trainings of one model from many tasks (seeds, learning rates, ...), each with its
own checkpoint, in parallel (:func:`train_many`)."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

from blockflow.core.model import Model
from blockflow.errors import ParameterError
from blockflow.parallel.executors import (
    _executor,
    _payload,
)

log = logging.getLogger(__name__)
# ------------------------------------------------------------------ trainings
@dataclass
class TrainResult:
    """One task of :func:`train_many`: the task, its loss history, final parameters."""

    task: dict
    losses: list
    params: dict
    error: str | None = None

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("inf")


def _train_task(build_bytes: bytes, number: int, task: dict, inputs, targets, kw: dict,
                folder: str | None) -> TrainResult:
    from blockflow.train import Adam, train

    build = pickle.loads(build_bytes)
    model = build(**task)
    opts = dict(kw)
    if "lr" in task and "optimizer" not in opts:
        opts["optimizer"] = Adam(task["lr"])
    if "seed" in task:
        opts.setdefault("seed", int(task["seed"]))
    if folder is not None:
        opts.update(checkpoint=str(Path(folder) / f"task-{number:04d}.npz"), resume=True)
    hist = train(model, inputs, targets, **opts)
    return TrainResult(task, list(hist.losses),
                       {k: v.copy() for k, v in model.parameters().items()})


def train_many(build: Callable[..., Model], tasks: Sequence[dict], inputs: dict, targets, *,
               executor=None, workers: int | None = None, checkpoint_dir=None,
               progress: bool = True, **train_kw) -> tuple[list[TrainResult], TrainResult]:
    """Train one model per task in parallel; returns every result and the best one.

    ``build(**task)`` makes the task's model (seeded initial weights, an architecture
    choice); ``task["lr"]`` picks ``Adam(lr)`` and ``task["seed"]`` the training seed
    unless ``train_kw`` says otherwise; the rest of ``train_kw`` goes to
    :func:`~blockflow.train.train` (``epochs``, ``loss``, ``mode``, ...).  With
    ``checkpoint_dir`` each task checkpoints there and resumes when started again; a
    task that fails is reported (``error``) and the others finish.
    """
    tasks = [dict(t) for t in tasks]
    if not tasks:
        raise ParameterError("train_many needs at least one task")
    folder = None
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        folder = str(checkpoint_dir)
    pool, owned = _executor(executor, workers, len(tasks))
    build_bytes = _payload(build)
    results: list[TrainResult | None] = [None] * len(tasks)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="train_many", unit="task")
    try:
        futs = {pool.submit(_train_task, build_bytes, i, t, inputs, targets, train_kw,
                            folder): i for i, t in enumerate(tasks)}
        for fut in as_completed(futs):
            i = futs[fut]
            try:
                results[i] = fut.result()
            except Exception as e:  # noqa: BLE001 - reported with its task
                results[i] = TrainResult(tasks[i], [], {}, f"{type(e).__name__}: {e}")
                log.warning("task %s failed: %s", tasks[i], results[i].error)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if owned:
            pool.shutdown()
    done = [r for r in results if r is not None]
    best = min(done, key=lambda r: r.final_loss)
    return done, best
