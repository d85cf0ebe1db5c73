"""Many fits spread over a Dask cluster, when joblib's "dask" backend is active.

Design: the searches and ensembles of :mod:`backprop_fast._search` split their
population of fits (a search's (candidate, fold) tasks, an ensemble's members)
into slices, and each slice trains on a worker in one ``fit_many`` call. The
data go to the cluster once, as one object scattered to every worker, and
each slice's task names it by its future, so a task carries only its own
slice. Dask places the tasks, balances them between workers and reruns those
a lost worker held; nothing here decides which worker runs what.

The switch is scikit-learn's: inside ``joblib.parallel_backend("dask")`` (or
``joblib.parallel_config(backend="dask")``) the work goes to that backend's
client; anywhere else it stays in this process.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, List, Optional, Sequence

__all__ = ["LostWorkError", "active_client", "run_slices", "slices", "worker_threads"]

# How many slices per worker thread: more than one lets a thread that drew
# quick fits take another slice while a slow one finishes elsewhere, at the
# price of a task (and one validation of the data) per slice.
SLICES_PER_THREAD = 2


class LostWorkError(RuntimeError):
    """A search or ensemble on a Dask cluster lost part of its work.

    Raised by the ``fit`` of ``MLPClassifierCV``, ``MLPRegressorCV`` and the
    MLP ensembles inside joblib's "dask" backend when Dask gives up on a
    slice of the fits (its workers died more often than Dask retries a
    task), when the scattered data are lost with every worker that held
    them, or when the slices gathered do not hold every fit exactly once.
    Nothing was fitted; the cause (Dask's error, where there is one) is
    chained.
    """


def active_client() -> Any:
    """The Dask client of the active joblib "dask" backend, or None."""
    if "joblib._dask" not in sys.modules:
        # joblib imports its dask backend when one is configured, so none is
        # active; this keeps distributed unimported for local runs.
        return None
    from joblib._dask import DaskDistributedBackend
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if not isinstance(backend, DaskDistributedBackend):
        return None
    return backend.client


def slices(count: int, client: Any) -> List[List[int]]:
    """Indices 0..count-1 dealt into about SLICES_PER_THREAD slices per
    worker thread, round robin: neighbouring items (a candidate's folds,
    which train for about as long) land in different slices."""
    threads = sum(client.nthreads().values())
    parts = max(1, min(count, SLICES_PER_THREAD * threads))
    return [list(range(i, count, parts)) for i in range(parts)]


def worker_threads(n_jobs: Optional[int]) -> int:
    """Threads for one slice's ``fit_many`` call on this worker: the
    kernel's OpenMP limit here shared among the worker's task threads, each
    of which may run a slice at the same time (at least one; at most
    ``n_jobs``). Under a nanny, which sets OMP_NUM_THREADS=1 by default,
    this is one thread per task thread."""
    from distributed import get_worker

    from ._kernels import kernel

    share = max(1, kernel.threads(0) // max(1, get_worker().state.nthreads))
    return share if n_jobs is None else min(share, n_jobs)


def run_slices(client: Any, fn: Callable[..., Any], shared: Any,
               per_slice: Sequence[Sequence[Any]], what: str) -> List[Any]:
    """``fn(shared, *args)`` for each ``args`` of ``per_slice`` on the
    cluster; the results in order.

    ``shared`` is scattered to every worker once. A slice whose worker dies
    is rerun by Dask on another; when Dask gives up on it (or loses the
    shared data), LostWorkError is raised and every slice still pending is
    cancelled. An exception raised by ``fn`` itself propagates as it is.
    """
    from distributed import CancelledError, KilledWorker, get_worker, rejoin, secede
    from distributed.comm import CommClosedError

    lost = (CancelledError, KilledWorker, CommClosedError)
    try:
        get_worker()
        nested = True
    except ValueError:
        nested = False
    futures: List[Any] = []
    data: List[Any] = []
    try:
        # A key of its own (no content hash): cancelling it below cannot take
        # the same data away from another search that scattered them too.
        data = client.scatter([shared], broadcast=True, hash=False)
        futures = [client.submit(fn, data[0], *args, pure=False) for args in per_slice]
        if not nested:
            return client.gather(futures)
        # A fit running as a task itself (a cross_validate of a search, say,
        # which joblib's dask backend nests): its thread leaves the worker's
        # pool while it waits, or the slices could find no thread to run on.
        secede()
        try:
            return client.gather(futures)
        finally:
            rejoin()
    except lost as exc:
        raise LostWorkError(
            f"the Dask cluster lost part of the {what} ({type(exc).__name__}: {exc}); a "
            "worker died or left while it held a slice of the fits or the data. Nothing "
            "was fitted: run it again once the cluster has its workers.") from exc
    finally:
        if futures or data:
            client.cancel(futures + data)
