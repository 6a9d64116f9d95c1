"""Params, tags and metrics of one command's run, read from the command's own report dict (nothing re-measured).

Metric keys of a bench row are ``<backend>.<precision>.b<batch>.<stat>`` (one run per command, rows indexed in
the key: see docs/tracking.md); eval's are ``<model>.<stat>``; verify's and export's plain ``<stat>``.
"""

from __future__ import annotations

import getpass
import math
import platform
import re
import subprocess
from pathlib import Path
from typing import Dict, Optional, Tuple

from lsnet_deploy.core import __version__, probes

Params = Dict[str, str]
Metrics = Dict[str, float]
#: bench row statistics logged per row: metric stat -> the row dict's path
ROW_STATS = {**{f"latency_{k}_ms": ("latency_ms", k) for k in ("mean", "median", "p90", "p95", "p99", "min", "max",
                                                               "std")},
             "median_ci_low_ms": ("median_ci95_ms", 0), "median_ci_high_ms": ("median_ci95_ms", 1),
             "cv": ("cv",), "iterations": ("iterations",), "throughput": ("throughput",),
             "speedup_vs_torch": ("speedup_vs_torch",), "first_inference_ms": ("first_inference_ms",),
             "load_ms": ("load_ms",), "peak_rss_mb": ("peak_rss_mb",), "rss_delta_mb": ("rss_delta_mb",),
             **{f"parity_{k}": ("parity", k) for k in ("max_abs", "max_rel", "cosine", "top1_agreement")},
             "parity_ok": ("parity_ok",), "power_mw": ("power_mw",), "energy_mj_per_img": ("energy_mj_per_img",)}
#: artifact metadata (``lsnet.*`` props) -> param name
META_PARAMS = {"variant": "variant", "num_classes": "classes", "img_size": "input_size", "precision": "precision",
               "ska": "lowering", "opset": "opset", "batch": "batch", "checkpoint_sha256": "checkpoint_sha256",
               "checkpoint_key": "checkpoint_key", "tool_version": "exported_by", "quantization": "quantization"}


