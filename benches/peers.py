"""The peers of the benchmark: one small adapter per peer.

The adapters live in the package, in ``backprop_fast/bench/peers.py``, so that
``python -m backprop_fast bench`` works from an installed package; this module
re-exports them for the pytest-benchmark suite here (``from peers import ...``).
See that module for what each adapter does and the interface they share.
"""
from backprop_fast.bench.peers import (  # noqa: F401  (re-exports)
    PEERS,
    BackpropFast,
    JaxJit,
    JaxScan,
    NumpyMatmuls,
    NumpyReference,
    Peer,
    Sklearn,
    TorchEager,
    prepare,
    select,
)

BY_NAME = {cls.name: cls for cls in PEERS}
