"""What several commands share (so no command imports helpers from another): rich tables, list options,
the ``--provider`` help."""

from __future__ import annotations

from typing import Optional

from rich.table import Table

from lsnet_deploy.core.errors import UsageError


def parity_table(rows, gate, title: str) -> Table:
    """A table of ``(name, Parity)`` rows; cells failing ``gate`` in red."""
    table = Table("output", "max-abs", "max-rel", "cosine", "top-1 agree", "gate", title=title)
    for name, p in rows:
        failed = gate.failures(p)
        table.add_row(name, f"{p.max_abs:.3g}", f"{p.max_rel:.3g}", f"{p.cosine:.9f}", f"{p.top1_agreement:.0%}",
                      "[red]FAIL[/]" if failed else "[green]ok[/]")
    return table


PROVIDER_HELP = ("onnxruntime execution provider: auto (from --device), cpu, cuda or tensorrt (onnxruntime-gpu; "
                 "cuda and tensorrt need --device cuda).")


def split_list(text: Optional[str], option: str, cast=str) -> tuple:
    """``"a,b"`` -> ``(a, b)``; :class:`UsageError` naming ``option`` when an item does not parse."""
    if not text:
        return ()
    try:
        return tuple(cast(item.strip()) for item in text.split(",") if item.strip())
    except ValueError as e:
        raise UsageError(f"{option}: expected a comma-separated list, got {text!r}") from e
