"""The ``train``, ``predict`` and ``evaluate`` commands of ``python -m backprop_fast``.

::

    python -m backprop_fast train data.csv --target species --layers 64,32 \\
        --activation relu --epochs 20 --model model.npz [--plot curve.png]
    python -m backprop_fast predict data.csv --model model.npz [--output out.csv] [--proba]
    python -m backprop_fast evaluate data.csv --model model.npz

``train`` reads a CSV file (header line detected, delimiter sniffed, .gz
accepted), infers classification or regression from the target column
(``--task`` overrides), standardises the features (and a regression target),
trains a network and saves it. The standardisation is folded into the saved
network's first and last layers, so the model file predicts from raw rows
through every path. The file is an ordinary ``Network.save`` file, loadable
with ``Network.load``; its JSON description carries one extra entry,
``"cli"``, with what ``predict`` and ``evaluate`` need to read new data the
same way: feature columns, task and class labels.

A run that fails leaves every existing output file as it was.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._checks import _short
from ._csv import CSVError, Table, is_number, read_csv
from ._io import StagedFiles, atomic_open
from .history import ProgressBar
from .network import ACTIVATIONS, DivergenceError, Network

__all__ = ["add_commands", "ProgressBar", "save_model", "load_model", "CLIError"]

#: An integer-valued target with at most this many distinct values is taken
#: for class labels (``--task`` overrides the guess).
MAX_INFERRED_CLASSES = 20
#: Version 2 folds the standardisation into the network's first and last
#: layers, so that the model predicts from raw rows through every public path;
#: version 1 files keep it beside the network (x_mean, ...), applied here.
CLI_FORMAT_VERSION = 2


class CLIError(ValueError):
    """A problem with the command's arguments or files, reported as one line."""


# ---------------------------------------------------------------- model files

def save_model(net: Network, path: str, info: Dict[str, Any],
               staged: Optional[StagedFiles] = None) -> None:
    """``net.save(path)`` with ``info`` added to the file's JSON description.

    The result stays a file that ``Network.load`` reads; ``load_model``
    returns ``info`` beside the network. Written atomically; with ``staged``,
    written to its temporary file and moved into place by its ``commit``.
    """
    metadata = dict(net.metadata, cli=dict(info, cli_format_version=CLI_FORMAT_VERSION))
    if staged is None:
        net.save(path, metadata=metadata)
    else:
        arrays = net._file_arrays(metadata)
        with staged.open(path, "wb") as fh:
            np.savez(fh, **arrays)


def load_model(path: str) -> Tuple[Network, Optional[Dict[str, Any]]]:
    """Read a model file: the network and the command line's description (or
    None for a file written by ``Network.save`` alone)."""
    net = Network.load(path)  # validates the file; raises ValueError if it is not one
    info = net.metadata.get("cli")
    if info is None:
        # Files of the first command-line format kept its description beside
        # the network's instead of in its metadata.
        with np.load(os.fspath(path), allow_pickle=False) as data:
            info = json.loads(str(data["meta"][()])).get("cli")
    if info is not None:
        version = info.get("cli_format_version") if isinstance(info, dict) else None
        if type(version) is not int or version > CLI_FORMAT_VERSION:
            raise ValueError(f"{path}: command-line model description version "
                             f"{_short(version)}; this backprop_fast reads up to "
                             f"{CLI_FORMAT_VERSION}. Upgrade backprop_fast.")
        try:
            _check_info(info, net)
        except ValueError as exc:
            raise CLIError(f"{path}: the command line's description in the model file is "
                           f"invalid: {exc}") from None
    return net, info


def _is_index(value: Any, n: int) -> bool:
    return type(value) is int and 0 <= value < n


def _finite_numbers(value: Any, n: int, positive: bool = False) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(type(v) in (int, float) and math.isfinite(v) and (v > 0 or not positive)
                    for v in value))


