"""Rich tables several commands print (so no command imports helpers from another)."""

from __future__ import annotations

from rich.table import Table


def parity_table(rows, gate, title: str) -> Table:
    """A table of ``(name, Parity)`` rows; cells failing ``gate`` in red."""
    table = Table("output", "max-abs", "max-rel", "cosine", "top-1 agree", "gate", title=title)
    for name, p in rows:
        failed = gate.failures(p)
        table.add_row(name, f"{p.max_abs:.3g}", f"{p.max_rel:.3g}", f"{p.cosine:.9f}", f"{p.top1_agreement:.0%}",
                      "[red]FAIL[/]" if failed else "[green]ok[/]")
    return table
