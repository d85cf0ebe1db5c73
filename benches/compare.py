"""backprop_fast beside every installed peer, interleaved, in one process.

    python benches/compare.py            # the full comparison, then the memory check
    python benches/compare.py --quick    # the --quick sizes, for a smoke check
    python benches/compare.py --only W4 --no-memory

The comparison is ``python -m backprop_fast bench`` (backprop_fast/bench/,
the peers in backprop_fast/bench/peers.py, re-exported by peers.py here):
every workload W1-W5 trained by backprop_fast, the NumPy reference,
scikit-learn, PyTorch eager and JAX (jitted step; whole run under lax.scan)
where installed, from the same initial weights on the same data with the same
number of threads, timed interleaved; the table gives medians, the ratio to
backprop_fast, GFLOP/s (6 x batch x parameters per step), memory and the
final cost of each. Below it, NumPy's bare 2048^3 float32 matmul as a FLOP-rate
ceiling.

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

from backprop_fast import bench  # noqa: E402

MiB = 1024.0 ** 2


def matmul_ceiling(repeats):
    """Median GFLOP/s of NumPy's float32 2048x2048 product into a preallocated output."""
    mm = workloads.Matmul(2048)
    mm.run()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm.run()
        seconds.append(time.perf_counter() - t0)
    return mm.name, mm.flops / statistics.median(seconds) / 1e9


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
    net = workloads.Network(list(workloads.W5_LAYERS), ["relu", "relu", "identity"],
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
                        help="the --quick sizes and repeats (a smoke check, noisier figures)")
    parser.add_argument("--only", type=bench._comma_list, metavar="W2,W5",
                        help="workload groups (W1..W5) or keys (W2-f32)")
    parser.add_argument("--peers", type=bench._comma_list, metavar="NAMES",
                        help="peers to run (default: all installed)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every peer")
    parser.add_argument("--plot", metavar="FILE.png", help="bar chart of the speed-ups")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory check")
    parser.add_argument("--memory-child", nargs=2, type=int, metavar=("N_SAMPLES", "EPOCHS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0

    def log(message):
        print(message, file=sys.stderr, flush=True)
    bench.run(only=args.only, quick=args.quick, threads=args.threads, peers=args.peers,
              plot=args.plot, log=log)
    context, _ = bench.limit_threads(args.threads)
    with context:
        name, gflops = matmul_ceiling(5 if args.quick else 15)
    print(f"{name}: {gflops:.3g} GFLOP/s")
    if not args.no_memory:
        print()
        print("Peak memory of Network.fit on W5-sized data "
              "(1024-2048-2048-1024, float32, batch 512):")
        if not memory_check(args.quick):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
