"""plot_history: training curves to an image, from a History, a dict or an estimator."""
import types

import numpy as np
import pytest

import backprop_fast
from backprop_fast import History, Network, plot_history
from backprop_fast.plot import history_lists

matplotlib = pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _history(**lists):
    # History's figure properties return copies, so the figures go in as one
    # block, as fit adds them.
    h = History()
    h._add({name: list(lists.get(name, [])) for name in History.FIGURES})
    return h


def _curves(fig):
    """{label: y data} of every line in the figure."""
    return {line.get_label(): list(line.get_ydata()) for ax in fig.axes for line in ax.lines}


def test_history_from_fit_to_png(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    net = Network([3, 4, 1], "sigmoid", seed=0)
    history = net.fit(X, y, epochs=12, batch_size=8, learning_rate=0.5)
    path = tmp_path / "curve.png"
    assert history.learning_rate  # recorded, but not drawn
    fig = backprop_fast.plot_history(history, path, title="xor")
    assert path.read_bytes()[:8] == PNG
    assert _curves(fig) == {"training cost": history.loss}
    assert fig.axes[0].get_title() == "xor"
    assert list(fig.axes[0].lines[0].get_xdata()) == list(range(1, 13))


def test_validation_curves_and_accuracy_axis(tmp_path):
    history = {"loss": [1.0, 0.5, 0.25], "val_loss": [1.1, 0.7, 0.6],
               "val_accuracy": [0.5, 0.8, 0.9], "learning_rate": [0.1] * 3}
    fig = plot_history(history, tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    curves = _curves(fig)
    assert curves == {"training cost": [1.0, 0.5, 0.25], "validation cost": [1.1, 0.7, 0.6],
                      "validation accuracy": [0.5, 0.8, 0.9]}
    assert len(fig.axes) == 2  # accuracy on its own axis


def test_history_object_with_extra_lists():
    h = _history(loss=[0.3, 0.2], val_loss=[0.4, 0.35], learning_rate=[0.1, 0.1])
    assert history_lists(h) == {"loss": [0.3, 0.2], "val_loss": [0.4, 0.35]}


def test_validation_from_fit(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 3, 60)
    net = Network([3, 5, 3], ["tanh", "softmax"], seed=0)
    history = net.fit(X, y, epochs=6, batch_size=10, validation_split=0.2)
    fig = plot_history(history, tmp_path / "v.png")
    assert _curves(fig) == {"training cost": history.loss, "validation cost": history.val_loss,
                            "validation accuracy": history.val_accuracy}


def test_estimator_curves():
    est = types.SimpleNamespace(loss_curve_=[0.9, 0.6], validation_scores_=[0.7, 0.8])
    assert history_lists(est) == {"loss": [0.9, 0.6], "val_score": [0.7, 0.8]}
    est.validation_scores_ = None
    assert history_lists(est) == {"loss": [0.9, 0.6]}


def test_single_epoch_and_log_scale(tmp_path):
    fig = plot_history(_history(loss=[0.5]), tmp_path / "one.png", log_scale=True)
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].lines[0].get_marker() == "o"  # a lone point stays visible


def test_empty_history_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no per-epoch 'loss'"):
        plot_history(History(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        plot_history(_history(loss=[1.0]), tmp_path / "missing" / "x.png")
    assert list(tmp_path.iterdir()) == []
