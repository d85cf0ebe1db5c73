"""Many fits of the MLP estimators in one native call.

:class:`MLPClassifierCV` and :class:`MLPRegressorCV` run a grid search over
the estimators' parameters with cross-validation; :class:`MLPEnsembleClassifier`
and :class:`MLPEnsembleRegressor` average networks trained from different
seeds or bootstrap samples. Both train all their sgd/adam networks in one
``fit_many`` call.

Design: an estimator's fit is split in two (``_begin_fit`` and
``_stochastic_job`` prepare a network and the ``Network.fit`` options for
the rows it trains on; ``_finish_stochastic`` sets the fitted attributes
from the trained network), so a fit trained here runs the same code as
``MLPClassifier.fit`` and ends in the same bits. :func:`fit_estimators`
trains any list of (estimator, rows) pairs that way; :func:`fit_and_score`
trains and scores a list of (candidate, fold) tasks, so that a caller may
hand slices of a search's tasks to different workers; the estimators'
``fit`` methods only orchestrate. Inside joblib's "dask" backend they send
those slices to the cluster's workers (:mod:`backprop_fast._cluster`) and
check that every fit came back exactly once before they set anything.
"""
from __future__ import annotations

import inspect
import numbers
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    clone,
    is_classifier,
)
from sklearn.exceptions import FitFailedWarning, NotFittedError
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterGrid, check_cv
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import _safe_indexing, check_array, check_random_state, indexable
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from ._cluster import LostWorkError, active_client, run_slices, slices, worker_threads
from .many import fit_many
from .network import _FIT_DEFAULTS, DivergenceError
from .sklearn import (
    _NONFINITE,
    MLPClassifier,
    MLPRegressor,
    _BaseMLP,
    _is_int,
    _ParamNamesOnce,
)

__all__ = ["MLPClassifierCV", "MLPRegressorCV", "MLPEnsembleClassifier",
           "MLPEnsembleRegressor", "fit_estimators", "fit_and_score"]


# ---------------------------------------------------------------- training many estimators

def _row_indices(subset, n: int) -> np.ndarray:
    if subset is None:
        return np.arange(n)
    s = np.asarray(subset)
    return np.flatnonzero(s) if s.dtype == bool else s.astype(np.intp, copy=False)


def fit_estimators(estimators: Sequence[_BaseMLP], X: Any, y: Any, subsets: Sequence[Any],
                   sample_weight: Any = None,
                   n_threads: Optional[int] = None) -> Tuple[List[Optional[Exception]],
                                                             List[float]]:
    """Fit ``estimators[k]`` on the rows ``subsets[k]`` of (X, y).

    Each estimator ends exactly as ``estimators[k].fit(X[s], y[s],
    sample_weight=sample_weight[s])`` would leave it. Those with the sgd or
    adam solver train in one ``fit_many`` call; lbfgs fits, which the
    kernel's epoch loop does not run, and fits whose targets cannot share
    one array with the others' (a subset missing a class), run one by one.

    Parameters
    ----------
    estimators : sequence of MLPClassifier or MLPRegressor
        Each is fitted as its own ``fit`` would fit it.
    X, y : array-like, sparse matrix (X) or data frame
        The whole data; rows are taken with scikit-learn's indexing, so a
        data frame stays one.
    subsets : sequence of index arrays, boolean masks or None
        One per estimator; None for all rows. Estimators given the same
        object share its validated rows.
    sample_weight : array-like of shape (n_samples,), optional
    n_threads : int or None
        Threads of the ``fit_many`` call (None: all).

    Returns
    -------
    errors : list
        None for each fit that succeeded, else the exception it raised.
    fit_times : list of float
        Seconds per fit; fits trained together share the call's time
        equally.
    """
    count = len(estimators)
    if len(subsets) != count:
        raise ValueError(f"subsets must hold one entry per estimator ({count}), got "
                         f"{len(subsets)}")
    X, y, sample_weight = indexable(X, y, sample_weight)
    n = _num_samples(X)
    errors: List[Optional[Exception]] = [None] * count
    times = [0.0] * count
    parts: Dict[int, Tuple[Any, Any, Any]] = {}
    jobs = []
    for k, (est, subset) in enumerate(zip(estimators, subsets)):
        start = time.perf_counter()
        key = id(subset)
        if key not in parts:
            rows = _row_indices(subset, n)
            parts[key] = (_safe_indexing(X, rows), _safe_indexing(y, rows),
                          None if sample_weight is None else _safe_indexing(sample_weight, rows))
        Xs, ys, ws = parts[key]
        try:
            if est.solver == "lbfgs":
                est.fit(Xs, ys, sample_weight=ws)
            else:
                Xk, Yk, _, swk, rs = est._begin_fit(Xs, ys, ws, incremental=False)
                jobs.append((k, est, _row_indices(subset, n),
                             est._stochastic_job(Xk, Yk, swk, False, rs)))
        except Exception as exc:  # the fit's own error, as fit would raise it
            errors[k] = exc
        times[k] += time.perf_counter() - start
    parts.clear()
    if not jobs:
        return errors, times

    Y, together, alone = _share_data(jobs, n)
    if together:
        start = time.perf_counter()
        _train_together(together, X, Y, n_threads, errors, alone)
        share = (time.perf_counter() - start) / len(together)
        for k, *_ in together:
            times[k] += share
    for k, est, _, job in alone:
        start = time.perf_counter()
        try:
            est._run_stochastic(job)
        except Exception as exc:
            errors[k] = exc
        times[k] += time.perf_counter() - start
    return errors, times


