"""W2 and W3: the 64-32-10 digits classifier (tanh hidden, softmax output,
cross-entropy) on all 1,797 digits, learning rate 0.1, shuffled every epoch.

W2 uses minibatches of 32 (57 steps an epoch), W3 batch 1 (online SGD, 1,797
steps an epoch); both in float32 and float64. extra_info's per_step_s is the
figure to compare.
"""
import math

import pytest


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_w2_digits_batch32(bench_pair, digits, dtype, impl):
    cost = bench_pair(digits(dtype, 32), impl, rounds=5)
    assert math.isfinite(cost)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_w3_digits_batch1(bench_pair, digits, dtype, impl):
    cost = bench_pair(digits(dtype, 1), impl, rounds=3)
    assert math.isfinite(cost)
