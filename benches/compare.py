"""backprop_fast beside the pure-NumPy reference, interleaved, in one process.

    python benches/compare.py            # about a minute
    python benches/compare.py --quick    # fewer repeats, for a smoke check

For each workload (see workloads.py) both implementations start from the same
initial weights (restored in place before every timed call) and train for the
same number of epochs on the same data; the calls alternate kernel, reference,
kernel, reference, ... so that drift of the machine (frequency, other load)
hits both alike. The table gives the median over the repeats, per epoch for
W1 and per step (minibatch) otherwise, the speedup (reference time / kernel
time), GFLOP/s counted as 6 x samples x parameters per epoch, and the final
epoch's mean training cost of each (the two differ a little where the data are
shuffled: each implementation draws its own permutations).

It closes with a peak-memory check of ``fit`` on W5-sized data, each case in a
fresh child process: the extra peak resident memory of fit (VmHWM, reset
before fit; getrusage's ru_maxrss where there is no /proc) and the peak of
NumPy/Python allocations during fit (tracemalloc), for the data set at 4,096
and at 8,192 samples and for 1 and 3 epochs. A fit that copies the data set
(once or per epoch) shows an extra peak that grows with the number of samples;
one that keeps per-epoch copies, one that grows with the number of epochs.
The script exits with status 1 if either grows by more than a quarter of the
data set's size.
"""
import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402  (benches/ is not a package)
from workloads import fmt_time  # noqa: E402

MiB = 1024.0 ** 2


def build_workloads(quick):
    """The workload pairs and their repeat counts: [(pair, repeats), ...]."""
    r = 3 if quick else 7
    return [
        (workloads.xor_pair(1000, 1000), r),
        (workloads.digits_pair("float32", 32, 5, 5), r),
        (workloads.digits_pair("float64", 32, 5, 5), r),
        (workloads.digits_pair("float32", 1, 1, 1), r),
        (workloads.digits_pair("float64", 1, 1, 1), r),
        (workloads.wide_pair(1, 1), 2 if quick else 3),
    ]


def time_call(fn):
    """(seconds, result) of one call, timed with perf_counter."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def compare_pair(pair, repeats):
    """Interleaved timings of both implementations; returns a result row (dict)."""
    impls = ("backprop_fast", "numpy_reference")
    times = {impl: [] for impl in impls}
    costs = {}
    for impl in impls:  # warm-up: first-call costs (imports, page faults, BLAS threads)
        pair.reset()
        pair.run(impl)
    for _ in range(repeats):
        for impl in impls:
            pair.reset()
            gc.collect()
            seconds, costs[impl] = time_call(lambda: pair.run(impl))
            times[impl].append(seconds)
    row = {"name": pair.name, "unit": "epoch" if pair.name.startswith("W1") else "step",
           "epochs": pair.fast_epochs, "repeats": repeats}
    for impl in impls:
        median = statistics.median(times[impl])
        row[impl] = dict(pair.figures(impl, median), final_cost=costs[impl],
                         spread=(max(times[impl]) - min(times[impl])) / median)
    return row


def matmul_ceiling(repeats):
    """Median GFLOP/s of NumPy's float32 2048x2048 product into a preallocated output."""
    mm = workloads.Matmul(2048)
    mm.run()
    seconds = [time_call(mm.run)[0] for _ in range(repeats)]
    return mm.name, mm.flops / statistics.median(seconds) / 1e9


def print_table(rows, ceiling):
    head = (f"{'workload':<38}{'unit':>6}{'backprop_fast':>15}{'NumPy ref':>13}{'speedup':>9}"
            f"{'GFLOP/s':>9}{'ref GFLOP/s':>12}{'cost':>11}{'ref cost':>11}")
    print(head)
    print("-" * len(head))
    for row in rows:
        fast, ref = row["backprop_fast"], row["numpy_reference"]
        key = "per_epoch_s" if row["unit"] == "epoch" else "per_step_s"
        print(f"{row['name']:<38}{row['unit']:>6}{fmt_time(fast[key]):>15}{fmt_time(ref[key]):>13}"
              f"{ref[key] / fast[key]:>8.2f}x{fast['gflops']:>9.3g}{ref['gflops']:>12.3g}"
              f"{fast['final_cost']:>11.5g}{ref['final_cost']:>11.5g}")
    name, gflops = ceiling
    print(f"{name:<38}{'':>6}{'':>15}{'':>13}{'':>9}{gflops:>9.3g}")
    noisy = [r["name"] for r in rows
             if max(r["backprop_fast"]["spread"], r["numpy_reference"]["spread"]) > 0.25]
    if noisy:
        print(f"note: max-min spread above 25% of the median for: {', '.join(noisy)}")