def _share_data(jobs, n):
    """Which jobs can train on one shared target array (and full-length
    weight vectors): those whose targets agree, row by row, with those of
    the jobs before them. Returns the shared targets, the jobs that train
    together as (k, estimator, trained rows, job, weights), and the others
    as (k, estimator, rows, job)."""
    first = jobs[0][3].Y
    Y = np.zeros((n,) + first.shape[1:], dtype=first.dtype)
    filled = np.zeros(n, dtype=bool)
    together, alone = [], []
    for k, est, rows, job in jobs:
        trained = rows if job.rows is None else rows[job.rows]
        w = job.options.get("sample_weight")
        weights = None
        if w is not None:
            weights = np.zeros(n)
            weights[trained] = w
            # A row drawn twice (a bootstrap) must carry one weight.
            if not np.array_equal(weights[trained], w):
                alone.append((k, est, rows, job))
                continue
        Yk = job.Y
        known = filled[rows]
        if (Yk.shape[1:] != Y.shape[1:] or Yk.dtype != Y.dtype
                or not np.array_equal(Y[rows[known]], Yk[known])):
            alone.append((k, est, rows, job))
            continue
        Y[rows] = Yk
        filled[rows] = True
        together.append((k, est, trained, job, weights))
    return Y, together, alone


def _train_together(together, X, Y, n_threads, errors, alone):
    """One fit_many call for the jobs ``together``, and their estimators
    finished; a fit that diverged gets its error in ``errors``."""
    # X as each estimator validated its rows (the dtype kept, a sparse X
    # in canonical CSR); each network converts its rows to its own dtype.
    Xv = check_array(X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32),
                     ensure_all_finite=False)
    if sp.issparse(Xv):
        Xv = _BaseMLP._as_kernel_X(Xv, Xv.dtype)
    jobs = [entry[3] for entry in together]
    names = set().union(*(job.options for job in jobs))
    names -= {"epochs", "batch_size", "sample_weight"}
    # One value per network for every option: a network without one
    # (momentum for adam, say) gets Network.fit's default.
    options = {name: [job.options.get(name, _FIT_DEFAULTS[name]) for job in jobs]
               for name in sorted(names)}
    try:
        histories = fit_many(
            [entry[1].network_ for entry in together], Xv, Y,
            epochs=[job.options["epochs"] for job in jobs],
            batch_size=[job.options["batch_size"] for job in jobs],
            subsets=[entry[2] for entry in together],
            sample_weight=[entry[4] for entry in together], n_threads=n_threads, **options)
    except (ValueError, TypeError):
        # Network.fit's checks of one network's data, which all run before
        # any training, refused it: each fit alone then raises its own error.
        alone.extend((k, est, None, job) for k, est, _, job, _ in together)
        return
    for (k, est, _, job, _), history in zip(together, histories):
        if history.diverged:
            errors[k] = DivergenceError(f"{_NONFINITE} (training diverged in epoch "
                                        f"{len(history.loss) + 1})")
        else:
            est._finish_stochastic(job, history.loss, history.val_score, False)


