"""Process memory probes for bench rows: peak RSS (``/proc`` on Linux, ``getrusage`` elsewhere)."""

from __future__ import annotations

import sys
from pathlib import Path


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process (``VmHWM``; ``getrusage`` where /proc is missing)."""
    peak = _status_mb("VmHWM")
    if peak is None:
        import resource
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024
    return peak


def reset_peak_rss() -> float | None:
    """Reset the peak to the current RSS (Linux ``clear_refs``), so each backend gets its own peak; returns it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_mb("VmRSS")
