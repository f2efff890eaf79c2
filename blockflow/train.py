"""Training: optimizers, learning-rate schedules, and ``train()`` with checkpoints.

``train(model, inputs, targets, ...)`` runs epochs of gradient descent on the model's
parameters (or a chosen subset: freeze a plant, train a controller) with the gradients
of the reciprocal network, in one of three modes:

- ``"bptt"``: full-sequence backpropagation through time (the backward sweep);
- ``"truncated"``: BPTT in consecutive windows of ``window`` steps;
- ``"online"``: temporal backprop, the weights updated after every ``chunk`` steps while
  the sequence streams (models whose reciprocal has bounded advances).

Mini-batches are drawn over the batch axis, gradients can be clipped by global norm,
the learning rate follows a schedule, and a non-finite loss or gradient stops the run
naming the first block and step where it appeared.  With ``checkpoint=path`` the
parameters, optimizer state, random state and history are saved atomically every
``checkpoint_every`` epochs; ``resume=True`` continues from there to the same result,
bit for bit, as a run that was never stopped.

``minimize(model, inputs, targets, ...)`` fits a small model whole-batch with a
quasi-Newton method of :func:`scipy.optimize.minimize` (BFGS by default) on the same
exact gradients.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blockflow.backends.policy import expected_runs
from blockflow.core.model import Model
from blockflow.errors import BlockflowError, ParameterError, SimulationError, TrainingError
from blockflow.fsutil import atomic_write
from blockflow.gradient.schedules import Chunked, Full, Schedule, Streamed
from blockflow.run.trace import check_finite_data, first_nonfinite


# ------------------------------------------------------------------ optimizers
class Optimizer:
    """Base class: ``step(params, grads, lr)`` updates the arrays in place."""

    def __init__(self, lr: float = 1e-2):
        if not lr > 0:
            raise ParameterError(f"{type(self).__name__}: the learning rate must be positive, "
                                 f"got {lr!r}")
        self.lr = float(lr)
        self.state: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params: dict, grads: dict, lr: float | None = None) -> None:
        self.t += 1
        lr = self.lr if lr is None else lr
        for name, w in params.items():
            self.update(name, w, grads[name], lr)

    def update(self, name: str, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def _buf(self, key: str, like: np.ndarray) -> np.ndarray:
        if key not in self.state:
            self.state[key] = np.zeros_like(like)
        return self.state[key]


class SGD(Optimizer):
    """``w <- w - lr g``."""

    def update(self, name, w, g, lr):
        w -= lr * g


class Momentum(Optimizer):
    """``v <- beta v + g``, ``w <- w - lr v`` (heavy ball)."""

    def __init__(self, lr: float = 1e-2, beta: float = 0.9):
        super().__init__(lr)
        self.beta = float(beta)

    def update(self, name, w, g, lr):
        v = self._buf(f"v/{name}", w)
        v *= self.beta
        v += g
        w -= lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def update(self, name, w, g, lr):
        m, v = self._buf(f"m/{name}", w), self._buf(f"v/{name}", w)
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        mhat = m / (1 - self.beta1 ** self.t)
        vhat = v / (1 - self.beta2 ** self.t)
        w -= lr * mhat / (np.sqrt(vhat) + self.eps)


# ------------------------------------------------------------------- schedules
def exponential_decay(rate: float) -> Callable[[int], float]:
    """Learning-rate factor ``rate ** epoch``."""
    return lambda epoch: rate ** epoch


def step_decay(every: int, factor: float = 0.5) -> Callable[[int], float]:
    """Learning-rate factor ``factor ** (epoch // every)``."""
    return lambda epoch: factor ** (epoch // every)


# --------------------------------------------------------------------- history
@dataclass
class History:
    """One record per epoch: ``loss``, ``grad_norm``, ``lr``, ``seconds``."""

    records: list[dict] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def plot(self, path=None, **kw):
        """The loss curve (see :func:`blockflow.run.plot.plot_history`); shows inline in a
        notebook."""
        from blockflow.run.plot import plot_history

        return plot_history(self.losses, path, **kw)


# ----------------------------------------------------------------- non-finite
def _check_finite(what: str, value, trace, epoch: int, *, backward=False) -> None:
    if np.all(np.isfinite(value)):
        return
    where = first_nonfinite(trace, backward=backward) if trace is not None else None
    at = f" first at {where[0]}, step {where[1]}" if where else ""
    sweep = " (backward sweep)" if backward else ""
    raise TrainingError(f"non-finite {what} in epoch {epoch}{sweep}:{at}; lower the learning "
                        "rate, clip gradients (clip_norm=...) or check the model's stability")


# ------------------------------------------------------------------- training
def select(model: Model, names: Iterable[str] | None) -> dict[str, np.ndarray]:
    """The parameters to train: all, or those named (``"ctrl/"`` or ``"ctrl."`` selects a
    subsystem or block by prefix)."""
    allp = model.parameters()
    if names is None:
        return allp
    names = [names] if isinstance(names, str) else list(names)
    out = {}
    for n in names:
        hit = {k: v for k, v in allp.items() if k == n or (n.endswith(("/", ".")) and
                                                          k.startswith(n))}
        if not hit:
            raise BlockflowError(f"no parameter {n!r} in model {model.name!r}; it has "
                                 f"{sorted(allp)}")
        out.update(hit)
    return out


def _take(data, idx):
    if isinstance(data, dict):
        return {k: _take(v, idx) for k, v in data.items()}
    a = np.asarray(data)
    return a[:, idx]


def _with_batch_axis(model: Model, inputs: dict, targets):
    """One run given as ``(T, *shape)`` becomes ``(T, 1, *shape)`` (inputs and targets)."""
    from blockflow.plan.compiler import compile

    plan = compile(model)

    def fix(arrays: dict, ports: dict) -> dict:
        out = {}
        for name, a in arrays.items():
            a = np.asarray(a)
            slot = ports.get(name)
            n = None if slot is None else len(plan.slot_types[slot].shape)
            if n is not None and a.dtype.kind in "iu" and ports is plan.outports:
                n -= 1  # class labels: no class axis
            if n is not None and a.ndim == n + 1:
                a = a[:, None]
            out[name] = a
        return out

    inputs = fix(inputs, plan.inports)
    if isinstance(targets, dict):
        targets = fix(targets, plan.outports)
    elif len(plan.outports) == 1:
        targets = fix({next(iter(plan.outports)): targets}, plan.outports)
    return inputs, targets


def _batch_size(inputs: dict, targets) -> int:
    arrays = list(inputs.values()) + (list(targets.values()) if isinstance(targets, dict)
                                      else [targets])
    return int(np.asarray(arrays[0]).shape[1])


def weighted(loss: str, w: np.ndarray) -> Callable:
    """``loss`` ("sse" or "mse") with each step's error weighted by ``w`` ``(T, B)``."""

    def f(y, d):
        ww = w.reshape(w.shape + (1,) * (y.ndim - 2)).astype(y.dtype)
        e = d - y
        value, g = float(np.vdot(ww * e, e)), -2.0 * ww * e
        if loss == "mse":  # the weighted mean over every element
            n = float(ww.sum()) * (e.size // (w.size or 1))
            value, g = value / n, g / n
        return value, g

    return f


def _checked_weights(weights, loss, sched, inputs, targets, B) -> np.ndarray:
    if loss not in ("sse", "mse"):
        raise ParameterError(f"weights= weight each step's error of loss 'sse' or 'mse', not "
                             f"{loss!r}")
    if sched.streams:
        raise ParameterError("weights= work with mode='bptt' or 'truncated', not 'online'")
    w = np.asarray(weights, float)
    T = int(np.asarray(next(iter(inputs.values()))).shape[0]) if inputs else \
        int(np.asarray(targets if not isinstance(targets, dict)
                       else next(iter(targets.values()))).shape[0])
    if w.shape != (T, B) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ParameterError(f"weights must be a ({T}, {B}) array (steps, runs) of finite, "
                             f"non-negative numbers, not all zero; got shape {w.shape}")
    return w


def closed_loop_data(series, *, warmup: int, horizon: int, starts=None, stride: int = 1,
                     sampling: float = 0.0, seed: int = 0) -> tuple[dict, np.ndarray,
                                                                   np.ndarray]:
    """Windows of ``series`` for training a one-step predictor inside its own feedback
    loop (multi-step, or closed-loop, training).

    The model is the closed loop: Inports ``x`` (the true series) and ``teach`` (1: feed
    ``x`` to the network, 0: feed its own previous output), Outport ``y`` (the
    prediction of the next sample), as ``santafe_laser.iterated`` builds it.  Each
    window is one batch member: ``warmup`` teacher-forced steps, then ``horizon``
    predictions of which all but the first are iterated; the loss weights are 1 on the
    ``horizon`` predictions and 0 on the warm-up.

    Parameters
    ----------
    series : array ``(N, *shape)``
    warmup, horizon : int
        Steps of teacher forcing (at least 1) and predictions scored (``horizon = 1``
        is one-step training).
    starts : sequence of int, optional
        The windows' first samples (default every ``stride``-th that fits).
    sampling : float
        Scheduled sampling: during the free-running part, feed the true sample instead
        of the prediction with this probability (per step and window, seeded).

    Returns
    -------
    inputs, targets, weights
        For ``train(model, inputs, targets, weights=weights)``.
    """
    s = np.asarray(series, float)
    warmup, horizon = _count("warmup", warmup), _count("horizon", horizon)
    L = warmup + horizon - 1
    if starts is None:
        starts = np.arange(0, s.shape[0] - L, _count("stride", stride))
    starts = np.asarray(starts, int)
    if starts.size == 0 or starts.min() < 0 or starts.max() + L + 1 > s.shape[0]:
        raise ParameterError(f"closed_loop_data: windows of {L} steps (and their targets) "
                             f"must fit in the series of {s.shape[0]} samples; starts "
                             f"{starts.min() if starts.size else None}.."
                             f"{starts.max() if starts.size else None}")
    if not 0.0 <= sampling <= 1.0:
        raise ParameterError(f"sampling is a probability, got {sampling!r}")
    idx = starts[None, :] + np.arange(L)[:, None]                    # (L, B)
    x, d = s[idx], s[idx + 1]
    teach = (np.arange(L) < warmup)[:, None] * np.ones(starts.size)
    if sampling:
        rng = np.random.default_rng(seed)
        teach = np.maximum(teach, rng.random(teach.shape) < sampling)
    shape = s.shape[1:]
    teach = np.broadcast_to(teach.reshape(teach.shape + (1,) * len(shape)), x.shape)
    weights = np.where(np.arange(L)[:, None] >= warmup - 1, 1.0, 0.0) * np.ones(starts.size)
    return {"x": x, "teach": np.ascontiguousarray(teach, dtype=float)}, d, weights


def train_closed_loop(model: Model, series, *, warmup: int, horizon: int,
                      curriculum=None, sampling=None, epochs: int = 100, starts=None,
                      stride: int = 1, seed: int = 0, **kw) -> History:
    """Train a predictor inside its own feedback loop (see :func:`closed_loop_data`):
    the loss on ``horizon`` free-running predictions after a teacher-forced ``warmup``,
    by exact BPTT through the loop.

    ``curriculum`` (horizons, e.g. ``[1, 5, 20, horizon]``) trains in stages of
    ``epochs`` each from one-step to the full horizon; ``sampling`` (one probability per
    stage, e.g. ``[0.5, 0.25, 0.0]``) feeds true samples in the free-running part with
    decreasing probability (scheduled sampling).  The other arguments go to
    :func:`train`; one History covers every stage.
    """
    stages = list(curriculum) if curriculum is not None else [horizon]
    probs = list(sampling) if sampling is not None else [0.0] * len(stages)
    if len(probs) != len(stages):
        raise ParameterError(f"sampling gives {len(probs)} probabilities for "
                             f"{len(stages)} curriculum stages")
    hist = kw.pop("history", None) or History()
    for i, (h, p) in enumerate(zip(stages, probs, strict=True)):
        inputs, targets, weights = closed_loop_data(series, warmup=warmup, horizon=h,
                                                    starts=starts, stride=stride,
                                                    sampling=p, seed=seed + i)
        stage = train(model, inputs, targets, weights=weights, epochs=epochs, seed=seed + i,
                      **kw)
        hist.records += [{**r, "horizon": h, "sampling": p} for r in stage.records]
    return hist


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def training_schedule(mode: str, window: int | None = None, chunk: int = 1) -> Schedule:
    """The gradient schedule of a training ``mode`` (see :mod:`blockflow.gradient.schedules`)."""
    if mode == "bptt":
        return Full()
    if mode == "truncated":
        if window is None:
            raise SimulationError("mode='truncated' needs window=h (steps per window)")
        return Chunked(window)
    if mode == "online":
        return Streamed(chunk)
    raise SimulationError(f"mode must be 'bptt', 'truncated' or 'online', got {mode!r}")


def train(model: Model, inputs: dict, targets, *, loss="sse", params=None,
          optimizer: Optimizer | None = None, epochs: int = 100, mode: str = "bptt",
          window: int | None = None, chunk: int = 1, batch_size: int | None = None,
          clip_norm: float | None = None, schedule: Callable[[int], float] | None = None,
          seed: int = 0, checkpoint: str | Path | None = None, checkpoint_every: int = 10,
          resume: bool = False, callback: Callable[[int, dict], None] | None = None,
          history: History | None = None, weights=None) -> History:
    """Train ``model`` in place; returns the :class:`History` (see module docs).

    Parameters
    ----------
    inputs : dict
        ``{inport: (T, B, *shape)}`` training data.
    targets : array or dict
        Desired outputs, ``(T, B, *shape)`` per Outport.
    params : list of str, optional
        Names or prefixes of the parameters to train; the rest stay frozen.
    optimizer : Optimizer, default Adam(1e-3)
    mode : {"bptt", "truncated", "online"}
    window : int
        Truncated mode: steps per window.
    chunk : int
        Online mode: steps between weight updates.
    batch_size : int, optional
        Mini-batches over the batch axis, reshuffled every epoch (seeded).
    clip_norm : float, optional
        Scale the gradient down to this global norm when it is longer.
    schedule : callable, optional
        ``epoch -> factor`` on the learning rate.
    callback : callable, optional
        ``callback(epoch, record)`` after every epoch.
    weights : array, optional
        ``(T, B)`` weights of each step's error (``loss="sse"`` or ``"mse"``; ``mse`` is
        then the weighted mean): 0 leaves a step out of the loss, as the teacher-forced
        warm-up of a closed-loop window (:func:`closed_loop_data`).
    """
    from blockflow.gradient.sweep import backward
    from blockflow.run.simulate import simulate

    sched = training_schedule(mode, window, chunk)
    epochs = _count("epochs", epochs)
    checkpoint_every = _count("checkpoint_every", checkpoint_every)
    if clip_norm is not None and not (isinstance(clip_norm, int | float) and clip_norm > 0):
        raise ParameterError(f"clip_norm must be a positive number (the largest gradient "
                             f"norm allowed), got {clip_norm!r}")
    if not isinstance(inputs, dict):
        raise SimulationError(f"inputs must be a dict {{inport name: array}}, got "
                              f"{type(inputs).__name__}")
    for name, a in inputs.items():
        check_finite_data("Inport", name, a)
    for name, a in (targets.items() if isinstance(targets, dict) else [("", targets)]):
        check_finite_data("target", name, a)
    optimizer = optimizer or Adam(1e-3)
    if not isinstance(optimizer, Optimizer):
        raise ParameterError(f"optimizer must be an Optimizer (SGD(lr), Momentum(lr), "
                             f"Adam(lr)), got {optimizer!r:.60}")
    if schedule is not None and not callable(schedule):
        raise ParameterError(f"schedule must be a callable epoch -> factor, got {schedule!r}")
    trained = select(model, params)
    hist = history or History()
    rng = np.random.default_rng(seed)
    start = 0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        start = _restore(checkpoint, trained, optimizer, rng, hist)
    inputs, targets = _with_batch_axis(model, inputs, targets)
    B = _batch_size(inputs, targets)
    if weights is not None:
        weights = _checked_weights(weights, loss, sched, inputs, targets, B)
    if batch_size is not None:
        batch_size = _count("batch_size", batch_size)
        if batch_size > B:
            raise ParameterError(f"batch_size={batch_size} is larger than the {B} runs in the "
                                 "data; use at most that, or None for all of them")

    held = {k: v for k, v in model.held().items() if k in trained}

    def apply(grads: dict, lr: float) -> float:
        g = {k: np.where(held[k], 0.0, grads[k]) if k in held else grads[k]
             for k in trained}
        norm = float(np.sqrt(sum(float(np.vdot(v, v)) for v in g.values())))
        if clip_norm is not None and norm > clip_norm:
            g = {k: v * (clip_norm / norm) for k, v in g.items()}
        optimizer.step(trained, g, lr)
        return norm

    # the whole training's runs, announced to the backend policy: its decision is a
    # function of these settings, the same for a resumed training as for one that ran
    # through (see blockflow.backends.policy)
    with expected_runs(epochs * -(-B // (batch_size or B))):
        bar = None
        if _PROGRESS and epochs - start > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs - start, unit="epoch", desc=model.name, leave=False)
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            factor = schedule(epoch) if schedule else 1.0
            if not (isinstance(factor, int | float | np.number) and np.isfinite(factor)
                    and factor > 0):
                raise ParameterError(f"the learning-rate schedule returned {factor!r} for epoch "
                                     f"{epoch}; it must give a positive factor")
            lr = optimizer.lr * float(factor)
            order = rng.permutation(B) if batch_size else np.arange(B)
            size = batch_size or B
            total, norms = 0.0, []

            def online_update(g: dict, k: int, lr=lr, norms=norms) -> None:
                norms.append(apply(g, lr))

            for i in range(0, B, size):
                idx = np.sort(order[i:i + size])
                x, d = _take(inputs, idx), _take(targets, idx)
                f = loss if weights is None else weighted(loss, weights[:, idx])
                if sched.streams:  # weights updated after every chunk
                    value = backward(model, x, targets=d, loss=f, schedule=sched,
                                     update=online_update, check_finite=False).loss
                    _check_finite("loss", value, None, epoch)
                else:
                    tr = simulate(model, x, check_finite=False)  # located below, per epoch
                    res = backward(model, trace=tr, targets=d, loss=f, schedule=sched,
                                   check_finite=False, keep_deltas=False)
                    value = res.loss
                    _check_finite("loss", value, tr, epoch)
                    for k in trained:
                        _check_finite(f"gradient of {k}", res.params[k], res.deltas, epoch,
                                      backward=True)
                    norms.append(apply(res.params, lr))
                total += value
            rec = {"epoch": epoch + 1, "loss": total, "grad_norm": float(np.mean(norms)),
                   "lr": lr, "seconds": time.perf_counter() - t0}
            hist.records.append(rec)
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0
                                           or epoch + 1 == epochs):
                _save(checkpoint, epoch + 1, trained, optimizer, rng, hist)
            if callback is not None:
                callback(epoch + 1, rec)
            if bar is not None:
                bar.set_postfix(loss=f"{total:.4g}", refresh=False)
                bar.update(1)
    if bar is not None:
        bar.close()
    return hist


def minimize(model: Model, inputs: dict, targets, *, loss="sse", params=None,
             method: str = "BFGS", maxiter: int = 1000, gtol: float = 1e-8,
             callback: Callable[[int, dict], None] | None = None) -> History:
    """Train ``model`` in place with a quasi-Newton method on the exact gradient.

    :func:`scipy.optimize.minimize` (``method``: ``"BFGS"``, ``"L-BFGS-B"``, ``"CG"``,
    ...) drives the parameters, each evaluation one forward run and one backward sweep
    of the reciprocal network over the whole batch: deterministic, no learning rate to
    tune, and for a model of a few hundred weights usually far closer to the minimum
    than thousands of epochs of gradient descent.  Held entries (a filter's ``a[0]``)
    stay as they are.  Returns the :class:`History` (one record per iteration).

    Parameters
    ----------
    inputs, targets, loss, params
        As :func:`train`.
    maxiter : int
        Iterations at most.
    gtol : float
        Stop when the gradient's largest entry is below this.
    """
    import scipy.optimize

    from blockflow.gradient.sweep import backward

    maxiter = _count("maxiter", maxiter)
    if not isinstance(inputs, dict):
        raise SimulationError(f"inputs must be a dict {{inport name: array}}, got "
                              f"{type(inputs).__name__}")
    for name, a in inputs.items():
        check_finite_data("Inport", name, a)
    methods = ("Nelder-Mead", "Powell", "CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC",
               "COBYLA", "COBYQA", "SLSQP", "trust-constr", "dogleg", "trust-ncg",
               "trust-exact", "trust-krylov")
    if not isinstance(method, str) or method.lower() not in {m.lower() for m in methods}:
        raise ParameterError(f"method must be one of scipy.optimize.minimize's "
                             f"({', '.join(methods)}); BFGS or L-BFGS-B use the gradient "
                             f"best; got {method!r}")
    trained = select(model, params)
    if not trained:
        raise ParameterError(f"model {model.name!r} has no trainable parameters to minimize "
                             "over")
    inputs, targets = _with_batch_axis(model, inputs, targets)
    held = model.held()
    free = {k: ~held[k].reshape(-1) if k in held else np.ones(v.size, bool)
            for k, v in trained.items()}

    def put(x: np.ndarray) -> None:
        o = 0
        for k, v in trained.items():
            n = int(free[k].sum())
            v.reshape(-1)[free[k]] = x[o:o + n]
            o += n

    evals: dict = {}

    def loss_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        put(x)
        g = backward(model, inputs, targets=targets, loss=loss, keep_deltas=False)
        if not np.isfinite(g.loss):
            raise TrainingError(f"non-finite loss {g.loss} in quasi-Newton training of "
                                f"{model.name!r}; check the model's stability")
        grad = np.concatenate([np.ravel(g.params[k])[free[k]] for k in trained])
        evals[x.tobytes()] = g.loss, float(np.linalg.norm(grad))
        return g.loss, grad

    hist, t0 = History(), time.perf_counter()

    def record(x: np.ndarray) -> None:
        value, norm = evals.get(x.tobytes()) or loss_and_grad(x)[:1] + (float("nan"),)
        rec = {"epoch": len(hist) + 1, "loss": value, "grad_norm": norm, "lr": float("nan"),
               "seconds": time.perf_counter() - t0}
        hist.records.append(rec)
        if callback is not None:
            callback(rec["epoch"], rec)

    x0 = np.concatenate([v.reshape(-1)[free[k]] for k, v in trained.items()]).astype(float)
    res = scipy.optimize.minimize(loss_and_grad, x0, jac=True, method=method,
                                  callback=record, options={"maxiter": maxiter,
                                                            "gtol": gtol})
    put(res.x)
    return hist


_PROGRESS = False  # see showing_progress


@contextmanager
def showing_progress(enabled: bool = True) -> Iterator[None]:
    """Within the block, every :func:`train` shows a progress bar over its epochs (the
    command line and the experiment scripts turn it on when they write to a terminal)."""
    global _PROGRESS
    old, _PROGRESS = _PROGRESS, bool(enabled)
    try:
        yield
    finally:
        _PROGRESS = old


# ----------------------------------------------------------------- checkpoints
def _save(path, epoch: int, params: dict, opt: Optimizer, rng, hist: History) -> None:
    meta = {"epoch": epoch, "rng": rng.bit_generator.state, "t": opt.t,
            "history": hist.records, "params": {k: list(v.shape) for k, v in params.items()},
            "optimizer": type(opt).__name__}
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"opt/{k}": v for k, v in opt.state.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write(path, buf.getvalue())
    except OSError as e:
        raise TrainingError(f"cannot write checkpoint {str(path)!r}: {e.strerror or e}; "
                            "choose a writable location") from None


def _restore(path, params: dict, opt: Optimizer, rng, hist: History) -> int:
    """Read a checkpoint completely and check it before changing anything."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta["params"] != {k: list(v.shape) for k, v in params.items()} or \
                    meta["optimizer"] != type(opt).__name__:
                raise TrainingError(f"checkpoint {str(path)!r} belongs to another run "
                                    "(parameters or optimizer differ); remove it or "
                                    "resume=False")
            values = {k: np.array(f[f"param/{k}"]) for k in params}
            state = {k[4:]: np.array(f[k]) for k in f.files if k.startswith("opt/")}
        epoch, t = int(meta["epoch"]), int(meta["t"])
        records = [dict(r) for r in meta["history"]]
        probe = np.random.default_rng()
        probe.bit_generator.state = meta["rng"]  # validates the saved random state
        for k, v in values.items():
            if v.shape != params[k].shape or not np.isfinite(v).all():
                raise ValueError(f"parameter {k} is damaged")
    except TrainingError:
        raise
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile,
            zlib.error) as e:
        raise TrainingError(f"cannot resume from checkpoint {str(path)!r}: it is damaged or "
                            f"not a checkpoint ({type(e).__name__}: {e}); remove it or pass "
                            "resume=False") from None
    for k, v in values.items():
        params[k][...] = v
    opt.state, opt.t = state, t
    rng.bit_generator.state = meta["rng"]
    hist.records[:] = records
    return epoch
