"""The README's Python examples run as written and say what they print."""
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests")
def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # the example saves a file
    spaces = []
    for block in blocks:  # each example stands alone
        spaces.append({})
        exec(compile(block, str(README), "exec"), spaces[-1])
    first = spaces[0]
    # The XOR example's comment shows these outputs.
    xor_inputs = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    np.testing.assert_allclose(first["net"].predict(xor_inputs).ravel(),
                               [0.004, 0.995, 0.996, 0.003], atol=5e-4)
    assert first["accuracy"] > 0.95
    clf, same, X, labels = (first[k] for k in ("clf", "same", "X", "labels"))
    assert same.evaluate(X, labels) == clf.evaluate(X, labels)
