"""MLPClassifierCV / MLPRegressorCV and the MLP ensembles: the same results as
GridSearchCV and as fits one by one, with the networks trained by fit_many."""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sk_nn  # noqa: E402
from sklearn.base import clone, is_classifier  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning, NotFittedError  # noqa: E402
from sklearn.metrics import make_scorer, mean_absolute_error  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import backprop_fast  # noqa: E402
from backprop_fast import _search  # noqa: E402
from backprop_fast import sklearn as _sklearn  # noqa: E402
from backprop_fast.network import Network  # noqa: E402
from backprop_fast.sklearn import (  # noqa: E402
    MLPClassifier,
    MLPClassifierCV,
    MLPEnsembleClassifier,
    MLPEnsembleRegressor,
    MLPRegressor,
    MLPRegressorCV,
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture
def calls(monkeypatch):
    """Counts fit_many calls, the networks in them, and the single fits of
    an estimator (its sgd/adam path) or of Network.fit."""
    seen = {"fit_many": [], "fit": 0}
    original_many = _search.fit_many
    original_fit = Network.fit
    original_alone = _sklearn._run_fits

    def many(networks, *args, **kwargs):
        seen["fit_many"].append(len(networks))
        return original_many(networks, *args, **kwargs)

    def fit(self, *args, **kwargs):
        seen["fit"] += 1
        return original_fit(self, *args, **kwargs)

    def alone(runs, n_threads):
        seen["fit"] += len(runs)
        return original_alone(runs, n_threads)

    monkeypatch.setattr(_search, "fit_many", many)
    monkeypatch.setattr(Network, "fit", fit)
    monkeypatch.setattr(_sklearn, "_run_fits", alone)
    return seen


def _classification(n=90):
    X, y = make_classification(n, 6, n_informative=4, n_redundant=0, n_classes=3,
                               random_state=0)
    return X, y


def _regression(n=90):
    X, y = make_regression(n, 5, n_informative=4, noise=5.0, random_state=0)
    return X, y / np.abs(y).max()


def _assert_same_results(ours, theirs, atol=1e-9):
    results, expected = ours.cv_results_, theirs.cv_results_
    assert results["params"] == expected["params"]
    for key in ["mean_test_score", "std_test_score"] + [
            f"split{k}_test_score" for k in range(theirs.n_splits_)]:
        np.testing.assert_allclose(results[key], expected[key], rtol=0, atol=atol,
                                   err_msg=key)
    np.testing.assert_array_equal(results["rank_test_score"], expected["rank_test_score"])
    for key in expected:
        if key.startswith("param_"):
            assert np.array_equal(results[key].mask, expected[key].mask), key
            assert list(results[key].compressed()) == list(expected[key].compressed()), key
    assert ours.best_index_ == theirs.best_index_
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_score_ == pytest.approx(theirs.best_score_, abs=atol)
    assert ours.n_splits_ == theirs.n_splits_


BASE = dict(hidden_layer_sizes=(6,), max_iter=25, random_state=0, batch_size=16)


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_cv_results_equal_grid_search(task, solver, early_stopping, calls):
    if task == "classifier":
        (X, y), cls, cv_cls = _classification(), MLPClassifier, MLPClassifierCV
    else:
        (X, y), cls, cv_cls = _regression(), MLPRegressor, MLPRegressorCV
    params = dict(BASE, solver=solver, early_stopping=early_stopping, n_iter_no_change=3)
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [0.003, 0.05]}
    ours = cv_cls(**params, param_grid=grid, cv=3).fit(X, y)
    # All 12 fits of the search in one call; Network.fit only for the refit.
    assert calls["fit_many"] == [12] and calls["fit"] == 1
    theirs = GridSearchCV(cls(**params), grid, cv=3).fit(X, y)
    _assert_same_results(ours, theirs)
    # Not a constant: the candidates do differ.
    assert len(set(ours.cv_results_["mean_test_score"])) > 1
    best = cls(**params).set_params(**ours.best_params_).fit(X, y)
    for a, b in zip(ours.best_estimator_.coefs_, best.coefs_):
        np.testing.assert_array_equal(a, b)
    assert ours.best_estimator_.n_iter_ == best.n_iter_
    np.testing.assert_array_equal(ours.predict(X), best.predict(X))
    # score is the scorer's, as GridSearchCV's is.
    assert ours.score(X, y) == theirs.score(X, y)
    assert ours.score(X, y) == pytest.approx(best.score(X, y), rel=1e-12)
    if task == "classifier":
        np.testing.assert_array_equal(ours.predict_proba(X), best.predict_proba(X))
        np.testing.assert_array_equal(ours.classes_, best.classes_)


