"""W1: the tutorial's XOR network, 2-2-1 sigmoid, cross-entropy, float64.

Four samples, full batch, learning rate 1.0, 1,000 epochs per call: the
per-call and per-epoch overhead dominates, not arithmetic. extra_info's
per_unit is the time per epoch.
"""
import math


def test_w1_xor(bench_peer, problems, peer_class):
    cost = bench_peer(problems("W1"), peer_class)
    assert cost is None or math.isfinite(cost)
