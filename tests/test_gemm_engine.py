"""The wide-product engine (src/bf_gemm.h) in C, against the chain it
promises for every element: tests/c/gemm_check.c compares each product with
one multiply-add after another, k in order, bit for bit, and prints a
checksum of all results.

Builds that differ only in vector width must agree to the bit: the 512-bit
tiles of the AVX-512 variant are compiled here for AVX2 as well
(``-DBF_GEMM_VB=64``), so that a machine without AVX-512 checks their logic.
Needs a C compiler and the source tree (skipped without either).
"""
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig

import pytest

from backprop_fast import _kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
CHECK = os.path.join(ROOT, "tests", "c", "gemm_check.c")
X86_64 = platform.machine().lower() in ("x86_64", "amd64")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(os.path.join(SRC, "bf_gemm.h")) and X86_64
         and shutil.which(shlex.split(sysconfig.get_config_var("CC") or "cc")[0])),
    reason="needs the source tree, x86-64 and a C compiler")

BUILDS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx2-512bit-tiles": ["-mavx2", "-mfma", "-DBF_GEMM_VB=64"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl"],
}
RUNS_ON = {"baseline": "baseline", "avx2": "avx2", "avx2-512bit-tiles": "avx2",
           "avx512": "avx512"}


_CHECKSUMS = {}


def _run(build, tmp_path):
    """The checksum of ``build``'s results (built and run once a session)."""
    if RUNS_ON[build] not in _kernels.available():
        pytest.skip(f"this CPU cannot run the {RUNS_ON[build]} build")
    if build in _CHECKSUMS:
        return _CHECKSUMS[build]
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    exe = str(tmp_path / build)
    base = [*cc, "-O2", *BUILDS[build], "-I", SRC, "-I", sysconfig.get_paths()["include"],
            CHECK, "-o", exe]
    made = subprocess.run([*base, "-fopenmp"], capture_output=True, text=True)
    if made.returncode != 0:  # a compiler without OpenMP: one thread
        made = subprocess.run(base, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    done = subprocess.run([exe], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))
    cases, bad, short, checksum = done.stdout.split()
    assert (int(bad), int(short)) == (0, 0), (
        f"{bad} of {cases} products differ from their chains; {short} found the "
        "workspace short")
    _CHECKSUMS[build] = checksum
    return checksum


@pytest.mark.parametrize("build", list(BUILDS))
def test_every_element_is_one_chain(build, tmp_path):
    _run(build, tmp_path)


def test_vector_width_changes_no_bit(tmp_path):
    """256- and 512-bit tiles (and the AVX-512 build, where it runs) give the
    same bits: one summation order whatever the width."""
    sums = {_run(build, tmp_path) for build in ("avx2", "avx2-512bit-tiles")}
    if "avx512" in _kernels.available():
        sums.add(_run("avx512", tmp_path))
    assert len(sums) == 1
