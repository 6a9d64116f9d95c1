"""Preflight: the export options and output paths, checked before torch or a backend package is imported.

``export`` (and the ``export`` command, before it builds a target's config) calls :func:`preflight`
first, so a typo in ``-o``, ``--ska`` or ``--opset`` is refused in milliseconds, not after the
seconds it takes to import torch. It reads only what the registries declare as literals
(:mod:`lsnet_deploy.core.registry`): the targets' suffixes and partner files, the lowerings' facts.
No torch, no onnx, no backend package.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lsnet_deploy.core.artifacts import check_output, check_outputs, check_suffix
from lsnet_deploy.core.errors import InputError, UsageError

from .base import DEFAULT_EXPORTER, DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, TARGETS, ExportOptions, lowering_facts

#: the facts a lowering registered at run time (a plugin, a test) is asked for
_FACTS = ("min_opset", "tensorrt_ok", "int8_ok", "ncnn_ok", "summary")


def lowering(name: str) -> dict[str, Any]:
    """The facts of the SKA lowering ``name``: declared in ``ska/*.py`` (read without importing torch) or,
    when the package is already imported, registered at run time; :class:`UsageError` listing the choices."""
    facts = lowering_facts()
    ska = sys.modules.get(f"{__package__}.ska")  # registered at run time: the package is imported already
    registered = dict(getattr(ska, "LOWERINGS", {}))
    if name in facts:
        return facts[name]
    if name in registered:
        return {"name": name, **{attr: getattr(registered[name], attr) for attr in _FACTS}}
    choices = sorted(set(facts) | set(registered))
    raise UsageError(f"unknown SKA lowering {name!r}; choose one of: {', '.join(choices)}")


def check_opset(opset: int | None, name: str, exporter: str) -> int:
    """``opset`` (or the exporter's default) if the exporter and the lowering ``name`` support it;
    :class:`UsageError` otherwise."""
    opset = DEFAULT_OPSET[exporter] if opset is None else opset
    low = max(MIN_OPSET[exporter], lowering(name)["min_opset"])
    if not low <= opset <= MAX_OPSET:
        using = "" if exporter == DEFAULT_EXPORTER else f" with --exporter {exporter}"
        raise UsageError(f"--opset {opset} is out of range for --ska {name}{using}: use {low}..{MAX_OPSET}")
    return opset


def partner_paths(target: str, output: Path) -> list[Path]:
    """The files written beside ``output`` by ``target`` (an IR's ``.bin``, an engine's sidecar), from the
    target's declared ``partners`` templates (``{stem}``, ``{name}``: of ``output``)."""
    output = Path(output)
    return [output.with_name(t.format(stem=output.stem, name=output.name)) for t in TARGETS[target].partners]


def check_artifact_paths(target: str, output: Path, overwrite: bool, what: str = "") -> list[Path]:
    """``output`` and its partner files: :class:`OutputError` unless they can be written (checked first, as
    any output), :class:`UsageError` unless ``output`` has one of the target's suffixes."""
    output = Path(output)
    check_output(output, overwrite)
    check_suffix(output, TARGETS[target].suffixes, what or f"--target {target} output")
    return check_outputs(output, *partner_paths(target, output), overwrite=overwrite)


def int8_lowering_error(name: str) -> UsageError:
    """The one refusal of QDQ int8 for a lowering that is not made of standard ops, naming those that are."""
    standard = ", ".join(n for n, facts in lowering_facts().items() if facts["int8_ok"])
    return UsageError(f"--int8 needs an SKA lowering made of standard ops ({standard}), not {name}")


def preflight(options: ExportOptions) -> None:
    """Every check of ``options`` that needs no model and no heavy import: the lowering, the opset, int8's
    lowering, ONNX-only flags for a target without the ONNX stage, the image folder, the output path and its
    partners."""
    facts = lowering(options.lowering)
    check_opset(options.opset, options.lowering, options.exporter)
    if options.target == "onnx" and options.int8 and not facts["int8_ok"]:
        raise int8_lowering_error(options.lowering)
    onnx_only = [flag for flag, given in (("--opset", options.opset is not None), ("--simplify", options.simplify),
                                          ("--exporter", options.exporter != DEFAULT_EXPORTER)) if given]
    if onnx_only and TARGETS[options.target].no_onnx:
        said = f"{onnx_only[0]} is an ONNX option" if len(onnx_only) == 1 else f"{', '.join(onnx_only)}: ONNX options"
        raise UsageError(f"{said}; --target {options.target} {TARGETS[options.target].no_onnx}")
    if options.data is not None and not Path(options.data).is_dir():
        raise InputError(f"calibration data folder not found: {options.data}")
    if options.output is not None:  # before any work: a typo costs milliseconds, not an export
        check_artifact_paths(options.target, options.output, options.overwrite)


__all__ = ["check_artifact_paths", "check_opset", "int8_lowering_error", "lowering", "partner_paths", "preflight"]
