"""scikit-learn's own MLP tests, run against backprop_fast.sklearn.

At test time the installed scikit-learn's
``sklearn/neural_network/tests/test_mlp.py`` is copied into a temporary
directory, its import of MLPClassifier and MLPRegressor is pointed at
``backprop_fast.sklearn``, and pytest runs it in a subprocess. The file is
never committed here: the suite follows whichever scikit-learn is installed.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")

# Tests that read scikit-learn's private internals, which our estimators do
# not have (their training runs in the kernel), each with its reason.
EXCLUDED = {
    "test_fit": "sets and calls scikit-learn's private _forward_pass, _backprop "
                "and weight-update internals by hand",
    "test_gradient": "checks _loss_grad_lbfgs, scikit-learn's private packed-gradient "
                     "function (our gradients are checked in tests/test_gradients.py)",
    "test_learning_rate_warmstart": "reads _optimizer.learning_rate, scikit-learn's "
                                    "private optimizer object",
    "test_adaptive_learning_rate": "reads _optimizer.learning_rate, scikit-learn's "
                                   "private optimizer object",
}

IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"

# scikit-learn's conftest provides this fixture; its default seed is 42.
CONFTEST = '''
import pytest


@pytest.fixture
def global_random_seed():
    return 42
'''


def test_sklearn_mlp_suite(tmp_path):
    source = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    if not source.exists():
        pytest.skip(f"this scikit-learn ships no {source}")
    text = source.read_text()
    assert IMPORT in text, "scikit-learn's test module no longer imports the estimators so"
    text = text.replace(IMPORT, "from backprop_fast.sklearn import MLPClassifier, MLPRegressor")
    defined = set(re.findall(r"^def (test_\w+)", text, flags=re.M))
    # An exclusion for a test that no longer exists is stale: say so.
    assert set(EXCLUDED) <= defined, sorted(set(EXCLUDED) - defined)
    (tmp_path / "test_mlp.py").write_text(text)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    deselect = " or ".join(sorted(EXCLUDED))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-W", "ignore::DeprecationWarning", "-k", f"not ({deselect})", "test_mlp.py"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert summary and " passed" in summary[0] and "failed" not in summary[0], summary
