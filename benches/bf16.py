"""float32 against the mixed_bfloat16 policy on the wide workloads, beside
PyTorch's bfloat16 autocast.

    python benches/bf16.py [--quick] [--threads 2] [--markdown] [--out FILE]

The workloads are W4 and W5 of ``python -m backprop_fast bench`` (same data,
initial weights, sample orders, learning rates), timed by its ``compare``:
interleaved calls after one untimed warm-up call each, medians, GFLOP/s
counted as 6 x batch x parameters a step. The rows:

====================  =====================================================
backprop_fast         ``Network(dtype="float32")``: the "vs bf" reference
bf mixed_bfloat16     ``Network(dtype="mixed_bfloat16")``
torch eager           float32 (if torch is installed)
torch autocast bf16   the same model, its forward pass and cost under
                      ``torch.autocast("cpu", dtype=torch.bfloat16)``
====================  =====================================================

After the table, the ratios the mixed_bfloat16 policy is judged by: its
GFLOP/s over float32's, and over torch autocast's. On a CPU without
AVX512-BF16 the policy runs its products in float32 instructions (see
docs/numerics.md), so there it cannot be faster than float32.

``--smoke`` runs one step of each on a few hundred samples: a check that the
script works, not a measurement.
"""
import argparse
import sys
from dataclasses import replace

from backprop_fast.bench import Problem, compare, environment, format_table, limit_threads
from backprop_fast.bench import workloads as bench_workloads
from backprop_fast.bench.peers import BackpropFast, TorchEager
from backprop_fast.network import Network

MIXED = "mixed_bfloat16"


class BackpropFastMixed(BackpropFast):
    """``Network.fit`` under the mixed_bfloat16 policy, from the same start."""

    name, label = "backprop_fast_mixed", "bf mixed_bfloat16"

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        p = problem
        self.net = Network(list(p.layer_sizes), list(p.activations), p.loss, dtype=MIXED,
                           seed=1234)


class TorchAutocast(TorchEager):
    """TorchEager's steps with the forward pass and the cost under CPU
    autocast to bfloat16 (the backward pass follows the forward's types)."""

    name, label = "torch_autocast", "torch autocast bf16"

    @classmethod
    def skip_reason(cls, problem):
        return None if problem.dtype == "float32" else "autocast bf16 replaces float32 only"

    def _step(self, xb, yb):
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cost = self.loss(self.model(xb), yb)
        cost.backward()
        self.opt.step()


PEERS = [BackpropFast, BackpropFastMixed, TorchEager, TorchAutocast]


def chosen_workloads(quick, smoke):
    out = []
    for w in bench_workloads(quick or smoke, ["W4", "W5"]):
        if smoke:
            w = replace(w, n_samples=w.batch_size * 2, repeats=1, settle=0.0)
        out.append(w)
    return out


def ratios(results):
    """Lines of mixed_bfloat16's GFLOP/s over float32's and over torch autocast's."""
    lines = []
    for w, _, rows in results:
        speed = {r["peer"]: r["gflops"] for r in rows if r["note"] is None}
        mixed = speed.get(BackpropFastMixed.name)
        if mixed is None:
            continue
        parts = []
        if BackpropFast.name in speed:
            parts.append(f"mixed_bfloat16 / float32 = {mixed / speed[BackpropFast.name]:.2f}")
        if TorchAutocast.name in speed:
            parts.append(f"mixed_bfloat16 / torch autocast bf16 = "
                         f"{mixed / speed[TorchAutocast.name]:.2f}")
        lines.append(f"{w.key}: " + "; ".join(parts))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the bench's --quick sizes and repeats")
    parser.add_argument("--smoke", action="store_true",
                        help="one step of each on two batches: checks the script only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)

    context, notes = limit_threads(args.threads)
    results = []
    with context:
        for cls in PEERS:
            if cls.unavailable() is None:
                cls.prepare(args.threads)
        env = environment()
        for w in chosen_workloads(args.quick, args.smoke):
            print(f"{w.key}: timing", file=sys.stderr)
            problem = Problem(w)
            results.append((w, problem, compare(problem, PEERS, args.threads)))
    report = [env, f"threads: {args.threads} for every peer" + "".join(f"; {n}" for n in notes),
              "command: python benches/bf16.py" + (" --quick" if args.quick else "")
              + (" --smoke" if args.smoke else "") + f" --threads {args.threads}", "",
              format_table(results, markdown=args.markdown), "", *ratios(results)]
    text = "\n".join(report)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
