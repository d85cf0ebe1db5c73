"""What a fit reports: its History, the state of scikit-learn's stopping
rules carried between calls, and the progress display."""
from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, Dict, List, Optional, TextIO

import numpy as np

__all__ = ["History", "StoppingState", "ProgressBar"]


class StoppingState:
    """The state of ``stopping="sklearn"``, carried from one ``fit`` call to the next.

    Pass the same object to consecutive calls (as scikit-learn's
    ``warm_start`` and ``partial_fit`` do); ``fit`` updates it as epochs
    finish, also when an exception ends the call.

    Attributes
    ----------
    best_loss : float
        Lowest training cost (L2 term included) so far; inf at first.
    best_score : float
        Highest validation score so far; -inf at first.
    no_improvement_count : int
        Epochs in a row without an improvement of more than ``tol``.
    samples_seen : int
        Samples trained on, from which "invscaling" computes the rate.
    learning_rate : float or None
        The rate the next call starts with; None for ``learning_rate``.
    """

    def __init__(self) -> None:
        self.best_loss = math.inf
        self.best_score = -math.inf
        self.no_improvement_count = 0
        self.samples_seen = 0
        self.learning_rate: Optional[float] = None

    def __repr__(self):
        return (f"StoppingState(best_loss={self.best_loss!r}, best_score={self.best_score!r}, "
                f"no_improvement_count={self.no_improvement_count}, "
                f"samples_seen={self.samples_seen}, learning_rate={self.learning_rate!r})")


class History:
    """Per-epoch figures of one ``fit`` call: one list per figure, one entry per epoch.

    Attributes
    ----------
    loss : list of float
        Mean training cost of each epoch: the mean over all samples of the
        (weighted) cost their minibatch had before its step.
    val_loss : list of float
        Mean cost on the validation data after each epoch (empty without
        validation data).
    val_accuracy : list of float
        For classifiers (cross-entropy) with validation data: the fraction of
        validation samples whose largest softmax output is the target class,
        or of sigmoid units on the right side of 0.5.
    learning_rate : list of float
        The rate each epoch used.
    time : list of float
        Seconds each epoch took, validation included. Epochs shorter than
        about 20 us are timed in blocks, each getting the block's mean; NaN
        for epochs whose block an exception (Ctrl-C) ended before it was
        timed.
    stopped_early : bool
        Whether early stopping or a callback ended training before ``epochs``.
    val_score : list of float
        With ``validation_metric``: the validation score after each epoch
        (accuracy or R^2; NaN for an epoch whose model was not finite).
    best_epoch : int or None
        Index of the epoch with the best monitored cost (validation cost if
        there is validation data, training cost otherwise; with
        ``stopping="sklearn"`` the best validation score or training cost).
    diverged : bool
        Whether training stopped because the cost or a parameter became NaN
        or infinite. ``Network.fit`` raises DivergenceError then; in
        ``fit_many`` the network stops with its last finite parameters, the
        others go on, and its History says so here.
    """

    FIGURES = ("loss", "val_loss", "val_accuracy", "learning_rate", "time", "val_score")
    # Each figure property returns a new list: changing it changes nothing
    # here (nor what save writes).

    def __init__(self) -> None:
        # Blocks of figures as the kernel wrote them; the lists are made on
        # first access, so that fit spends nothing per epoch in Python.
        self._blocks: List[Dict[str, Any]] = []
        self._lists: Optional[Dict[str, List[float]]] = None
        # Adding a block and building the lists each take this lock, so that a
        # reader in one thread never sees a half-built list or merges a block
        # twice while fit adds epochs in another.
        self._lock = threading.Lock()
        self.stopped_early = False
        self.best_epoch: Optional[int] = None
        self.diverged = False

    def _add(self, block):
        """Add a block of epochs: a dict, figure -> sequence of its values,
        or (rows, validation, classifier), rows an (epochs, 5) block of the
        kernel's history array."""
        with self._lock:
            self._blocks.append(block)
            self._lists = None

    def _copy(self) -> "History":
        """An independent History with the same figures (for save and pickle)."""
        lists = self._figures()
        other = History()
        other._add({name: list(values) for name, values in lists.items()})
        other.stopped_early = self.stopped_early
        other.best_epoch = self.best_epoch
        other.diverged = self.diverged
        return other

    def __getstate__(self):
        lists = self._figures()
        return {"figures": {name: list(values) for name, values in lists.items()},
                "stopped_early": self.stopped_early, "best_epoch": self.best_epoch,
                "diverged": self.diverged}

    def __setstate__(self, state):
        self.__init__()
        if "figures" in state:
            self._add(state["figures"])
            self.stopped_early = state["stopped_early"]
            self.best_epoch = state["best_epoch"]
            self.diverged = state.get("diverged", False)
        else:  # pickled before History had a lock: its plain attributes
            self.__dict__.update(state)
            self._lock = threading.Lock()

    def _figures(self) -> Dict[str, List[float]]:
        with self._lock:
            return self._build_lists()

    def _build_lists(self) -> Dict[str, List[float]]:
        if self._lists is None:
            # Built aside and published whole: an error half-way (MemoryError)
            # leaves the blocks as they were.
            lists: Dict[str, List[float]] = {name: [] for name in self.FIGURES}
            for block in self._blocks:
                if isinstance(block, tuple):
                    rows, validation, classifier, scored = block
                    block = {
                        "loss": rows[:, 0],
                        "val_loss": rows[:, 1] if validation else (),
                        "val_accuracy": rows[:, 2] if validation and classifier else (),
                        "learning_rate": rows[:, 3],
                        "time": rows[:, 4],
                        "val_score": rows[:, 5] if scored else (),
                    }
                for name in self.FIGURES:
                    values = block[name]
                    lists[name].extend(values.tolist() if isinstance(values, np.ndarray)
                                       else values)
            self._lists = lists
            self._blocks = [lists]
        return self._lists

    @property
    def loss(self) -> List[float]:
        return list(self._figures()["loss"])

    @property
    def val_loss(self) -> List[float]:
        return list(self._figures()["val_loss"])

    @property
    def val_accuracy(self) -> List[float]:
        return list(self._figures()["val_accuracy"])

    @property
    def learning_rate(self) -> List[float]:
        return list(self._figures()["learning_rate"])

    @property
    def time(self) -> List[float]:
        return list(self._figures()["time"])

    @property
    def val_score(self) -> List[float]:
        return list(self._figures()["val_score"])

    def logs(self, epoch: int) -> Dict[str, float]:
        """The figures of one epoch as a dict (what callbacks receive)."""
        lists = self._figures()
        return {name: lists[name][epoch] for name in self.FIGURES
                if len(lists[name]) > epoch}

    def __len__(self):
        return len(self._figures()["loss"])

    def __repr__(self):
        return f"History(epochs={len(self.loss)}, loss={self.loss[-1:] or None})"


