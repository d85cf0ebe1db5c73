"""W5: a wide ReLU regression network, 1024-2048-2048-1024 (8.4 M parameters),
identity output, squared error, float32, batch 512, learning rate 0.001, on
4,096 synthetic samples (8 steps an epoch, one epoch a call). GEMM-bound:
compare its GFLOP/s with the "numpy matmuls only" ceiling and the bare
2048^3 matmul below.
"""
import math

import workloads


def test_w5_wide_relu(bench_peer, problems, peer_class):
    cost = bench_peer(problems("W5"), peer_class, rounds=3)
    assert cost is None or math.isfinite(cost)


def test_matmul_ceiling(benchmark, record_ceiling):
    """NumPy's float32 2048x2048 @ 2048x2048 into a preallocated output: the FLOP-rate ceiling."""
    mm = workloads.Matmul(2048)
    benchmark.group = mm.name
    benchmark.extra_info["peer"] = "numpy_matmul"
    benchmark.pedantic(mm.run, rounds=10, warmup_rounds=2, iterations=1)
    if benchmark.stats is not None:
        gflops = mm.flops / benchmark.stats.stats.median / 1e9
        benchmark.extra_info["gflops"] = gflops
        record_ceiling(mm.name, gflops)
