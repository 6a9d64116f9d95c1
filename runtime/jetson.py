"""Jetson: detect the board (L4T/JetPack, power mode, locked clocks) and sample ``tegrastats`` power.

Everything reads from a ``root`` folder (default ``/``) and takes the tegrastats command as an
argument, so tests replay recorded streams on machines that are not Jetsons.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lsnet_deploy.core.errors import BackendMissingError

#: L4T release -> JetPack (the pairs NVIDIA lists; others are reported as unknown)
JETPACK = {"32.7.1": "4.6.1", "32.7.4": "4.6.4", "32.7.5": "4.6.5", "32.7.6": "4.6.6",
           "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
           "35.6.0": "5.1.4", "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2"}
#: rails that measure the whole board's input power, best first (newer boards: VDD_IN, Nano/TX2: POM_5V_IN)
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
#: devfreq node names of Jetson GPUs (Nano/TX1, TX2, Xavier, Orin)
GPU_DEVFREQ = ("gpu", "gp10b", "gv11b", "ga10b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_GPU = re.compile(r"\bGR3D_FREQ (\d+)%")
_L4T = re.compile(r"R(\d+) \(release\), REVISION: (\d+)\.(\d+)")


@dataclass(frozen=True)
class JetsonInfo:
    model: str
    l4t: str
    jetpack: str | None
    power_mode: str | None  # nvpmodel's mode name
    clocks_locked: bool | None  # None: could not tell

    def as_dict(self) -> dict[str, object]:
        return {"model": self.model, "l4t": self.l4t, "jetpack": self.jetpack,
                "power_mode": self.power_mode, "clocks_locked": self.clocks_locked}


@dataclass(frozen=True)
class TegraSample:
    """One tegrastats line: instantaneous rail powers in mW, RAM in MB, GPU load in percent."""

    rails_mw: dict[str, int]
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    gpu_util: int | None = None

    @property
    def total_mw(self) -> int | None:
        """Board input power; the sum of all rails when the board reports no input rail."""
        for rail in INPUT_RAILS:
            if rail in self.rails_mw:
                return self.rails_mw[rail]
        return sum(self.rails_mw.values()) if self.rails_mw else None


def parse_tegrastats(line: str) -> TegraSample:
    """Parse one ``tegrastats`` line (JetPack 4 ``POM_5V_IN 3520/3520`` and JetPack 5/6 ``VDD_IN 5211mW/5211mW``)."""
    ram, gpu = _RAM.search(line), _GPU.search(line)
    return TegraSample(rails_mw={m[1]: int(m[2]) for m in _RAIL.finditer(line)},
                       ram_used_mb=int(ram[1]) if ram else None, ram_total_mb=int(ram[2]) if ram else None,
                       gpu_util=int(gpu[1]) if gpu else None)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def l4t_release(text: str) -> str | None:
    """``# R35 (release), REVISION: 4.1, ...`` -> ``35.4.1``."""
    m = _L4T.search(text)
    return f"{m[1]}.{m[2]}.{m[3]}" if m else None


def power_mode() -> str | None:
    """nvpmodel's current mode (``nvpmodel -q``: ``NV Power Mode: MAXN``), ``None`` without nvpmodel."""
    if not shutil.which("nvpmodel"):
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"NV Power Mode:\s*(\S+)", out)
    return m[1] if m else None


def clocks_locked(root: Path = Path("/")) -> bool | None:
    """Whether every CPU and GPU frequency range is pinned (``min == max``, what ``jetson_clocks`` does)."""
    pairs = [(d / "scaling_min_freq", d / "scaling_max_freq")
             for d in (root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")]
    pairs += [(d / "min_freq", d / "max_freq") for d in (root / "sys/class/devfreq").glob("*")
              if any(gpu in d.name for gpu in GPU_DEVFREQ)]
    values = [(_read(lo), _read(hi)) for lo, hi in pairs]
    values = [(lo, hi) for lo, hi in values if lo and hi]
    return all(lo == hi for lo, hi in values) if values else None


def detect(root: Path = Path("/")) -> JetsonInfo | None:
    """The Jetson this runs on, or ``None`` when ``/etc/nv_tegra_release`` is absent."""
    release = _read(root / "etc/nv_tegra_release")
    if release is None:
        return None
    l4t = l4t_release(release) or "unknown"
    model = _read(root / "proc/device-tree/model") or "unknown Jetson"
    return JetsonInfo(model=model, l4t=l4t, jetpack=JETPACK.get(l4t), power_mode=power_mode(),
                      clocks_locked=clocks_locked(root))


def require_jetson(root: Path = Path("/")) -> JetsonInfo:
    """:func:`detect`, raising :class:`BackendMissingError` off a Jetson."""
    info = detect(root)
    if info is None:
        raise BackendMissingError(f"--device jetson: this is not a Jetson ({root / 'etc/nv_tegra_release'} not found)")
    return info


@dataclass
class TegrastatsSampler:
    """Run ``tegrastats`` in the background and keep ``(monotonic time, sample)`` pairs.

    Use as a context manager; :meth:`mean_power_mw` averages the board power over a time window.
    """

    command: list[str] = field(default_factory=lambda: ["tegrastats", "--interval", "100"])
    samples: list[tuple[float, TegraSample]] = field(default_factory=list)

    def __enter__(self) -> TegrastatsSampler:
        if not shutil.which(self.command[0]):
            raise BackendMissingError(f"--device jetson: {self.command[0]} not found on PATH")
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read_lines, daemon=True)
        self._thread.start()
        return self

    def _read_lines(self) -> None:
        for line in self._proc.stdout:
            sample = parse_tegrastats(line)
            if sample.total_mw is not None:
                self.samples.append((time.monotonic(), sample))

    def __exit__(self, *exc) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._thread.join(timeout=5)

    def mean_power_mw(self, start: float, end: float) -> float | None:
        """Mean board power over samples taken in ``[start, end]`` (monotonic seconds); ``None`` if none."""
        powers = [s.total_mw for t, s in list(self.samples) if start <= t <= end]
        return sum(powers) / len(powers) if powers else None


def energy_per_image_mj(power_mw: float, seconds: float, images: int) -> float:
    """Energy per image in millijoules: mean power (mW) x time (s) / images."""
    return power_mw * seconds / images