# ---------------------------------------------------------------- the search

def fit_and_score(base: _BaseMLP, candidates: Sequence[Dict[str, Any]], X: Any, y: Any,
                  splits: Sequence[Tuple[Any, Any]], tasks: Sequence[Tuple[int, int]],
                  scorer: Callable, sample_weight: Any = None, n_threads: Optional[int] = None,
                  error_score: Any = np.nan) -> Dict[str, np.ndarray]:
    """Train and score (candidate, fold) tasks of a search, the training in one
    ``fit_many`` call.

    Task ``(c, f)`` fits ``clone(base).set_params(**candidates[c])`` on the
    rows ``splits[f][0]`` and scores it with ``scorer(estimator, X_test,
    y_test)`` on the rows ``splits[f][1]`` (with their ``sample_weight``
    where the scorer takes weights). Any slice of a search's tasks may be
    given: the result depends on the task alone.

    Returns
    -------
    dict of arrays, one entry per task
        ``test_score``, ``fit_time``, ``score_time``, and ``error`` (the
        message of a fit or score that failed, else "").
    """
    estimators = [clone(base).set_params(**clone(candidates[c], safe=False)) for c, _ in tasks]
    subsets = [splits[f][0] for _, f in tasks]
    errors, fit_times = fit_estimators(estimators, X, y, subsets, sample_weight, n_threads)
    X, y, sample_weight = indexable(X, y, sample_weight)
    weighted = sample_weight is not None and _takes_weights(scorer)
    n_tasks = len(tasks)
    scores = np.empty(n_tasks)
    score_times = np.zeros(n_tasks)
    messages = [""] * n_tasks
    tests: Dict[int, Tuple[Any, Any, Dict[str, Any]]] = {}
    for i, ((_, f), est, error) in enumerate(zip(tasks, estimators, errors)):
        if error is None:
            if f not in tests:
                test = splits[f][1]
                tests[f] = (_safe_indexing(X, test), _safe_indexing(y, test),
                            {"sample_weight": _safe_indexing(sample_weight, test)}
                            if weighted else {})
            X_test, y_test, weights = tests[f]
            start = time.perf_counter()
            try:
                score = scorer(est, X_test, y_test, **weights)
                if not isinstance(score, numbers.Real):
                    raise ValueError(f"scoring must return a number, got {score!r} "
                                     f"({type(score).__name__})")
                scores[i] = float(score)
            except Exception as exc:
                error = exc
            score_times[i] = time.perf_counter() - start
        if error is not None:
            if isinstance(error_score, str) and error_score == "raise":
                raise error
            scores[i] = error_score
            messages[i] = f"{type(error).__name__}: {error}"
    return {"test_score": scores, "fit_time": np.asarray(fit_times),
            "score_time": score_times, "error": np.asarray(messages, dtype=object)}


def _score_slice(data, base, candidates, tasks, scorer, n_jobs, error_score):
    """fit_and_score on a Dask worker, with its share of the worker's
    threads; the result names the tasks it scored."""
    X, y, sample_weight, splits = data
    out = fit_and_score(base, candidates, X, y, splits, tasks, scorer, sample_weight,
                        worker_threads(n_jobs), error_score)
    return list(tasks), out


def _fit_and_score_on(client, base, candidates, X, y, splits, tasks, scorer, sample_weight,
                      n_jobs, error_score) -> Dict[str, np.ndarray]:
    """fit_and_score's result for all ``tasks``, their slices trained on the
    cluster of ``client``; checked whole: every task scored exactly once."""
    parts = slices(len(tasks), client)
    outs = run_slices(client, _score_slice, (X, y, sample_weight, splits),
                      [(base, candidates, [tasks[i] for i in part], scorer, n_jobs,
                        error_score) for part in parts], "search")
    where = {task: i for i, task in enumerate(tasks)}
    n_tasks = len(tasks)
    seen = np.zeros(n_tasks, dtype=np.intp)
    whole: Dict[str, np.ndarray] = {}
    for scored, out in outs:
        if any(task not in where for task in scored):
            raise LostWorkError("a slice of the search returned fits it was not given")
        rows = [where[task] for task in scored]
        for key, values in out.items():
            if len(values) != len(rows):
                raise LostWorkError(f"a slice of the search returned {len(values)} {key} "
                                    f"values for its {len(rows)} fits")
            if key not in whole:
                whole[key] = np.empty(n_tasks, dtype=values.dtype)
            whole[key][rows] = values
        np.add.at(seen, rows, 1)
    if not (seen == 1).all():
        raise LostWorkError(f"the cluster returned {int((seen == 0).sum())} of the search's "
                            f"{n_tasks} fits unscored and {int((seen > 1).sum())} scored more "
                            "than once")
    return whole