def key(text: str) -> str:
    """A metric/param key MLflow accepts (letters, digits, ``_-./`` and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", str(text)) or "_"


def _number(value) -> Optional[float]:
    """A finite float, or ``None`` (booleans count as 0/1; JSON and MLflow's REST API have no NaN)."""
    if not isinstance(value, (bool, int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _dig(d: dict, path: tuple):
    for part in path:
        if d is None:
            return None
        d = d[part] if isinstance(d, list) and isinstance(part, int) and part < len(d) else (
            d.get(part) if isinstance(d, dict) else None)
    return d


def row_key(row: dict) -> str:
    return key(f"{row['backend']}.{row['precision']}.b{row['batch']}")


def bench_metrics(doc: dict) -> Metrics:
    """Every row's statistics (``None`` values left out)."""
    out: Metrics = {}
    for row in doc.get("results", []):
        for stat, path in ROW_STATS.items():
            value = _number(_dig(row, path))
            if value is not None:
                out[f"{row_key(row)}.{stat}"] = value
    return out


def metadata_params(meta: dict) -> Params:
    """Artifact metadata (:meth:`ArtifactMetadata.summary`) as params."""
    out = {name: str(meta[field]) for field, name in META_PARAMS.items() if meta.get(field) not in (None, "")}
    if meta.get("preprocessing"):
        out["preprocessing"] = str(meta["preprocessing"])
    return out


def bench_params(doc: dict) -> Params:
    cfg = doc.get("config", {})
    out = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in cfg.items()
           if k not in ("metadata", "artifacts") and v is not None}
    out.update(metadata_params(cfg.get("metadata", {})))
    return out


def _labels(models: list) -> list:
    """Each eval model's metric prefix: its file stem (dots as ``_``), made unique by its position where two
    stems agree."""
    labels: list = []
    for i, m in enumerate(models):
        stem = key(Path(m["model"]).stem).replace(".", "_")  # a dot would split ``runs``' row key
        labels.append(stem if stem not in labels else f"{stem}_{i}")
    return labels


def eval_params_metrics(doc: dict) -> Tuple[Params, Metrics]:
    """Per model (keyed by its file stem): top-1/top-5, macro and per-class precision/recall, AUCs, threshold
    report; agreement between models."""
    params: Params = {"data": str(doc.get("data")), "images": str(doc.get("images")),
                      "classes": str(len(doc.get("class_names", [])))}
    metrics: Metrics = {}
    labels = _labels(doc.get("models", []))
    names = {}
    for label, m in zip(labels, doc.get("models", [])):
        names.setdefault(m["model"], label)
        params.update({f"{label}.model": m["model"], f"{label}.backend": m["backend"],
                       f"{label}.precision": m["precision"], f"{label}.kind": m["kind"]})
        stats = {"top1": m.get("accuracy"), "top5": m.get("top5_accuracy"), "macro_precision": m.get("macro_precision"),
                 "macro_recall": m.get("macro_recall")}
        for cls, c in m.get("per_class", {}).items():
            stats.update({f"class.{key(cls)}.precision": c["precision"], f"class.{key(cls)}.recall": c["recall"]})
        binary = m.get("binary") or {}
        stats.update({"roc_auc": binary.get("roc_auc"), "pr_auc": binary.get("pr_auc")})
        for point in ("at_threshold", "target"):
            stats.update({f"{point}.{k}": v for k, v in (binary.get(point) or {}).items()})
        metrics.update({f"{label}.{k}": _number(v) for k, v in stats.items() if _number(v) is not None})
    for a in doc.get("agreement", []):
        metrics[f"agreement.{names.get(a['a'], key(a['a']))}~{names.get(a['b'], key(a['b']))}"] = float(
            a["top1_agreement"])
    return params, metrics


def parity_metrics(parity: Optional[dict], passed: Optional[bool]) -> Metrics:
    out = {f"parity_{k}": _number(v) for k, v in (parity or {}).items() if _number(v) is not None}
    if passed is not None:
        out["passed"] = float(passed)
    return out


def _git(root: Path, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_tags() -> Params:
    """The checkout lsnet-deploy runs from (commit, branch, dirty); nothing for an installed package."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {}
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return {}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"mlflow.source.git.commit": commit, "lsnet.git.branch": _git(root, "rev-parse", "--abbrev-ref", "HEAD")
            or "", "lsnet.git.dirty": str(bool(status))}


def host_tags(command: str, device: str, environment: Optional[dict] = None) -> Params:
    """Device kind, host, CPU model and flags, GPU, Jetson release, Python, package versions, git state.

    ``environment``: a bench report's (already probed); otherwise probed here (no backend is imported).
    """
    env = environment or {}
    cpu = env.get("cpu") or probes.cpu_info()
    jetson = env.get("jetson") if "jetson" in env else probes.jetson_release()
    packages = env.get("packages") or probes.package_versions()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    tags = {"lsnet.command": command, "lsnet.device": device, "lsnet.host": platform.node(),
            "lsnet.cpu": str(cpu.get("model")), "lsnet.cpu_flags": ",".join(cpu.get("features", [])),
            "lsnet.int8_isa": str(env.get("int8_isa") or probes.int8_isa()),
            "lsnet.gpu": str((env.get("cuda_gpu") if "cuda_gpu" in env else probes.cuda_gpu()) or ""),
            "lsnet.python": platform.python_version(), "lsnet.platform": platform.platform(),
            "lsnet.version": __version__, "mlflow.source.name": f"lsnet-deploy {command}",
            "mlflow.source.type": "LOCAL", "mlflow.user": user}
    if isinstance(jetson, dict):
        tags.update({"lsnet.jetson": str(jetson.get("model", "")), "lsnet.l4t": str(jetson.get("l4t", "")),
                     "lsnet.jetpack": str(jetson.get("jetpack", ""))})
    elif jetson:
        tags["lsnet.l4t"] = str(jetson)
    tags.update({f"lsnet.pkg.{name}": v for name, v in packages.items() if v})
    tags.update(git_tags())
    return {k: v for k, v in tags.items() if v not in (None, "")}
