"""The demonstration run, ``python -m backprop_fast``: XOR, then the digits beside a peer."""
import re

import pytest

from backprop_fast import __main__ as demo


def test_xor_table_is_solved():
    table = demo.format_xor_table(demo.train_xor())
    assert table.splitlines()[0].split() == ["Input", "Output", "Quantized"]
    assert "All four quantized outputs match XOR." in table


def test_digits_beside_the_numpy_reference():
    report = demo.format_digits_report(demo.train_digits(epochs=3))
    assert re.search(r"^  NumPy reference\s+\d+\.\d+ s", report, re.M)
    assert "than NumPy reference with the same settings" in report


def test_digits_beside_scikit_learn_with_the_same_settings():
    pytest.importorskip("sklearn")
    r = demo.train_digits_sklearn(epochs=3)
    report = demo.format_digits_report(r, peer="scikit-learn")
    assert re.search(r"^  scikit-learn\s+\d+\.\d+ s", report, re.M)
    # The same initial weights and settings: the training costs agree closely.
    assert r["fast_loss"] == pytest.approx(r["ref_loss"], rel=0.2)
    assert r["fast_accuracy"] > 0.8 and r["ref_accuracy"] > 0.8


def test_demo_command_prints_both_parts(capsys):
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert "All four quantized outputs match XOR." in out
    assert re.search(r"trained \d+\.\dx (faster|slower) than", out)