def _takes_weights(scorer) -> bool:
    """Whether the scorer weighs samples: then a weighted search scores its
    test folds with their weights, as current scikit-learn's GridSearchCV
    does."""
    accepts = getattr(scorer, "_accept_sample_weight", None)
    if accepts is not None:
        return bool(accepts())
    try:
        return "sample_weight" in inspect.signature(scorer).parameters
    except (TypeError, ValueError):
        return False


def _check_n_jobs(n_jobs) -> Optional[int]:
    """n_jobs as fit_many's n_threads: None and -1 for all threads."""
    if n_jobs is None or (_is_int(n_jobs) and n_jobs == -1):
        return None
    if not _is_int(n_jobs) or n_jobs < 1:
        raise ValueError(f"n_jobs must be None, -1 or an integer >= 1, got {n_jobs!r}")
    return int(n_jobs)


def _base_params(est, base_cls) -> Dict[str, Any]:
    return {name: getattr(est, name) for name in base_cls._get_param_names()}


class _MLPSearchCV(_ParamNamesOnce, BaseEstimator):
    """The grid search shared by MLPClassifierCV and MLPRegressorCV."""

    _base_cls: Any = None
    best_estimator_: _BaseMLP
    cv_results_: Dict[str, Any]

    def _base(self) -> _BaseMLP:
        return self._base_cls(**_base_params(self, self._base_cls))

    def _candidates(self, base) -> List[Dict[str, Any]]:
        grid = self.param_grid
        if grid is None:
            return [{}]
        grids = [grid] if isinstance(grid, Mapping) else grid
        if (isinstance(grids, (str, bytes)) or not isinstance(grids, (Sequence, np.ndarray))
                or len(grids) == 0):
            raise ValueError(f"param_grid must be a dict of lists or a non-empty list of such "
                             f"dicts, got {grid!r}")
        valid = base.get_params(deep=False)
        for g in grids:
            if not isinstance(g, Mapping):
                raise TypeError(f"param_grid: each grid must be a dict of lists, got {g!r}")
            for name, values in g.items():
                if name not in valid:
                    raise ValueError(
                        f"param_grid names {name!r}, which is not a parameter of "
                        f"{type(base).__name__}; its parameters are "
                        f"{', '.join(sorted(valid))}")
                if (isinstance(values, (str, bytes))
                        or not isinstance(values, (Sequence, np.ndarray)) or len(values) == 0):
                    raise ValueError(f"param_grid[{name!r}] must be a non-empty list of "
                                     f"values, got {values!r}")
        return list(ParameterGrid(grids))

    def _scorer(self, base):
        scoring = self.scoring
        if not (scoring is None or isinstance(scoring, str) or callable(scoring)):
            raise TypeError(f"scoring must be None, a scorer name or a callable scorer("
                            f"estimator, X, y), got {scoring!r}")
        return check_scoring(base, scoring=scoring)

    def fit(self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None):
        """Fit every candidate on every fold, then refit the best on all the data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to each fit, and to the scorer of each test fold where it
            takes weights.
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self
        """
        if not isinstance(self.refit, (bool, np.bool_)):
            raise TypeError(f"refit must be True or False, got {self.refit!r}")
        if not (isinstance(self.error_score, numbers.Real)
                or (isinstance(self.error_score, str) and self.error_score == "raise")):
            raise ValueError(f"error_score must be 'raise' or a number, got "
                             f"{self.error_score!r}")
        n_threads = _check_n_jobs(self.n_jobs)
        base = self._base()
        candidates = self._candidates(base)
        scorer = self._scorer(base)
        # The data's checks once, here; the fits take the caller's X (a
        # data frame stays one for them, as in GridSearchCV).
        validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                      y_numeric=not is_classifier(self))
        if is_classifier(self):
            check_classification_targets(y)
        X, y, groups = indexable(X, y, groups)
        cv = check_cv(self.cv, y, classifier=is_classifier(self))
        splits = list(cv.split(X, y, groups))
        n_splits = len(splits)
        tasks = [(c, f) for c in range(len(candidates)) for f in range(n_splits)]
        client = active_client()
        if client is None:
            out = fit_and_score(base, candidates, X, y, splits, tasks, scorer, sample_weight,
                                n_threads, self.error_score)
        else:
            out = _fit_and_score_on(client, base, candidates, X, y, splits, tasks, scorer,
                                    sample_weight, n_threads, self.error_score)
        failed = out["error"] != ""
        if failed.all():
            raise ValueError(f"all {len(tasks)} fits failed; the errors: "
                             + "; ".join(sorted(set(out["error"]))))
        if failed.any():
            warnings.warn(f"{failed.sum()} of the {len(tasks)} fits failed and score "
                          f"error_score={self.error_score!r}; the errors: "
                          + "; ".join(sorted(set(out["error"][failed]))), FitFailedWarning,
                          stacklevel=2)
        self.cv_results_ = _cv_results(candidates, out, len(candidates), n_splits)
        self.n_splits_ = n_splits
        self.best_index_ = int(self.cv_results_["rank_test_score"].argmin())
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        self.best_params_ = candidates[self.best_index_]
        self.scorer_ = scorer
        if self.refit:
            start = time.perf_counter()
            best = clone(base).set_params(**clone(self.best_params_, safe=False))
            best.fit(X, y, sample_weight=sample_weight)
            self.refit_time_ = time.perf_counter() - start
            self.best_estimator_ = best
            self.n_iter_ = best.n_iter_
            if is_classifier(self):
                self.classes_ = best.classes_
        return self

    def _check_refit(self, method: str) -> bool:
        check_is_fitted(self, "cv_results_")
        if not self.refit:
            raise NotFittedError(f"This {type(self).__name__} was fitted with refit=False: "
                                 f"{method} needs the best estimator refitted on all the "
                                 "data (refit=True).")
        return True

    def predict(self, X: Any) -> np.ndarray:
        """``best_estimator_.predict(X)``."""
        self._check_refit("predict")
        return self.best_estimator_.predict(X)

    def score(self, X: Any, y: Any) -> float:
        """The ``scoring`` score (the estimator's own score by default) of
        ``best_estimator_`` on (X, y)."""
        self._check_refit("score")
        return float(self.scorer_(self.best_estimator_, X, y))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        base_tags = self._base_cls().__sklearn_tags__()
        tags.input_tags.sparse = base_tags.input_tags.sparse
        tags.target_tags.multi_output = base_tags.target_tags.multi_output
        if tags.classifier_tags is not None and base_tags.classifier_tags is not None:
            tags.classifier_tags.multi_label = base_tags.classifier_tags.multi_label
        return tags


