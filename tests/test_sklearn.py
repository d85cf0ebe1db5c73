"""backprop_fast.sklearn: scikit-learn's estimator contract, and its MLP's semantics."""
import io
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sk_nn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (  # noqa: E402
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from backprop_fast.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(autouse=True)
def _setup(monkeypatch):
    """One BLAS thread: these problems are tiny and the machine is shared."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(1):
        yield


# ---------------------------------------------------------------- check_estimator

@parametrize_with_checks([
    MLPClassifier((10,), solver="lbfgs", max_iter=100),
    MLPRegressor((10,), solver="lbfgs", max_iter=100),
    MLPClassifier(max_iter=100),     # adam: scikit-learn's settings for its own MLP
    MLPRegressor(max_iter=100),
    MLPClassifier((20,), solver="sgd", max_iter=200),     # momentum 0.9, Nesterov
    MLPRegressor((20,), solver="sgd", max_iter=200),
])
def test_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ---------------------------------------------------------------- the same as scikit-learn's MLP

def _both(kw, X, y, cls=("MLPClassifier", MLPClassifier)):
    theirs, ours = getattr(sk_nn, cls[0])(**kw), cls[1](**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ours.fit(X, y), theirs.fit(X, y)


FULL_BATCH = dict(hidden_layer_sizes=(7, 4), batch_size=60, shuffle=False, random_state=3,
                  max_iter=150)


@pytest.mark.parametrize("params", [
    dict(solver="sgd", momentum=0.0, alpha=0.0, learning_rate="adaptive",
         learning_rate_init=0.2, tol=1e-3, n_iter_no_change=3, activation="tanh"),
    dict(solver="sgd", momentum=0.0, alpha=0.0, learning_rate="invscaling",
         learning_rate_init=0.5, power_t=0.25, activation="relu"),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, alpha=0.0, activation="logistic"),
    dict(solver="sgd", momentum=0.5, nesterovs_momentum=False, alpha=0.0),
    # Adam with epsilon out of the way: scikit-learn adds it to sqrt(v) before the
    # bias correction, PyTorch (and so Network.fit) after.
    dict(solver="adam", learning_rate_init=0.01, alpha=0.0, epsilon=1e-30),
])
def test_same_training_as_scikit_learn(params):
    """The same random_state gives the same initial weights, and full-batch
    training then takes the same steps as sklearn.neural_network.MLPClassifier:
    the same costs, the same stopping epoch, the same final learning rate."""
    X, y = make_classification(60, 5, n_informative=3, n_classes=3, random_state=0)
    ours, theirs = _both(dict(FULL_BATCH, **params), X, y)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    if params["solver"] == "sgd":
        assert ours._learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)


def test_same_initial_weights_as_scikit_learn():
    X, y = make_classification(30, 4, random_state=0)
    for activation in ("relu", "logistic"):
        kw = dict(hidden_layer_sizes=(5, 3), activation=activation, solver="sgd",
                  learning_rate_init=1e-300, max_iter=1, random_state=7)
        ours, theirs = _both(kw, X, y)
        for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
            np.testing.assert_array_equal(a, b)


def test_alpha_differs_only_by_the_bias_decay():
    """alpha becomes weight_decay = alpha / batch; Network.fit decays biases too."""
    X, y = make_classification(60, 5, n_informative=3, n_classes=3, random_state=0)
    ours, theirs = _both(dict(FULL_BATCH, solver="sgd", momentum=0.0, alpha=1e-3), X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_multi_output_regression_matches_scikit_learn():
    """loss_curve_ in scikit-learn's convention (mean over the targets too)."""
    X, y = make_regression(50, 4, n_targets=3, noise=0.1, random_state=1)
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", momentum=0.0, alpha=0.0, batch_size=50,
              shuffle=False, learning_rate_init=0.05, random_state=0, max_iter=40, tol=0.0)
    ours, theirs = _both(kw, X, y / np.abs(y).max(), ("MLPRegressor", MLPRegressor))
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), atol=1e-12)


def test_lbfgs_matches_scikit_learn():
    X, y = make_classification(80, 4, random_state=2)
    kw = dict(hidden_layer_sizes=(5,), activation="tanh", solver="lbfgs", alpha=1e-3,
              random_state=0, max_iter=30)
    ours, theirs = _both(kw, X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-6)


def test_early_stopping_matches_scikit_learn():
    """The same validation split and the same stopping epoch."""
    X, y = make_classification(100, 5, n_informative=3, n_classes=3, random_state=0)
    kw = dict(FULL_BATCH, batch_size=90, solver="sgd", momentum=0.0, alpha=0.0,
              learning_rate_init=0.3, early_stopping=True, n_iter_no_change=4)
    ours, theirs = _both(kw, X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)