def _check_info(info: Dict[str, Any], net: Network) -> None:
    """Check every entry of a model's command-line description by type and
    range, and against the network; a ValueError names the first bad one."""
    def bad(key, expected):
        raise ValueError(f"{key} = {_short(info.get(key))}: expected {expected}")

    n_in, n_out = net.layer_sizes[0], net.layer_sizes[-1]
    task = info.get("task")
    if task not in ("classification", "regression"):
        bad("task", "'classification' or 'regression'")
    n_columns = info.get("n_columns")
    if type(n_columns) is not int or not 1 <= n_columns <= 10**9:
        bad("n_columns", "a positive number of columns")
    assert isinstance(n_columns, int)  # bad() raised otherwise
    if type(info.get("header")) is not bool:
        bad("header", "true or false")
    if not isinstance(info.get("target"), str):
        bad("target", "a column name")
    if not _is_index(info.get("target_index"), n_columns):
        bad("target_index", f"a column number in 0..{n_columns - 1}")
    features = info.get("features")
    if (not isinstance(features, list) or len(features) != n_in
            or not all(isinstance(f, str) for f in features)):
        bad("features", f"a list of {n_in} column names")
    indices = info.get("feature_indices")
    if (not isinstance(indices, list) or len(indices) != n_in
            or not all(_is_index(i, n_columns) for i in indices)
            or len(set(indices)) != n_in or info["target_index"] in indices):
        bad("feature_indices", f"{n_in} distinct column numbers in 0..{n_columns - 1}, "
                               "without the target's")
    for mean, scale, n in (("x_mean", "x_scale", n_in), ("y_mean", "y_scale", None)):
        if (info.get(mean) is None) != (info.get(scale) is None):
            bad(scale, f"given with {mean} or not at all")
        if info.get(mean) is None:
            continue
        if n is None:
            if task != "regression":
                bad(mean, "null for classification")
            for key, positive in ((mean, False), (scale, True)):
                if not _finite_numbers([info.get(key)], 1, positive):
                    bad(key, "a finite number" + (" > 0" if positive else ""))
        else:
            if not _finite_numbers(info.get(mean), n):
                bad(mean, f"a list of {n} finite numbers")
            if not _finite_numbers(info.get(scale), n, positive=True):
                bad(scale, f"a list of {n} finite numbers > 0")
    classes = info.get("classes")
    if task == "classification":
        n_classes = 2 if n_out == 1 else n_out
        if (not isinstance(classes, list) or len(classes) != n_classes
                or not all(isinstance(c, str) for c in classes)
                or len(set(classes)) != n_classes):
            bad("classes", f"a list of {n_classes} distinct labels (the network has "
                           f"{n_out} output unit{'s' if n_out > 1 else ''})")
        if net.loss != "cross_entropy" or net.activations[-1] not in ("sigmoid", "softmax"):
            bad("task", "'regression' for a network without a classifier's output")
    else:
        if classes is not None:
            bad("classes", "null for regression")
        if n_out != 1:
            bad("task", f"'classification' for a network with {n_out} outputs")


# ---------------------------------------------------------------- data

def _parse_layers(text: str) -> List[int]:
    text = text.strip()
    if text in ("", "none", "0"):
        return []
    sizes = []
    for part in text.split(","):
        part = part.strip()
        # ASCII digits only: str.isdigit also accepts "²" and other digits
        # that int() refuses or reads differently.
        if not (part.isascii() and part.isdigit()) or int(part) < 1:
            raise CLIError(f"--layers {text!r}: give hidden layer widths as positive "
                           "integers separated by commas, e.g. 64,32 (or 'none')")
        sizes.append(int(part))
    return sizes


def _parse_activations(text: str, n_hidden: int) -> List[str]:
    names = [a.strip() for a in text.split(",")]
    hidden = sorted(a for a in ACTIVATIONS if a != "softmax")
    for a in names:
        if a not in hidden:
            raise CLIError(f"--activation {text!r}: {a!r} is not one of {', '.join(hidden)}")
    if len(names) == 1:
        return names * n_hidden
    if len(names) != n_hidden:
        raise CLIError(f"--activation {text!r}: give one name for all hidden layers or one "
                       f"per hidden layer ({n_hidden})")
    return names


def _infer_task(cells: Sequence[str]) -> Tuple[str, str]:
    """('classification' | 'regression', the reason, for the user)."""
    if not all(is_number(c) for c in cells):
        return "classification", "it holds non-numeric labels"
    values = np.array([float(c) for c in cells])
    n_distinct = np.unique(values).size
    if not np.all(values == np.round(values)):
        return "regression", "it holds numbers with fractions"
    if n_distinct <= MAX_INFERRED_CLASSES:
        return "classification", f"it holds {n_distinct} distinct integers"
    return "regression", (f"it holds {n_distinct} distinct integers, more than "
                          f"{MAX_INFERRED_CLASSES}")


def _label_key(label: str):
    """Sort labels numerically when they are numbers, else as text."""
    return (0, float(label), "") if is_number(label) else (1, 0.0, label)


def _canonical_label(cell: str) -> str:
    cell = cell.strip()
    if is_number(cell):
        value = float(cell)
        return str(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)
    return cell


def _target_cells(table: Table, column: int) -> List[str]:
    cells = []
    for i, row in enumerate(table.rows):
        cell = row[column].strip()
        if not cell:
            raise CSVError(f"{table.where(i)}, {table.column_label(column)}: the target "
                           "cell is empty (a missing label: fill it in or drop the row)")
        cells.append(cell)
    return cells


