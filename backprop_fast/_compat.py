"""What this build's ``Network.fit`` accepts, and per-epoch callbacks on top of it.

The command line and the scikit-learn estimators pass training options to
``Network.fit`` under the names of its public contract (``optimizer``,
``momentum``, ``weight_decay``, ``validation_split``, ``sample_weight``,
``callbacks``, ...). This module is the one place that checks which of them
the installed ``Network.fit`` takes, so that an option it lacks gives a clear
error instead of a ``TypeError`` from deep inside, and an option left at its
plain-SGD value is simply not passed.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional

from .network import History, Network

__all__ = ["fit_accepts", "check_fit_options", "fit_with_callback"]

#: Values at which an option means plain minibatch SGD, the behaviour of a
#: ``Network.fit`` that does not know the option: such options are dropped.
PLAIN_SGD = {
    "optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
    "lr_schedule": "constant", "validation_data": None, "validation_split": None,
    "early_stopping": False, "sample_weight": None, "class_weight": None,
    "verbose": 0, "callbacks": None,
}


def fit_accepts(name: str) -> bool:
    """Whether ``Network.fit`` takes the keyword argument ``name``."""
    return name in inspect.signature(Network.fit).parameters


def check_fit_options(options: Mapping[str, Any], how: Optional[Mapping[str, str]] = None,
                      hint: str = "Leave the option at its default to train with plain SGD."
                      ) -> Dict[str, Any]:
    """Return the options to pass to ``Network.fit``.

    Options at their plain-SGD value (see ``PLAIN_SGD``) that ``Network.fit``
    does not take are dropped; any other option it does not take raises a
    ``ValueError`` that names it, as ``how[name]`` (how the user spelled it,
    e.g. ``"--optimizer adam"``) when given, followed by ``hint``.
    """
    out = {}
    for name, value in options.items():
        if fit_accepts(name):
            out[name] = value
            continue
        if name in PLAIN_SGD and _same(value, PLAIN_SGD[name]):
            continue
        spelled = (how or {}).get(name, f"{name}={value!r}")
        raise ValueError(
            f"{spelled} needs Network.fit(..., {name}=...), which this build of "
            "backprop_fast does not have yet (it arrives with the training-features "
            f"work: optimizers, validation, sample weights). {hint}")
    return out


def _same(value, default):
    if default is None:
        return value is None
    if isinstance(default, (bool, str)):
        return value == default
    try:
        return float(value) == float(default)
    except (TypeError, ValueError):
        return False


Callback = Callable[[int, Dict[str, Any]], Optional[bool]]


def fit_with_callback(net: Network, X, y, *, epochs: int, callback: Optional[Callback] = None,
                      **options) -> History:
    """``net.fit(X, y, epochs=epochs, **options)`` with ``callback(epoch, logs)``
    after each epoch (a True return stops training after that epoch).

    With a ``Network.fit`` that takes ``callbacks`` this is one call. Without
    it, the epochs run as consecutive one-epoch fits — the same training for
    plain SGD (each call continues from the current parameters and random
    stream) — and ``logs`` holds the epoch's ``loss``.
    """
    if callback is None:
        return net.fit(X, y, epochs=epochs, **options)
    if fit_accepts("callbacks"):
        options["callbacks"] = list(options.get("callbacks") or []) + [callback]
        return net.fit(X, y, epochs=epochs, **options)
    losses = []
    for epoch in range(epochs):
        history = net.fit(X, y, epochs=1, **options)
        losses.extend(history.loss)
        if callback(epoch, {"loss": history.loss[-1]}):
            break
    return History(losses)