# ---------------------------------------------------------------- targets

def _fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


def _sgd(cls, **kw):
    params = dict(solver="sgd", momentum=0.0, alpha=0.0, learning_rate_init=0.1,
                  max_iter=200, random_state=0)
    params.update(kw)
    return cls(**params)


def test_binary_with_text_labels():
    X, y = make_classification(100, 4, random_state=0)
    labels = np.array(["no", "yes"])[y]
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(8,)), X, labels)
    assert list(clf.classes_) == ["no", "yes"]
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.network_.layer_sizes == (4, 8, 1)
    proba = clf.predict_proba(X)
    assert proba.shape == (100, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert set(clf.predict(X)) <= {"no", "yes"} and clf.score(X, labels) > 0.85
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba)


def test_multiclass_and_fitted_attributes():
    X, y = make_classification(120, 5, n_informative=4, n_redundant=0, n_classes=3, random_state=0)
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(8, 6), activation=["relu", "tanh"]),
               X, y)
    assert clf.out_activation_ == "softmax" and clf.n_layers_ == 4 and clf.n_outputs_ == 3
    assert clf.network_.activations == ("relu", "tanh", "softmax")
    assert [c.shape for c in clf.coefs_] == [(5, 8), (8, 6), (6, 3)]
    assert [b.shape for b in clf.intercepts_] == [(8,), (6,), (3,)]
    assert clf.n_features_in_ == 5 and clf.n_iter_ == len(clf.loss_curve_) <= 200
    assert clf.t_ == 120 * clf.n_iter_ and clf.loss_ == clf.loss_curve_[-1]
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.validation_scores_ is None
    assert clf.score(X, y) > 0.8
    # coefs_ are views of the network's weights, in scikit-learn's layout.
    np.testing.assert_array_equal(clf.coefs_[0], clf.network_.weights[0].T)
    clf.coefs_[1][...] = 0.0
    assert np.all(clf.network_.weights[1] == 0)


def test_multilabel():
    X, Y = make_multilabel_classification(100, 6, n_classes=3, random_state=0)
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(12,)), X / X.max(), Y)
    assert clf.out_activation_ == "logistic" and list(clf.classes_) == [0, 1, 2]
    assert clf.predict(X / X.max()).shape == (100, 3)
    proba = clf.predict_proba(X / X.max())
    assert proba.shape == (100, 3) and not np.allclose(proba.sum(axis=1), 1)


def test_multi_output_regression():
    X, y = make_regression(150, 4, n_targets=2, noise=0.1, random_state=0)
    reg = _fit(_sgd(MLPRegressor, hidden_layer_sizes=(16,), learning_rate_init=0.01),
               X, y / 100)
    assert reg.out_activation_ == "identity" and reg.predict(X).shape == (150, 2)
    assert reg.score(X, y / 100) > 0.9


def test_dtype_follows_X_or_the_parameter():
    X, y = make_classification(40, 3, n_redundant=0, random_state=0)
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(4,), max_iter=3), X.astype(np.float32), y)
    assert clf.network_.dtype == np.float32 and clf.predict_proba(X).dtype == np.float32
    assert clf.coefs_[0].dtype == np.float32
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(4,), max_iter=3, dtype="float64"),
               X.astype(np.float32), y)
    assert clf.network_.dtype == np.float64
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(4,), max_iter=3, dtype="float32"), X, y)
    assert clf.network_.dtype == np.float32


def test_sparse_input():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    X, y = make_classification(40, 6, random_state=0)
    dense = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(4,), max_iter=5), X, y)
    sparse = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(4,), max_iter=5),
                  scipy_sparse.csr_matrix(X), y)
    # Sparse rows skip the zeros that the dense sums add: equal to rounding.
    np.testing.assert_allclose(sparse.predict_proba(scipy_sparse.csc_matrix(X)),
                               dense.predict_proba(X), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- training options

def test_partial_fit_needs_classes_first_and_runs_one_epoch():
    X, y = make_classification(60, 4, random_state=0)
    clf = _sgd(MLPClassifier, hidden_layer_sizes=(5,))
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:30], y[:30], classes=[0, 1])
    clf.partial_fit(X[30:], y[30:])
    assert clf.n_iter_ == 1 and clf.t_ == 60 and len(clf.loss_curve_) == 2
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, np.full(60, 5))
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    reg = _sgd(MLPRegressor, hidden_layer_sizes=(5,), learning_rate_init=0.01)
    for _ in range(3):
        reg.partial_fit(X, X[:, 0])
    assert reg.t_ == 180


