"""The train / predict / evaluate commands of ``python -m backprop_fast``."""
import argparse
import csv
import gzip
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from backprop_fast import Network
from backprop_fast.__main__ import build_parser, main
from backprop_fast.cli import ProgressBar, load_model

CLASSES = ["cat", "dog", "eel"]


def _write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture
def blobs(tmp_path):
    """Three well-separated classes with text labels; an id column first."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    centres = np.array([[0, 0], [4, 0], [0, 4]]) + 10  # unscaled on purpose
    X = centres[labels] + rng.normal(scale=0.5, size=(90, 2))
    rows = [[f"id{i}", f"{x0:.4f}", f"{x1:.4f}", CLASSES[k]]
            for i, ((x0, x1), k) in enumerate(zip(X, labels))]
    return _write(tmp_path / "blobs.csv", ["id", "x0", "x1", "animal"], rows), labels


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_predict_evaluate_classification(tmp_path, capsys, blobs):
    data, labels = blobs
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "train", data, "--target", "animal", "--ignore", "id",
                          "--layers", "8", "--activation", "tanh", "--epochs", "40",
                          "--model", model)
    assert code == 0, err
    assert "classification" in out and "non-numeric labels" in out
    assert "network 2-8-3" in out and "softmax" in out
    assert "epoch 40/40" in err  # the progress bar (not a terminal: plain lines)

    net, info = load_model(model)
    assert isinstance(Network.load(model), Network)  # an ordinary Network file
    assert info["classes"] == CLASSES and info["features"] == ["x0", "x1"]

    code, out, err = _run(capsys, "predict", data, "--model", model, "--proba")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["animal", "P(cat)", "P(dog)", "P(eel)"]
    predicted = [r[0] for r in rows[1:]]
    assert np.mean([p == CLASSES[k] for p, k in zip(predicted, labels)]) > 0.95
    proba = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)

    code, out, err = _run(capsys, "evaluate", data, "--model", model, "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["rows"] == 90 and metrics["accuracy"] > 0.95 and metrics["cost"] > 0


def test_predict_finds_features_by_name(tmp_path, capsys, blobs):
    data, _ = blobs
    model = tmp_path / "m.npz"
    assert _run(capsys, "train", data, "--target", "animal", "--ignore", "id", "--epochs", "5",
                "--model", model, "--quiet")[0] == 0
    _, expected, _ = _run(capsys, "predict", data, "--model", model)
    # The same rows, columns reordered, the label and id gone, another column added.
    with open(data) as fh:
        rows = list(csv.DictReader(fh))
    other = _write(tmp_path / "new.csv", ["note", "x1", "x0"],
                   [["n", r["x1"], r["x0"]] for r in rows])
    out_file = tmp_path / "pred.csv"
    code, _, err = _run(capsys, "predict", other, "--model", model, "--output", out_file)
    assert code == 0, err
    assert out_file.read_text() == expected


def test_regression_without_header(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(200, 3))
    y = 100 + 30 * X @ np.array([1.0, -2.0, 0.5])
    data = _write(tmp_path / "reg.csv", None, np.column_stack([X, y]).round(6).tolist())
    model = tmp_path / "r.npz"
    code, out, err = _run(capsys, "train", data, "--target", "-1", "--layers", "16",
                          "--activation", "tanh", "--epochs", "60", "--model", model, "--quiet")
    assert code == 0, err
    assert "regression" in out and "fractions" in out and err == ""
    code, out, _ = _run(capsys, "evaluate", data, "--model", model, "--json")
    metrics = json.loads(out)
    assert metrics["r2"] > 0.98 and metrics["rmse"] < 10
    # Predictions are in the target's units (standardisation undone).
    _, out, _ = _run(capsys, "predict", data, "--model", model)
    pred = np.array([float(v) for v in out.split()[1:]])
    assert abs(pred.mean() - y.mean()) < 2


def test_binary_integer_labels_and_task_override(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    data = _write(tmp_path / "bin.csv", ["a", "b", "label"],
                  [[f"{a:.5f}", f"{b:.5f}", t] for (a, b), t in zip(X, y)])
    model = tmp_path / "b.npz"
    code, out, _ = _run(capsys, "train", data, "--target", "label", "--epochs", "30",
                        "--layers", "none", "--model", model, "--quiet")
    assert code == 0 and "2 distinct integers" in out and "network 2-1" in out
    assert "sigmoid" in out
    code, out, _ = _run(capsys, "predict", data, "--model", model, "--proba")
    assert out.splitlines()[0] == "label,P(0),P(1)"
    code, out, _ = _run(capsys, "train", data, "--target", "label", "--epochs", "2",
                        "--task", "regression", "--model", model, "--quiet")
    assert code == 0 and "regression (--task)" in out


@pytest.mark.parametrize(
    "content, argv, message",
    [
        ("a,b,y\n1,2,x\n3,4,y\n5,6\n", ["--target", "y"], "line 4: 2 fields, but line 1 has 3"),
        ("a,b,y\n1,2,x\n3,oops,y\n", ["--target", "y"], "line 3, column 'b'"),
        ("a,b,y\n1,2,x\n3,,y\n", ["--target", "y"], "line 3, column 'b': the feature cell is empty"),
        ("a,b,y\n1,2,x\n3,nan,y\n", ["--target", "y"], "'nan' is not a finite number"),
        ("a,b,y\n1,2,x\n3,4,\n", ["--target", "y"], "line 3, column 'y': the target cell is empty"),
        ("a,b,y\n1,2,x\n3,4,y\n", ["--target", "price"], "no such column; its columns are 'a', 'b', 'y'"),
        ("1,2,3\n4,5,6\n", ["--target", "y"], "no header line, so columns are numbered 0 to 2"),
        ("1,2,3\n4,5,6\n", ["--target", "7"], "has 3 columns"),
        ("a,b,y\n\n1,2,x\n\n3,4\n", ["--target", "y"], "line 5: 2 fields"),  # blank lines count
        ("", ["--target", "y"], "empty"),
        ("a,b,y\n", ["--target", "y"], "no data rows"),
        ("a,b,y\n1,2,x\n3,4,x\n", ["--target", "y"], "only one class"),
        ("a,y\n1,2\n", ["--target", "y", "--ignore", "a"], "no feature columns"),
        ("a,y\n1,2.5\n2,3.5\n", ["--target", "y", "--layers", "3,x"], "--layers"),
        ("a,y\n1,2.5\n2,3.5\n", ["--target", "y", "--activation", "softmax"], "not one of"),
        ('a,y\n1,"2\n', ["--target", "y"], "line"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, capsys, content, argv, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, out, err = _run(capsys, "train", path, "--model", tmp_path / "m.npz", "--quiet", *argv)
    assert code == 1
    assert err.startswith("python -m backprop_fast train: error: ")
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.npz").exists()


def test_missing_files_and_foreign_models(tmp_path, capsys, blobs):
    data, _ = blobs
    code, _, err = _run(capsys, "train", tmp_path / "nope.csv", "--target", "y", "--model",
                        tmp_path / "m.npz")
    assert code == 1 and "nope.csv: no such file" in err
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    code, _, err = _run(capsys, "predict", data, "--model", tmp_path / "junk.npz")
    assert code == 1 and "not a readable backprop_fast model" in err


def test_unseen_label_in_evaluate(tmp_path, capsys, blobs):
    data, _ = blobs
    model = tmp_path / "m.npz"
    _run(capsys, "train", data, "--target", "animal", "--ignore", "id", "--epochs", "1",
         "--model", model, "--quiet")
    with open(data) as fh:
        text = fh.read().replace(",eel\n", ",fox\n", 1)
    other = tmp_path / "other.csv"
    other.write_text(text)
    code, _, err = _run(capsys, "evaluate", other, "--model", model)
    assert code == 1 and "'fox'" in err and "not seen in training" in err


def test_models_saved_from_python(tmp_path, capsys):
    """A plain Network.save file: predict prints the raw outputs, evaluate needs --target."""
    net = Network([2, 3], ["softmax"], seed=0)
    net.save(tmp_path / "net.npz")
    data = _write(tmp_path / "d.csv", ["u", "v"], [[0.1, 0.2], [1.0, -1.0]])
    code, out, _ = _run(capsys, "predict", data, "--model", tmp_path / "net.npz")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["output0", "output1", "output2"]
    np.testing.assert_allclose(np.array(rows[1:], dtype=float),
                               net.predict([[0.1, 0.2], [1.0, -1.0]]))
    labelled = _write(tmp_path / "l.csv", ["u", "v", "k"], [[0.1, 0.2, 2], [1.0, -1.0, 0]])
    code, _, err = _run(capsys, "evaluate", labelled, "--model", tmp_path / "net.npz")
    assert code == 1 and "give --target" in err
    code, out, _ = _run(capsys, "evaluate", labelled, "--model", tmp_path / "net.npz",
                        "--target", "k", "--json")
    assert code == 0
    assert json.loads(out)["cost"] == pytest.approx(
        net.evaluate([[0.1, 0.2], [1.0, -1.0]], np.array([2, 0])))


def test_gzip_semicolons_and_forced_header(tmp_path, capsys):
    rows = "\n".join(f"{i};{i % 2}" for i in range(40))
    path = tmp_path / "d.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1;0\n" + rows + "\n")
    code, out, err = _run(capsys, "train", path, "--target", "1", "--no-header", "--epochs", "1",
                          "--model", tmp_path / "m.npz", "--quiet")
    assert code == 0, err and "41 rows" in out
    code, out, err = _run(capsys, "train", path, "--target", "0", "--header", "--epochs", "1",
                          "--model", tmp_path / "m.npz", "--quiet")
    assert code == 0, err
    assert "40 rows" in out and "target '0'" in out


def test_plot_option(tmp_path, capsys, blobs):
    pytest.importorskip("matplotlib")
    data, _ = blobs
    png = tmp_path / "curve.png"
    code, out, err = _run(capsys, "train", data, "--target", "animal", "--ignore", "id",
                          "--epochs", "5", "--model", tmp_path / "m.npz", "--plot", png,
                          "--quiet")
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_options_validation_and_early_stopping(tmp_path, capsys, blobs):
    data, _ = blobs
    png = tmp_path / "curve.png"
    code, out, err = _run(capsys, "train", data, "--target", "animal", "--ignore", "id",
                          "--model", tmp_path / "m.npz", "--optimizer", "adam",
                          "--learning-rate", "0.01", "--weight-decay", "1e-4",
                          "--validation-split", "0.25", "--early-stopping", "--patience", "3",
                          "--epochs", "300", "--class-weight", "balanced", "--plot", png)
    assert code == 0, err
    assert "validation: 22 rows held out at random" in out
    assert "stopped early; kept the parameters of epoch" in out
    assert "validation accuracy" in out and "val_loss" in err
    if png.exists():  # matplotlib installed
        assert png.read_bytes()[:4] == b"\x89PNG"
    code, _, err = _run(capsys, "train", data, "--target", "animal", "--ignore", "id",
                        "--model", tmp_path / "m2.npz", "--optimizer", "sgd", "--momentum",
                        "0.9", "--nesterov", "--lr-schedule", "cosine", "--epochs", "5",
                        "--quiet")
    assert code == 0, err


@pytest.mark.parametrize("argv, message", [
    (["--nesterov"], "--nesterov needs --momentum > 0"),
    (["--optimizer", "adam", "--momentum", "0.9"], "apply to --optimizer sgd"),
    (["--validation-split", "0.001"], "leaves 0 of 90 rows"),
])
def test_inconsistent_training_options(tmp_path, capsys, blobs, argv, message):
    data, _ = blobs
    code, _, err = _run(capsys, "train", data, "--target", "animal", "--ignore", "id",
                        "--model", tmp_path / "m.npz", "--quiet", *argv)
    assert code == 1 and message in err


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no subcommands")


@pytest.mark.parametrize("command", ["train", "predict", "evaluate"])
def test_help_documents_every_option(command):
    sub = _subparsers(build_parser())[command]
    text = sub.format_help()
    for action in sub._actions:
        assert action.help and action.help != argparse.SUPPRESS, action.dest
        for flag in action.option_strings or [action.metavar or action.dest]:
            assert flag in text, flag
    assert "example:" in text


def test_help_from_the_command_line(tmp_path):
    # Run outside the checkout: there the source package (without its compiled
    # kernel) would come first on sys.path instead of the installed one.
    result = subprocess.run([sys.executable, "-m", "backprop_fast", "train", "--help"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0
    assert "--target COLUMN" in result.stdout and "--plot FILE.png" in result.stdout


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_and_in_a_log():
    tty = _Terminal()
    bar = ProgressBar(3, stream=tty)
    for epoch in range(3):
        bar(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 0.5})
    bar.close()
    text = tty.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "epoch 3/3" in text and "val_loss 0.5" in text and "left" in text

    log = io.StringIO()
    bar = ProgressBar(100, stream=log)
    for epoch in range(100):
        bar(epoch, {"loss": 1.0})
    assert len(log.getvalue().splitlines()) == 10 and "\r" not in log.getvalue()