# ---------------------------------------------------------------- memory check

def reset_peak_rss():
    """Reset the process's peak-RSS mark (Linux >= 4.0); return whether it worked.

    Without the reset, ru_maxrss is the high-water mark of the whole process,
    and a transient of data generation or network set-up could hide a copy
    made by fit. Freed heap memory is handed back to the system first
    (glibc's malloc_trim): memory that malloc keeps resident for reuse would
    let fit allocate without raising the RSS, and hide a copy the same way.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss():
    """Peak resident memory of this process in bytes.

    VmHWM from /proc/self/status where there is one: getrusage's ru_maxrss is
    at least the peak the process inherited at exec (a child of a big parent
    reports the parent's size), which would hide fit's peak here.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def memory_child(n_samples, epochs):
    """Run in a child process: the extra peak memory of one W5-sized fit, as JSON."""
    X, Y = workloads.synthetic_regression(n_samples)
    net = workloads.Network(workloads.W5_LAYERS, ["relu", "relu", "identity"],
                            "squared_error", dtype="float32", seed=workloads.SEED)
    gc.collect()
    was_reset = reset_peak_rss()
    rss_before = peak_rss()
    tracemalloc.start()
    net.fit(X, Y, epochs=epochs, batch_size=512, learning_rate=0.001)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = peak_rss()
    print(json.dumps({"n_samples": n_samples, "epochs": epochs,
                      "data_bytes": X.nbytes + Y.nbytes,
                      "params_bytes": sum(w.nbytes for w in net.weights + net.biases),
                      "rss_extra": rss_after - rss_before, "traced_peak": traced_peak,
                      "peak_reset": was_reset}))


def memory_check(quick):
    """Run memory_child for several sizes in fresh processes; print and judge the results."""
    cases = [(4096, 1), (8192, 1), (4096, 2 if quick else 3)]
    results = []
    for n_samples, epochs in cases:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child",
                              str(n_samples), str(epochs)],
                             check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'samples':>8}{'epochs':>8}{'data set':>12}{'parameters':>12}"
          f"{'fit extra peak RSS':>20}{'fit traced peak':>17}")
    for r in results:
        print(f"{r['n_samples']:>8}{r['epochs']:>8}{r['data_bytes'] / MiB:>8.1f} MiB"
              f"{r['params_bytes'] / MiB:>8.1f} MiB{r['rss_extra'] / MiB:>16.1f} MiB"
              f"{r['traced_peak'] / MiB:>13.1f} MiB")
    if not all(r["peak_reset"] for r in results):
        print("note: could not reset the peak-RSS mark (/proc/self/clear_refs): the RSS "
              "figures are lifetime peaks and may hide a copy; rely on the traced ones")
    small, large, long = results
    grow_n = large["rss_extra"] - small["rss_extra"]
    grow_n_traced = large["traced_peak"] - small["traced_peak"]
    grow_e = long["rss_extra"] - small["rss_extra"]
    extra_data = large["data_bytes"] - small["data_bytes"]
    print(f"doubling the samples (+{extra_data / MiB:.0f} MiB of data) raised fit's extra peak "
          f"by {grow_n / MiB:.1f} MiB (RSS) / {grow_n_traced / MiB:.1f} MiB (traced); "
          f"{long['epochs']} epochs instead of 1 raised it by {grow_e / MiB:.1f} MiB (RSS)")
    ok = max(grow_n, grow_n_traced) < 0.25 * extra_data and grow_e < 0.25 * small["data_bytes"]
    print("memory: OK, fit makes no copy of the data set" if ok else
          "memory: WARNING, fit's peak grows with the data set or the epochs: "
          "it copies the data (once or per epoch)")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and epochs (a smoke check, noisier figures)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory check")
    parser.add_argument("--memory-child", nargs=2, type=int, metavar=("N_SAMPLES", "EPOCHS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0

    print(workloads.environment())
    rows = []
    for pair, repeats in build_workloads(args.quick):
        rows.append(compare_pair(pair, repeats))
        print(f"  timed {pair.name} ({repeats} repeats)", file=sys.stderr, flush=True)
    ceiling = matmul_ceiling(5 if args.quick else 15)
    print()
    print("Medians of interleaved repeats; speedup = NumPy reference time / backprop_fast time.")
    print_table(rows, ceiling)
    if not args.no_memory:
        print()
        print("Peak memory of Network.fit on W5-sized data "
              "(1024-2048-2048-1024, float32, batch 512):")
        if not memory_check(args.quick):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
