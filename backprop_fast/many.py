"""Many networks trained in one native call: :func:`fit_many`."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .network import _FIT_DEFAULTS, History, Network, _is_sparse, _run_fits

__all__ = ["fit_many"]

# Options whose single value is itself a sequence or a mapping: for these a
# list is read as one value per network only, never as the shared value.
_PER_NETWORK_ONLY = {"stopping_state"}


def fit_many(networks: Sequence[Network], X: ArrayLike, y: ArrayLike, *,
             epochs: Any, batch_size: Any = None,
             subsets: Optional[Sequence[Optional[ArrayLike]]] = None,
             sample_weight: Any = None, n_threads: Optional[int] = None,
             **fit_options: Any) -> List[History]:
    """Train several networks on (subsets of) one data set in one native call.

    The result is that of ``[net.fit(X[s], y[s], **options) for net, s,
    options in ...]``, network by network: the same parameters, optimizer
    state, shuffling and History, bit for bit, as each network's arithmetic
    does not depend on what else runs. It runs with the GIL released,
    spreading the networks over ``n_threads`` threads, one network per
    thread at a time; small networks go several at a time, one per vector
    lane (see the "Many networks at once" page).

    Parameters
    ----------
    networks : sequence of Network
        Each at most once. They may differ in everything: layer sizes,
        activations, loss and dtype.
    X, y : array_like or scipy.sparse matrix (X)
        The data, as for ``Network.fit``; every network reads its rows
        ``subsets[k]``.
    epochs, batch_size : int, or a list of one per network
        As for ``Network.fit``.
    subsets : list of index arrays (or None), optional
        One per network: the rows of X (and y, ``sample_weight``) it trains
        on, as NumPy indexing takes them (integer indices or a boolean mask;
        CV folds, bootstrap samples). None, or a None entry, for every row.
    sample_weight : array_like of shape (n_samples,), or a list of one per network
        Weights of X's rows, shared or one vector per network; each network
        trains with ``sample_weight[subsets[k]]``.
    n_threads : int or None
        Threads for the whole call (None: as many as OpenMP allows, see the
        threads page). The networks' own ``n_threads`` are not used here.
    **fit_options
        Any other option of ``Network.fit`` (``learning_rate``,
        ``optimizer``, ``momentum``, ``lr_schedule``, ``early_stopping``,
        ``validation_data``, ``stopping="sklearn"``, ``callbacks``, ...).
        A ``list`` gives one value per network (its length must be the
        number of networks); any other value, a tuple or an array included,
        is shared by all. So a shared ``validation_data`` is an (X_val,
        y_val) tuple, and shared callbacks are a tuple of callables.
        ``stopping_state`` is per network only (a list).

    Returns
    -------
    list of History
        One per network, in order. A network whose training diverged stops
        with its last finite parameters (and its optimizer state reset, as
        after ``Network.fit``'s DivergenceError), its History has
        ``diverged`` set, and the others train on: nothing is raised for it.

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C stops every network at a minibatch boundary. Each keeps
        parameters, optimizer state and generator consistent with the epochs
        it finished, and those are in its ``history``; a network not yet
        started is untouched.

    Notes
    -----
    With callbacks or ``verbose``, the networks train one after another on
    the calling thread (still in one call), so that callbacks may read or
    save the networks.
    """
    nets = list(networks)
    for k, net in enumerate(nets):
        if not isinstance(net, Network):
            raise TypeError(f"networks[{k}] is {type(net).__name__}, not a Network")
    count = len(nets)
    unknown = sorted(set(fit_options) - set(_FIT_DEFAULTS))
    if unknown:
        raise TypeError(f"fit_many got unknown option(s) {', '.join(unknown)}; it takes "
                        "Network.fit's options")
    if count == 0:
        return []

    def each(name: str, value: Any) -> List[Any]:
        if isinstance(value, list):
            if len(value) != count:
                raise ValueError(f"{name}: a list gives one value per network, "
                                 f"{count} here, got {len(value)}")
            return value
        if name in _PER_NETWORK_ONLY and value is not None:
            raise TypeError(f"{name} takes one value per network: give a list")
        return [value] * count

    if n_threads is not None and (isinstance(n_threads, bool)
                                  or not isinstance(n_threads, (int, np.integer))
                                  or n_threads < 1):
        raise ValueError(f"n_threads must be None or an integer >= 1, got {n_threads!r}")
    # A scipy.sparse matrix or an ndarray: both index rows and have a shape.
    Xa: Any = X if _is_sparse(X) else np.asarray(X)
    ya = np.asarray(y)
    if Xa.ndim < 1 or ya.ndim < 1:
        raise ValueError("X and y must hold samples along their first axis")
    rows = Xa.shape[0]
    if ya.shape[0] != rows:
        raise ValueError(f"X has {rows} samples but y has {ya.shape[0]}")
    picks = each("subsets", subsets)
    for k, s in enumerate(picks):
        if s is not None:
            s = np.asarray(s)
            if s.dtype == bool:
                if s.shape != (rows,):
                    raise ValueError(f"subsets[{k}]: a boolean mask needs shape ({rows},)")
            elif s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
                raise ValueError(f"subsets[{k}] must be a 1-D array of row indices or "
                                 "a boolean mask")
            elif s.size and (s.min() < -rows or s.max() >= rows):
                raise IndexError(f"subsets[{k}] holds a row index outside X's {rows} rows")
            picks[k] = s
    weights = each("sample_weight", sample_weight)
    # One dict of options for every network: those given per network (lists)
    # and the sample weights are set in it for each. _prepare_fit binds its
    # parameters from it and keeps nothing of it.
    kw = dict(_FIT_DEFAULTS)
    per_network = {}
    for name, value in [*fit_options.items(), ("epochs", epochs), ("batch_size", batch_size)]:
        if isinstance(value, list) or name in _PER_NETWORK_ONLY:
            per_network[name] = each(name, value)
        else:
            kw[name] = value
    # Networks of one dtype and input width given the same rows get the same
    # checked X, and those that also share the output layer and loss the
    # same checked y: the first one's, which passes the others' checks as it
    # stands, where converting or reshaping the rows again would cost each
    # network more than a small one's fit.
    checked: Dict[Any, Any] = {}

    runs = []
    histories: List[Optional[History]] = []
    # Networks given the same rows (a search's candidates on one fold) share
    # one copy of them.
    copies: Dict[Any, Any] = {}
    for k, net in enumerate(nets):
        for name, values in per_network.items():
            kw[name] = values[k]
        s = picks[k]
        w = weights[k]
        if w is not None:
            w = np.asarray(w)
            if w.shape != (rows,):
                raise ValueError(f"sample_weight must hold one weight per row of X, "
                                 f"shape ({rows},), got {w.shape}")
        if s is not None:
            key = (s.dtype.str, s.tobytes())
            if key not in copies:
                copies[key] = (Xa[s], ya[s])
            Xk, yk = copies[key]
            w = None if w is None else w[s]
        else:
            Xk, yk = Xa, ya
        # Rows split off for validation leave the run other rows than given.
        split = kw["validation_split"]
        whole = type(split) in (int, float) and split == 0
        x_key = (id(Xk), net._dtype, net._layer_sizes[0])
        y_key = (x_key, id(yk), net._layer_sizes[-1], net._activations[-1], net._loss)
        if whole:
            Xk = checked.get(x_key, Xk)
            yk = checked.get(y_key, yk)
        kw["sample_weight"] = w
        run = net._prepare_fit(Xk, yk, **kw)
        if run is None:
            histories.append(History())
        else:
            histories.append(None)
            runs.append(run)
            Xc, Y = run.data[:2]
            if whole and type(Xc) is np.ndarray and Xc.ndim == Xk.ndim == 2:
                checked.setdefault(x_key, Xc)
                checked.setdefault(y_key, Y)
    _run_fits(runs, 0 if n_threads is None else int(n_threads))
    done = iter(runs)
    result = []
    for history in histories:
        if history is None:
            history, _ = next(done).history()
        result.append(history)
    return result
