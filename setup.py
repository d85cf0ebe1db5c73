"""Build the Cython kernel ``backprop_fast._kernel``.

Environment switches
--------------------
BACKPROP_FAST_DEBUG=1
    Build with bounds, wraparound and initialisation checks on (and -O0 -g),
    so the test suite can run against a checked kernel.
"""
import json
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

# Cython and setuptools rebuild by timestamps only: without this, a tree built
# in one mode keeps its kernel when rebuilt in the other (a checked build after
# a normal one would silently be unchecked). The mode of the last cythonize
# run is recorded under build/; a different mode forces the C file to be
# regenerated, which makes it newer than the compiled module, so the module is
# recompiled too.
HERE = os.path.dirname(os.path.abspath(__file__))
MODE = json.dumps({"directives": directives, "compile_args": compile_args}, sort_keys=True)
STAMP = os.path.join(HERE, "build", "backprop_fast-build-mode.json")
try:
    with open(STAMP) as f:
        mode_changed = f.read() != MODE
except OSError:
    mode_changed = True

extensions = [
    Extension(
        "backprop_fast._kernel",
        sources=["src/_kernel.pyx"],
        include_dirs=[numpy.get_include(), "src"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    )
]

ext_modules = cythonize(
    extensions,
    compiler_directives=directives,
    include_path=["src"],
    force=mode_changed,
)
if mode_changed:
    os.makedirs(os.path.dirname(STAMP), exist_ok=True)
    with open(STAMP, "w") as f:
        f.write(MODE)

setup(ext_modules=ext_modules)
