"""backprop_fast.sklearn on a Dask cluster: joblib's "dask" backend and dask-ml.

One LocalCluster of two single-threaded worker processes on the loopback
interface serves the whole module. Every call that waits on the cluster is
bounded in time, so a broken cluster fails the test rather than hanging it.
The tests that kill a worker run last: the nanny restarts the worker, and each
test waits for it to be back before the next one uses the cluster.
"""
import concurrent.futures
import logging
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
dask_ml_model_selection = pytest.importorskip("dask_ml.model_selection")

import cloudpickle  # noqa: E402
import dask.array as da  # noqa: E402
import joblib  # noqa: E402
from distributed import CancelledError, KilledWorker  # noqa: E402
from distributed.comm import CommClosedError  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from backprop_fast import _cluster, _search  # noqa: E402
from backprop_fast.sklearn import (  # noqa: E402
    LostWorkError,
    MLPClassifier,
    MLPClassifierCV,
    MLPEnsembleRegressor,
    MLPRegressor,
    MLPRegressorCV,
)

# The errors by which Dask reports work lost with a worker.
LOST_WORK = (CancelledError, KilledWorker, CommClosedError)
TIMEOUT = 60  # seconds: the bound on any one wait on the cluster


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=logging.ERROR, timeout=TIMEOUT)
    try:
        with distributed.Client(cluster, timeout=TIMEOUT) as c:
            c.wait_for_workers(2, timeout=TIMEOUT)
            yield c
    finally:
        cluster.close(timeout=TIMEOUT)