def _cv_results(candidates, out, n_candidates, n_splits) -> Dict[str, Any]:
    """GridSearchCV's ``cv_results_`` layout: one entry per candidate."""
    results: Dict[str, Any] = {}
    for key in ("fit_time", "score_time"):
        values = out[key].reshape(n_candidates, n_splits)
        results[f"mean_{key}"] = values.mean(axis=1)
        results[f"std_{key}"] = values.std(axis=1)
    names = sorted({name for c in candidates for name in c})
    for name in names:
        column = np.ma.MaskedArray(np.empty(n_candidates, dtype=object),
                                   mask=[name not in c for c in candidates])
        for i, c in enumerate(candidates):
            if name in c:
                column[i] = c[name]
        results[f"param_{name}"] = column
    results["params"] = list(candidates)
    scores = out["test_score"].reshape(n_candidates, n_splits)
    for f in range(n_splits):
        results[f"split{f}_test_score"] = scores[:, f].copy()
    means = scores.mean(axis=1)
    results["mean_test_score"] = means
    results["std_test_score"] = np.sqrt(((scores - means[:, None]) ** 2).mean(axis=1))
    # Candidates with a failed fit (NaN) rank after all the others.
    ranked = np.where(np.isnan(means), -np.inf, means)
    results["rank_test_score"] = rankdata(-ranked, method="min").astype(np.int32)
    return results


