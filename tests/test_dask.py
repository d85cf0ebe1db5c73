"""backprop_fast.sklearn on a Dask cluster: joblib's "dask" backend and dask-ml.

One LocalCluster of two single-threaded worker processes on the loopback
interface serves the whole module. Every call that waits on the cluster is
bounded in time, so a broken cluster fails the test rather than hanging it.
The test that kills a worker runs last: the nanny restarts the worker, and the
test waits for it to be back before the cluster is closed.
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
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from backprop_fast.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

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
