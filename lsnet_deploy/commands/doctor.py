"""``lsnet-deploy doctor``: versions, providers, devices and CPU features that matter here."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Show what this machine can export to and run on."""
    from lsnet_deploy.runtime.environment import collect_environment

    env = collect_environment()
    if as_json:
        typer.echo(json.dumps(env, indent=2))
        return
    table = Table("item", "value", title="lsnet-deploy doctor")
    for name, version in env["packages"].items():
        table.add_row(name, version or "[dim]not installed[/]")
    for name, backend in env["backends"].items():
        state = (f"[dim]missing {', '.join(backend['missing'])}: pip install {escape(backend['extra'])}[/]"
                 if backend["missing"] else "ready")
        table.add_row(f"backend {name}", f"{state} ({', '.join(backend['suffixes'])})")
    cpu = env["cpu"]
    table.add_row("cpu", f"{cpu['model']} ({cpu['cores']} logical cores)")
    feats = cpu["features"]
    note = "  (bf16/AMX: OpenVINO defaults to bf16 here; lsnet-deploy pins f32 for fp32 artifacts)" \
        if any("bf16" in f or "amx" in f for f in feats) else ""
    table.add_row("cpu features", (", ".join(feats) or "-") + note)
    from lsnet_deploy.exporters.base import targets_for

    bf16 = " or ".join(targets_for("bf16"))
    table.add_row("bf16 compute", f"yes: export --target {bf16} --bf16, bench --precision bf16" if env["cpu_bf16"]
                  else "no (needs AVX512-BF16 or AMX-BF16): bf16 artifacts are refused here")
    table.add_row("int8 dot products", env["int8_isa"] + (
        ": exact 32-bit accumulation" if env["int8_vnni"] else
        ": no VNNI, 16-bit saturating u8*s8 pairs (int8 files use 7-bit weights: docs/precision.md)"))
    table.add_row("onnxruntime providers", (", ".join(env["onnxruntime_providers"]) or "-")
                  + f"  (--provider {', '.join(env['onnxruntime_provider_choices'])})")
    table.add_row("openvino devices", ", ".join(env["openvino_devices"]) or "-")
    for item, value in tensorrt_rows(env["tensorrt"]):
        table.add_row(item, escape(value))
    table.add_row("cuda gpu", env["cuda_gpu"] or "none")
    table.add_row("jetson", env["jetson"] or "no")
    Console().print(table)


def tensorrt_rows(info: dict | None) -> list[tuple[str, str]]:
    """``doctor``'s TensorRT rows: the version, what typing it offers, the build path of each precision."""
    if info is None:
        return [("tensorrt build paths", "not installed (pip install lsnet-deploy[tensorrt] brings TensorRT 11.x: "
                                          "strongly typed only, no DLA)")]
    if info["version"] is None:
        return [("tensorrt build paths", f"tensorrt does not import: {info['error']}")]
    typing = ("strongly typed only" if not info["weak_typing"] else "weakly typed only" if not info["strongly_typed"]
              else "strongly typed; weakly typed for DLA and the int8 calibrator")
    rows = [("tensorrt build paths", f"TensorRT {info['version']}: {typing}")]
    rows += [(f"tensorrt {precision}", path) for precision, path in info["build_paths"].items()]
    if info["dla_build_paths"]:
        rows += [(f"tensorrt {precision} on DLA", path) for precision, path in info["dla_build_paths"].items()]
    return rows


def register(app: typer.Typer) -> None:
    app.command()(doctor)
