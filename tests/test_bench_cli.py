"""Smoke tests of the benchmark runner (``python -m backprop_fast bench``).

Timings are never asserted (the machine is shared and noisy); these check the
table's rows, that a missing peer is a note and not a failure, and that the
peer adapters do the same work as the NumPy reference.
"""
import dataclasses
import gc
import io
import re
import subprocess
import sys

import numpy as np
import pytest

from backprop_fast import bench
from backprop_fast.bench import peers as bench_peers


def _table(**kw):
    out = io.StringIO()
    results = bench.run(out=out, **kw)
    return out.getvalue(), results


def test_quick_w1_table_rows():
    text, results = _table(only=["W1"], quick=True, peers=["numpy"], repeats=1)
    assert [w.key for w, _, _ in results] == ["W1"]
    rows = {row["peer"]: row for row in results[0][2]}
    assert set(rows) == {"backprop_fast", "numpy"}
    assert rows["backprop_fast"]["ratio"] == 1.0
    for row in rows.values():
        assert row["note"] is None and row["per_unit"] > 0 and row["gflops"] > 0
    # Same initial weights, no shuffling: the same training, the same final cost.
    assert rows["numpy"]["final_cost"] == pytest.approx(rows["backprop_fast"]["final_cost"],
                                                        rel=1e-9)
    lines = text.splitlines()
    assert any(line.startswith("W1 xor 2-2-1") for line in lines)
    assert any(line.split()[:1] == ["backprop_fast"] and "us/ep" in line for line in lines)
    assert any(line.strip().startswith("numpy reference") for line in lines)
    assert "machine:" in text and "BLAS:" in text and "date:" in text


def test_quick_output_names_no_project_tracking_words():
    """The table compares; it does not report on the project's own goals."""
    text, _ = _table(only=["W1"], quick=True, peers=["numpy"], repeats=1)
    titles = " ".join(w.title for w in bench.WORKLOADS)
    for words in (text, titles, bench.LEGEND):
        assert not re.search(r"\b(issues?|targets?|met)\b", words, re.I), words


def test_cli_runs_bench_command(tmp_path):
    # Run outside the repository: from its root, ``-m`` would import the source
    # tree (without a compiled kernel under a regular install) instead of the
    # installed package.
    proc = subprocess.run(
        [sys.executable, "-m", "backprop_fast", "bench", "--quick", "--only", "W1",
         "--peers", "numpy", "--repeats", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "backprop_fast" in proc.stdout and "numpy reference" in proc.stdout
    assert "W1 xor 2-2-1" in proc.stdout


def test_cli_rejects_unknown_workload_and_peer(capsys):
    from backprop_fast.__main__ import main
    assert main(["bench", "--only", "W9"]) == 2
    assert main(["bench", "--only", "W1", "--peers", "nope"]) == 2
    err = capsys.readouterr().err
    assert "W9" in err and "nope" in err


def test_missing_peer_is_a_note_not_a_failure():
    class Missing(bench_peers.Peer):
        name, label = "missing", "missing peer"
        module, install = "no_such_module_for_backprop_fast", "pip install nothing"

    problem = bench.Problem(bench.workloads(quick=True, only=["W1"])[0])
    rows = bench.compare(problem, [bench_peers.BackpropFast, Missing], threads=1, repeats=1)
    assert rows[0]["note"] is None
    assert rows[1]["note"].startswith("no_such_module_for_backprop_fast not installed")
    w = problem.workload
    assert "skipped: no_such_module" in bench.format_table([(w, problem, rows)])


def test_compare_leaves_the_collector_as_it_found_it():
    """compare freezes the objects alive before its timed calls; it must thaw
    them after, also when a timed call raises."""
    class FailsWhenTimed(bench_peers.Peer):
        name, label = "fails", "fails when timed"
        calls = 0

        def reset(self):
            pass

        def run(self):
            FailsWhenTimed.calls += 1
            if FailsWhenTimed.calls > 1:  # the untimed warm-up call passes
                raise RuntimeError("broken")

    problem = bench.Problem(bench.workloads(quick=True, only=["W1"])[0])
    assert gc.get_freeze_count() == 0
    rows = bench.compare(problem, [bench_peers.BackpropFast], threads=1, repeats=2)
    assert gc.get_freeze_count() == 0 and len(rows[0]["times"]) == 2
    with pytest.raises(RuntimeError, match="broken"):
        bench.compare(problem, [bench_peers.BackpropFast, FailsWhenTimed], threads=1,
                      repeats=2)
    assert gc.get_freeze_count() == 0


def _same_order_problem():
    """W2 in float64 on 256 digits, one epoch in order: every peer sees the same batches."""
    w = [w for w in bench.WORKLOADS if w.key == "W2-f64"][0]
    return bench.Problem(dataclasses.replace(w, shuffle=False, epochs=1, n_samples=256))


@pytest.mark.parametrize("name", [cls.name for cls in bench_peers.PEERS
                                  if cls.name not in ("numpy", "matmul")])
def test_peer_does_the_same_work_as_the_reference(name):
    cls = {c.name: c for c in bench_peers.PEERS}[name]
    if cls.unavailable():
        pytest.skip(cls.unavailable())
    problem = _same_order_problem()
    ref = bench_peers.NumpyReference(problem, 1)
    peer = cls(problem, 1)
    for p in (ref, peer):
        p.reset()
        p.run()
    expected = problem.final_cost(*ref.parameters())
    initial = problem.final_cost(*problem.init)
    assert expected < initial  # it trained
    assert problem.final_cost(*peer.parameters()) == pytest.approx(expected, rel=1e-9)
    for W, W_ref in zip(peer.parameters()[0], ref.parameters()[0]):
        np.testing.assert_allclose(W, W_ref, rtol=1e-8, atol=1e-10)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "speedups.png"
    _table(only=["W1"], quick=True, peers=["numpy"], repeats=1, plot=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("settle", [0.0, 0.01])
def test_compare_pauses_before_each_timed_call_where_the_workload_says(monkeypatch, settle):
    """W4 and W5 pause before every timed call so that the previous peer's
    spinning thread pools are quiet; the short workloads never wait."""
    assert {w.key for w in bench.WORKLOADS if w.settle} == {"W4", "W5"}
    pauses = []
    monkeypatch.setattr(bench.time, "sleep", pauses.append)
    w = dataclasses.replace(bench.workloads(quick=True, only=["W1"])[0], settle=settle)
    rows = bench.compare(bench.Problem(w), [bench_peers.BackpropFast, bench_peers.NumpyReference],
                         threads=1, repeats=3)
    timed = sum(len(row["times"]) for row in rows)
    assert timed == 6
    assert pauses == ([settle] * timed if settle else [])
