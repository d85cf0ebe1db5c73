"""Build the Cython kernel: ``backprop_fast._kernel`` and its engines.

Environment switches
--------------------
BACKPROP_FAST_DEBUG=1
    Build with bounds, wraparound and initialisation checks on (and -O0 -g),
    so the test suite can run against a checked kernel; the variants below
    are built checked too (a variant left over from a release build in
    build/ would otherwise be packaged and chosen at import).

Kernel variants
---------------
The kernel is two modules. ``_kernel`` (src/_kernel.pyx), the entry points
that Python calls, their checks and the classes, is compiled once. The
engine (src/_engine.pyx), the hot loops that those entry points call
through a table of function pointers, is compiled once per instruction set:
with gcc or clang on x86-64, for any x86-64 (SSE2, the baseline,
``_engine``), for AVX2 with FMA (``_engine_avx2``) and for AVX-512 (F, BW,
DQ, VL; ``_engine_avx512``). backprop_fast/_kernels.py gives the kernel the
widest engine that the CPU and the operating system support, so the wheel
runs everywhere and vectorises the elementwise math and the small products 4
(float64) or 16 (float32) lanes wide where it can.
"""
import glob
import json
import os
import platform
import shutil
import sys

import Cython
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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

MSVC = sys.platform == "win32"
if MSVC:
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

# Instruction-set variants: module suffix and the flags beyond the baseline.
# The CPU checks in src/_kernel.pyx (cpu_supports) test exactly these
# features. gcc prefers 256-bit vectors even with AVX-512 enabled; the
# kernel's loops are long and unit-stride, so full-width vectors pay.
VARIANTS = {
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512dq",
               "-mavx512vl", "-mprefer-vector-width=512"],
}
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
if MSVC or not X86_64:
    VARIANTS = {}
# Every engine splits its wide products (src/bf_gemm.h) between OpenMP
# threads: gcc's, on Linux. Elsewhere the pragmas are ignored and those
# products run on one thread.
OPENMP = (dict.fromkeys(["", *VARIANTS], ["-fopenmp"]) if sys.platform.startswith("linux")
          else {})

# Cython and setuptools rebuild by timestamps only: without this, a tree built
# in one mode keeps its kernel when rebuilt in the other (a checked build after
# a normal one would silently be unchecked). The mode of the last cythonize
# run is recorded under build/; a different mode forces the C file to be
# regenerated, which makes it newer than the compiled module, so the module is
# recompiled too.
HERE = os.path.dirname(os.path.abspath(__file__))
MODE = json.dumps({"directives": directives, "compile_args": compile_args,
                   "variants": VARIANTS, "openmp": OPENMP, "cython": Cython.__version__,
                   "numpy": numpy.__version__.split(".")[0]}, sort_keys=True)
STAMP = os.path.join(HERE, "build", "backprop_fast-build-mode.json")
try:
    with open(STAMP) as f:
        mode_changed = f.read() != MODE
except OSError:
    mode_changed = True

def module(name, extra=(), openmp=()):
    return Extension(
        "backprop_fast." + name,
        sources=[f"src/{name}.pyx"],
        # The engine variants' .pyx only include src/_engine.pyx: it is theirs too.
        depends=sorted(glob.glob(os.path.join("src", "*.h")) + glob.glob(os.path.join("src", "*.pxd"))
                       + ([os.path.join("src", "_engine.pyx")] if name.startswith("_engine")
                          else [])),
        include_dirs=[numpy.get_include(), "src"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("BF_CHECKED", "1")] if DEBUG else []),
        extra_compile_args=compile_args + list(extra) + list(openmp),
        extra_link_args=list(openmp),
    )


extensions = ([module("_kernel"), module("_engine", openmp=OPENMP.get("", []))]
              + [module("_engine_" + isa, flags, OPENMP.get(isa, []))
                 for isa, flags in VARIANTS.items()])

ext_modules = cythonize(
    extensions,
    compiler_directives=directives,
    include_path=["src"],
    force=mode_changed,
    nthreads=min(len(extensions), os.cpu_count() or 1),
)
if mode_changed:
    os.makedirs(os.path.dirname(STAMP), exist_ok=True)
    with open(STAMP, "w") as f:
        f.write(MODE)



class BuildExt(build_ext):
    """Takes a module that an earlier build of this tree compiled in place
    (an editable install: the README's main job) instead of compiling it
    again, where that module is newer than everything it is built from and
    the build mode is the same: the README's test command installs the same
    tree again."""

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        name = os.path.basename(self.get_ext_filename(self.get_ext_fullname(ext.name)))
        built = os.path.join(HERE, *ext.name.split(".")[:-1], name)
        # The Cython sources, not the C: cythonize regenerates the C whenever
        # the build environment is new (its own .pxd files are then newer).
        sources = [os.path.splitext(f)[0] + ".pyx" for f in ext.sources]
        inputs = [os.path.join(HERE, f) for f in [*sources, *ext.depends]]
        inputs.append(os.path.abspath(__file__))
        if (not mode_changed and os.path.abspath(built) != os.path.abspath(target)
                and os.path.exists(built)
                and all(os.path.getmtime(f) < os.path.getmtime(built) for f in inputs)):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(built, target)
            print(f"reusing {os.path.relpath(built, HERE)}, built in place from the same sources")
            return
        super().build_extension(ext)


# The modules compile side by side.
setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt},
      options={"build_ext": {"parallel": min(len(extensions), os.cpu_count() or 1)}})
