"""W1: the tutorial's XOR network, 2-2-1 sigmoid, cross-entropy, float64.

Four samples, full batch, learning rate 1.0, 1,000 epochs in one ``fit``: the
per-call and per-epoch overhead dominates, not arithmetic. extra_info's
per_epoch_s is the figure to compare.
"""
import math


def test_w1_xor(bench_pair, xor, impl):
    cost = bench_pair(xor, impl, rounds=5)
    assert math.isfinite(cost)
