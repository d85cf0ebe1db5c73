"""Training curves: a History (or a fitted estimator) drawn to a PNG.

matplotlib is an optional dependency (``pip install backprop_fast[plot]``).
The figure is drawn with matplotlib's object API on the Agg canvas: no
display, no pyplot state, safe to call from any thread.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_history", "history_lists"]

PathLike = Union[str, "os.PathLike[str]"]

# (key, label, axis): costs share the left axis, scores the right one.
_SERIES = [
    ("loss", "training cost", "left"),
    ("val_loss", "validation cost", "left"),
    ("val_accuracy", "validation accuracy", "right"),
    ("val_score", "validation score", "right"),
]


def history_lists(history: Any) -> Dict[str, List[float]]:
    """The per-epoch lists of ``history`` as a dict (empty lists left out).

    Accepts a :class:`~backprop_fast.History` (or anything with list
    attributes ``loss``, ``val_loss``, ...), a mapping of such lists, or a
    fitted scikit-learn-style MLP (``loss_curve_`` and, with early stopping,
    ``validation_scores_``).
    """
    if hasattr(history, "loss_curve_"):
        out = {"loss": list(history.loss_curve_)}
        scores = getattr(history, "validation_scores_", None)
        if scores:
            out["val_score"] = list(scores)
        return out
    if isinstance(history, Mapping):
        get = history.get
    else:
        def get(key, default=None):
            return getattr(history, key, default)
    out = {}
    for key, _, _ in _SERIES:
        values = get(key, None)
        if values is not None and len(values):
            out[key] = [float("nan") if v is None else float(v) for v in values]
    if "loss" not in out:
        raise ValueError("history has no per-epoch 'loss' list to plot (is it empty, i.e. "
                         f"trained for 0 epochs?); got {type(history).__name__}")
    return out


def plot_history(history: Any, path: Optional[PathLike] = None, *,
                 title: Optional[str] = None, log_scale: bool = False,
                 dpi: int = 100) -> "Figure":
    """Draw training (and validation) curves per epoch; save them if ``path`` is given.

    Parameters
    ----------
    history : History, mapping of lists, or fitted MLPClassifier/MLPRegressor
        ``loss`` and, when present, ``val_loss`` are drawn against the left
        axis; ``val_accuracy`` (or an estimator's validation score) against a
        right axis.
    path : str or path-like, optional
        Image file to write, atomically; the format follows the extension
        (``.png``, ``.svg``, ``.pdf``, ...).
    title : str, optional
    log_scale : bool, default False
        A logarithmic cost axis (costs must then be positive).
    dpi : int, default 100

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If the history holds no epoch.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:  # pragma: no cover - exercised without matplotlib
        raise ImportError("plotting needs matplotlib: pip install 'backprop_fast[plot]' "
                          f"(or pip install matplotlib); the import failed with: {exc}"
                          ) from None
    series = history_lists(history)
    fig = Figure(figsize=(6.4, 4.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    right = None
    handles = []
    colours = iter(["C0", "C1", "C2", "C3"])
    for key, label, side in _SERIES:
        if key not in series:
            continue
        values = series[key]
        epochs = range(1, len(values) + 1)
        if side == "right":
            if right is None:
                right = ax.twinx()
                right.set_ylabel("accuracy / score")
            target = right
        else:
            target = ax
        style = "--" if side == "right" else "-"
        marker = "o" if len(values) == 1 else None
        handles += target.plot(epochs, values, style, color=next(colours), label=label,
                               marker=marker)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean cost")
    if log_scale:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # Below the axes, where no curve runs.
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    if title:
        ax.set_title(title)
    if path is not None:
        from ._io import atomic_open

        fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format=fmt)
    return fig
