"""Build the Cython kernel ``backprop_fast._kernel``.

Environment switches
--------------------
BACKPROP_FAST_DEBUG=1
    Build with bounds, wraparound and initialisation checks on (and -O0 -g),
    so the test suite can run against a checked kernel.
"""
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("BACKPROP_FAST_DEBUG", "0") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

if sys.platform == "win32":
    compile_args = ["/Od", "/Zi"] if DEBUG else ["/O2"]
else:
    # -O3 with IEEE semantics (no -ffast-math) and the baseline ISA (no
    # -march=native): the wheel runs on any x86-64 and isfinite checks survive
    # the optimiser. Neither -fno-trapping-math nor -fno-math-errno changes a
    # result: nothing here reads the floating-point exception flags or errno,
    # and without them gcc will not vectorise the activations' selects or
    # Adam's square roots. Tiny zeroing loops stay loops rather than calls.
    compile_args = ["-O0", "-g"] if DEBUG else [
        "-O3", "-fno-trapping-math", "-fno-math-errno",
        "-fno-tree-loop-distribute-patterns"]
    compile_args += ["-fno-strict-aliasing", "-Wno-unused-function"]

extensions = [
    Extension(
        "backprop_fast._kernel",
        sources=["src/_kernel.pyx"],
        include_dirs=[numpy.get_include(), "src"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=["src"],
    ),
)
