"""W4: a mid-sized ReLU classifier, 784-256-256-10 (269 k parameters), softmax
output, cross-entropy, float32, batch 128, learning rate 0.01, on 60,000
synthetic MNIST-shaped samples (469 steps an epoch, one epoch a call).
Compare its GFLOP/s with the "numpy matmuls only" ceiling: the same step's
matrix products and nothing else.
"""
import math


def test_w4_mid_relu(bench_peer, problems, peer_class):
    cost = bench_peer(problems("W4"), peer_class, rounds=3)
    assert cost is None or math.isfinite(cost)