def test_warm_start_continues_and_checks_the_architecture():
    X, y = make_classification(60, 4, random_state=0)
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(5,), max_iter=5, tol=0.0), X, y)
    net = clf.network_
    clf.set_params(warm_start=True)
    _fit(clf, X, y)
    assert clf.network_ is net and clf.t_ == 600 and len(clf.loss_curve_) == 10
    clf.set_params(hidden_layer_sizes=(6,))
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X, y)
    clf.set_params(warm_start=False)
    _fit(clf, X, y)
    assert clf.network_ is not net and clf.network_.layer_sizes == (4, 6, 1)
    # A warm start may switch early stopping on and off.
    clf.set_params(warm_start=True, early_stopping=True)
    _fit(clf, X, y)
    assert clf.validation_scores_ and clf.best_loss_ is None
    clf.set_params(early_stopping=False)
    _fit(clf, X, y)
    assert clf.validation_scores_ is None and clf.best_loss_ < np.inf


def test_warm_start_with_early_stopping_ends_as_scikit_learns():
    """Warm-started fits with early stopping end with scikit-learn's
    parameters: the best epoch's where the fit beat the validation score
    carried in, the last epoch's where it did not (scikit-learn's copy of
    the best parameters is then the very arrays it went on training)."""
    X, y = make_classification(80, 5, n_informative=3, n_classes=3, random_state=0)
    kw = dict(FULL_BATCH, solver="sgd", momentum=0.0, alpha=0.0, early_stopping=True,
              validation_fraction=0.25, n_iter_no_change=4, tol=0.0, max_iter=40,
              learning_rate_init=0.3, activation="tanh", warm_start=True)
    ours, theirs = _both(kw, X, y)
    for rate in (5.0, 0.05):   # a rate that only makes things worse, then a small one
        ours.set_params(learning_rate_init=rate)
        theirs.set_params(learning_rate_init=rate)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.fit(X, y)
            theirs.fit(X, y)
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_,
                                                            abs=1e-12)
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                                   atol=1e-12)
        for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
            np.testing.assert_allclose(a, b, atol=1e-9)


def test_early_stopping_keeps_the_best_epoch():
    X, y = make_classification(200, 6, flip_y=0.3, random_state=0)
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(30,), early_stopping=True,
                    n_iter_no_change=5, learning_rate_init=0.5, validation_fraction=0.2), X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    with pytest.raises(ValueError, match="early_stopping"):
        clf.partial_fit(X, y)


def test_lbfgs_with_weights_and_class_weight():
    X, y = make_classification(200, 4, weights=[0.9, 0.1], random_state=0)
    plain = _fit(MLPClassifier((5,), solver="lbfgs", random_state=0, max_iter=200), X, y)
    balanced = _fit(MLPClassifier((5,), solver="lbfgs", random_state=0, max_iter=200,
                                  class_weight="balanced"), X, y)
    minority = y == 1
    assert (balanced.predict(X)[minority] == 1).mean() >= (plain.predict(X)[minority] == 1).mean()
    assert (balanced.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()
    # Integer weights act as repeated samples (to the drift of 50 L-BFGS steps taken
    # with two summation orders: NumPy for weighted, the kernel for repeated data).
    w = np.random.default_rng(0).integers(0, 3, 200)
    a = _fit(MLPClassifier((5,), solver="lbfgs", random_state=0, max_iter=50), X, y,
             sample_weight=w)
    b = _fit(MLPClassifier((5,), solver="lbfgs", random_state=0, max_iter=50),
             np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-4)


def test_verbose_and_convergence_warning(capsys):
    X, y = make_classification(30, 3, n_redundant=0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        _sgd(MLPClassifier, hidden_layer_sizes=(3,), max_iter=3, verbose=True, tol=0.0).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 3, loss = " in out


@pytest.mark.parametrize("params, message", [
    (dict(solver="newton"), "solver"),
    (dict(activation="softmax"), "activation"),
    (dict(hidden_layer_sizes=(4, 0)), "hidden_layer_sizes"),
    (dict(hidden_layer_sizes=(4, 3), activation=["relu"]), "one per hidden layer"),
    (dict(batch_size=0), "batch_size"),
    (dict(learning_rate_init=0.0), "learning_rate_init"),
    (dict(momentum=1.5), "momentum"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    # Plain floats pass on a range test alone: its edges, NaN and infinity.
    (dict(momentum=1.0), "momentum"),
    (dict(beta_2=np.nan), "beta_2"),
    (dict(alpha=-1e-4), "alpha"),
    (dict(alpha=np.inf), "alpha"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(tol=np.nan), "tol"),
    (dict(dtype="float16"), "dtype"),
    (dict(max_iter=0), "max_iter"),
])
def test_bad_parameters_fail_at_fit(params, message):
    X, y = make_classification(20, 3, n_redundant=0, random_state=0)
    clf = MLPClassifier(**params)  # accepted as given, as scikit-learn requires
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y)


def test_layers_and_activations_changed_after_a_fit_are_checked_again():
    """fit trusts only the very tuple and string it checked before: new
    values, and a list changed in place, are checked again."""
    X, y = make_classification(20, 3, n_redundant=0, random_state=0)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(3,), max_iter=2), X, y)
    for params, message in ((dict(hidden_layer_sizes=(3, 0)), "hidden_layer_sizes"),
                            (dict(hidden_layer_sizes=(3,), activation="softmax"),
                             "activation"),
                            (dict(activation=["relu", "tanh"]), "one per hidden layer")):
        with pytest.raises(ValueError, match=message):
            clf.set_params(**params).fit(X, y)
    sizes = [3]
    _fit(clf.set_params(hidden_layer_sizes=sizes, activation="tanh"), X, y)
    sizes.append(0)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        clf.fit(X, y)
    sizes[1] = 2
    assert _fit(clf, X, y).network_.layer_sizes == (3, 3, 2, 1)


