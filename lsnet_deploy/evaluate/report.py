"""``eval`` reports: the JSON document, CSV, Markdown, rich tables and plots, all from :func:`as_dict`.

Tables are built once as ``(title, header, rows)`` of strings and rendered by rich or as Markdown.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from lsnet_deploy.core.artifacts import write_report
from lsnet_deploy.core.interrupt import SHOW
from lsnet_deploy.runtime.report import check_report_paths, finite

from . import metrics
from .run import MAX_DISAGREEMENTS, EvalReport, ModelResult

#: CSV columns: one row per model and class, plus a ``(macro)`` row per model
CSV_COLUMNS = ("model", "backend", "model_precision", "class", "support", "precision", "recall", "accuracy")
#: the seed's column names for positive, mean and negative recall
SEED_NAMES = {"recall_positive": "T_R", "recall_mean": "M_R", "recall_negative": "F_R"}


def binary_block(report: EvalReport, r: ModelResult) -> dict:
    """ROC-AUC, PR-AUC, the threshold sweep, the operating point at ``--threshold`` and the ``--target-recall`` pick."""
    opts, pos = report.options, report.positive
    positive = report.labels == pos
    sweep = metrics.threshold_sweep(r.scores, positive)
    at = opts.threshold if opts.threshold is not None else 0.5
    block = {"positive": report.class_names[pos], "positives": int(positive.sum()),
             "negatives": int((~positive).sum()), "roc_auc": metrics.roc_auc(r.scores, positive),
             "pr_auc": metrics.average_precision(r.scores, positive),
             "at_threshold": metrics.sweep_row(metrics.threshold_sweep(r.scores, positive, np.array([at])), 0),
             "sweep": [metrics.sweep_row(sweep, i) for i in range(len(sweep["threshold"]))]}
    if opts.target_recall is not None:
        i = metrics.target_threshold(sweep, opts.target_recall, opts.target_class)
        block["target"] = {"recall": opts.target_recall, "class": opts.target_class,
                           **(metrics.sweep_row(sweep, i) if i is not None else {"threshold": None})}
    return block


def model_entry(report: EvalReport, r: ModelResult) -> dict:
    """One model's JSON entry: accuracy, per-class metrics, confusion matrix, and the binary block."""
    k, labels = len(report.class_names), report.labels
    cm = metrics.confusion_matrix(labels, r.pred, k)
    cls = metrics.class_metrics(cm, np.bincount(labels, minlength=k))
    entry = {"model": r.model, "backend": r.backend, "precision": r.precision, "kind": r.kind, "classes": r.note,
             "images": int(len(labels)), "accuracy": float(np.mean(r.pred == labels)),
             "top5_accuracy": float(np.mean(r.rank < 5)) if r.outputs > 5 else None,
             "macro_precision": cls.macro_precision, "macro_recall": cls.macro_recall,
             "per_class": {name: {"precision": float(cls.precision[i]), "recall": float(cls.recall[i]),
                                  "support": int(cls.support[i])} for i, name in enumerate(report.class_names)},
             "class_names": list(report.class_names), "confusion_matrix": cm.tolist(),
             "predicted_outside_classes": int(np.sum(r.pred < 0))}
    if report.positive is not None:
        entry["binary"] = binary_block(report, r)
    return entry


def agreements(report: EvalReport) -> list[dict]:
    """Top-1 agreement of every pair of models and the images where they disagree (first ones listed)."""
    names = report.class_names
    out = []
    for i, a in enumerate(report.models):
        for b in report.models[i + 1:]:
            differ = np.flatnonzero(a.pred != b.pred)
            listed = [{"path": str(report.paths[j]), "true": names[report.labels[j]],
                       a.model: _name(names, a.pred[j]), b.model: _name(names, b.pred[j])}
                      for j in differ[:MAX_DISAGREEMENTS]]
            out.append({"a": a.model, "b": b.model, "top1_agreement": metrics.agreement(a.pred, b.pred),
                        "disagreements": int(len(differ)), "images": listed})
    return out


def _name(names: tuple[str, ...], k: int) -> str:
    return names[k] if k >= 0 else "(other class)"


def as_dict(report: EvalReport) -> dict:
    """The whole report as JSON-ready data (NaN -> null)."""
    return finite({"data": report.data, "images": int(len(report.labels)), "class_names": list(report.class_names),
                    "unreadable": [{"path": str(p), "reason": why} for p, why in report.failed],
                    "models": [model_entry(report, r) for r in report.models],
                    "agreement": agreements(report)})


