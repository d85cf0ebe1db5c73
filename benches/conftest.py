"""pytest-benchmark fixtures: backprop_fast beside every installed peer, one run.

Run from the repository root (not part of the main test run, whose testpaths
is tests/):

    pytest benches/ --benchmark-only                 # every workload, every peer
    BENCH_QUICK=1 pytest benches/ --benchmark-only   # the --quick workload sizes
    BENCH_THREADS=1 pytest benches/ ...              # threads for everyone (default 2)

The peers are the adapters of ``backprop_fast.bench.peers`` (re-exported by
peers.py): backprop_fast, the NumPy reference, scikit-learn, PyTorch eager,
JAX (jitted step; whole run under lax.scan) and, for W4/W5, the bare matrix
products of a step. A peer that is not installed is skipped with a note.

Every benchmark starts each round from the workload's initial weights (the
adapter's ``reset`` runs as pedantic's setup, outside the timed region).
Results of one workload share a benchmark group; each result's extra_info
carries the time per epoch/step, the ratio to backprop_fast, GFLOP/s
(6 x batch x parameters per step), the extra peak memory of one training call
and the final cost (same float64 evaluation for every peer). The closing
section prints them as the table of ``python -m backprop_fast bench``.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (benches/ is not a package)
import workloads  # noqa: E402

from backprop_fast import bench  # noqa: E402

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")

# workload key -> (workload, problem, {peer name: row}) for the closing table.
_RESULTS = {}


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["backprop_fast_bench"] = workloads.environment()


@pytest.fixture(scope="session", autouse=True)
def thread_limit():
    """Every peer gets THREADS threads (BLAS, OpenMP, PyTorch, XLA) for the session."""
    context, notes = bench.limit_threads(THREADS)
    with context:
        peers.prepare(peers.PEERS, THREADS)
        yield notes


@pytest.fixture(params=[cls.name for cls in peers.PEERS])
def peer_class(request):
    """Each peer in turn; one that is not installed is skipped with the reason."""
    cls = peers.BY_NAME[request.param]
    reason = cls.unavailable()
    if reason:
        pytest.skip(reason)
    return cls


@pytest.fixture(scope="session")
def problems():
    """``problems(key)``: the workload's Problem (data, initial weights), built once."""
    cache = {}

    def get(key):
        if key not in cache:
            cache[key] = bench.Problem(workloads.workload(key, QUICK))
        return cache[key]
    return get


@pytest.fixture
def bench_peer(benchmark):
    """``bench_peer(problem, peer_class)`` times the peer's training call; returns
    the final cost (None for the matmul ceiling)."""
    def run(problem, cls, rounds=None):
        reason = cls.skip_reason(problem)
        if reason:
            pytest.skip(reason)
        return _bench_peer(benchmark, problem, cls, rounds or problem.workload.repeats)
    return run


def _bench_peer(benchmark, problem, cls, rounds):
    w = problem.workload
    peer = cls(problem, THREADS)
    benchmark.group = w.title
    benchmark.extra_info.update(peer=cls.name, epochs_per_round=w.epochs,
                                steps_per_epoch=problem.steps_per_epoch, batch=problem.batch,
                                n_samples=problem.n_samples, n_parameters=problem.n_parameters)
    benchmark.pedantic(peer.run, setup=peer.reset, rounds=rounds, warmup_rounds=1,
                       iterations=1)
    times, peaks = [], []
    bench.time_peer(peer, times, peaks)  # one more call, for its peak memory
    params = peer.parameters()
    cost = None if params is None else problem.final_cost(*params)
    peer.close()
    if benchmark.stats is None:  # --benchmark-disable
        return cost
    seconds = benchmark.stats.stats.median
    units = w.epochs * (1 if w.unit == "epoch" else problem.steps_per_epoch)
    row = dict(peer=cls.name, label=cls.label, note=None, seconds=seconds,
               per_unit=seconds / units, repeats=rounds,
               gflops=problem.flops_per_epoch * w.epochs / seconds / 1e9,
               state_bytes=None, peak_bytes=peaks[0] if peaks else None, final_cost=cost,
               spread=(benchmark.stats.stats.max - benchmark.stats.stats.min) / seconds)
    entry = _RESULTS.setdefault(w.key, (w, problem, {}))
    entry[2][cls.name] = row
    fast = entry[2].get("backprop_fast")
    if fast is not None:
        row["ratio"] = seconds / fast["seconds"]
    benchmark.extra_info.update({k: row[k] for k in ("per_unit", "gflops", "peak_bytes",
                                                     "final_cost", "ratio") if k in row})
    return cost


@pytest.fixture
def record_ceiling():
    """``record_ceiling(name, gflops)`` adds a FLOP-rate line under the closing table."""
    def record(name, gflops):
        _CEILINGS[name] = gflops
    return record


_CEILINGS = {}


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter):
    """After pytest-benchmark's tables: the comparison table, peers side by side."""
    result = yield
    if _RESULTS or _CEILINGS:
        _summary(terminalreporter)
    return result


def _summary(terminalreporter):
    write = terminalreporter.write_line
    terminalreporter.section("backprop_fast beside its peers (medians)")
    for line in workloads.environment().splitlines():
        write(line)
    write(f"threads: {THREADS} for every peer")
    results = []
    for w in bench.WORKLOADS:
        if w.key in _RESULTS:
            w, problem, rows = _RESULTS[w.key]
            fast = rows.get("backprop_fast")
            ordered = [rows[cls.name] for cls in peers.PEERS if cls.name in rows]
            for row in ordered:
                if fast is not None:
                    row["ratio"] = row["seconds"] / fast["seconds"]
            results.append((w, problem, ordered))
    if results:
        for line in bench.format_table(results).splitlines():
            write(line)
        write(bench.LEGEND + " (state MiB is not measured here; run MiB from one extra call)")
    for name, gflops in _CEILINGS.items():
        write(f"{name}: {gflops:.3g} GFLOP/s")