def _bounded(fn, *args, timeout=TIMEOUT, **kwargs):
    """``fn(*args, **kwargs)`` on a helper thread, failing the test after
    ``timeout`` seconds instead of waiting forever on a broken cluster."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(fn, *args, **kwargs).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish within {timeout} s")
    finally:
        pool.shutdown(wait=False)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:600] / 16.0).astype(np.float64), y[:600]


def _quiet(fn):
    def run(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fn(*args, **kwargs)
    return run


# ---------------------------------------------------------------- threads

def _kernel_threads():
    from backprop_fast._kernels import kernel
    return kernel.threads()


# The functions above run on the workers, which cannot import this test
# module: cloudpickle sends them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_worker_kernel_uses_threads_per_worker(client):
    """Each worker process runs its kernel on threads_per_worker threads (one
    here): Dask's nanny starts workers with OMP_NUM_THREADS=1, and a worker
    runs nthreads tasks at once."""
    per_worker = _bounded(client.run, _kernel_threads)
    nthreads = client.nthreads()
    assert set(per_worker) == set(nthreads)
    for address, threads in per_worker.items():
        assert threads == nthreads[address] == 1
    env = _bounded(client.run, lambda: os.environ.get("OMP_NUM_THREADS"))
    assert set(env.values()) == {"1"}


def test_n_threads_reaches_the_network(digits):
    X, y = digits
    est = _quiet(MLPClassifier((8,), max_iter=2, n_threads=1, random_state=0).fit)(X, y)
    assert est.network_.n_threads == 1
    est.set_params(n_threads=None)
    est.predict(X[:5])
    assert est.network_.n_threads is None
    with pytest.raises(ValueError, match="n_threads"):
        MLPClassifier(n_threads=0).fit(X, y)


# ---------------------------------------------------------------- joblib's dask backend

def _grid(X, y, backend, max_iter=15):
    grid = GridSearchCV(
        MLPClassifier((16,), max_iter=max_iter, random_state=0),
        {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]}, cv=3)
    with joblib.parallel_backend(backend):
        _quiet(grid.fit)(X, y)
    return grid


def test_grid_search_on_dask_backend_equals_local(client, digits):
    X, y = digits
    local = _grid(X, y, "sequential")
    remote = _bounded(_grid, X, y, "dask")
    for key in ("mean_test_score", "std_test_score", "rank_test_score",
                *(f"split{i}_test_score" for i in range(3))):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))


def test_regressor_cross_validate_on_dask_backend_equals_local(client, digits):
    from sklearn.model_selection import cross_validate

    X, y = digits
    est = MLPRegressor((8,), max_iter=10, random_state=0)

    def run(backend):
        with joblib.parallel_backend(backend):
            return _quiet(cross_validate)(est, X, y.astype(float), cv=3)

    local, remote = run("sequential"), _bounded(run, "dask")
    np.testing.assert_array_equal(remote["test_score"], local["test_score"])


# ---------------------------------------------------------------- MLPClassifierCV and the ensembles

GRID = {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]}


def _search_cv(X, y, backend, max_iter=15, **params):
    search = MLPClassifierCV((16,), max_iter=max_iter, random_state=0, param_grid=GRID, cv=3,
                             **params)
    with joblib.parallel_backend(backend):
        _quiet(search.fit)(X, y)
    return search


def _assert_same_search(remote, local):
    results, expected = remote.cv_results_, local.cv_results_
    assert results["params"] == expected["params"]
    for key in ("mean_test_score", "std_test_score", "rank_test_score",
                *(f"split{i}_test_score" for i in range(local.n_splits_))):
        np.testing.assert_array_equal(results[key], expected[key], err_msg=key)
    assert remote.best_params_ == local.best_params_
    assert remote.best_score_ == local.best_score_
    best, expected_best = remote.best_estimator_, local.best_estimator_
    for a, b in zip(best.coefs_ + best.intercepts_,
                    expected_best.coefs_ + expected_best.intercepts_):
        np.testing.assert_array_equal(a, b)


class _Spy:
    """Records what the client is asked to scatter and to run."""

    def __init__(self, client, monkeypatch):
        self.scattered, self.submitted = [], []
        scatter, submit = client.scatter, client.submit

        def spy_scatter(data, *args, **kwargs):
            self.scattered.append((data, kwargs))
            return scatter(data, *args, **kwargs)

        def spy_submit(fn, *args, **kwargs):
            self.submitted.append((fn, args))
            return submit(fn, *args, **kwargs)

        monkeypatch.setattr(client, "scatter", spy_scatter)
        monkeypatch.setattr(client, "submit", spy_submit)


def _holds_rows(value, n):
    """Whether a task argument carries data of n rows (X, y or a fold's index
    arrays), looking inside lists, tuples and dicts."""
    if isinstance(value, np.ndarray):
        return value.ndim > 0 and value.shape[0] >= n // 3
    if isinstance(value, (list, tuple)):
        return any(_holds_rows(v, n) for v in value)
    if isinstance(value, dict):
        return any(_holds_rows(v, n) for v in value.values())
    return False


def test_search_on_dask_backend_equals_local(client, digits, monkeypatch):
    """MLPClassifierCV inside joblib's dask backend: slices of its fits on both
    workers, the data scattered once, and the local search's results."""
    X, y = digits
    local = _search_cv(X, y, "sequential")
    spy = _Spy(client, monkeypatch)
    with distributed.get_task_stream(client=client) as stream:
        remote = _bounded(_search_cv, X, y, "dask")
    _assert_same_search(remote, local)
    # The data went out in one scatter to every worker; no task carries them.
    assert len(spy.scattered) == 1
    (shared,), options = spy.scattered[0]
    assert options.get("broadcast") is True
    assert shared[0] is X or np.array_equal(shared[0], X)
    assert [fn for fn, _ in spy.submitted] == [_search._score_slice] * len(spy.submitted)
    assert len(spy.submitted) == 4  # two slices per worker thread
    assert not any(_holds_rows(args[1:], len(X)) for _, args in spy.submitted)
    # Every (candidate, fold) task in exactly one slice.
    tasks = sorted(task for _, args in spy.submitted for task in args[3])
    assert tasks == [(c, f) for c in range(4) for f in range(3)]
    workers = {event["worker"] for event in stream.data
               if event["key"].startswith("_score_slice")}
    assert workers == set(client.nthreads())
    # A slice's fit_many call takes the worker's one thread, even if n_jobs
    # asks for more.
    for address in client.nthreads():
        for n_jobs in (None, 4):
            task = client.submit(_cluster.worker_threads, n_jobs, workers=[address],
                                 pure=False)
            assert _bounded(task.result) == 1