def _pct(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _operating_row(m: dict, label: str, p: dict) -> list[str]:
    th = "none" if p.get("threshold") is None else f"{p['threshold']:.2f}"
    return ([m["model"], _pct(m["binary"]["roc_auc"]), _pct(m["binary"]["pr_auc"]), label, th]
            + [_pct(p.get(k)) for k in ("accuracy", *SEED_NAMES, "precision")])


def tables(doc: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Summary, per-class, binary, confusion and agreement tables as ``(title, header, rows)``."""
    models = doc["models"]
    out = [(f"{doc['data']}: {doc['images']} images, {len(doc['class_names'])} classes"
            + (f", {len(doc['unreadable'])} unreadable" if doc["unreadable"] else ""),
            ["model", "backend", "precision", "top-1 %", "top-5 %", "macro P %", "macro R %", "classes"],
            [[m["model"], m["backend"], m["precision"], _pct(m["accuracy"]), _pct(m["top5_accuracy"]),
              _pct(m["macro_precision"]), _pct(m["macro_recall"]), m["classes"]] for m in models])]
    out.append(("per class: precision % / recall %", ["class", "support"] + [m["model"] for m in models],
                [[name, str(models[0]["per_class"][name]["support"])]
                 + [f"{_pct(m['per_class'][name]['precision'])} / {_pct(m['per_class'][name]['recall'])}"
                    for m in models] for name in doc["class_names"]]))
    binary = [m for m in models if "binary" in m]
    if binary:
        b0 = binary[0]["binary"]
        points = [(m, "at threshold", m["binary"]["at_threshold"]) for m in binary]
        points += [(m, f"{m['binary']['target']['class']} recall >= {_pct(m['binary']['target']['recall'])}",
                    m["binary"]["target"]) for m in binary if "target" in m["binary"]]
        out.append((f"binary: positive = {b0['positive']} ({b0['positives']} images), {b0['negatives']} negatives",
                    ["model", "ROC-AUC %", "PR-AUC %", "operating point", "th", "acc %", "pos recall (T_R) %",
                     "mean recall (M_R) %", "neg recall (F_R) %", "precision %"],
                    [_operating_row(m, label, p) for m, label, p in points]))
    if len(doc["class_names"]) <= 10:
        for m in models:
            out.append((f"confusion: {m['model']}", ["true \\ pred"]
                        + doc["class_names"], [[name] + [str(v) for v in row]
                                               for name, row in zip(doc["class_names"], m["confusion_matrix"])]))
    if doc["agreement"]:
        out.append(("agreement between models", ["a", "b", "top-1 agreement %", "images that differ"],
                    [[g["a"], g["b"], _pct(g["top1_agreement"]), str(g["disagreements"])] for g in doc["agreement"]]))
    return out


def markdown(doc: dict) -> str:
    parts = []
    for title, header, rows in tables(doc):
        parts += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        parts += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows] + [""]
    return "\n".join(parts)


def print_tables(doc: dict, console: Console | None = None, listed: int = 10) -> None:
    """The tables, then the first ``listed`` disagreeing and unreadable images."""
    console = console or Console()
    for title, header, rows in tables(doc):
        table = Table(*header, title=title, title_justify="left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for g in doc["agreement"]:
        for item in g["images"][:listed]:
            console.print(f"  differ: {item['path']}  true {item['true']}: {g['a']} -> {item[g['a']]}, "
                          f"{g['b']} -> {item[g['b']]}")
    for item in doc["unreadable"][:listed]:
        console.print(f"  unreadable: {item['reason']}")
    if len(doc["unreadable"]) > listed:
        console.print(f"  ... and {len(doc['unreadable']) - listed} more unreadable (all listed in --json)")


def csv_rows(doc: dict) -> list[dict]:
    rows = []
    for m in doc["models"]:
        base = {"model": m["model"], "backend": m["backend"], "model_precision": m["precision"]}
        rows += [{**base, "class": name, **c} for name, c in m["per_class"].items()]
        rows.append({**base, "class": "(macro)", "support": m["images"], "precision": m["macro_precision"],
                     "recall": m["macro_recall"], "accuracy": m["accuracy"]})
    return rows


def write_csv(path: Path, doc: dict) -> None:
    """One CSV row per model and class (plus a macro row per model)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(csv_rows(doc))


def write_reports(report: EvalReport, json_path=None, csv_path=None, md_path=None, plot_path=None) -> dict:
    """Write the asked-for files (each atomically); returns the JSON document."""
    doc = as_dict(report)
    texts = {json_path: lambda: json.dumps(doc, indent=2, allow_nan=False) + "\n", md_path: lambda: markdown(doc)}
    for path, text in texts.items():
        if path is not None:
            write_report(path, lambda tmp, text=text: tmp.write_text(text(), encoding="utf-8", errors=SHOW))
    if csv_path is not None:
        write_report(csv_path, lambda tmp: write_csv(tmp, doc))
    if plot_path is not None:
        from .plot import write_plot

        write_plot(report, doc, Path(plot_path))
    return doc


__all__ = ["as_dict", "check_report_paths", "markdown", "print_tables", "tables", "write_reports"]