# One bad value for each parameter that fit checks.
_BAD = dict(solver="newton", alpha=-1.0, batch_size=0, learning_rate="fast",
            learning_rate_init=0.0, power_t=-0.5, max_iter=0, shuffle=1, tol=-1.0,
            warm_start="yes", momentum=1.0, nesterovs_momentum=None, early_stopping=2,
            validation_fraction=1.0, beta_1=1.0, beta_2=-0.1, epsilon=0.0,
            n_iter_no_change=0, max_fun=0.5)


@pytest.mark.parametrize("name", sorted(_BAD))
def test_every_parameter_is_checked_when_set(name):
    """Defaults are trusted as they stand; a value set by the constructor,
    set_params or a subclass's own defaults is checked."""
    X, y = make_classification(20, 3, n_redundant=0, random_state=0)
    with pytest.raises((ValueError, TypeError), match=name):
        MLPClassifier(**{name: _BAD[name]}).fit(X, y)
    clf = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    with pytest.raises((ValueError, TypeError), match=name):
        clf.set_params(**{name: _BAD[name]}).fit(X, y)

    class Odd(MLPClassifier):
        def __init__(self, hidden_layer_sizes=(3,), **kwargs):
            super().__init__(hidden_layer_sizes=hidden_layer_sizes, **kwargs)
            setattr(self, name, _BAD[name])

    with pytest.raises((ValueError, TypeError), match=name):
        Odd().fit(X, y)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((1, 2)))
    with pytest.raises(NotFittedError):
        _ = MLPRegressor().coefs_


# ---------------------------------------------------------------- the ecosystem

def test_pipeline_grid_search_and_cross_validation():
    X, y = make_classification(120, 5, random_state=0)
    pipe = make_pipeline(StandardScaler(), _sgd(MLPClassifier, hidden_layer_sizes=(6,),
                                                max_iter=30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, X, y, cv=3)
        grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(3,), (6,)],
                                   "mlpclassifier__learning_rate_init": [0.05, 0.2]}, cv=2)
        grid.fit(X, y)
    assert scores.shape == (3,) and scores.mean() > 0.7
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(3,), (6,)]
    assert clone(grid.best_estimator_).get_params()["mlpclassifier__max_iter"] == 30