_SEARCH_DOC = """

    Parameters
    ----------
    hidden_layer_sizes, activation, ... : as for :class:`{base}`
        Every parameter of :class:`{base}`, the starting point of each
        candidate.
    param_grid : dict of lists, list of such dicts, or None, default=None
        Values to try for parameters of :class:`{base}`, as GridSearchCV
        takes them; every combination is a candidate. None tries only the
        parameters above.
    cv : int, cross-validation splitter or iterable, default=None
        None for 5 folds; an int for that many ({folds}).
    scoring : str, callable or None, default=None
        None scores with the estimator's own ``score`` ({score}); a
        scikit-learn scorer name or a callable ``scorer(estimator, X, y)``
        otherwise.
    refit : bool, default=True
        Fit the best candidate on all the data (``best_estimator_``), which
        ``predict`` and ``score`` then use.
    n_jobs : int or None, default=None
        Threads that train the networks (None or -1: all the kernel may use).
        Inside ``joblib.parallel_backend("dask")`` the fits are split into
        slices trained on the cluster's workers, each slice on its share of
        its worker's threads (at most ``n_jobs``); the results are the same.
    error_score : "raise" or float, default=np.nan
        The score of a fit that fails (a network that diverged, say), with a
        FitFailedWarning; "raise" raises its error instead.

    Attributes
    ----------
    cv_results_ : dict of arrays
        One entry per candidate: ``params``, ``param_<name>`` (masked
        arrays), ``split<k>_test_score``, ``mean_test_score``,
        ``std_test_score``, ``rank_test_score``, ``mean_fit_time``,
        ``std_fit_time``, ``mean_score_time``, ``std_score_time``. The
        networks trained together share their call's time equally.
    best_index_, best_score_, best_params_ :
        The candidate ranked first (the first of equals).
    best_estimator_ : {base}
        With ``refit=True``.
    n_iter_ : int
        ``best_estimator_.n_iter_``, with ``refit=True``.
    refit_time_ : float
    scorer_ : callable
    n_splits_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had column names.{extra}
    """