def _feature_columns(table: Table, info: Dict[str, Any]) -> List[int]:
    """Where a model's features are in ``table`` (a file read for predict/evaluate)."""
    names = info["features"]
    if table.has_header and info.get("header"):
        missing = [n for n in names if n not in table.columns]
        if missing:
            raise CSVError(f"{table.path} lacks the feature column(s) "
                           f"{', '.join(map(repr, missing))} the model was trained on")
        return [table.columns.index(n) for n in names]
    width = len(table.columns)
    if width == info["n_columns"]:
        return list(info["feature_indices"])
    if width == len(names):
        return list(range(width))
    raise CSVError(f"{table.path} has {width} columns; the model needs its {len(names)} "
                   f"feature columns (or the {info['n_columns']} columns of its training file)")


def _mean_and_scale(X: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means and standard deviations of X (n, k) without overflow, and
    X standardised with them; a constant column gets scale 1 and becomes 0.

    Each column is divided by its largest magnitude first: squaring values
    of 1e200 (or summing ones near the largest double) would overflow.
    """
    peak = np.max(np.abs(X), axis=0)
    peak[peak == 0] = 1.0
    Z = X / peak
    z_mean = Z.mean(axis=0)
    z_std = Z.std(axis=0)
    constant = z_std == 0
    z_std[constant] = 1.0
    scaled = (Z - z_mean) / z_std
    scale = z_std * peak
    scale[constant] = 1.0
    return z_mean * peak, scale, scaled


def _standardise_like(X: np.ndarray, mean, scale, constant) -> np.ndarray:
    """(X - mean) / scale, computed as X / scale - mean / scale so that it
    overflows only where the result itself is out of range."""
    return np.where(constant, 0.0, X / scale - mean / scale)


def _fold_scaling(net: Network, x_mean, x_scale, constant, y_mean, y_scale) -> None:
    """Fold the standardisation into the network, so that it takes raw rows
    and (for regression) gives raw targets: with z = (x - mean) / scale,
    W z + b = (W / scale) x + (b - W (mean / scale)); an output y = s a + m
    needs s W and s b + m in the last (identity) layer. A column that was
    constant in training was 0 for the network and gets weight 0."""
    W = np.array(net.weights[0], dtype=np.float64)
    b = np.array(net.biases[0], dtype=np.float64)
    ratio = np.where(constant, 0.0, x_mean / x_scale)
    W = np.where(constant, 0.0, W / x_scale)
    b = b - np.array(net.weights[0], dtype=np.float64) @ ratio
    last = len(net.weights) - 1
    if last == 0:
        W0, b0 = W, b
    else:
        net.weights[0], net.biases[0] = W, b
    if y_mean is not None:
        if last:
            W0 = np.array(net.weights[last], dtype=np.float64)
            b0 = np.array(net.biases[last], dtype=np.float64)
        W0, b0 = W0 * y_scale, b0 * y_scale + y_mean
    if last == 0 or y_mean is not None:
        net.weights[last], net.biases[last] = W0, b0


def _scale(X: np.ndarray, info: Dict[str, Any]) -> np.ndarray:
    if info.get("x_mean") is None:
        return X
    return (X - np.asarray(info["x_mean"])) / np.asarray(info["x_scale"])


def _scale_y(y: np.ndarray, info: Dict[str, Any]) -> np.ndarray:
    if info.get("y_mean") is None:
        return y
    return (y - info["y_mean"]) / info["y_scale"]


# ---------------------------------------------------------------- train

def _fit_options(args) -> Dict[str, Any]:
    """Network.fit keyword arguments from the training options."""
    options: Dict[str, Any] = {"optimizer": args.optimizer, "weight_decay": args.weight_decay,
                               "lr_schedule": args.lr_schedule, "power_t": args.power_t}
    if args.optimizer == "sgd":
        if args.nesterov and args.momentum == 0:
            raise CLIError("--nesterov needs --momentum > 0 (e.g. 0.9)")
        options.update(momentum=args.momentum, nesterov=args.nesterov)
    elif args.momentum or args.nesterov:
        raise CLIError(f"--momentum/--nesterov apply to --optimizer sgd, not {args.optimizer}")
    if args.early_stopping or args.lr_schedule == "plateau":
        options.update(patience=args.patience, min_delta=args.min_delta)
    if args.early_stopping:
        options["early_stopping"] = True
    if args.class_weight:
        options["class_weight"] = args.class_weight
    return options


def _distinct_files(**paths: Optional[str]) -> None:
    """Refuse two options naming the same file: one output would overwrite
    the other (or the input it is made from)."""
    seen: Dict[str, str] = {}
    for option, path in paths.items():
        if path is None or path == "-":
            continue
        real = os.path.realpath(path)
        if real in seen:
            raise CLIError(f"--{option.replace('_', '-')} {path} is the same file as "
                           f"{seen[real]}; give each its own path")
        seen[real] = "the data file" if option == "data" else f"--{option}"


def run_train(args) -> int:
    out = sys.stdout
    _distinct_files(data=args.data, model=args.model, plot=args.plot)
    options = _fit_options(args)  # option errors before reading any data
    hidden = _parse_layers(args.layers)
    activations = _parse_activations(args.activation, len(hidden)) if hidden else []
    table = read_csv(args.data, header=args.header, delimiter=args.delimiter)
    target = table.column_index(args.target, "--target")
    ignored = {table.column_index(c, "--ignore") for c in args.ignore}
    features = [c for c in range(len(table.columns)) if c != target and c not in ignored]
    if not features:
        raise CLIError(f"{table.path}: no feature columns left beside the target "
                       f"{table.columns[target]!r}")
    cells = _target_cells(table, target)
    task, why = _infer_task(cells)
    if args.task is not None:
        task, why = args.task, "--task"
    X = table.numeric(features)

    info: Dict[str, Any] = {
        "task": task, "target": table.columns[target], "target_index": target,
        "features": [table.columns[c] for c in features], "feature_indices": features,
        "n_columns": len(table.columns), "header": table.has_header,
        "x_mean": None, "x_scale": None, "y_mean": None, "y_scale": None, "classes": None,
    }
    if task == "classification":
        classes = sorted({_canonical_label(c) for c in cells}, key=_label_key)
        if len(classes) < 2:
            raise CLIError(f"{table.path}: the target {info['target']!r} has only one class "
                           f"({classes[0]!r}); classification needs at least two")
        codes = {c: k for k, c in enumerate(classes)}
        labels = np.array([codes[_canonical_label(c)] for c in cells])
        info["classes"] = classes
        if len(classes) == 2:
            y = labels.astype(np.float64)
            n_out, output, loss = 1, "sigmoid", "cross_entropy"
        else:
            y = labels
            n_out, output, loss = len(classes), "softmax", "cross_entropy"
    else:
        y = table.numeric([target], what="target")
        n_out, output, loss = 1, "identity", "squared_error"
    X_val = y_val = None
    if args.validation_split:
        # A random hold-out (the file may be sorted by the target), fixed by --seed.
        order = np.random.default_rng(args.seed).permutation(X.shape[0])
        n_val = int(round(args.validation_split * X.shape[0]))
        if not 0 < n_val < X.shape[0]:
            raise CLIError(f"--validation-split {args.validation_split} leaves {n_val} of "
                           f"{X.shape[0]} rows for validation; each side needs at least one")
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        X, X_val, y, y_val = X[train], X[val], y[train], y[val]
        cells = [cells[i] for i in train]
    X_raw, y_raw = X, y
    scaling = None
    if args.standardize:  # with the training rows' statistics only
        mean, scale, X = _mean_and_scale(X)
        constant = np.max(X_raw, axis=0) == np.min(X_raw, axis=0)
        y_mean = y_scale = None
        if task == "regression":
            y_means, y_scales, y = _mean_and_scale(y)
            y_mean, y_scale = float(y_means[0]), float(y_scales[0])
        scaling = (mean, scale, constant, y_mean, y_scale)
        if X_val is not None:
            X_val = _standardise_like(X_val, mean, scale, constant)
            if y_mean is not None and y_val is not None:
                y_val = _standardise_like(y_val, y_mean, y_scale, False)
    if X_val is not None and y_val is not None:
        options["validation_data"] = (X_val, y_val)

    sizes = [len(features)] + hidden + [n_out]
    try:
        net = Network(sizes, activations + [output], loss, dtype=args.dtype, seed=args.seed)
    except MemoryError:
        n_params = sum((i + 1) * o for i, o in zip(sizes, sizes[1:]))
        raise CLIError(f"--layers {args.layers}: a network with layers "
                       f"{'-'.join(map(str, sizes))} has {n_params:,} parameters, more "
                       "than fit in memory") from None
    batch = None if args.batch_size == 0 else args.batch_size
    arch = "-".join(map(str, sizes))
    with StagedFiles() as staged:
        # The output files' temporaries are made before training, so that a
        # missing or read-only folder fails at once; they replace the files
        # only once every output is written (a failed run changes none).
        staged.reserve(args.model)
        if args.plot:
            staged.reserve(args.plot)
        print(f"{table.path}: {table.n_rows} rows, {len(features)} feature"
              f"{'' if len(features) == 1 else 's'}; target "
              f"{info['target']!r}: {task} ({why}" + ("" if why == "--task" else
                                                      "; --task overrides") + ")", file=out)
        print(f"network {arch}, activations {','.join(net.activations)}, loss {loss}, "
              f"{net.dtype.name}, {args.epochs} epochs, batch "
              f"{'all' if batch is None else batch}, learning rate {args.learning_rate:g}",
              file=out)
        if X_val is not None:
            print(f"validation: {X_val.shape[0]} rows held out at random", file=out)
        out.flush()
        bar = ProgressBar(args.epochs, enabled=not args.quiet)
        try:
            history = net.fit(X, y, epochs=args.epochs, batch_size=batch,
                              learning_rate=args.learning_rate, shuffle=args.shuffle,
                              callbacks=[bar], **options)
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted after {bar.epochs_done} epoch(s); the model was not saved",
                  file=sys.stderr)
            return 130
        except DivergenceError as exc:
            bar.close()
            raise CLIError(str(exc)) from None
        bar.close()
        if scaling is not None:
            _fold_checked(net, X, X_raw, scaling, task)

        save_model(net, args.model, info, staged)
        if args.plot:
            from .plot import plot_history
            figure = plot_history(history, title=f"{os.path.basename(table.path)}: {arch}")
            fmt = os.path.splitext(args.plot)[1].lstrip(".").lower() or "png"
            with staged.open(args.plot, "wb") as fh:
                figure.savefig(fh, format=fmt)
        staged.commit()
    summary = [f"trained {len(history.loss)} epoch(s)"]
    if history.stopped_early:
        summary[0] += " (stopped early"
        if history.best_epoch is not None and args.early_stopping:
            summary[0] += f"; kept the parameters of epoch {history.best_epoch + 1}"
        summary[0] += ")"
    if history.loss:
        summary.append(f"final cost {history.loss[-1]:.4g}")
    if history.val_loss:
        summary.append(f"validation cost {history.val_loss[-1]:.4g}")
    if history.val_accuracy:
        summary.append(f"validation accuracy {history.val_accuracy[-1]:.4g}")
    # On the raw rows, through the saved network, as evaluate would see them.
    metrics = _metrics(net, info, X_raw, cells if task == "classification" else None,
                       y_raw)
    summary.append(", ".join(f"training {k} {v:.4g}" for k, v in metrics.items()
                             if k in ("accuracy", "rmse")))
    print("; ".join(s for s in summary if s), file=out)
    print(f"model saved to {args.model}", file=out)
    if args.plot:
        print(f"training curve saved to {args.plot}", file=out)
    return 0


# Rows on which a folded network is compared with the trained one.
_FOLD_CHECK_ROWS = 2000


def _fold_checked(net: Network, X_scaled: np.ndarray, X_raw: np.ndarray, scaling,
                  task: str) -> None:
    """Fold the standardisation into ``net`` and check on training rows that
    the folded network computes from raw rows what the trained one computed
    from standardised rows; refuse (CLIError) where the network's dtype
    cannot carry the scaling precisely."""
    mean, scale, constant, y_mean, y_scale = scaling
    rows = slice(0, _FOLD_CHECK_ROWS)
    before = net.predict(X_scaled[rows]).astype(np.float64)
    if y_mean is not None:
        before = before * y_scale + y_mean
    tol = 1e-3 if net.dtype == np.float32 else 1e-6
    advice = ("; train with --dtype float64 (the default), or centre and rescale these "
              "columns before training" if net.dtype == np.float32 else
              "; centre and rescale these columns before training")
    try:
        _fold_scaling(net, mean, scale, constant, y_mean, y_scale)
        after = net.predict(X_raw[rows]).astype(np.float64)
    except ValueError as exc:
        raise CLIError(f"the standardisation cannot be stored in the {net.dtype} network "
                       f"({exc}){advice}") from None
    unit = 1.0 if y_scale is None else y_scale
    worst = float(np.max(np.abs(after - before))) / unit
    if not worst <= tol:
        raise CLIError(f"the standardisation cannot be stored in the {net.dtype} network "
                       f"without changing its predictions (by up to {worst:.3g} standard "
                       f"deviations of the outputs): some feature's mean is too large "
                       f"against its spread{advice}")


# ---------------------------------------------------------------- predict / evaluate

def _outputs(net: Network, info: Optional[Dict[str, Any]], X: np.ndarray):
    """(predictions as strings or floats, probabilities or None, class labels or None)."""
    raw = net.predict(X)
    if info is None:
        return raw, None, None
    if info["task"] == "classification":
        classes = info["classes"]
        if raw.shape[1] == 1:
            proba = np.hstack([1 - raw, raw])
        else:
            proba = raw
        return [classes[k] for k in proba.argmax(axis=1)], proba, classes
    values = raw[:, 0]
    if info.get("y_mean") is not None:
        values = values * info["y_scale"] + info["y_mean"]
    return values, None, None


def _read_features(args, net, info) -> Tuple[Table, np.ndarray]:
    table = read_csv(args.data, header=args.header, delimiter=args.delimiter)
    if info is None:
        columns = list(range(len(table.columns)))
        if getattr(args, "target", None) is not None:
            target = table.column_index(args.target, "--target")
            columns.remove(target)
    else:
        columns = _feature_columns(table, info)
    if len(columns) != net.layer_sizes[0]:
        raise CSVError(f"{table.path}: {len(columns)} feature columns, but the model takes "
                       f"{net.layer_sizes[0]}")
    return table, _scale(table.numeric(columns), info or {})


def run_predict(args) -> int:
    _distinct_files(data=args.data, model=args.model, output=args.output)
    net, info = load_model(args.model)
    table, X = _read_features(args, net, info)
    predictions, proba, classes = _outputs(net, info, X)
    target = info["target"] if info else "output"
    with _output(args.output) as fh:
        import csv
        writer = csv.writer(fh, lineterminator="\n")
        if info is None:
            writer.writerow([f"output{k}" for k in range(predictions.shape[1])])
            writer.writerows([[repr(float(v)) for v in row] for row in predictions])
            return 0
        header = [target]
        if args.proba and proba is not None:
            header += [f"P({c})" for c in classes]
        elif args.proba:
            raise CLIError("--proba applies to classification models; this one is a "
                           "regression model")
        writer.writerow(header)
        for i, value in enumerate(predictions):
            row = [value if isinstance(value, str) else repr(float(value))]
            if args.proba:
                row += [f"{p:.6g}" for p in proba[i]]
            writer.writerow(row)
    return 0


class _output:
    """stdout, or a file written atomically."""

    def __init__(self, path):
        self.path = path
        self._cm = None

    def __enter__(self):
        if self.path in (None, "-"):
            return sys.stdout
        self._cm = atomic_open(self.path, "w", newline="", encoding="utf-8")
        return self._cm.__enter__()

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        sys.stdout.flush()
        return False


def _metrics(net, info, X, label_cells, y_scaled) -> Dict[str, float]:
    """Cost and task metrics; X is already scaled, y_scaled is what the network fits."""
    out = {"cost": net.evaluate(X, y_scaled)}
    if info is None:
        return out
    predictions, _, _ = _outputs(net, info, X)
    if info["task"] == "classification":
        truth = [_canonical_label(c) for c in label_cells]
        out["accuracy"] = float(np.mean([p == t for p, t in zip(predictions, truth)]))
    else:
        y = np.asarray(y_scaled, dtype=np.float64).ravel()
        if info.get("y_mean") is not None:
            y = y * info["y_scale"] + info["y_mean"]
        predictions = np.asarray(predictions, dtype=np.float64)
        # Differences, squares and sums by way of each vector's largest
        # magnitude, so that targets near 1e200 give finite figures.
        top = max(float(np.max(np.abs(predictions))), float(np.max(np.abs(y))), 1e-300)
        err = predictions / top - y / top
        e_peak = float(np.max(np.abs(err))) or 1.0
        mse = float(np.mean((err / e_peak) ** 2))  # of err / e_peak
        out["rmse"] = float(np.sqrt(mse) * e_peak * top)
        out["mae"] = float(np.mean(np.abs(err)) * top)
        y_peak = float(np.max(np.abs(y))) or 1.0
        var = float(np.var(y / y_peak))  # of y / y_peak
        out["r2"] = (1.0 - mse / var * (e_peak * top / y_peak) ** 2 if var > 0
                     else float("nan"))
    return out


def run_evaluate(args) -> int:
    net, info = load_model(args.model)
    if info is None and args.target is None:
        raise CLIError(f"{args.model} was not written by 'train' (it has no record of its "
                       "target column): give --target")
    table, X = _read_features(args, net, info)
    if args.target is not None:
        key = args.target
    elif info is not None and table.has_header and info["header"]:
        key = info["target"]
    else:
        key = str(info["target_index"]) if info is not None else ""
    target = table.column_index(key, "--target")
    cells = _target_cells(table, target)
    if info is not None and info["task"] == "classification":
        classes = info["classes"]
        codes = {c: k for k, c in enumerate(classes)}
        unknown = sorted({_canonical_label(c) for c in cells} - set(codes), key=_label_key)
        if unknown:
            raise CLIError(f"{table.path}: labels {', '.join(map(repr, unknown[:5]))} in "
                           f"{table.column_label(target)} were not seen in training "
                           f"(the model knows {', '.join(map(repr, classes))})")
        labels = np.array([codes[_canonical_label(c)] for c in cells])
        y = labels.astype(np.float64) if len(classes) == 2 else labels
        label_cells = cells
    else:
        y = table.numeric([target], what="target")
        if info is None and net.activations[-1] == "softmax" and np.all(y == np.round(y)):
            y = y.ravel().astype(np.int64)
        elif info is not None:
            y = _scale_y(y, info)
        label_cells = None
    metrics = _metrics(net, info, X, label_cells, y)
    metrics = {"rows": table.n_rows, **metrics}
    if args.json:
        print(json.dumps(metrics))
    else:
        names = {"rows": "rows", "cost": f"cost ({net.loss}, mean per row)",
                 "accuracy": "accuracy", "rmse": "RMSE", "mae": "MAE", "r2": "R^2"}
        width = max(len(names[k]) for k in metrics)
        for k, v in metrics.items():
            print(f"{names[k]:<{width}}  {v if k == 'rows' else format(v, '.6g')}")
    return 0


# ---------------------------------------------------------------- argument parsing

def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


# Largest count an option takes (the kernel counts in 64-bit integers).
_MAX_COUNT = 2**62


def _int(text: str, minimum: int) -> int:
    """An integer written in ASCII digits, in minimum.._MAX_COUNT."""
    stripped = text.strip()
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not (body.isascii() and body.isdigit()):
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}")
    value = int(stripped)
    if not minimum <= value <= _MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be between {minimum} and {_MAX_COUNT}, "
                                         f"got {text}")
    return value


def _positive_int(text: str) -> int:
    return _int(text, 1)


def _non_negative_int(text: str) -> int:
    return _int(text, 0)


def _delimiter(text: str) -> str:
    """One character that can separate CSV fields (\\t or 'tab' for a tab)."""
    if text in ("\\t", "tab", "TAB"):
        return "\t"
    if len(text) != 1 or text in "\"\r\n":
        raise argparse.ArgumentTypeError(
            f"must be one character other than a quote or a line break (\\t for a tab), "
            f"got {text!r}")
    return text


def _add_csv_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA.csv",
                   help="CSV file, one sample per row (.csv.gz is read too; '-' is stdin)")
    head = p.add_mutually_exclusive_group()
    head.add_argument("--header", dest="header", action="store_true", default=None,
                      help="the first line holds column names (default: detected: it does "
                           "when it has a non-numeric cell above a numeric one)")
    head.add_argument("--no-header", dest="header", action="store_false",
                      help="the first line is data; columns are numbered from 0")
    p.add_argument("--delimiter", metavar="CHAR", default=None, type=_delimiter,
                   help="field separator, one character (\\t for a tab; default: "
                        "detected among , ; TAB |)")


def _paragraph(text: str) -> str:
    return textwrap.fill(text, 79)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; a default shown only where it says something."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == []
                or default == argparse.SUPPRESS
                or not action.option_strings or isinstance(action, argparse._StoreFalseAction)):
            return text
        if default is True:
            default = action.option_strings[0]
        return f"{text} (default: {default})"


def add_commands(commands: "argparse._SubParsersAction") -> None:
    """Register ``train``, ``predict`` and ``evaluate`` on ``commands`` (the
    object returned by ``ArgumentParser.add_subparsers``)."""
    train = commands.add_parser(
        "train", prog="python -m backprop_fast train", help="train a network on a CSV file and save it",
        formatter_class=_Formatter,
        description=_paragraph("Train a network on the rows of a CSV file and save it. The task is "
                    "classification when the target holds text labels or at most "
                    f"{MAX_INFERRED_CLASSES} distinct integers, regression otherwise "
                    "(--task overrides). Classification uses a sigmoid output (two "
                    "classes) or softmax (more) with cross-entropy; regression an "
                    "identity output with squared error. Features (and a regression "
                    "target) are standardised with the training rows' mean and spread, "
                    "which the saved network takes into its first and last layers, so that "
                    "it predicts from raw rows (also through Network.load and ONNX)."),
        epilog="example:\n  python -m backprop_fast train iris.csv --target species "
               "--layers 16 --activation tanh --epochs 200 --model iris.npz --plot iris.png")
    _add_csv_options(train)
    train.add_argument("--target", required=True, metavar="COLUMN",
                       help="the column to predict: its name in the header line, or its "
                            "number (0 is the first, -1 the last)")
    train.add_argument("--model", required=True, metavar="MODEL.npz",
                       help="where to save the trained model (replaced atomically)")
    train.add_argument("--task", choices=["classification", "regression"], default=None,
                       help="override the task inferred from the target column")
    train.add_argument("--ignore", metavar="COLUMN", action="append", default=[],
                       help="a column that is not a feature (an id, say); repeat for several")
    net = train.add_argument_group("network")
    net.add_argument("--layers", default="32", metavar="N[,N...]",
                     help="hidden layer widths, e.g. 64,32; 'none' for no hidden layer")
    net.add_argument("--activation", default="relu", metavar="NAME[,NAME...]",
                     help="hidden activation: relu, tanh, sigmoid or identity; one for all "
                          "hidden layers or one per layer")
    net.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                     help="precision of parameters and arithmetic")
    net.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                     help="seed of the initial weights and the shuffling")
    net.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                     help="scale each feature (and a regression target) to mean 0, "
                          "standard deviation 1")
    fit = train.add_argument_group("training")
    fit.add_argument("--epochs", type=_non_negative_int, default=20, metavar="N", help="passes over the data")
    fit.add_argument("--batch-size", type=_non_negative_int, default=32, metavar="N",
                     help="samples per step; 0 for the whole set (full batch)")
    fit.add_argument("--learning-rate", type=_positive_float, default=0.05, metavar="RATE",
                     help="step size")
    fit.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                     help="visit the rows in a new random order each epoch")
    fit.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd",
                     help="update rule")
    fit.add_argument("--momentum", type=_non_negative_float, default=0.0, metavar="M",
                     help="momentum of --optimizer sgd")
    fit.add_argument("--nesterov", action="store_true",
                     help="Nesterov momentum (with --optimizer sgd and --momentum > 0)")
    fit.add_argument("--weight-decay", type=_non_negative_float, default=0.0, metavar="L2",
                     help="L2 penalty (decoupled for adamw)")
    fit.add_argument("--lr-schedule", choices=["constant", "invscaling", "cosine", "plateau"],
                     default="constant",
                     help="how the learning rate changes over the epochs: invscaling divides "
                          "it by (epoch + 1) ** --power-t, cosine anneals it to 0, plateau "
                          "divides it by 5 when the monitored cost stalls for --patience "
                          "epochs")
    fit.add_argument("--power-t", type=_non_negative_float, default=0.5, metavar="P",
                     help="exponent of --lr-schedule invscaling")
    fit.add_argument("--class-weight", choices=["balanced"], default=None,
                     help="weight classes inversely to their frequency (classification)")
    fit.add_argument("--validation-split", type=_probability, default=None, metavar="FRACTION",
                     help="hold out this fraction of the rows, drawn at random (--seed), to "
                          "report a validation cost (and accuracy) each epoch")
    fit.add_argument("--early-stopping", action="store_true",
                     help="stop when the monitored cost (the validation cost, or the "
                          "training cost without --validation-split) has not improved by "
                          "--min-delta for --patience epochs, keeping the best parameters")
    fit.add_argument("--patience", type=_positive_int, default=10, metavar="N",
                     help="epochs without improvement for --early-stopping and "
                          "--lr-schedule plateau")
    fit.add_argument("--min-delta", type=_non_negative_float, default=0.0, metavar="D",
                     help="smallest decrease of the monitored cost that counts as an "
                          "improvement")
    show = train.add_argument_group("output")
    show.add_argument("--plot", metavar="FILE.png", default=None,
                      help="draw the training (and validation) cost per epoch to this image "
                           "(needs matplotlib)")
    show.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_guarded(run_train))

    predict = commands.add_parser(
        "predict", prog="python -m backprop_fast predict", help="predict the target for the rows of a CSV file",
        formatter_class=_Formatter,
        description=_paragraph("Write one prediction per row of a CSV file (a class label or a "
                    "number) as CSV. With a header line, feature columns are found by "
                    "name, so the file may hold other columns (the target included)."),
        epilog="example:\n  python -m backprop_fast predict new.csv --model iris.npz --proba")
    _add_csv_options(predict)
    predict.add_argument("--model", required=True, metavar="MODEL.npz",
                         help="a model saved by train (or by Network.save)")
    predict.add_argument("--output", metavar="FILE.csv", default=None,
                         help="write the predictions here instead of standard output")
    predict.add_argument("--proba", action="store_true",
                         help="add one probability column per class (classification)")
    predict.set_defaults(func=_guarded(run_predict), target=None)

    evaluate = commands.add_parser(
        "evaluate", prog="python -m backprop_fast evaluate", help="score a model on a labelled CSV file",
        formatter_class=_Formatter,
        description=_paragraph("Print the model's mean cost on a labelled CSV file, with its "
                               "accuracy (classification) or RMSE, MAE and R^2 (regression)."),
        epilog="example:\n  python -m backprop_fast evaluate test.csv --model iris.npz")
    _add_csv_options(evaluate)
    evaluate.add_argument("--model", required=True, metavar="MODEL.npz",
                          help="a model saved by train (or by Network.save, with --target)")
    evaluate.add_argument("--target", metavar="COLUMN", default=None,
                          help="the target column (default: the one the model was trained on)")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.set_defaults(func=_guarded(run_evaluate))


def _guarded(run):
    """Run a command; turn expected failures into one 'error:' line and exit code 1."""

    def command(args) -> int:
        try:
            return run(args)
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141
        except (CSVError, CLIError, ValueError, OSError, ImportError) as exc:
            message = str(exc)
            if isinstance(exc, FileNotFoundError):
                message = f"{exc.filename}: no such file"
            print(f"python -m backprop_fast {run.__name__[4:]}: error: {message}",
                  file=sys.stderr)
            return 1

    command.__name__ = run.__name__
    command.__doc__ = run.__doc__
    return command
