"""Top-1 agreement and near ties: the int8 gate counts only the frames the reference itself decides."""

import math

import numpy as np
import pytest

from lsnet_deploy.core.parity import GATES, NEAR_TIE_GAP, compare_outputs, top2_gap
from lsnet_deploy.exporters.base import ExportOptions


def two_class(margins):
    """2-class logits whose top-2 softmax gap is tanh(margin / 2)."""
    return np.array([[0.0, m] for m in margins], dtype=np.float32)


def test_top2_gap_is_the_softmax_gap():
    gaps = top2_gap(np.array([[0.0, 0.1], [0.0, 1.0], [0.0, -3.0]]))
    assert gaps == pytest.approx([math.tanh(0.05), math.tanh(0.5), math.tanh(1.5)], rel=1e-12)
    three = np.log(np.array([[0.5, 0.3, 0.2]]))
    assert top2_gap(three) == pytest.approx([0.2])
    assert top2_gap(np.zeros((2, 1))).tolist() == [1.0, 1.0]


def test_flips_on_near_ties_are_counted_apart():
    # 8 frames, the reference's margins; a near tie is a gap under NEAR_TIE_GAP (margin under ~0.2007)
    reference = two_class([0.05, -0.1, 2.0, -2.0, 3.0, -1.0, 1.5, 0.5])
    actual = reference.copy()
    actual[[0, 1]] = actual[[0, 1], ::-1]  # both near ties flip
    p = compare_outputs(actual, reference)
    assert (p.top1_agreement, p.top1_decided, p.near_ties) == (0.75, 1.0, 2)
    actual[2] = actual[2, ::-1]  # a decided frame flips too
    p = compare_outputs(actual, reference)
    assert (p.top1_agreement, p.top1_decided, p.near_ties) == (5 / 8, 5 / 6, 2)
    assert math.tanh(0.2007 / 2) == pytest.approx(NEAR_TIE_GAP, abs=1e-4)


def test_only_near_ties_and_non_finite_outputs():
    reference = two_class([0.01, -0.02])
    p = compare_outputs(reference[:, ::-1], reference)
    assert (p.top1_agreement, p.top1_decided, p.near_ties) == (0.0, 1.0, 2)
    bad = compare_outputs(np.full((2, 2), np.nan), reference)
    assert (bad.top1_agreement, bad.top1_decided, bad.cosine) == (0.0, 0.0, 0.0)


def test_the_int8_export_gate_counts_decided_frames_only():
    reference = two_class([0.05] + [2.0] * 99)
    gate = ExportOptions(int8=True).gate()
    assert (gate.min_cosine, gate.min_top1, gate.skip_near_ties) == (0.99, 0.99, True)
    coin_toss = reference.copy()
    coin_toss[0] = coin_toss[0, ::-1]
    assert gate.failures(compare_outputs(coin_toss, reference)) == []
    decided = reference.copy()
    decided[[1, 2]] = decided[[1, 2], ::-1]  # 2 flips in 99 decided frames: 98.0 %
    assert gate.failures(compare_outputs(decided, reference))[-1] == \
        "top-1 agreement 98.0% < 99.0% (near ties of the reference not counted: 1)"
    # the precision's own gate (verify, bench on any inputs) and the other precisions are unchanged
    assert GATES["int8"].min_top1 == 0.0 and not GATES["int8"].skip_near_ties
    assert not any(o.gate().skip_near_ties for o in (ExportOptions(), ExportOptions(target="openvino", bf16=True)))
    bf16 = GATES["bf16"].failures(compare_outputs(coin_toss[:8], reference[:8]))
    assert bf16 == ["top-1 agreement 87.5% < 90.0%"]
    assert ExportOptions(int8=True, min_cosine=0.5).gate().min_top1 == 0.99


def test_the_export_table_shows_the_agreement_the_gate_checks():
    from rich.console import Console

    from lsnet_deploy.commands.common import parity_table

    reference = two_class([0.05, 0.1] + [2.0] * 30)
    actual = reference.copy()
    actual[0] = actual[0, ::-1]
    console = Console(width=200, record=True)
    console.print(parity_table([("int8", compare_outputs(actual, reference))], ExportOptions(int8=True).gate(), "t"))
    text = console.export_text()
    assert "97% (100%)" in text and "without 2 near ties" in text
    console.print(parity_table([("int8", compare_outputs(actual, reference))], GATES["int8"], "t"))
    assert console.export_text().count("97%") == 1 and "(100%)" not in console.export_text()
