"""pytest-benchmark fixtures: backprop_fast beside the NumPy reference in one run.

Run from the repository root (not part of the main test run, whose testpaths
is tests/):

    pytest benches/ --benchmark-only

Every workload is timed twice, once per implementation, with the same data and
the same initial weights (restored in place before each round, outside the
timed region). Results of one workload share a benchmark group so the two lines
print next to each other; each result's extra_info carries the per-epoch and
per-step time, GFLOP/s (6 x samples x parameters per epoch) and the final
epoch's mean training cost.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402  (benches/ is not a package)

IMPLEMENTATIONS = ["backprop_fast", "numpy_reference"]

# (group, implementation) -> figures of that benchmark, for the closing table.
_RESULTS = {}


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["backprop_fast_bench"] = workloads.environment()


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    """Which implementation a benchmark times."""
    return request.param


@pytest.fixture(scope="session")
def xor():
    return workloads.xor_pair()


@pytest.fixture(scope="session")
def digits():
    """``digits(dtype, batch)``: the W2 (batch 32) or W3 (batch 1) Pair, each built once."""
    cache = {}

    def get(dtype, batch):
        key = (dtype, batch)
        if key not in cache:
            # Same epochs for both, so that their final costs are comparable.
            epochs = 1 if batch == 1 else 5   # batch 1: an epoch is 1,797 steps
            cache[key] = workloads.digits_pair(dtype, batch, epochs, epochs)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def wide():
    return workloads.wide_pair(fast_epochs=1, ref_epochs=1)


@pytest.fixture
def bench_pair(benchmark):
    """``bench_pair(pair, impl, rounds)`` times ``pair.run(impl)``; returns the final cost."""
    def run(pair, impl, rounds, warmup_rounds=1):
        return _bench_pair(benchmark, pair, impl, rounds, warmup_rounds)
    return run


def _bench_pair(benchmark, pair, impl, rounds, warmup_rounds):
    """Time ``pair.run(impl)`` with pedantic rounds; record figures in extra_info.

    Every round starts from the pair's initial parameters (``pair.reset`` runs
    as pedantic's setup, outside the timed region). Returns the final epoch's
    mean cost of the last round.
    """
    benchmark.group = pair.name
    benchmark.extra_info.update(
        implementation=impl,
        epochs_per_round=pair.epochs(impl),
        steps_per_epoch=pair.steps_per_epoch,
        batch=pair.batch,
        n_samples=pair.n_samples,
        n_parameters=workloads.n_parameters(pair.layer_sizes),
    )
    cost = benchmark.pedantic(pair.run, args=(impl,), setup=pair.reset,
                              rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
    benchmark.extra_info["final_cost"] = cost
    if benchmark.stats is not None:  # None under --benchmark-disable
        figures = pair.figures(impl, benchmark.stats.stats.median)
        benchmark.extra_info.update(figures)
        _RESULTS[(pair.name, impl)] = dict(figures, final_cost=cost)
    return cost


@pytest.fixture
def record_ceiling():
    """``record_ceiling(name, gflops)`` adds a FLOP-rate ceiling to the closing table."""
    def record(name, gflops):
        _RESULTS[(name, "numpy_matmul")] = {"gflops": gflops}
    return record


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter):
    """After pytest-benchmark's tables: one line per workload, kernel beside reference."""
    result = yield
    if _RESULTS:
        _summary(terminalreporter)
    return result


def _summary(terminalreporter):
    write = terminalreporter.write_line
    terminalreporter.section("backprop_fast vs NumPy reference (medians)")
    write(workloads.environment())
    write(f"{'workload':<40}{'unit':>6}{'backprop_fast':>15}{'reference':>13}{'speedup':>9}"
          f"{'GFLOP/s':>9}{'ref GFLOP/s':>12}{'cost':>10}{'ref cost':>10}")
    groups = sorted({g for g, impl in _RESULTS if impl != "numpy_matmul"})
    for group in groups:
        fast = _RESULTS.get((group, "backprop_fast"))
        ref = _RESULTS.get((group, "numpy_reference"))
        if fast is None or ref is None:
            continue
        unit = "epoch" if group.startswith("W1") else "step"
        key = "per_epoch_s" if unit == "epoch" else "per_step_s"
        write(f"{group:<40}{unit:>6}{workloads.fmt_time(fast[key]):>15}"
              f"{workloads.fmt_time(ref[key]):>13}{ref[key] / fast[key]:>8.2f}x"
              f"{fast['gflops']:>9.3g}{ref['gflops']:>12.3g}"
              f"{fast['final_cost']:>10.4g}{ref['final_cost']:>10.4g}")
    for (group, impl), fig in sorted(_RESULTS.items()):
        if impl == "numpy_matmul":
            write(f"{group:<40}{'':>6}{'':>15}{'':>13}{'':>9}{fig['gflops']:>9.3g}")
