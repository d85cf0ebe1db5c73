"""The optimizers' cost per step on W2's network (issue 4: within 1.3x of plain SGD).

64-32-10 tanh/softmax on the 1,797 digits, batch 32, float32, 5 epochs a
call. Plain SGD folds its update into the weight-gradient product; momentum,
Adam and AdamW write the gradient out and take a fused elementwise pass over
the parameters and their state. Each benchmark's extra_info has the time per
step; compare them within one run (`pytest benches/test_bench_optimizers.py
--benchmark-only`), as the group's table does.
"""
import numpy as np
import pytest

from backprop_fast import Network
from backprop_fast.datasets import load_digits

EPOCHS = 5
BATCH = 32
OPTIONS = {
    "sgd": dict(learning_rate=0.1),
    "momentum": dict(learning_rate=0.1, momentum=0.9),
    "nesterov": dict(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam": dict(optimizer="adam", learning_rate=1e-3),
    "adamw": dict(optimizer="adamw", learning_rate=1e-3, weight_decay=1e-2),
}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X.astype(np.float32), y


@pytest.mark.parametrize("name", list(OPTIONS))
def test_optimizer_step(benchmark, digits, name):
    X, y = digits
    net = Network([64, 32, 10], ["tanh", "softmax"], dtype="float32", seed=0)
    start = [p.copy() for p in net.weights + net.biases]

    def reset():
        for p, p0 in zip(net.weights + net.biases, start):
            p[...] = p0

    benchmark.group = "W2 optimizers (float32, batch 32)"
    history = benchmark.pedantic(
        lambda: net.fit(X, y, epochs=EPOCHS, batch_size=BATCH, **OPTIONS[name]),
        setup=reset, rounds=7, warmup_rounds=1)
    steps = EPOCHS * -(-X.shape[0] // BATCH)
    benchmark.extra_info["per_step_us"] = benchmark.stats.stats.median / steps * 1e6
    assert np.isfinite(history.loss[-1])
