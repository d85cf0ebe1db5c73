"""The README's Python examples run as written and say what they print."""
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


pytestmark = pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests")


def test_readme_xor_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space: dict = {}
    exec(compile(_blocks()[0], str(README), "exec"), space)
    # The example's comment shows these outputs.
    xor_inputs = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    np.testing.assert_allclose(space["net"].predict(xor_inputs).ravel(),
                               [0.004, 0.995, 0.996, 0.003], atol=5e-4)


def test_readme_scikit_learn_swap(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    block = _blocks()[1]
    assert "from backprop_fast.sklearn import MLPClassifier" in block
    space: dict = {}
    exec(compile(block, str(README), "exec"), space)
    assert space["clf"].score(space["X_test"], space["y_test"]) > 0.9


def test_readme_names_no_lab_notes():
    """A reader's introduction: no run dates, clock times or project tracking."""
    text = README.read_text()
    assert len(text.encode()) <= 12_500
    assert not re.search(r"\bUTC\b|\b20\d\d-\d\d-\d\d\b|\bissue \d|\bW[1-5]\b", text)
