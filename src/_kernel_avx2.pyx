# The kernel compiled for CPUs with AVX2 and FMA: setup.py adds the flags, and
# backprop_fast/_kernels.py imports this module only where the CPU has them.
include "_kernel.pyx"