class ProgressBar:
    """Progress of training, usable as a fit callback: ``fit(verbose=1)``,
    ``fit(verbose=2)`` and the command line's ``train`` all show it.

    With ``every_epoch`` False (verbose=1), one line: redrawn in place on a
    terminal; otherwise (a log file, a pipe) about 10 lines over the run.
    With ``every_epoch`` (verbose=2), a line per epoch.
    """

    def __init__(self, epochs: int, stream: Optional[TextIO] = None, width: int = 24,
                 enabled: bool = True, every_epoch: bool = False):
        self.epochs = epochs
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.enabled = enabled and epochs > 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not every_epoch
        self.start = time.perf_counter()
        self.every = 1 if every_epoch else max(1, math.ceil(epochs / 10))
        self.last = ""
        self.epochs_done = 0

    def line(self, epoch: int, logs: Dict[str, Any]) -> str:
        done = epoch + 1
        elapsed = time.perf_counter() - self.start
        left = elapsed / done * (self.epochs - done)
        filled = int(self.width * done / self.epochs)
        bar = "=" * filled + (">" if filled < self.width else "") + " " * (self.width - filled - 1)
        parts = [f"epoch {done:>{len(str(self.epochs))}}/{self.epochs} [{bar[:self.width]}]"]
        for key, label in (("loss", "loss"), ("val_loss", "val_loss"),
                           ("val_accuracy", "val_acc"), ("val_score", "val_score"),
                           ("learning_rate", "lr")):
            value = logs.get(key)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                parts.append(f"{label} {value:.4g}")
        parts.append(f"{_duration(elapsed)} elapsed, {_duration(left)} left")
        return "  ".join(parts)

    def __call__(self, epoch: int, logs: Dict[str, Any]) -> bool:
        self.epochs_done = epoch + 1
        if not self.enabled:
            return False
        text = self.line(epoch, logs)
        if self.tty:
            pad = max(0, len(self.last) - len(text))
            self.stream.write("\r" + text + " " * pad)
        elif (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            self.stream.write(text + "\n")
        self.last = text
        self.stream.flush()
        return False

    def close(self) -> None:
        """End the redrawn line (on a terminal); a run stopped early ends
        with its last epoch's line (in a log)."""
        if self.enabled and self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
        elif self.enabled and self.last and self.epochs_done % self.every:
            self.stream.write(self.last + "\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
