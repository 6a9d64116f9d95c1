"""Eval metrics against hand-computed values and independent formulas."""

from __future__ import annotations

import numpy as np
import pytest

from lsnet_deploy.evaluate import metrics


def test_confusion_and_per_class_with_unpredicted_and_empty_classes():
    # class 2 has samples but is never predicted; class 3 has no samples but is predicted once
    y_true = [0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 3, 0, 1]
    cm = metrics.confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    m = metrics.class_metrics(cm)
    np.testing.assert_allclose(m.precision, [2 / 3, 1 / 3, np.nan, 0.0])
    np.testing.assert_allclose(m.recall, [2 / 3, 1 / 2, 0.0, np.nan])
    assert m.support.tolist() == [3, 2, 2, 0]
    assert m.macro_precision == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)  # classes with samples; never predicted: 0
    assert m.macro_recall == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_predictions_outside_the_data_classes_are_misses():
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, -1, 1, -1])
    cm = metrics.confusion_matrix(y_true, y_pred, 2)
    assert cm.tolist() == [[1, 0], [0, 1]]
    m = metrics.class_metrics(cm, np.bincount(y_true))
    assert m.recall.tolist() == [0.5, 0.5] and m.precision.tolist() == [1.0, 1.0]


def test_true_rank_gives_top_k():
    scores = np.array([[0.1, 0.5, 0.2, 0.2], [0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
    rank = metrics.true_rank(scores, np.array([2, 0, 0]))
    assert rank.tolist() == [1, 0, 3]
    assert [float(np.mean(rank < k)) for k in (1, 2, 4)] == [1 / 3, 2 / 3, 1.0]


def mann_whitney_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUC = P(score of a positive > score of a negative), ties half: from average ranks."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_rank_formula(seed):
    rng = np.random.default_rng(seed)
    positive = rng.random(200) < 0.4
    scores = np.round(np.clip(rng.normal(0.5 + 0.2 * positive, 0.2), 0, 1), 2)  # rounded: many ties
    assert metrics.roc_auc(scores, positive) == pytest.approx(mann_whitney_auc(scores, positive), abs=1e-12)


def test_roc_auc_and_average_precision_hand_example():
    scores, positive = np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True])
    assert metrics.roc_auc(scores, positive) == pytest.approx(0.75)
    # thresholds 0.8, 0.4, 0.35, 0.1: (recall, precision) = (.5, 1), (.5, .5), (1, 2/3), (1, .5)
    assert metrics.average_precision(scores, positive) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert np.isnan(metrics.roc_auc(scores, np.ones(4, bool)))


# positives 0.9 0.8 0.6 0.38 0.2, negatives 0.1 0.3 0.37 0.5 0.7
SCORES = np.array([0.9, 0.8, 0.6, 0.38, 0.2, 0.1, 0.3, 0.37, 0.5, 0.7])
POSITIVE = np.array([True] * 5 + [False] * 5)


def test_threshold_sweep_on_crafted_scores():
    sweep = metrics.threshold_sweep(SCORES, POSITIVE)
    at = metrics.sweep_row(sweep, 38)
    assert at["threshold"] == 0.38
    assert at["recall_positive"] == 0.8  # 0.9 0.8 0.6 0.38 (score >= t is positive)
    assert at["recall_negative"] == 0.6  # 0.1 0.3 0.37
    assert at["recall_mean"] == pytest.approx(0.7) and at["accuracy"] == pytest.approx(0.7)
    assert at["precision"] == pytest.approx(4 / 6)
    assert metrics.sweep_row(sweep, 0)["recall_positive"] == 1.0 and metrics.sweep_row(sweep, 0)["recall_negative"] == 0
    assert np.all(np.diff(sweep["recall_positive"]) <= 0) and np.all(np.diff(sweep["recall_negative"]) >= 0)


@pytest.mark.parametrize(("recall", "on", "threshold"), [
    (0.8, "negative", 0.51),  # 4 of 5 negatives below t: t > 0.5
    (1.0, "negative", 0.71),
    (0.8, "positive", 0.38),  # 4 of 5 positives at or above t: t <= 0.38
    (0.6, "positive", 0.60),
])
def test_target_recall_picks_the_threshold(recall, on, threshold):
    sweep = metrics.threshold_sweep(SCORES, POSITIVE)
    i = metrics.target_threshold(sweep, recall, on)
    assert sweep["threshold"][i] == pytest.approx(threshold)


def test_target_recall_unreachable():
    scores = np.array([0.9, 1.0])  # a negative scored 1.0 is positive at every threshold
    sweep = metrics.threshold_sweep(scores, np.array([True, False]))
    assert metrics.target_threshold(sweep, 1.0, "negative") is None


def test_agreement():
    assert metrics.agreement(np.array([0, 1, 1, -1]), np.array([0, 1, 0, -1])) == 0.75
