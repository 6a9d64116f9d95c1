"""Classification metrics in numpy alone: confusion matrix, per-class precision/recall, binary ROC/PR and
the threshold sweep.

Conventions: class indices ``0..K-1``; a prediction of ``-1`` is a model class outside the data's
classes (a miss for its image, in no column); undefined ratios (0/0) are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: thresholds of the sweep: 0.00, 0.01, ..., 1.00 on the positive-class probability
SWEEP = np.round(np.arange(101) / 100, 2)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """``(k, k)`` counts, rows = true class, columns = predicted class; predictions ``-1`` are left out."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    inside = y_pred >= 0
    return np.bincount(y_true[inside] * k + y_pred[inside], minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class precision (NaN: never predicted), recall (NaN: no samples) and support, and macro averages.

    Macro averages run over the classes that have samples; a class with samples that is never
    predicted counts precision 0 there.
    """

    precision: np.ndarray
    recall: np.ndarray
    support: np.ndarray

    @property
    def macro_precision(self) -> float:
        present = self.support > 0
        return float(np.nan_to_num(self.precision[present]).mean()) if present.any() else float("nan")

    @property
    def macro_recall(self) -> float:
        present = self.support > 0
        return float(self.recall[present].mean()) if present.any() else float("nan")


def class_metrics(cm: np.ndarray, support: np.ndarray | None = None) -> ClassMetrics:
    """From a confusion matrix; ``support`` (default: row sums) also counts predictions outside its columns."""
    tp = np.diag(cm)
    support = cm.sum(axis=1) if support is None else np.asarray(support)
    return ClassMetrics(_ratio(tp, cm.sum(axis=0)), _ratio(tp, support), support)


def true_rank(scores: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Per row, how many classes score strictly higher than the true one (top-k hit: rank < k)."""
    true = scores[np.arange(len(scores)), y_true]
    return (scores > true[:, None]).sum(axis=1)


def _ranked_counts(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, thresholds descending (positive: score >= t)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    s, y = np.asarray(scores, np.float64)[order], np.asarray(positive, bool)[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    return tps, (last + 1) - tps


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(false positive rate, true positive rate)`` from (0, 0) to (1, 1)."""
    tps, fps = _ranked_counts(scores, positive)
    return np.r_[0, fps] / max(fps[-1], 1), np.r_[0, tps] / max(tps[-1], 1)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count half); NaN with one class only."""
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return float("nan")
    fpr, tpr = roc_curve(scores, positive)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def pr_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` at each distinct threshold, thresholds descending."""
    tps, fps = _ranked_counts(scores, positive)
    return tps / max(tps[-1], 1), tps / (tps + fps)


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """PR-AUC as average precision: sum over thresholds of (recall step) x precision; NaN without positives."""
    if not np.asarray(positive, bool).any():
        return float("nan")
    recall, precision = pr_curve(scores, positive)
    return float(np.sum(np.diff(np.r_[0, recall]) * precision))


def threshold_sweep(scores: np.ndarray, positive: np.ndarray, thresholds: np.ndarray = SWEEP) -> dict:
    """At each threshold (positive when score >= t): accuracy, positive/negative/mean recall, precision.

    Positive recall, mean recall and negative recall are the seed's T_R, M_R and F_R.
    """
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    pos, neg = np.sort(scores[positive]), np.sort(scores[~positive])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    tn = np.searchsorted(neg, thresholds, side="left")
    fp = len(neg) - tn
    recall_pos, recall_neg = _ratio(tp, len(pos)), _ratio(tn, len(neg))
    return {"threshold": np.asarray(thresholds, np.float64), "accuracy": _ratio(tp + tn, len(scores)),
            "recall_positive": recall_pos, "recall_negative": recall_neg,
            "recall_mean": (recall_pos + recall_neg) / 2, "precision": _ratio(tp, tp + fp)}


def sweep_row(sweep: dict, i: int) -> dict[str, float]:
    """Row ``i`` of a sweep as plain floats."""
    return {key: float(values[i]) for key, values in sweep.items()}


def target_threshold(sweep: dict, recall: float, on: str = "negative") -> int | None:
    """Index of the sweep threshold meeting ``recall`` on class ``on`` that is best for the other class.

    ``negative``: the lowest threshold whose negative recall >= ``recall`` (the most positives caught
    at that false-alarm rate); ``positive``: the highest threshold whose positive recall >= ``recall``.
    ``None`` when no threshold meets it.
    """
    meets = np.flatnonzero(np.nan_to_num(sweep[f"recall_{on}"]) >= recall - 1e-12)
    if not len(meets):
        return None
    return int(meets[0] if on == "negative" else meets[-1])


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of images with the same top-1 class."""
    return float(np.mean(np.asarray(pred_a) == np.asarray(pred_b))) if len(pred_a) else float("nan")