def test_pickle_and_joblib_round_trips():
    X, y = make_classification(50, 4, random_state=0)
    clf = _fit(_sgd(MLPClassifier, hidden_layer_sizes=(5,), max_iter=10), X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    back.coefs_[0][...] = 0  # independent parameters
    assert not np.all(clf.coefs_[0] == 0)
    joblib = pytest.importorskip("joblib")
    buf = io.BytesIO()
    joblib.dump(clf, buf)
    buf.seek(0)
    np.testing.assert_array_equal(joblib.load(buf).predict(X), clf.predict(X))


def test_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = make_classification(40, 3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    reg = _fit(_sgd(MLPRegressor, hidden_layer_sizes=(3,), max_iter=5, learning_rate_init=0.01),
               frame, y.astype(float))
    assert list(reg.feature_names_in_) == ["a", "b", "c"]
    with pytest.warns(UserWarning, match="feature names"):
        reg.predict(X)


@pytest.mark.parametrize("which", ["X", "y", "sample_weight", "predict"])
def test_masked_arrays_are_refused(which):
    from backprop_fast.sklearn import MLPClassifier
    rng = np.random.default_rng(0)
    X, y, sw = rng.normal(size=(20, 3)), np.arange(20) % 2, np.ones(20)
    clf = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2)
    masked = {"X": np.ma.masked_array(X), "y": np.ma.masked_array(y),
              "sample_weight": np.ma.masked_array(sw)}
    if which == "predict":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        with pytest.raises(TypeError, match="X is a masked array"):
            clf.predict(masked["X"])
        return
    args = {"X": X, "y": y, "sample_weight": sw}
    args[which] = masked[which]
    with pytest.raises(TypeError, match=f"{which} is a masked array"):
        clf.fit(args["X"], args["y"], sample_weight=args["sample_weight"])


@pytest.mark.parametrize("params, name", [
    (dict(alpha=float("nan")), "alpha"), (dict(alpha=float("inf")), "alpha"),
    (dict(learning_rate_init=float("nan")), "learning_rate_init"),
    (dict(hidden_layer_sizes=(2**40,)), "hidden_layer_sizes"),
    (dict(hidden_layer_sizes=(2**20, 2**20)), "hidden_layer_sizes"),
])
def test_impossible_hyperparameters_are_value_errors_naming_them(params, name):
    from backprop_fast.sklearn import MLPRegressor
    with pytest.raises(ValueError, match=name):
        MLPRegressor(max_iter=1, **params).fit(np.ones((4, 2)), np.arange(4.0))


# ---------------------------------------------------------------- the one-call path

def test_early_stopping_regressor_and_weights_match_scikit_learn():
    """R^2 (weighted) on the validation split, scored in the kernel, gives
    scikit-learn's validation_scores_ and stopping epoch."""
    X, y = make_regression(120, 4, noise=5.0, random_state=0)
    w = np.random.RandomState(0).uniform(0.5, 2.0, 120)
    # One batch of the whole training split: a weighted minibatch cost is
    # normalised differently here (weights of mean 1 over the whole set).
    kw = dict(FULL_BATCH, batch_size=108, solver="sgd", momentum=0.0, alpha=0.0,
              learning_rate_init=0.05, early_stopping=True, n_iter_no_change=3, tol=1e-3)
    theirs = sk_nn.MLPRegressor(**kw)
    ours = MLPRegressor(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y / 100, sample_weight=w)
        ours.fit(X, y / 100, sample_weight=w)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-9)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-9)


def test_multilabel_early_stopping_scores_label_sets():
    """Multi-label validation accuracy counts a sample right only when all
    its labels are, as accuracy_score does."""
    X, Y = make_multilabel_classification(120, 6, n_classes=3, random_state=0)
    kw = dict(FULL_BATCH, batch_size=100, solver="sgd", momentum=0.0, alpha=0.0,
              learning_rate_init=0.3, early_stopping=True, n_iter_no_change=4)
    ours, theirs = _both(kw, X, Y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_poisson_matches_scikit_learn(solver):
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(80, 3))
    y = rng.poisson(np.exp(X @ [0.5, -0.3, 0.8] + 0.2)).astype(float)
    kw = dict(loss="poisson", hidden_layer_sizes=(4,), solver=solver, alpha=1e-3,
              batch_size=80, shuffle=False, random_state=0, max_iter=30,
              learning_rate_init=0.01, momentum=0.0, epsilon=1e-30)
    ours, theirs = _both(kw, X, y, ("MLPRegressor", MLPRegressor))
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    assert ours.n_iter_ == theirs.n_iter_
    if solver == "lbfgs":
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    else:  # alpha: Network.fit decays biases too, hence not to the last bit
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-3)
    with pytest.raises(ValueError, match=">= 0"):
        MLPRegressor(loss="poisson", solver=solver).fit(X, -y - 1)


def test_divergence_is_scikit_learns_value_error():
    from backprop_fast.network import DivergenceError

    X = np.finfo(np.float64).max * np.random.RandomState(0).uniform(size=(10, 2))
    y = np.random.RandomState(1).standard_normal(10)
    with pytest.raises(DivergenceError, match="Solver produced non-finite parameter") as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPRegressor().fit(X, y)
    assert isinstance(info.value, ValueError)


def test_diverging_loss_with_early_stopping_finishes_as_scikit_learn():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=100, activation="identity", solver="sgd",
              learning_rate_init=1, max_iter=20, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPRegressor(**kw).fit(X, y)
        theirs = sk_nn.MLPRegressor(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 20
    assert np.isnan(ours.validation_scores_[-1])
    assert all(np.isfinite(c).all() for c in ours.coefs_)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6)