@pytest.mark.parametrize("limit, nthreads, n_jobs, expected", [
    (1, 1, None, 1),     # a nanny's OMP_NUM_THREADS=1
    (1, 4, None, 1),     # never less than one
    (4, 1, None, 4),     # OMP_NUM_THREADS=4 for a single-threaded worker
    (8, 2, None, 4),     # no nanny: two task threads share eight cores
    (8, 2, 3, 3),        # n_jobs caps the share
])
def test_a_slice_takes_its_share_of_the_workers_threads(monkeypatch, limit, nthreads, n_jobs,
                                                        expected):
    from backprop_fast._kernels import kernel

    class Worker:
        class state:
            pass

    Worker.state.nthreads = nthreads
    monkeypatch.setattr(distributed, "get_worker", lambda: Worker)
    monkeypatch.setattr(kernel, "threads", lambda n=0: limit if n == 0 else min(n, limit))
    assert _cluster.worker_threads(n_jobs) == expected


def test_search_nested_in_a_dask_task_equals_local(client, digits):
    """cross_validate of MLPClassifierCV on the dask backend: joblib runs each
    outer fold as a task and nests the backend, so each search sends its
    slices from inside a task. With both worker threads held by outer folds,
    the slices still find threads to run on."""
    from sklearn.model_selection import cross_validate

    X, y = digits
    est = MLPClassifierCV((8,), max_iter=5, random_state=0, param_grid=GRID, cv=2)

    def run(backend):
        with joblib.parallel_backend(backend):
            return _quiet(cross_validate)(est, X[:300], y[:300], cv=2)

    local, remote = run("sequential"), _bounded(run, "dask")
    np.testing.assert_array_equal(remote["test_score"], local["test_score"])


def test_search_outside_the_dask_backend_stays_local(client, digits, monkeypatch):
    X, y = digits
    spy = _Spy(client, monkeypatch)
    local = _search_cv(X[:200], y[:200], "sequential", max_iter=3)
    with joblib.parallel_backend("threading"):
        _quiet(clone(local).fit)(X[:200], y[:200])
    assert not spy.scattered and not spy.submitted


def test_search_fit_errors_on_the_cluster_as_locally(client, digits):
    """A diverging candidate scores NaN with a warning, as locally; with
    error_score="raise" the worker's error reaches the caller as itself."""
    X, y = digits
    target = (y / 9.0)[:300]
    grid = {"learning_rate_init": [0.01, 1e3]}

    def search(backend, **params):
        est = MLPRegressorCV((8,), solver="sgd", momentum=0.0, max_iter=5, batch_size=16,
                             random_state=0, param_grid=grid, cv=3, **params)
        with joblib.parallel_backend(backend), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X[:300], target)
        assert any(issubclass(w.category, FitFailedWarning) and "non-finite" in str(w.message)
                   for w in caught)
        return est

    local, remote = search("sequential"), _bounded(search, "dask")
    assert np.isnan(remote.cv_results_["mean_test_score"][1])
    _assert_same_search(remote, local)
    with pytest.raises(ValueError, match="non-finite"):
        _bounded(search, "dask", error_score="raise")


@pytest.mark.parametrize("change, message", [
    ("drop", r"1 of the search's 12 fits unscored and 0"),
    ("repeat", r"0 of the search's 12 fits unscored and 1 scored more than once"),
], ids=["dropped", "repeated"])
def test_a_fit_missing_or_repeated_in_the_results_is_an_error(client, digits, monkeypatch,
                                                              change, message):
    """The gathered slices are checked whole: a (candidate, fold) task that
    no slice scored, or that two did, fails the search instead of leaving a
    hole in cv_results_ or overwriting a score."""
    X, y = digits
    whole = _search.slices

    def wrong(count, client):
        parts = whole(count, client)
        if change == "drop":
            return [parts[0][1:]] + parts[1:]
        return [parts[0] + parts[1][:1]] + parts[1:]

    monkeypatch.setattr(_search, "slices", wrong)
    search = MLPClassifierCV((8,), max_iter=2, random_state=0, param_grid=GRID, cv=3)
    with pytest.raises(LostWorkError, match=message):
        _bounded(_search_fit_on_dask, search, X[:200], y[:200])
    assert not hasattr(search, "cv_results_")
    ensemble = MLPEnsembleRegressor((8,), max_iter=2, n_estimators=12, random_state=0)
    with pytest.raises(LostWorkError, match="ensemble's 12 members"):
        _bounded(_search_fit_on_dask, ensemble, X[:200], y[:200] / 9.0)
    assert not hasattr(ensemble, "estimators_")


