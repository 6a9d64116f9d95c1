"""Test helpers for odd output paths: a size-limited tmpfs, private device nodes, a FIFO reader, a tiny report."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from lsnet_deploy.runtime.results import BenchReport, BenchRow
from lsnet_deploy.runtime.stats import summarize


@contextmanager
def small_fs(folder: Path, size: str):
    """A tmpfs of ``size`` mounted at ``folder`` (root only); skips the test where it cannot be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"lsnet-test-{uuid.uuid4().hex[:6]}",
                           str(folder)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(path: Path) -> None:
    """Fill the filesystem holding ``path`` (a new file) up to its last byte."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


def device_node(path: Path, minor: int) -> Path:
    """A private copy of a memory device (3: like /dev/null, 7: like /dev/full); skips where mknod is refused.

    Tests never write next to, or rename over, the machine's own /dev entries.
    """
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot create a device node here: {e}")
    return path


@contextmanager
def fifo_reader(path: Path):
    """A FIFO at ``path`` with a reader thread; yields a dict whose ``data`` is what it read."""
    os.mkfifo(path)
    got: dict = {}

    def read() -> None:
        with open(path, "rb") as f:
            got["data"] = f.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield got
    finally:
        if reader.is_alive():  # nothing was written: release the reader
            with open(path, "wb"):
                pass
        reader.join(5)


def tiny_report(rows: int = 1) -> BenchReport:
    """A bench report with ``rows`` onnxruntime rows of known latencies."""
    samples = np.asarray([2.0, 2.0, 3.0, 1.0])
    made = [BenchRow("onnxruntime", "cpu", "fp32", 2 ** i, summarize(samples), samples, 5.0, 10.0, 100.0, 1.0)
            for i in range(rows)]
    return BenchReport({"cpu": {"model": "Test CPU", "cores": 2}},
                       {"model": "m.onnx", "device": "cpu", "warmup": 0, "iters": 4, "seconds": None,
                        "threads": None}, made)


def leftovers(folder: Path) -> list:
    """Temporary files (``.tmp-*``) left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))