def test_no_python_call_per_epoch_without_verbose(monkeypatch):
    """Without verbose the whole fit is one kernel fit (prepared as
    Network.fit prepares its own) with no callback."""
    from backprop_fast.network import Network

    calls = []
    original = Network._prepare_fit

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("callbacks"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Network, "_prepare_fit", spy)
    X, y = make_classification(100, 5, random_state=0)
    _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, early_stopping=True,
                       random_state=0), X, y)
    assert calls == [None]


def test_fast_paths_agree_with_the_full_paths():
    X, y = make_classification(90, 5, n_informative=3, n_classes=3, random_state=0)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0), X, y)
    Xl = X.tolist()  # a list takes scikit-learn's validation
    np.testing.assert_array_equal(clf.predict(X), clf.predict(Xl))
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(Xl))
    assert clf.score(X, y) == pytest.approx(clf.score(Xl, list(y)))
    slow = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0),
                Xl, list(y))
    np.testing.assert_array_equal(slow.coefs_[0], clf.coefs_[0])
    yr = X @ [1.0, 2.0, 0.0, -1.0, 0.5]
    reg = _fit(MLPRegressor(hidden_layer_sizes=(5,), max_iter=20, random_state=0), X, yr)
    assert reg.score(X, yr) == pytest.approx(reg.score(Xl, list(yr)), rel=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        reg.predict(np.full((2, 5), np.nan))


def test_refit_has_a_new_network_and_leaves_the_old_one_as_it_was():
    """A refit of the same architecture takes over the scratch buffers of
    the previous fit's network: it still gets a network of its own, trains
    as a new estimator does, and the old network trains on by itself."""
    import copy
    import threading

    X, y = make_classification(60, 4, n_informative=3, n_redundant=1, n_classes=3,
                               random_state=0)
    kw = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    clf = _fit(MLPClassifier(**kw), X, y)
    old = clf.network_
    twin = copy.deepcopy(old)
    _fit(clf, X, y)
    assert clf.network_ is not old
    fresh = _fit(MLPClassifier(**kw), X, y)
    for ours, theirs in zip(clf.coefs_ + clf.intercepts_, fresh.coefs_ + fresh.intercepts_):
        np.testing.assert_array_equal(ours, theirs)
    assert clf.loss_curve_ == fresh.loss_curve_
    Y = np.eye(3)[y]
    assert (old.fit(X, Y, epochs=3, batch_size=16, optimizer="adam").loss
            == twin.fit(X, Y, epochs=3, batch_size=16, optimizer="adam").loss)
    np.testing.assert_array_equal(old.weights[0], twin.weights[0])
    np.testing.assert_array_equal(clf.coefs_[0], fresh.coefs_[0])
    # Another architecture, another dtype: nothing to take over.
    _fit(clf.set_params(hidden_layer_sizes=(4, 3)), X, y)
    _fit(clf.set_params(dtype="float32"), X, y)
    assert clf.network_.layer_sizes == (4, 4, 3, 3)
    # A refit while another thread holds the old network (here its lock):
    # the old network keeps its buffers, and the refit is the same.
    _fit(clf.set_params(hidden_layer_sizes=(5,), dtype=None), X, y)
    held, release = threading.Event(), threading.Event()

    def hold(net):
        with net._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold, args=(clf.network_,))
    holder.start()
    try:
        assert held.wait(30)
        _fit(clf, X, y)
    finally:
        release.set()
        holder.join()
    np.testing.assert_array_equal(clf.coefs_[0], fresh.coefs_[0])


@pytest.mark.parametrize("labels", [(0, 1, 2), (0, 1), (0, 2, 5), (1, 2), (-1, 0, 3),
                                    (7, 2**40)])
@pytest.mark.parametrize("dtype", ["int8", "uint16", "int32", "int64", "uint64"])
def test_integer_labels_are_encoded_as_by_the_validated_path(labels, dtype):
    """Integer label arrays skip scikit-learn's checks; their classes (and
    dtype), the training and the predictions are those of the same labels
    passed as a list, which goes through them."""
    if np.iinfo(dtype).min > min(labels) or np.iinfo(dtype).max < max(labels):
        pytest.skip("labels out of the dtype's range")
    X, _ = make_classification(40, 4, n_redundant=1, random_state=0)
    pick = np.random.RandomState(0).permutation(np.arange(40) % len(labels))
    y = np.asarray(labels, dtype=dtype)[pick]
    kw = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    fast = _fit(MLPClassifier(**kw), X, y)
    slow = _fit(MLPClassifier(**kw), X.tolist(), y.tolist())
    np.testing.assert_array_equal(fast.classes_, np.unique(y))
    assert fast.classes_.dtype == y.dtype
    np.testing.assert_array_equal(fast.classes_, slow.classes_)
    for ours, theirs in zip(fast.coefs_, slow.coefs_):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(fast.predict(X), slow.predict(X))
    assert fast.score(X, y) == slow.score(X.tolist(), y.tolist())


