"""``pickle`` / ``copy.deepcopy`` support for :class:`~backprop_fast.Network`.

A ``Network`` holds two things the default protocol gets wrong:

* a ``threading.Lock`` (``_lock``), which cannot be pickled at all;
* ``weights`` and ``biases``, views (``_weights``, ``_biases``) into one flat
  parameter array (``_params``). Pickled as they are, each view would come
  back as an independent copy, and training (which writes ``_params``) would
  no longer show through them.

So the state leaves both out and ``network_setstate`` rebuilds them: a new
lock and fresh views into the unpickled ``_params``. The scratch buffers that
fit keeps between calls (``_scratch``) are left out too: the copy starts with
none. Everything else — the
parameters, the random generator (so that shuffling continues where it
stopped) and any optimizer state kept in plain attributes — is pickled as it
is. Wire them into the class with::

    __getstate__ = network_getstate
    __setstate__ = network_setstate
"""
from __future__ import annotations

import threading
from typing import Any, Dict

import numpy as np

from .network import History

__all__ = ["network_getstate", "network_setstate"]

# Attributes rebuilt by network_setstate rather than pickled.
_LOCK_FACTORIES = {type(threading.Lock()): threading.Lock,
                   type(threading.RLock()): threading.RLock}
_VIEWS = ("_weights", "_biases")
_SCRATCH = "_scratch"
STATE_VERSION = 1


def network_getstate(net) -> Dict[str, Any]:
    """The picklable state of ``net``: its ``__dict__`` without locks and views.

    The names of lock attributes are kept (with their kind) so that
    ``network_setstate`` can put fresh, unlocked ones in their place. Arrays
    and the history are copied under the network's lock, because pickle
    reads them only after this returns: a fit running in another thread is
    either wholly in the copy or not at all.
    """
    state: Dict[str, Any] = {}
    locks: Dict[str, str] = {}
    with net._lock:
        for name, value in net.__dict__.items():
            if type(value) in _LOCK_FACTORIES:
                locks[name] = ("rlock" if _LOCK_FACTORIES[type(value)] is threading.RLock
                               else "lock")
            elif name in _VIEWS or name == _SCRATCH or name == "_pending":
                continue
            elif isinstance(value, np.ndarray):
                state[name] = value.copy()
            elif name == "_history":
                # With the epochs of a fit running the callback that copies.
                state[name] = net._history_now()
            elif isinstance(value, History):
                state[name] = value._copy()
            else:
                state[name] = value
    return {"version": STATE_VERSION, "attributes": state, "locks": locks}


def network_setstate(net, state: Dict[str, Any]) -> None:
    """Restore ``net`` from ``network_getstate``: new locks, views into ``_params``."""
    version = state.get("version") if isinstance(state, dict) else None
    if not isinstance(version, int) or version > STATE_VERSION:
        raise ValueError(f"cannot unpickle this Network: pickle state version {version!r}; "
                         f"this backprop_fast reads versions up to {STATE_VERSION}")
    attributes = dict(state["attributes"])
    # Pickled when the architecture and history were plain attributes: they
    # are private now, behind read-only properties.
    for public in ("layer_sizes", "activations", "loss", "dtype", "history"):
        if public in attributes:
            attributes["_" + public] = attributes.pop(public)
    for name in ("_layer_sizes", "_activations"):
        attributes[name] = tuple(attributes[name])
    # Pickled before networks had metadata.
    attributes.setdefault("metadata", {})
    # Pickled before the mixed_bfloat16 policy existed: the plain dtype.
    attributes.setdefault("_bf16", False)
    net.__dict__.update(attributes)
    net._scratch = {}
    for name, kind in state["locks"].items():
        setattr(net, name, threading.RLock() if kind == "rlock" else threading.Lock())
    net._make_codes()
    net._make_views()
    net._in_fit = False  # a copy taken inside a callback is not itself training
    net._pending = None
