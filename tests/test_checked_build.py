"""Which kernel the suite runs against: a checked build really has its checks on.

CI runs the whole suite a second time against a kernel built with
``BACKPROP_FAST_DEBUG=1`` and sets ``BACKPROP_FAST_EXPECT_CHECKED=1``; this test
then proves that every kernel variant the package can import raises
IndexError on an out-of-bounds buffer access instead of reading past the end
of the array. (A build that silently reused an unchecked kernel — say, a
variant left in build/ by a release build — would otherwise pass unnoticed.)
"""
import os
import subprocess
import sys

import pytest

import backprop_fast

# The kernel's entry points check every shape they are given, so the probe is
# a shim that indexes as the kernel does, out of range: a checked kernel raises
# IndexError before touching memory. The engines index raw pointers only, so
# each one reports the mode it was built in instead. Run in a child, so that
# an unchecked kernel's out-of-bounds read cannot disturb this process.
_PROBE = """
import numpy as np
from backprop_fast import _kernels
kernel = _kernels.kernel
for isa in _kernels.available():
    engine, _ = _kernels.load(isa)
    kernel.use(engine)
    try:
        kernel._test_element(np.zeros(1), 3)
    except IndexError:
        print(isa, "checked" if kernel.checked() else "unchecked engine")
    else:
        print(isa, "unchecked")
"""


@pytest.mark.skipif(os.environ.get("BACKPROP_FAST_EXPECT_CHECKED", "0") in ("", "0"),
                    reason="set BACKPROP_FAST_EXPECT_CHECKED=1 when testing a BACKPROP_FAST_DEBUG=1 build")
def test_kernel_has_bounds_checks(tmp_path):
    # The child imports the same backprop_fast, from an empty working directory
    # (a source tree there would come first on sys.path).
    parent = os.path.dirname(os.path.dirname(os.path.abspath(backprop_fast.__file__)))
    env = dict(os.environ, PYTHONPATH=parent)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")[:-1]
    assert lines and all(line.endswith(" checked") for line in lines), (
        f"kernel variants of {backprop_fast.__file__} built without bounds checks: {lines}")