@pytest.mark.parametrize("labels", [(0, 1, 2), (0, 1), (0, 2, 5), (-1, 0, 3)])
@pytest.mark.parametrize("dtype", ["int8", "uint16", "int64"])
def test_labels_of_known_classes_train_as_by_the_validated_path(labels, dtype, monkeypatch):
    """Integer labels of the classes an earlier call set (partial_fit's
    stream, a warm start) skip scikit-learn's checks too: the training
    equals that of the same labels given as lists, batches that lack a
    class included."""
    if np.iinfo(dtype).min > min(labels):
        pytest.skip("labels out of the dtype's range")
    import backprop_fast.sklearn as estimators

    X, _ = make_classification(60, 4, n_redundant=1, random_state=0)
    y = np.asarray(labels, dtype=dtype)[np.arange(60) % len(labels)]
    lacking = np.flatnonzero(y != labels[-1])[:15]
    kw = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    fast, slow = MLPClassifier(**kw), MLPClassifier(**kw)
    validated = estimators.validate_data
    for rows in (slice(0, 20), lacking, slice(20, 60)):
        slow.partial_fit(X[rows].tolist(), y[rows].tolist(), classes=list(labels))
        with monkeypatch.context() as m:
            m.setattr(estimators, "validate_data", None)   # the fast path calls none
            fast.partial_fit(X[rows], y[rows], classes=np.unique(y))
    fast.set_params(warm_start=True)
    slow.set_params(warm_start=True)
    _fit(slow, X.tolist(), y.tolist())
    monkeypatch.setattr(estimators, "validate_data", None)
    _fit(fast, X, y)
    monkeypatch.setattr(estimators, "validate_data", validated)
    np.testing.assert_array_equal(fast.classes_, slow.classes_)
    for ours, theirs in zip(fast.coefs_ + fast.intercepts_, slow.coefs_ + slow.intercepts_):
        np.testing.assert_array_equal(ours, theirs)
    assert fast.loss_curve_ == slow.loss_curve_ and fast.t_ == slow.t_ == 255
    np.testing.assert_array_equal(fast.predict(X), slow.predict(X))


def test_labels_of_known_classes_keep_scikit_learns_messages():
    X, y = make_classification(60, 4, n_informative=3, n_redundant=1, n_classes=3,
                               random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, np.where(y == 2, 3, y))
    with pytest.raises(ValueError, match="3 features, but MLPClassifier is expecting 4"):
        clf.partial_fit(X[:, :3], y)
    warm = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0,
                              warm_start=True), X, y)
    with pytest.raises(ValueError, match="same classes"):
        warm.fit(X, np.where(y == 2, 1, y))   # class 2 missing
    with pytest.raises(ValueError, match="same classes"):
        warm.fit(X, np.where(y == 2, 7, y))   # class 7 new
    pd = pytest.importorskip("pandas")
    named = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0,
                               warm_start=True), pd.DataFrame(X, columns=list("abcd")), y)
    with pytest.warns(UserWarning, match="feature names"):
        _fit(named, X, y)


def test_regressor_partial_fit_of_arrays_trains_as_of_lists(monkeypatch):
    import backprop_fast.sklearn as estimators

    X, y = make_regression(40, 4, random_state=0)
    kw = dict(hidden_layer_sizes=(5,), random_state=0, learning_rate_init=0.01)
    fast, slow = MLPRegressor(**kw), MLPRegressor(**kw)
    for rows in (slice(0, 25), slice(25, 40), slice(0, 40)):
        slow.partial_fit(X[rows].tolist(), (y[rows] / 100).tolist())
        with monkeypatch.context() as m:
            m.setattr(estimators, "validate_data", None)   # the fast path calls none
            fast.partial_fit(X[rows], y[rows] / 100)
    for ours, theirs in zip(fast.coefs_ + fast.intercepts_, slow.coefs_ + slow.intercepts_):
        np.testing.assert_array_equal(ours, theirs)
    assert fast.loss_curve_ == slow.loss_curve_
    with pytest.raises(ValueError, match="3 features, but MLPRegressor is expecting 4"):
        fast.partial_fit(X[:, :3], y)


