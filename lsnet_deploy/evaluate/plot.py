"""``eval --plot``: confusion matrices, and for a binary report the threshold and PR curves (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsnet_deploy.core.artifacts import write_report

from . import metrics
from .run import EvalReport


def _confusion(ax, m: dict) -> None:
    cm = np.asarray(m["confusion_matrix"], dtype=np.float64)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    names = m["class_names"]
    if len(names) <= 20:
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=7,
                    color="white" if rows[i, j] > 0.5 else "black")
    ax.set(title=f"{m['model']}\ntop-1 {100 * m['accuracy']:.2f} %", xlabel="predicted", ylabel="true")


def _binary(axes, report: EvalReport, doc: dict) -> None:
    sweep_ax, pr_ax = axes
    positive = report.labels == report.positive
    for r, m in zip(report.models, doc["models"]):
        sweep = m["binary"]["sweep"]
        th = [p["threshold"] for p in sweep]
        line, = sweep_ax.plot(th, [p["recall_positive"] for p in sweep], label=f"{m['model']} pos (T_R)")
        sweep_ax.plot(th, [p["recall_negative"] for p in sweep], "--", color=line.get_color(),
                      label=f"{m['model']} neg (F_R)")
        recall, precision = metrics.pr_curve(r.scores, positive)
        pr_ax.plot(recall, precision, label=f"{m['model']} AP {100 * m['binary']['pr_auc']:.2f}")
    sweep_ax.set(title=f"recall vs threshold (positive = {doc['models'][0]['binary']['positive']})",
                 xlabel="threshold on positive probability", ylabel="recall", ylim=(0, 1.02))
    pr_ax.set(title="precision-recall", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def write_plot(report: EvalReport, doc: dict, path: Path) -> None:
    """One PNG: a confusion matrix per model (row-normalised colours, counts written), then the curves."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = len(doc["models"]) + (2 if report.positive is not None else 0)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.6), squeeze=False,
                             layout="constrained")
    axes = list(axes[0])
    for ax, m in zip(axes, doc["models"]):
        _confusion(ax, m)
    if report.positive is not None:
        _binary(axes[-2:], report, doc)
    try:
        write_report(path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".").lower() or "png"))
    finally:
        plt.close(fig)