def test_list_of_grids_with_an_lbfgs_candidate(calls):
    X, y = _classification()
    grid = [{"solver": ["lbfgs"], "alpha": [1e-3, 1e-1]},
            {"solver": ["adam"], "learning_rate_init": [0.01, 0.05]},
            {"solver": ["sgd"], "momentum": [0.0, 0.9], "early_stopping": [True]}]
    ours = MLPClassifierCV(**BASE, param_grid=grid, cv=3).fit(X, y)
    # The adam and sgd candidates' 12 fits together; lbfgs by itself.
    assert calls["fit_many"] == [12]
    theirs = GridSearchCV(MLPClassifier(**BASE), grid, cv=3).fit(X, y)
    _assert_same_results(ours, theirs)
    results = ours.cv_results_
    assert list(results["param_alpha"].mask) == [False, False] + [True] * 4
    assert results["param_solver"][0] == "lbfgs" and results["param_momentum"][5] == 0.9


def test_against_scikit_learns_own_mlp():
    """Where single fits agree with sklearn.neural_network.MLPClassifier (full
    batches, no L2, no shuffling), so does the search."""
    X, y = _classification(60)
    params = dict(hidden_layer_sizes=(5,), batch_size=40, shuffle=False, random_state=3,
                  max_iter=40, solver="sgd", alpha=0.0)
    grid = {"learning_rate_init": [0.05, 0.3], "momentum": [0.0, 0.5]}
    ours = MLPClassifierCV(**params, param_grid=grid, cv=3, scoring="neg_log_loss").fit(X, y)
    theirs = GridSearchCV(sk_nn.MLPClassifier(**params), grid, cv=3,
                          scoring="neg_log_loss").fit(X, y)
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"],
                               theirs.cv_results_["mean_test_score"], rtol=1e-10)
    assert ours.best_params_ == theirs.best_params_


@pytest.mark.parametrize("scoring", ["neg_log_loss", "balanced_accuracy", "f1_macro",
                                     make_scorer(mean_absolute_error, greater_is_better=False)])
def test_scoring(scoring):
    X, y = _classification()
    grid = {"learning_rate_init": [0.005, 0.05]}
    ours = MLPClassifierCV(**BASE, param_grid=grid, cv=3, scoring=scoring).fit(X, y)
    theirs = GridSearchCV(MLPClassifier(**BASE), grid, cv=3, scoring=scoring).fit(X, y)
    _assert_same_results(ours, theirs)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e-12)


def test_regressor_scoring_weights_and_groups():
    from sklearn.model_selection._search import BaseSearchCV
    if not hasattr(BaseSearchCV, "_check_scorers_accept_sample_weight"):
        pytest.skip("this scikit-learn's GridSearchCV scores test folds unweighted")
    X, y = _regression()
    w = np.random.RandomState(0).uniform(0.2, 2.0, X.shape[0])
    groups = np.arange(X.shape[0]) % 4
    grid = {"alpha": [1e-4, 1e-2], "batch_size": [8, 30]}
    from sklearn.model_selection import GroupKFold
    ours = MLPRegressorCV(**dict(BASE, solver="sgd"), param_grid=grid, cv=GroupKFold(4),
                          scoring="neg_mean_squared_error")
    ours.fit(X, y, sample_weight=w, groups=groups)
    theirs = GridSearchCV(MLPRegressor(**dict(BASE, solver="sgd")), grid, cv=GroupKFold(4),
                          scoring="neg_mean_squared_error")
    theirs.fit(X, y, sample_weight=w, groups=groups)
    _assert_same_results(ours, theirs)


def test_sparse_X_dtypes_and_architectures_in_one_call(calls):
    import scipy.sparse as sp
    X, y = _classification()
    X = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X))
    grid = {"dtype": ["float32", "float64"], "early_stopping": [False, True],
            "hidden_layer_sizes": [(6,), (5, 3)]}
    ours = MLPClassifierCV(**BASE, param_grid=grid, cv=3).fit(X, y)
    assert calls["fit_many"] == [24]
    theirs = GridSearchCV(MLPClassifier(**BASE), grid, cv=3).fit(X, y)
    _assert_same_results(ours, theirs)
    assert ours.best_estimator_.network_.dtype == np.dtype(ours.best_params_["dtype"])


