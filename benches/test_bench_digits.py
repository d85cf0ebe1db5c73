"""W2 and W3: the 64-32-10 digits classifier (tanh hidden, softmax output,
cross-entropy) on all 1,797 digits, learning rate 0.1, shuffled every epoch.

W2 uses minibatches of 32 (57 steps an epoch, 5 epochs a call), W3 batch 1
(online SGD, 1,797 steps an epoch, 1 epoch a call); both in float32 and
float64. extra_info's per_unit is the time per step (for W3: per sample).
"""
import math

import pytest


@pytest.mark.parametrize("key", ["W2-f32", "W2-f64"])
def test_w2_digits_batch32(bench_peer, problems, peer_class, key):
    cost = bench_peer(problems(key), peer_class)
    assert cost is None or math.isfinite(cost)


@pytest.mark.parametrize("key", ["W3-f32", "W3-f64"])
def test_w3_digits_batch1(bench_peer, problems, peer_class, key):
    cost = bench_peer(problems(key), peer_class, rounds=3)
    assert cost is None or math.isfinite(cost)