@pytest.mark.parametrize("make", [
    lambda y: y[::2].repeat(2),                          # a copy, C-contiguous
    lambda y: np.stack([y, -y], axis=1),                 # two targets
    lambda y: np.asfortranarray(np.stack([y, -y], axis=1)),
    lambda y: np.stack([y, -y], axis=1)[:, 0],           # a strided column
])
def test_regressor_float_targets_fast_path_agrees_with_lists(make):
    X, y = make_regression(40, 4, random_state=0)
    target = make(y / 100)
    kw = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    fast = _fit(MLPRegressor(**kw), X, target)
    slow = _fit(MLPRegressor(**kw), X.tolist(), target.tolist())
    for ours, theirs in zip(fast.coefs_, slow.coefs_):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(fast.predict(X), slow.predict(X))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_still_gets_scikit_learns_errors(bad):
    X, y = make_regression(20, 4, random_state=0)
    labels = (y > 0).astype(int)
    Xb = X.copy()
    Xb[3, 1] = bad
    yb = y.copy()
    yb[5] = bad
    for est, target in ((MLPRegressor(max_iter=2), y), (MLPClassifier(max_iter=2), labels)):
        with pytest.raises(ValueError, match="Input X contains"):
            _fit(est, Xb, target)
        with pytest.raises(ValueError, match="Input X contains"):
            _fit(est, Xb.astype(np.float32), target)
    with pytest.raises(ValueError, match="Input y contains"):
        _fit(MLPRegressor(max_iter=2), X, yb)


@pytest.mark.parametrize("weighted", [False, True])
def test_score_is_scikit_learns_scorer(weighted):
    """score computes plain label and target arrays itself (without
    weights) and leaves the rest to scikit-learn: both give what
    accuracy_score and r2_score give."""
    from sklearn.metrics import accuracy_score, r2_score

    X, y = make_classification(50, 4, n_redundant=1, n_classes=3, n_informative=3,
                               random_state=0)
    w = np.random.RandomState(0).uniform(0.1, 2.0, 50) if weighted else None
    clf = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0), X, y)
    assert clf.score(X, y, sample_weight=w) == pytest.approx(
        accuracy_score(y, clf.predict(X), sample_weight=w), rel=1e-15)
    assert clf.score(X, y.astype(np.int8), sample_weight=w) == clf.score(X, y, sample_weight=w)
    target = X @ [1.0, -2.0, 0.5, 0.0]
    reg = _fit(MLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0), X, target)
    for t in (target, target.astype(np.float32), target[::-1]):
        assert reg.score(X, t, sample_weight=w) == pytest.approx(
            r2_score(t, reg.predict(X), sample_weight=w), rel=1e-12)
    flat = np.full(50, 3.0)  # no variance: r2_score's 1.0 or 0.0
    assert reg.score(X, flat, sample_weight=w) == r2_score(flat, reg.predict(X),
                                                          sample_weight=w)


def test_verbose_output_is_scikit_learns(capsys):
    """verbose prints scikit-learn's lines, the adaptive schedule's included."""
    X, y = make_classification(60, 5, n_informative=3, n_classes=3, random_state=0)
    kw = dict(FULL_BATCH, solver="sgd", momentum=0.0, alpha=0.0, learning_rate="adaptive",
              learning_rate_init=0.2, tol=1e-3, n_iter_no_change=3, activation="tanh",
              verbose=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(**kw).fit(X, y)
        ours = capsys.readouterr().out
        sk_nn.MLPClassifier(**kw).fit(X, y)
        theirs = capsys.readouterr().out
    assert "Setting learning rate to" in theirs
    assert ours == theirs


def test_parameter_names_are_each_class_own():
    """The parameter names, read once per class, follow a subclass's own
    constructor: get_params, set_params and clone see its parameters, and
    the parent's names stay its own."""

    class Scaled(MLPClassifier):
        def __init__(self, hidden_layer_sizes=(100,), scale=1.0):
            super().__init__(hidden_layer_sizes)
            self.scale = scale

    parent = set(MLPClassifier().get_params())
    assert "scale" not in parent
    child = Scaled(scale=2.0)
    assert set(child.get_params()) == {"hidden_layer_sizes", "scale"}
    assert set(MLPClassifier().get_params()) == parent
    twin = clone(child).set_params(scale=3.0)
    assert twin.scale == 3.0 and child.scale == 2.0
    with pytest.raises(ValueError, match="Invalid parameter"):
        child.set_params(alpha=1.0)
