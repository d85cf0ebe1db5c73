"""The command-line example of the documentation runs as written.

``test_docs.py`` runs the ```python blocks of the documentation pages; this
runs the commands of docs/cli.md after its Python block has written the CSV.
"""
import pathlib
import re
import shlex

import pytest

from backprop_fast.__main__ import main

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "cli.md"
pytestmark = pytest.mark.skipif(not PAGE.exists(), reason="docs/cli.md is not beside the tests")


def _blocks(fence):
    return re.findall(rf"```{fence}\n(.*?)```", PAGE.read_text(), re.S)


def test_command_line_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    setup = [b for b in _blocks("python") if "digits.csv" in b]
    assert len(setup) == 1
    exec(compile(setup[0], str(PAGE), "exec"), {})
    commands = [line for block in _blocks("bash") for line in block.splitlines()
                if re.match(r"python -m backprop_fast (train|predict|evaluate) ", line)]
    assert [c.split()[3] for c in commands] == ["train", "evaluate", "predict"]
    for line in commands:
        assert main(shlex.split(line)[3:]) == 0, line
    out = capsys.readouterr().out
    assert "classification (it holds 10 distinct integers" in out
    accuracy = float(re.search(r"^accuracy\s+(\S+)", out, re.M).group(1))
    assert accuracy > 0.95
    for name in ("digits-model.npz", "digits-curve.png", "predictions.csv"):
        assert (tmp_path / name).stat().st_size > 0
