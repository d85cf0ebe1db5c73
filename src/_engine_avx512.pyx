# The engine compiled for CPUs with AVX-512 (F, BW, DQ, VL): setup.py adds the
# flags, and backprop_fast/_kernels.py chooses this module only where the CPU
# has them.
include "_engine.pyx"
