"""backprop_fast: dense networks trained by fused Cython backpropagation."""
from .network import DivergenceError, History, Network

__version__ = "0.1.0"
__all__ = ["Network", "History", "DivergenceError", "__version__"]
