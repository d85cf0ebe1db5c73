"""backprop_fast: dense networks trained by fused Cython backpropagation."""
from ._kernels import isa as kernel_isa
from .many import fit_many
from .network import DivergenceError, History, Network, StoppingState
from .plot import plot_history

__version__ = "0.1.0"
__all__ = ["Network", "History", "DivergenceError", "StoppingState", "fit_many", "plot_history",
           "kernel_isa", "__version__"]
