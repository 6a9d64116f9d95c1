"""What several commands share (so no command imports helpers from another): rich tables, list options,
the ``--provider`` help."""

from __future__ import annotations

from typing import Optional

from rich.table import Table

from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.core.parity import NEAR_TIE_GAP


def parity_table(rows, gate, title: str) -> Table:
    """A table of ``(name, Parity)`` rows; cells failing ``gate`` in red. A gate that leaves out near ties
    shows the agreement it checks in brackets."""
    table = Table("output", "max-abs", "max-rel", "cosine", "top-1 agree", "gate", title=title)
    for name, p in rows:
        failed = gate.failures(p)
        top1 = f"{p.top1_agreement:.0%}"
        if gate.skip_near_ties and p.near_ties:
            top1 += f" ({p.top1_decided:.0%})"
            table.caption = (f"(top-1): the gate's, without {p.near_ties} near ties (frames whose top two "
                             f"reference probabilities lie within {NEAR_TIE_GAP})")
        table.add_row(name, f"{p.max_abs:.3g}", f"{p.max_rel:.3g}", f"{p.cosine:.9f}", top1,
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