def _search_fit_on_dask(search, X, y):
    with joblib.parallel_backend("dask"):
        return _quiet(search.fit)(X, y)


def test_ensemble_on_dask_backend_equals_local(client, digits):
    X, y = digits
    target = y / 9.0

    def ensemble(backend):
        est = MLPEnsembleRegressor((8,), max_iter=10, n_estimators=5, bootstrap=True,
                                   random_state=0)
        with joblib.parallel_config(backend=backend):
            return _quiet(est.fit)(X, target)

    local = ensemble("sequential")
    with distributed.get_task_stream(client=client) as stream:
        remote = _bounded(ensemble, "dask")
    assert {event["key"].split("-")[0] for event in stream.data} >= {"_fit_slice"}
    np.testing.assert_array_equal(remote.estimators_seeds_, local.estimators_seeds_)
    np.testing.assert_array_equal(remote.n_iter_, local.n_iter_)
    assert len(remote.estimators_) == 5
    for theirs, ours in zip(local.estimators_, remote.estimators_):
        assert ours.random_state == theirs.random_state
        for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(remote.estimators_samples_, local.estimators_samples_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))


# ---------------------------------------------------------------- dask-ml

def test_incremental_equals_local_partial_fit(client, digits):
    X, y = digits
    classes = np.unique(y)
    Xd = da.from_array(X, chunks=(150, X.shape[1]))
    yd = da.from_array(y, chunks=150)
    est = MLPClassifier((16,), random_state=0, batch_size=50)
    inc = dask_ml_wrappers.Incremental(est, shuffle_blocks=False)
    _bounded(inc.fit, Xd, yd, classes=classes)

    local = clone(est)
    for start in range(0, X.shape[0], 150):
        local.partial_fit(X[start:start + 150], y[start:start + 150], classes=classes)
    fitted = inc.estimator_
    assert fitted.t_ == local.t_ == X.shape[0]
    for a, b in zip(fitted.coefs_ + fitted.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_array_equal(a, b)
    # ParallelPostFit's predictions (Incremental is one), block by block on the workers.
    pred = inc.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(_bounded(pred.compute), local.predict(X))
    proba = _bounded(inc.predict_proba(Xd).compute)
    np.testing.assert_array_equal(proba, local.predict_proba(X))


def test_parallel_post_fit_predicts_blocks(client, digits):
    X, y = digits
    est = _quiet(MLPClassifier((16,), max_iter=20, random_state=0).fit)(X, y)
    ppf = dask_ml_wrappers.ParallelPostFit(est)
    Xd = da.from_array(X, chunks=(100, X.shape[1]))
    pred = ppf.predict(Xd)
    assert pred.numblocks == (6,)
    np.testing.assert_array_equal(_bounded(pred.compute), est.predict(X))
    assert _bounded(lambda: ppf.score(Xd, da.from_array(y, chunks=100))) == est.score(X, y)


def test_hyperband_search_finds_a_sane_model(client, digits):
    X, y = digits
    Xd = da.from_array(X[:500], chunks=(50, X.shape[1]))
    yd = da.from_array(y[:500], chunks=50)
    search = dask_ml_model_selection.HyperbandSearchCV(
        MLPClassifier((32,), random_state=0, batch_size=25),
        {"learning_rate_init": [1e-3, 1e-2, 3e-2], "alpha": [1e-4, 1e-2]},
        max_iter=9, random_state=0)
    _bounded(search.fit, Xd, yd, classes=np.unique(y))
    assert set(search.best_params_) == {"learning_rate_init", "alpha"}
    assert search.best_params_["learning_rate_init"] > 1e-3
    # Ten classes: chance is 0.1. At most nine blocks of 50 samples per model
    # (under one epoch) reach several times that.
    assert search.best_score_ > 0.6
    assert search.best_estimator_.score(X[500:], y[500:]) > 0.6


# ---------------------------------------------------------------- a worker dies

def test_worker_killed_mid_search_completes_or_fails_clearly(client, digits):
    """A worker process killed while it runs the search's fits: Dask reruns the
    lost tasks on a live (or restarted) worker and the search completes with the
    local results, or the search raises. Never a partial result."""
    X, y = digits
    # Fits long enough for the killer to find a worker busy with one.
    local = _grid(X, y, "sequential", max_iter=60)
    pids = _bounded(client.run, os.getpid)
    killed, done = [], threading.Event()

    def kill_a_busy_worker():
        deadline = time.monotonic() + TIMEOUT
        while not done.is_set() and time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    try:
        remote = _bounded(_grid, X, y, "dask", max_iter=60)
    except LOST_WORK as exc:
        # Failed, saying which work was lost: the search's data and tasks
        # lived on the killed worker. Nothing was returned.
        assert "fit_and_score" in str(exc) or isinstance(exc, KilledWorker), repr(exc)
    else:
        # Complete: every candidate and every split scored, and the same scores.
        for key in ("mean_test_score", *(f"split{i}_test_score" for i in range(3))):
            assert np.isfinite(remote.cv_results_[key]).all()
            np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    finally:
        done.set()
        killer.join(TIMEOUT)
    assert killed, "no worker was busy to be killed"
    # The nanny restarts the worker; the next user of the cluster finds two.
    client.wait_for_workers(2, timeout=TIMEOUT)


def test_worker_killed_mid_cv_search_completes_or_fails_clearly(client, digits):
    """MLPClassifierCV on the cluster with a worker process killed while it
    trains a slice: Dask reruns the slice and the search returns the local
    results, or the search raises LostWorkError. Never a partial result."""
    X, y = digits
    # Slices long enough for the killer to find a worker busy with one.
    local = _search_cv(X, y, "sequential", max_iter=80)
    pids = _bounded(client.run, os.getpid)
    killed, done = [], threading.Event()

    def kill_a_busy_worker():
        deadline = time.monotonic() + TIMEOUT
        while not done.is_set() and time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items()
                    if any(str(task).startswith("_score_slice") for task in tasks)]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    search = MLPClassifierCV((16,), max_iter=80, random_state=0, param_grid=GRID, cv=3)
    try:
        _bounded(_search_fit_on_dask, search, X, y)
    except LostWorkError as exc:
        assert "Nothing was fitted" in str(exc)
        assert isinstance(exc.__cause__, LOST_WORK)
        assert not hasattr(search, "cv_results_")
    else:
        _assert_same_search(search, local)
    finally:
        done.set()
        killer.join(TIMEOUT)
    assert killed, "no worker was busy to be killed"
    client.wait_for_workers(2, timeout=TIMEOUT)


def test_all_workers_killed_mid_cv_search_fail_clearly(client, digits):
    """Both workers killed while they train slices: the scattered data die
    with them, so the search cannot complete; it raises LostWorkError and
    sets nothing."""
    X, y = digits
    pids = _bounded(client.run, os.getpid)
    killed, done = [], threading.Event()

    def kill_every_worker_once_busy():
        deadline = time.monotonic() + TIMEOUT
        while not done.is_set() and time.monotonic() < deadline:
            if any(str(task).startswith("_score_slice")
                   for tasks in client.processing().values() for task in tasks):
                for address, pid in pids.items():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(address)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_every_worker_once_busy, daemon=True)
    killer.start()
    search = MLPClassifierCV((16,), max_iter=80, random_state=0, param_grid=GRID, cv=3)
    try:
        with pytest.raises(LostWorkError, match="Nothing was fitted") as info:
            _bounded(_search_fit_on_dask, search, X, y)
    finally:
        done.set()
        killer.join(TIMEOUT)
    assert isinstance(info.value.__cause__, LOST_WORK)
    assert not hasattr(search, "cv_results_")
    assert len(killed) == 2
    client.wait_for_workers(2, timeout=TIMEOUT)