def test_folds_missing_a_class_train_alone(calls):
    """Unshuffled folds of sorted labels: a fold lacks a class, so its network
    has another output layer and trains outside the shared call."""
    X, y = _classification()
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]
    grid = {"learning_rate_init": [0.01, 0.05]}
    ours = MLPClassifierCV(**BASE, param_grid=grid, cv=KFold(3)).fit(X, y)
    theirs = GridSearchCV(MLPClassifier(**BASE), grid, cv=KFold(3)).fit(X, y)
    _assert_same_results(ours, theirs)
    assert sum(calls["fit_many"]) < 6 and calls["fit"] > 1


def test_a_diverging_candidate_scores_nan_as_in_grid_search():
    X, y = _regression()
    params = dict(BASE, solver="sgd", momentum=0.0)
    grid = {"learning_rate_init": [0.01, 1e3]}
    with pytest.warns(FitFailedWarning, match="non-finite"):
        ours = MLPRegressorCV(**params, param_grid=grid, cv=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = GridSearchCV(MLPRegressor(**params), grid, cv=3).fit(X, y)
    means = theirs.cv_results_["mean_test_score"]
    assert np.isfinite(means[0]) and np.isnan(means[1])
    _assert_same_results(ours, theirs)
    assert ours.best_index_ == 0 and list(ours.cv_results_["rank_test_score"]) == [1, 2]
    with pytest.raises(ValueError, match="non-finite"):
        MLPRegressorCV(**params, param_grid=grid, cv=3, error_score="raise").fit(X, y)
    with pytest.raises(ValueError, match="all 3 fits failed"):
        MLPRegressorCV(**params, param_grid={"learning_rate_init": [1e3]}, cv=3).fit(X, y)


def test_any_slice_of_tasks_scores_as_in_the_whole_search():
    """fit_and_score on part of a search's (candidate, fold) tasks gives those
    tasks' scores of the whole: the search may be split over workers."""
    X, y = _classification()
    search = MLPClassifierCV(**BASE, param_grid={"alpha": [1e-4, 1e-2, 1e-1]}, cv=3).fit(X, y)
    base = MLPClassifier(**BASE)
    splits = list(sklearn.model_selection.StratifiedKFold(3).split(X, y))
    candidates = search.cv_results_["params"]
    tasks = [(c, f) for c in range(3) for f in range(3)]
    scorer = search.scorer_
    parts = [_search.fit_and_score(base, candidates, X, y, splits, part, scorer)
             for part in (tasks[:4], tasks[4:7], tasks[7:])]
    scores = np.concatenate([p["test_score"] for p in parts]).reshape(3, 3)
    for f in range(3):
        np.testing.assert_array_equal(scores[:, f], search.cv_results_[f"split{f}_test_score"])


def test_refit_false_and_default_grid():
    X, y = _classification()
    search = MLPClassifierCV(**BASE, refit=False, cv=2).fit(X, y)
    assert search.cv_results_["params"] == [{}] and search.best_params_ == {}
    assert not hasattr(search, "best_estimator_")
    with pytest.raises(NotFittedError, match="refit=False"):
        search.predict(X)
    assert not hasattr(search, "predict_proba")


@pytest.mark.parametrize("grid, error, message", [
    ([], ValueError, "non-empty list"),
    ({"alpha": []}, ValueError, r"param_grid\['alpha'\] must be a non-empty list"),
    ({"alpha": 0.1}, ValueError, r"param_grid\['alpha'\] must be a non-empty list"),
    ({"learning_rate_initial": [0.1]}, ValueError,
     "'learning_rate_initial', which is not a parameter of MLPClassifier"),
    ([{"alpha": [0.1]}, {"param_grid": [None]}], ValueError, "'param_grid', which is not"),
    (["alpha"], TypeError, "each grid must be a dict"),
])
def test_bad_grids(grid, error, message):
    X, y = _classification(30)
    with pytest.raises(error, match=message):
        MLPClassifierCV(**BASE, param_grid=grid, cv=2).fit(X, y)


@pytest.mark.parametrize("params, error, message", [
    (dict(scoring=["accuracy", "f1_macro"]), TypeError, "scoring"),
    (dict(n_jobs=0), ValueError, "n_jobs"),
    (dict(refit="yes"), TypeError, "refit"),
    (dict(error_score="ignore"), ValueError, "error_score"),
])
def test_bad_search_parameters(params, error, message):
    X, y = _classification(30)
    with pytest.raises(error, match=message):
        MLPClassifierCV(**BASE, cv=2, **params).fit(X, y)


# ---------------------------------------------------------------- training together

FITTED = ("loss_curve_", "loss_", "best_loss_", "validation_scores_", "best_validation_score_",
          "n_iter_", "t_", "_learning_rate", "_no_improvement_count", "n_features_in_",
          "n_outputs_", "out_activation_")


def test_fit_estimators_equal_fits_alone(calls):
    """Every fitted attribute of estimators trained together equals that of
    the same estimator fitted alone on its rows, option by option."""
    X, y = _classification(120)
    Xr, yr = _regression(120)
    Y2 = np.column_stack([yr, yr ** 2])
    rng = np.random.RandomState(0)
    w = rng.uniform(0.5, 2.0, 120)
    cases = [
        (MLPClassifier(**dict(BASE, solver="sgd", learning_rate="invscaling", momentum=0.5,
                              nesterovs_momentum=False, learning_rate_init=0.2)), X, y),
        (MLPClassifier(**dict(BASE, solver="sgd", learning_rate="adaptive", tol=0.05,
                              n_iter_no_change=2, early_stopping=True, max_iter=40)), X, y),
        (MLPClassifier(**dict(BASE, early_stopping=True, validation_fraction=0.2,
                              class_weight="balanced", learning_rate_init=0.01)), X, y),
        (MLPClassifier(**dict(BASE, dtype="float32", learning_rate_init=0.01)), X, y),
        (MLPClassifier(**dict(BASE, hidden_layer_sizes=(4, 3), activation=["tanh", "relu"],
                              batch_size="auto")), X, y > 0),
        (MLPRegressor(**dict(BASE, learning_rate_init=0.01)), Xr, Y2),
        (MLPRegressor(**dict(BASE, loss="poisson", solver="sgd", momentum=0.0,
                             learning_rate_init=0.01)), np.abs(Xr), np.abs(yr) * 3),
    ]
    for weights in (None, w):
        for est, Xc, yc in cases:
            subsets = [rng.choice(120, 90, replace=False), None, rng.randint(0, 120, 120)]
            together = [clone(est) for _ in subsets]
            calls["fit_many"].clear()
            errors, _ = _search.fit_estimators(together, Xc, yc, subsets, weights)
            assert errors == [None] * 3 and calls["fit_many"] == [3]
            for fitted, rows in zip(together, subsets):
                rows = np.arange(120) if rows is None else rows
                alone = clone(est).fit(Xc[rows], yc[rows],
                                       sample_weight=None if weights is None else weights[rows])
                for name in FITTED:
                    assert getattr(fitted, name) == getattr(alone, name), (est, name)
                for a, b in zip(fitted.coefs_ + fitted.intercepts_,
                                alone.coefs_ + alone.intercepts_):
                    np.testing.assert_array_equal(a, b)
                if is_classifier(est):
                    np.testing.assert_array_equal(fitted.classes_, alone.classes_)
                np.testing.assert_array_equal(fitted.predict(Xc), alone.predict(Xc))


def test_fit_estimators_reports_each_fits_error():
    X, y = _regression()
    ests = [MLPRegressor(**dict(BASE, solver="sgd", momentum=0.0, learning_rate_init=lr))
            for lr in (0.01, 1e3)] + [MLPRegressor(solver="newton")]
    errors, times = _search.fit_estimators(ests, X, y, [None] * 3)
    assert errors[0] is None and ests[0].n_iter_ == 25
    assert "non-finite" in str(errors[1]) and "solver" in str(errors[2])
    assert len(times) == 3 and all(t >= 0 for t in times)
    # Network.fit's own checks refuse one network's data (negative Poisson
    # targets): that fit fails, the other trains as it would alone.
    ests = [MLPRegressor(**dict(BASE, loss="poisson")), MLPRegressor(**BASE)]
    errors, _ = _search.fit_estimators(ests, X, y, [None, None])
    assert ">= 0" in str(errors[0]) and errors[1] is None
    alone = MLPRegressor(**BASE).fit(X, y)
    np.testing.assert_array_equal(ests[1].coefs_[0], alone.coefs_[0])


# ---------------------------------------------------------------- ensembles

@pytest.mark.parametrize("solver, bootstrap, early_stopping", [
    ("adam", False, False), ("sgd", True, False), ("adam", True, True), ("lbfgs", True, False),
])
def test_ensemble_classifier_members_equal_fits_alone(solver, bootstrap, early_stopping, calls):
    X, y = _classification()
    params = dict(BASE, solver=solver, early_stopping=early_stopping, learning_rate_init=0.01)
    ens = MLPEnsembleClassifier(**params, n_estimators=4, bootstrap=bootstrap).fit(X, y)
    if solver != "lbfgs":
        assert calls["fit_many"] == [4]
    seeds = ens.estimators_seeds_
    assert len(set(seeds)) == 4
    probas = []
    for k, member in enumerate(ens.estimators_):
        rows = ens.estimators_samples_[k] if bootstrap else np.arange(X.shape[0])
        alone = MLPClassifier(**dict(params, random_state=int(seeds[k]))).fit(X[rows], y[rows])
        for a, b in zip(member.coefs_ + member.intercepts_, alone.coefs_ + alone.intercepts_):
            np.testing.assert_array_equal(a, b)
        assert member.n_iter_ == alone.n_iter_
        probas.append(alone.predict_proba(X))
    np.testing.assert_allclose(ens.predict_proba(X), np.mean(probas, axis=0), rtol=1e-14)
    np.testing.assert_array_equal(ens.predict(X), ens.classes_[np.mean(probas, 0).argmax(1)])
    assert ens.score(X, y) > 0.5
    # Different seeds make different members.
    assert not np.array_equal(ens.estimators_[0].coefs_[0], ens.estimators_[1].coefs_[0])


def test_ensemble_regressor_averages_members():
    X, y = _regression()
    w = np.random.RandomState(1).uniform(0.5, 1.5, X.shape[0])
    ens = MLPEnsembleRegressor(**BASE, n_estimators=3, bootstrap=True).fit(X, y, sample_weight=w)
    preds = []
    for member, rows, seed in zip(ens.estimators_, ens.estimators_samples_,
                                  ens.estimators_seeds_):
        alone = MLPRegressor(**dict(BASE, random_state=int(seed))).fit(
            X[rows], y[rows], sample_weight=w[rows])
        np.testing.assert_array_equal(member.coefs_[0], alone.coefs_[0])
        preds.append(alone.predict(X))
    np.testing.assert_allclose(ens.predict(X), np.mean(preds, axis=0), rtol=1e-14)
    again = MLPEnsembleRegressor(**BASE, n_estimators=3, bootstrap=True).fit(X, y,
                                                                            sample_weight=w)
    np.testing.assert_array_equal(again.predict(X), ens.predict(X))


def test_ensemble_member_missing_a_class():
    """A bootstrap sample without some class: its member gives that class
    probability 0, the columns stay those of classes_."""
    X, y = _classification(30)
    y = y.copy()
    y[:1] = 7  # a rare class that some bootstrap samples miss
    ens = MLPEnsembleClassifier(**BASE, n_estimators=6, bootstrap=True).fit(X, y)
    missing = [k for k, rows in enumerate(ens.estimators_samples_) if not (y[rows] == 7).any()]
    assert missing, "the seed no longer draws a sample without class 7"
    proba = ens.predict_proba(X)
    assert proba.shape == (30, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    member = ens.estimators_[missing[0]]
    assert 7 not in member.classes_


def test_bad_ensemble_parameters():
    X, y = _classification(30)
    with pytest.raises(ValueError, match="n_estimators"):
        MLPEnsembleClassifier(n_estimators=0).fit(X, y)
    with pytest.raises(TypeError, match="bootstrap"):
        MLPEnsembleRegressor(bootstrap="yes").fit(X, y.astype(float))


def test_public_names():
    assert {"MLPClassifierCV", "MLPRegressorCV", "MLPEnsembleClassifier",
            "MLPEnsembleRegressor"} <= set(backprop_fast.sklearn.__all__)
    params = MLPClassifierCV().get_params()
    assert set(MLPClassifier().get_params()) <= set(params)
    assert {"param_grid", "cv", "scoring", "refit", "n_jobs"} <= set(params)
    assert set(MLPRegressor().get_params()) <= set(MLPEnsembleRegressor().get_params())
    assert clone(MLPEnsembleClassifier(n_estimators=3)).n_estimators == 3


# ---------------------------------------------------------------- check_estimator

@parametrize_with_checks([
    MLPClassifierCV(max_iter=100, cv=3),
    MLPRegressorCV(max_iter=100, cv=3),
    MLPEnsembleClassifier(max_iter=100, n_estimators=3),
    MLPEnsembleRegressor(max_iter=100, n_estimators=3),
])
def test_check_estimator(estimator, check):
    check(estimator)
