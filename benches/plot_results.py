"""Draw the benchmark chart of the documentation from a result data file.

    python benches/plot_results.py                          # benches/results/peers.json
    python benches/plot_results.py RESULTS.json -o CHART.png

The chart shows, for each workload, how many times longer each peer takes than
backprop_fast to train the same network on the same data (log scale; above 1,
backprop_fast is faster). The result file holds the rows of
``python -m backprop_fast bench``; see benches/results/peers.json for its fields.
Needs matplotlib.
"""
import argparse
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results" / "peers.json"
DEFAULT_CHART = HERE.parent / "docs" / "_static" / "peers.png"
# The trainers shown, in this order; the bare-matmul ceiling is left out.
PEERS = ("numpy reference", "scikit-learn", "torch eager", "jax jit step", "jax scan")


def plot(results, path):
    """Write a grouped bar chart of the peers' time ratios to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = results["workloads"]
    ratio = {(r["workload"], r["peer"]): r["ratio_to_backprop_fast"] for r in results["rows"]}
    peers = [p for p in PEERS if any(k[1] == p for k in ratio)]
    width = 0.8 / len(peers)
    fig, ax = plt.subplots(figsize=(11, 5))
    for j, peer in enumerate(peers):
        xs = [i + (j - (len(peers) - 1) / 2) * width for i, w in enumerate(workloads)
              if (w["key"], peer) in ratio]
        ys = [ratio[w["key"], peer] for w in workloads if (w["key"], peer) in ratio]
        ax.bar(xs, ys, width, label=peer)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)), [w["label"] for w in workloads], fontsize="small")
    ax.set_ylabel("peer's training time / backprop_fast's\n(above 1: backprop_fast is faster)")
    ax.set_title(f"Training time relative to backprop_fast, {results['threads']} threads each, "
                 f"{results['machine_short']}", fontsize="medium")
    ax.legend(fontsize="small", ncol=len(peers), loc="upper right")
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default=DEFAULT_RESULTS, type=pathlib.Path)
    parser.add_argument("-o", "--output", default=DEFAULT_CHART, type=pathlib.Path)
    args = parser.parse_args(argv)
    plot(json.loads(args.results.read_text()), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
