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


# ----------------------------------------------------------------------------
# Duplicate names, extreme scales, models used outside the command line


def test_duplicate_column_names_are_refused(tmp_path, capsys):
    rows = [[f"{i}", f"{i % 3}", f"{i % 5}", "x" if i % 2 else "y"] for i in range(20)]
    data = _write(tmp_path / "dup.csv", ["a", "a", "a", "label"], rows)
    code, _, err = _run(capsys, "train", data, "--target", "label", "--model",
                        tmp_path / "m.npz", "--quiet")
    assert code == 1 and "'a' 3 times" in err and "Traceback" not in err
    assert not (tmp_path / "m.npz").exists()


def _extreme_regression(tmp_path):
    """A feature of magnitude 1e300 and a target of magnitude 1e200."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] + 0.5 * X[:, 1]) * 1e200
    rows = [[repr(float(a) * 1e300), repr(float(b)), repr(float(t))] for (a, b), t in zip(X, y)]
    return _write(tmp_path / "big.csv", ["x0", "x1", "y"], rows), y


def test_standardisation_of_extreme_columns(tmp_path, capsys):
    data, y = _extreme_regression(tmp_path)
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "train", data, "--target", "y", "--layers", "16",
                          "--activation", "tanh", "--epochs", "60", "--model", model,
                          "--quiet")
    assert code == 0, err
    assert "nan" not in out and "inf" not in out
    code, out, err = _run(capsys, "evaluate", data, "--model", model, "--json")
    metrics = json.loads(out)
    # The 1e300 column carries most of the target: zeroed, R^2 would be ~0.2.
    assert metrics["r2"] > 0.9 and np.isfinite(metrics["rmse"]) and np.isfinite(metrics["mae"])
    _, out, _ = _run(capsys, "predict", data, "--model", model)
    pred = np.array([float(v) for v in out.split()[1:]])
    assert np.isfinite(pred).all() and np.corrcoef(pred / 1e200, y / 1e200)[0, 1] > 0.95


def test_standardisation_that_float32_cannot_hold_is_refused(tmp_path, capsys):
    data, _ = _extreme_regression(tmp_path)
    model = tmp_path / "m.npz"
    code, _, err = _run(capsys, "train", data, "--target", "y", "--epochs", "2",
                        "--model", model, "--quiet", "--dtype", "float32")
    assert code == 1 and "--dtype float64" in err and "Traceback" not in err
    assert not model.exists()


def _cli_predictions(capsys, data, model, proba):
    args = ["predict", data, "--model", model] + (["--proba"] if proba else [])
    code, out, err = _run(capsys, *args)
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))[1:]
    return rows


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_model_files_predict_from_raw_rows_through_every_path(tmp_path, capsys, blobs, dtype):
    """Network.load and the ONNX export give, from raw rows, what the command
    line predicts: the standardisation lives in the network."""
    data, labels = blobs
    model = tmp_path / "m.npz"
    code, _, err = _run(capsys, "train", data, "--target", "animal", "--ignore", "id",
                        "--layers", "8", "--epochs", "30", "--model", model, "--quiet",
                        "--dtype", dtype)
    assert code == 0, err
    rows = _cli_predictions(capsys, data, model, proba=True)
    cli_proba = np.array([[float(v) for v in r[1:]] for r in rows])
    with open(data) as fh:
        raw = np.array([[float(r[1]), float(r[2])] for r in list(csv.reader(fh))[1:]])
    net = Network.load(model)
    proba = net.predict(raw)
    np.testing.assert_allclose(proba, cli_proba, atol=2e-6)
    assert np.mean(np.argmax(proba, axis=1) == labels) > 0.95
    ort = pytest.importorskip("onnxruntime")
    net.to_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    onnx_proba = session.run(None, {"X": raw.astype(dtype)})[0]
    np.testing.assert_allclose(onnx_proba, proba, atol=1e-5 if dtype == "float32" else 1e-12)


def test_regression_model_file_predicts_raw_targets(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(200, 3)) * [1.0, 1000.0, 0.01] + [0.0, 5e4, 3.0]
    y = 100 + 30 * (X - [0.0, 5e4, 3.0]) / [1.0, 1000.0, 0.01] @ np.array([1.0, -2.0, 0.5])
    data = _write(tmp_path / "reg.csv", ["a", "b", "c", "y"],
                  np.column_stack([X, y]).tolist())
    model = tmp_path / "r.npz"
    code, _, err = _run(capsys, "train", data, "--target", "y", "--layers", "16",
                        "--activation", "tanh", "--epochs", "60", "--model", model, "--quiet")
    assert code == 0, err
    cli = np.array([float(r[0]) for r in _cli_predictions(capsys, data, model, False)])
    direct = Network.load(model).predict(X)[:, 0]
    np.testing.assert_allclose(direct, cli, rtol=1e-12, atol=1e-9)
    assert np.sqrt(np.mean((direct - y) ** 2)) < 10


def test_version_1_model_files_still_apply_their_scaling(tmp_path, capsys, blobs):
    """Files written before the scaling was folded keep it beside the network."""
    data, labels = blobs
    model = tmp_path / "m.npz"
    code, _, err = _run(capsys, "train", data, "--target", "animal", "--ignore", "id",
                        "--layers", "8", "--epochs", "30", "--model", model, "--quiet")
    assert code == 0, err
    expected = _cli_predictions(capsys, data, model, proba=True)
    net, info = load_model(model)
    # Unfold: the same network for standardised inputs, and a version 1 file.
    mean, scale = np.array([10.0, 11.0]), np.array([2.0, 4.0])
    W = np.array(net.weights[0])
    net.biases[0] = np.array(net.biases[0]) + W @ mean
    net.weights[0] = W * scale
    info = dict(info, x_mean=mean.tolist(), x_scale=scale.tolist())
    # The first format kept the description beside the network's, not in
    # its metadata.
    arrays = net._file_arrays({})
    meta = json.loads(str(arrays["meta"][()]))
    meta["cli"] = dict(info, cli_format_version=1)
    arrays["meta"] = np.array(json.dumps(meta))
    with open(model, "wb") as fh:
        np.savez(fh, **arrays)
    got = _cli_predictions(capsys, data, model, proba=True)
    assert [r[0] for r in got] == [r[0] for r in expected]
    np.testing.assert_allclose(np.array([r[1:] for r in got], dtype=float),
                               np.array([r[1:] for r in expected], dtype=float), atol=1e-5)


# ----------------------------------------------------------------------------
# Arguments at the edges; hostile command-line descriptions in model files


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "99999999999999999999"], "--epochs"),
    (["--patience", str(2**63), "--early-stopping"], "--patience"),
    (["--batch-size", "1e3"], "--batch-size"),
    (["--delimiter", ""], "--delimiter"),
    (["--delimiter", ",,"], "--delimiter"),
    (["--delimiter", '"'], "--delimiter"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "٣"], "--seed"),
    (["--learning-rate", "1e400"], "--learning-rate"),
])
def test_out_of_range_arguments_are_usage_errors(tmp_path, capsys, blobs, argv, message):
    data, _ = blobs
    with pytest.raises(SystemExit) as info:
        main(["train", data, "--target", "animal", "--model", str(tmp_path / "m.npz"), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {message}" in err and "Traceback" not in err


@pytest.mark.parametrize("layers", ["²", "1²", "٣", "+3", "3.0", "-1", "2,,3"])
def test_layers_take_ascii_digits_only(tmp_path, capsys, blobs, layers):
    data, _ = blobs
    code, _, err = _run(capsys, "train", data, "--target", "animal", "--layers", layers,
                        "--model", tmp_path / "m.npz", "--quiet")
    assert code == 1 and "--layers" in err


def test_tab_delimiter_by_name(tmp_path, capsys):
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\ty\n" + "".join(f"{i}\t{i % 3}\t{'xy'[i % 2]}\n" for i in range(20)))
    code, _, err = _run(capsys, "train", path, "--target", "y", "--delimiter", "\\t",
                        "--epochs", "1", "--model", tmp_path / "m.npz", "--quiet")
    assert code == 0, err


def _edit_cli_info(path, edit):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"][()]))
    edit(meta["metadata"]["cli"])
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


HOSTILE_CLI_INFO = {
    "missing-task": lambda i: i.pop("task"),
    "missing-features": lambda i: i.pop("features"),
    "missing-classes": lambda i: i.pop("classes"),
    "task-number": lambda i: i.update(task=3),
    "feature-index-out-of-range": lambda i: i.update(feature_indices=[1, 99]),
    "feature-index-negative": lambda i: i.update(feature_indices=[-1, 2]),
    "feature-index-string": lambda i: i.update(feature_indices=["1", "2"]),
    "feature-index-is-target": lambda i: i.update(feature_indices=[1, 3]),
    "target-index-out-of-range": lambda i: i.update(target_index=12),
    "means-as-strings": lambda i: i.update(x_mean=["1", "2"], x_scale=[1, 1]),
    "scale-zero": lambda i: i.update(x_mean=[1, 2], x_scale=[0, 1]),
    "scale-without-mean": lambda i: i.update(x_scale=[1, 1]),
    "y-scale-for-classes": lambda i: i.update(y_mean=1.0, y_scale=2.0),
    "classes-too-few": lambda i: i.update(classes=["cat", "dog"]),
    "classes-repeated": lambda i: i.update(classes=["cat", "cat", "eel"]),
    "classes-numbers": lambda i: i.update(classes=[1, 2, 3]),
    "header-string": lambda i: i.update(header="yes"),
    "n-columns-huge": lambda i: i.update(n_columns=10**30),
    "features-string": lambda i: i.update(features="x0,x1"),
    "regression-with-softmax": lambda i: i.update(task="regression", classes=None),
    "version-string": lambda i: i.update(cli_format_version="2"),
    "version-future": lambda i: i.update(cli_format_version=99),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CLI_INFO))
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_hostile_command_line_description(tmp_path, capsys, blobs, case, command):
    data, _ = blobs
    model = tmp_path / "m.npz"
    code, _, err = _run(capsys, "train", data, "--target", "animal", "--ignore", "id",
                        "--layers", "4", "--epochs", "1", "--model", model, "--quiet")
    assert code == 0, err
    _edit_cli_info(model, HOSTILE_CLI_INFO[case])
    code, out, err = _run(capsys, command, data, "--model", model)
    assert code == 1, (out, err)
    assert err.startswith(f"python -m backprop_fast {command}: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