class MLPClassifierCV(ClassifierMixin, _MLPSearchCV):
    """:class:`MLPClassifier` with a cross-validated grid search over its parameters.

    The same search as ``GridSearchCV(MLPClassifier(...), param_grid, cv=cv,
    scoring=scoring)`` — the same folds, the same fits, the same scores —
    with every sgd and adam fit of the search (each candidate on each fold)
    trained in one ``backprop_fast.fit_many`` call; lbfgs candidates fit one
    by one."""

    __doc__ += _SEARCH_DOC.format(
        base="MLPClassifier", folds="stratified for binary and multi-class targets",
        score="accuracy", extra="\n    classes_ : ndarray\n        With ``refit=True``.")
    _base_cls = MLPClassifier
    score = _MLPSearchCV.score  # the scorer's, not ClassifierMixin's accuracy

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dtype=None, class_weight=None,
                 n_threads=None, param_grid=None, cv=None, scoring=None, refit=True,
                 n_jobs=None, error_score=np.nan):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.class_weight = class_weight
        self.n_threads = n_threads
        self.param_grid = param_grid
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.n_jobs = n_jobs
        self.error_score = error_score

    @available_if(lambda est: est._check_refit("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """``best_estimator_.predict_proba(X)``."""
        return self.best_estimator_.predict_proba(X)

    @available_if(lambda est: est._check_refit("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``best_estimator_.predict_log_proba(X)``."""
        return self.best_estimator_.predict_log_proba(X)


class MLPRegressorCV(RegressorMixin, _MLPSearchCV):
    """:class:`MLPRegressor` with a cross-validated grid search over its parameters.

    The same search as ``GridSearchCV(MLPRegressor(...), param_grid, cv=cv,
    scoring=scoring)``, with every sgd and adam fit of the search trained in
    one ``backprop_fast.fit_many`` call; lbfgs candidates fit one by one."""

    __doc__ += _SEARCH_DOC.format(base="MLPRegressor", folds="KFold, not shuffled",
                                  score="R^2", extra="")
    _base_cls = MLPRegressor
    score = _MLPSearchCV.score  # the scorer's, not RegressorMixin's R^2

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error",
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dtype=None, n_threads=None,
                 param_grid=None, cv=None, scoring=None, refit=True, n_jobs=None,
                 error_score=np.nan):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads
        self.param_grid = param_grid
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.n_jobs = n_jobs
        self.error_score = error_score


# ---------------------------------------------------------------- ensembles

class _MLPEnsemble(_ParamNamesOnce, BaseEstimator):
    """What the two ensembles share: members drawn, trained in one call."""

    _base_cls: Any = None
    estimators_: List[_BaseMLP]

    def fit(self, X: Any, y: Any, sample_weight: Any = None):
        """Fit the ``n_estimators`` networks.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        if not _is_int(self.n_estimators) or self.n_estimators < 1:
            raise ValueError(f"n_estimators must be an integer >= 1, got "
                             f"{self.n_estimators!r}")
        if not isinstance(self.bootstrap, (bool, np.bool_)):
            raise TypeError(f"bootstrap must be True or False, got {self.bootstrap!r}")
        n_threads = _check_n_jobs(self.n_jobs)
        validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                      y_numeric=not is_classifier(self))
        X, y = indexable(X, y)
        if is_classifier(self):
            check_classification_targets(y)
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        n = _num_samples(X)
        rs = check_random_state(self.random_state)
        seeds = rs.randint(np.iinfo(np.int32).max, size=self.n_estimators)
        subsets = ([rs.randint(0, n, n) for _ in range(self.n_estimators)] if self.bootstrap
                   else [None] * self.n_estimators)
        base = self._base_cls(**_base_params(self, self._base_cls))
        members = [clone(base).set_params(random_state=int(seed)) for seed in seeds]
        client = active_client()
        if client is None:
            errors, _ = fit_estimators(members, X, y, subsets, sample_weight, n_threads)
        else:
            members, errors = _fit_estimators_on(client, members, X, y, subsets,
                                                 sample_weight, n_threads)
        for error in errors:
            if error is not None:
                raise error
        self.estimators_ = members
        self.n_iter_ = np.array([member.n_iter_ for member in members])
        self.estimators_seeds_ = seeds
        if self.bootstrap:
            self.estimators_samples_ = subsets
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        base_tags = self._base_cls().__sklearn_tags__()
        tags.input_tags.sparse = base_tags.input_tags.sparse
        tags.target_tags.multi_output = base_tags.target_tags.multi_output
        if tags.classifier_tags is not None and base_tags.classifier_tags is not None:
            tags.classifier_tags.multi_label = base_tags.classifier_tags.multi_label
        return tags


def _fit_slice(data, members, subsets, n_jobs, which):
    """fit_estimators on a Dask worker: ``which`` (the members' places in
    the ensemble), the fitted members and their errors."""
    X, y, sample_weight = data
    errors, _ = fit_estimators(members, X, y, subsets, sample_weight, worker_threads(n_jobs))
    return which, members, errors


def _fit_estimators_on(client, members, X, y, subsets, sample_weight, n_jobs):
    """The members fitted on the cluster of ``client`` (copies of them, as
    they come back from the workers) and their errors; checked whole: every
    member fitted exactly once."""
    count = len(members)
    parts = slices(count, client)
    outs = run_slices(client, _fit_slice, (X, y, sample_weight),
                      [([members[i] for i in part], [subsets[i] for i in part], n_jobs, part)
                       for part in parts], "ensemble")
    fitted: List[Any] = [None] * count
    errors: List[Optional[Exception]] = [None] * count
    seen = np.zeros(count, dtype=np.intp)
    for which, got, errs in outs:
        if len(got) != len(which) or len(errs) != len(which):
            raise LostWorkError(f"a slice of the ensemble returned {len(got)} members for "
                                f"its {len(which)}")
        for i, member, error in zip(which, got, errs):
            fitted[i], errors[i] = member, error
        np.add.at(seen, which, 1)
    if not (seen == 1).all():
        raise LostWorkError(f"the cluster returned {int((seen == 0).sum())} of the "
                            f"ensemble's {count} members unfitted and "
                            f"{int((seen > 1).sum())} fitted more than once")
    return fitted, errors


_ENSEMBLE_DOC = """

    Parameters
    ----------
    hidden_layer_sizes, activation, ... : as for :class:`{base}`
        Every parameter of :class:`{base}`, shared by the members, but
        ``random_state``, which seeds the ensemble: it draws each member's
        seed, and with ``bootstrap`` its sample.
    n_estimators : int, default=10
        Networks in the ensemble.
    bootstrap : bool, default=False
        Train each network on a bootstrap sample of the rows (n rows drawn
        with replacement) rather than on all of them.
    n_jobs : int or None, default=None
        Threads that train the networks (None or -1: all the kernel may use).
        Inside ``joblib.parallel_backend("dask")`` the members are split into
        slices trained on the cluster's workers, each slice on its share of
        its worker's threads (at most ``n_jobs``); the members are the same.

    Attributes
    ----------
    estimators_ : list of {base}
        The members: member k is ``{base}(**params, random_state=
        estimators_seeds_[k])`` fitted on the rows ``estimators_samples_[k]``
        (all rows without ``bootstrap``), just as a fit of it alone.
    estimators_seeds_ : ndarray of int
    n_iter_ : ndarray of int
        Each member's ``n_iter_``.
    estimators_samples_ : list of ndarray
        With ``bootstrap``: each member's rows.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had column names.{extra}

    Notes
    -----
    The names follow scikit-learn's for ensembles (``estimators_``,
    ``n_estimators``, ``bootstrap``, ``estimators_samples_``, the task last
    in the class name); "Ensemble" rather than "Bagging", as the members
    differ by their seeds unless ``bootstrap`` is set.
    """


class MLPEnsembleClassifier(ClassifierMixin, _MLPEnsemble):
    """An average of :class:`MLPClassifier` networks from different seeds or bootstraps.

    All the members train in one ``backprop_fast.fit_many`` call (lbfgs
    members one by one). ``predict_proba`` averages the members'
    probabilities; ``predict`` takes the most probable class (for
    multi-label targets, each label whose averaged probability exceeds
    0.5)."""

    __doc__ += _ENSEMBLE_DOC.format(base="MLPClassifier",
                                    extra="\n    classes_ : ndarray")
    _base_cls = MLPClassifier

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dtype=None, class_weight=None,
                 n_threads=None, n_estimators=10, bootstrap=False, n_jobs=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.class_weight = class_weight
        self.n_threads = n_threads
        self.n_estimators = n_estimators
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs

    def predict_proba(self, X: Any) -> np.ndarray:
        """The members' ``predict_proba``, averaged; columns in the order of
        ``classes_`` (a member whose bootstrap sample missed a class gives
        it probability 0)."""
        check_is_fitted(self, "estimators_")
        total = None
        for member in self.estimators_:
            p = member.predict_proba(X)
            if self._label_binarizer.y_type_ in ("binary", "multiclass"):
                p = self._align(member, p)
            total = p.astype(np.float64) if total is None else total + p
        assert total is not None
        return total / len(self.estimators_)

    def _align(self, member, p):
        mine = np.asarray(member.classes_)
        if mine.shape == self.classes_.shape and np.array_equal(mine, self.classes_):
            return p
        aligned = np.zeros((p.shape[0], len(self.classes_)))
        where = np.searchsorted(self.classes_, mine)
        if len(mine) == 1:
            aligned[:, where[0]] = 1.0  # a member that saw one class predicts it
        else:
            aligned[:, where] = p
        return aligned

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of ``predict_proba(X)``."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def predict(self, X: Any) -> np.ndarray:
        """The class of the largest averaged probability."""
        proba = self.predict_proba(X)
        if self._label_binarizer.y_type_.startswith("multilabel"):
            return self._label_binarizer.inverse_transform(proba)
        return self.classes_[proba.argmax(axis=1)]


class MLPEnsembleRegressor(RegressorMixin, _MLPEnsemble):
    """An average of :class:`MLPRegressor` networks from different seeds or bootstraps.

    All the members train in one ``backprop_fast.fit_many`` call (lbfgs
    members one by one); ``predict`` averages their predictions."""

    __doc__ += _ENSEMBLE_DOC.format(base="MLPRegressor", extra="")
    _base_cls = MLPRegressor

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error",
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dtype=None, n_threads=None,
                 n_estimators=10, bootstrap=False, n_jobs=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads
        self.n_estimators = n_estimators
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs

    def predict(self, X: Any) -> np.ndarray:
        """The members' predictions, averaged."""
        check_is_fitted(self, "estimators_")
        total = None
        for member in self.estimators_:
            p = member.predict(X)
            total = p.astype(np.float64) if total is None else total + p
        assert total is not None
        return total / len(self.estimators_)
