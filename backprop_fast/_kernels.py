"""The compiled kernel, with the engine for this CPU.

setup.py compiles the kernel in two parts: ``_kernel``, the entry points that
Python calls (compiled once), and the engine, the hot loops those entry points
run (src/_engine.pyx), compiled into up to three modules that differ only in
the instructions the compiler may use: ``_engine`` (any x86-64, or any other
CPU), ``_engine_avx2`` (AVX2 and FMA) and ``_engine_avx512`` (AVX-512 F, BW,
DQ and VL). ``kernel`` runs on the widest engine that was built and that this
CPU runs; ``isa`` names it.

The environment variable ``BACKPROP_FAST_ISA`` (read at import) chooses one
by name instead: "baseline", "avx2" or "avx512" ("auto", or unset, for the
widest). The variants agree to rounding: the AVX2 and AVX-512 builds fuse
multiply-adds, so their results differ from the baseline's in the last bits.
"""
import importlib
import os
from types import ModuleType

from . import _engine as _baseline
from . import _kernel

ISAS = ("avx512", "avx2", "baseline")  # widest first


def _module(isa):
    if isa == "baseline":
        return _baseline
    try:
        return importlib.import_module(f"{__package__}._engine_{isa}")
    except ImportError:  # not built for this platform or compiler
        return None


def available():
    """Names of the kernel variants that are built and that this CPU can run,
    widest first."""
    return [isa for isa in ISAS
            if (isa == "baseline" or _kernel.cpu_supports(isa)) and _module(isa) is not None]


def load(isa=None):
    """The engine module for ``isa`` (None or "auto": the widest available),
    and its name; ``kernel.use(module)`` runs the kernel on it."""
    usable = available()
    if isa in (None, "", "auto"):
        isa = usable[0]
    if isa not in ISAS:
        raise ValueError(f"BACKPROP_FAST_ISA must be one of auto, {', '.join(ISAS)}; "
                         f"got {isa!r}")
    if isa not in usable:
        raise ImportError(f"BACKPROP_FAST_ISA={isa}: this kernel variant is not built "
                          "or this CPU cannot run it; available here: "
                          f"{', '.join(usable)}")
    return _module(isa), isa


engine, isa = load(os.environ.get("BACKPROP_FAST_ISA"))
_kernel.use(engine)
# Typed as loosely as load()'s result was: network.py's calls have never been
# checked against the stub's signatures.
kernel: ModuleType = _kernel
