"""backprop_fast: dense networks trained by fused Cython backpropagation."""
from .network import DivergenceError, History, Network
from .plot import plot_history

__version__ = "0.1.0"
__all__ = ["Network", "History", "DivergenceError", "plot_history", "__version__"]
