"""The documentation site builds without warnings, and its Python examples run.

The build needs the ``docs`` extra (Sphinx, numpydoc, MyST); without it the
build test is skipped. Sphinx runs in a subprocess from a temporary folder, so
autodoc imports the installed package, as the tests do.
"""
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
pytestmark = pytest.mark.skipif(not (DOCS / "conf.py").exists(),
                                reason="docs/ is not beside the tests")
PAGES = sorted(DOCS.glob("*.md")) if DOCS.exists() else []
# Libraries some examples use; an example that needs a missing one is skipped.
OPTIONAL = {"sklearn", "onnx", "onnxruntime", "skl2onnx", "threadpoolctl", "matplotlib"}


def test_docs_build_with_warnings_as_errors(tmp_path):
    for module in ("sphinx", "numpydoc", "myst_parser"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install '.[docs]')")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert (tmp_path / "html" / "api.html").exists()


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_examples_run(page, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    if not blocks:
        pytest.skip("no Python example")
    monkeypatch.chdir(tmp_path)  # examples write files
    namespace: dict = {}
    for block in blocks:  # one page's examples share their names, in order
        try:
            exec(compile(block, str(page), "exec"), namespace)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in OPTIONAL:
                pytest.skip(f"{exc.name} is not installed")
            raise
