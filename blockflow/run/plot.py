"""Plots with matplotlib: signals of a Trace over time, Scope blocks, training curves.

Figures are built without pyplot (no GUI backend), so they work headless; each function
returns the figure (which a notebook shows inline: it renders itself as PNG) and saves
it when given a path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blockflow.errors import BlockflowError


def _figure_class():
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        """A Figure that a notebook shows inline (it renders itself as PNG)."""

        def _repr_png_(self) -> bytes:
            import io

            buf = io.BytesIO()
            self.savefig(buf, format="png", dpi=90)
            return buf.getvalue()

    return NotebookFigure


def _figure(n: int, width: float = 8.0, height: float = 2.2):
    fig = _figure_class()(figsize=(width, max(2.5, height * n)), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    return fig, axes


_STYLES = ["-", "--", ":", "-."]


def _draw_signal(ax, k: np.ndarray, a: np.ndarray, name: str, batch,
                 stairs: bool = True, first: int = 0) -> int:
    """One signal (T, B, *shape) on one axis: every component; batch members told apart
    (colours for a scalar signal, line styles for a vector one) or summarised; as
    stairs (a sample holds until the next) or joined by lines.  Colours start at
    ``C{first}`` (signals sharing an axis each get their own); returns how many it
    used."""
    draw = "steps-post" if stairs else "default"
    T, B = a.shape[:2]
    flat = a.reshape(T, B, -1)
    n = flat.shape[2]
    one = isinstance(batch, int) and not isinstance(batch, bool)
    if not one and B > 1 and np.all(flat == flat[:, :1]):  # identical runs: draw one
        flat, B = flat[:, :1], 1
    for i in range(n):
        label = name if n == 1 else f"{name}[{i}]"
        x = flat[:, :, i]
        if one:
            ax.plot(k, x[:, batch], color=f"C{(first + i) % 10}", label=f"{label} (run {batch})",
                    drawstyle=draw)
        elif batch == "overlay" or (batch == "auto" and B <= 8):
            for b in range(B):
                color = f"C{(first + (b if n == 1 else i)) % 10}"
                style = "-" if n == 1 else _STYLES[b % len(_STYLES)]
                tag = f"{label}, run {b}" if B > 1 else label
                ax.plot(k, x[:, b], color=color, linestyle=style, linewidth=1.2, label=tag,
                        drawstyle=draw)
        else:  # summary: mean and the 10-90 % band over the batch
            lo, hi = np.percentile(x, [10, 90], axis=1)
            ax.fill_between(k, lo, hi, color=f"C{(first + i) % 10}", alpha=0.25, linewidth=0,
                            step="post" if stairs else None)
            ax.plot(k, x.mean(axis=1), color=f"C{(first + i) % 10}", drawstyle=draw,
                    label=f"{label} (mean, 10-90 % of {B} runs)")
    overlaid = not one and (batch == "overlay" or (batch == "auto" and B <= 8))
    return B if overlaid and n == 1 else n


def plot_trace(trace, signals: Sequence[str] | None = None, path: str | Path | None = None,
               *, batch="auto", title: str | None = None, shared: bool = False,
               units: dict | None = None, stairs: bool = True):
    """Signals of ``trace`` over time, one axis each (or all on one with ``shared=True``).

    Parameters
    ----------
    trace : Trace
    signals : list of str, optional
        Names as the trace takes them (``"plant.y"``, an Outport name); default: the
        model's Outports, else every Scope, else every signal.
    path : str or Path, optional
        Save the figure there (``.png``, ``.svg``, ``.pdf``).
    batch : "auto", "overlay", "summary" or int
        Overlay every batch member, summarise them (mean and 10-90 % band), or pick one;
        ``"auto"`` overlays up to 8 (identical runs are drawn once).
    units : dict, optional
        ``{signal: unit}`` for the y labels (``{"w": "rad/s"}``).
    shared : bool
        Every signal on one axis (a reference and the output overlaid).
    stairs : bool, default True
        Draw the samples as stairs, each held until the next (they are discrete-time);
        ``False`` joins them with lines.
    """
    if signals is None:
        signals = list(trace.plan.outports) or _scopes(trace) or trace.names()
    signals = [signals] if isinstance(signals, str) else list(signals)
    if not signals:
        raise BlockflowError("nothing to plot: the trace has no signals")
    arrays = [(s, trace[s]) for s in signals]
    fig, axes = _figure(1 if shared else len(arrays))
    timed = trace.plan.model._dt is not None  # a model with a sample period: seconds
    k = trace.time if timed else np.arange(trace.T)
    units = units or {}
    used = 0
    for i, (name, a) in enumerate(arrays):
        ax = axes[0 if shared else i]
        used += _draw_signal(ax, k, a, name, batch, stairs, used if shared else 0)
        ax.grid(True, alpha=0.3)
        unit = units.get(name)
        if not shared:
            ax.set_ylabel(f"{name} ({unit})" if unit else name)
        # outside the data: right of the axes
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if shared:
        axes[0].set_ylabel(", ".join(f"{n} ({units[n]})" if n in units else n
                                     for n, _ in arrays))
    axes[-1].set_xlabel("time t (s)" if timed else "step k")
    fig.suptitle(title or trace.plan.model.name)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _scopes(trace) -> list[str]:
    return [p for p, b in trace.plan.flat.blocks.items() if b.display]


def plot_scopes(trace, path: str | Path | None = None, **kw):
    """Every Scope block's signal, one axis each."""
    scopes = _scopes(trace)
    if not scopes:
        raise BlockflowError(f"model {trace.plan.model.name!r} has no Scope blocks")
    return plot_trace(trace, scopes, path, **kw)


def plot_history(history: Sequence[float] | dict, path: str | Path | None = None, *,
                 log: bool = True, title: str = "training"):
    """Training curves: a list of losses, or ``{name: list}`` for several."""
    curves = history if isinstance(history, dict) else {"loss": history}
    fig, (ax,) = _figure(1, height=3.0)
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    if log and all(np.all(np.asarray(v) > 0) for v in curves.values()):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
