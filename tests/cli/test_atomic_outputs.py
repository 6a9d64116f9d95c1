"""Issue #8, nothing half-written: Ctrl-C / SIGTERM mid-export, failed writes, no-clobber, atomic reports."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lsnet_deploy.core import artifacts
from lsnet_deploy.core.artifacts import atomic_outputs
from lsnet_deploy.core.errors import OutputError
from lsnet_deploy.runtime import report as reports

EXE = Path(sys.executable).with_name("lsnet-deploy")


def _start_export(out: Path, *extra: str) -> subprocess.Popen:
    # 224 px: the temporary file lives through a parity gate long enough (~1 s) to be caught mid-export
    argv = [str(EXE), "export", "--model", "lsnet_t", "--num-classes", "2", "-o", str(out), *extra]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _signal_at_temp(runs: dict, timeout: float = 180) -> None:
    """Send each export its signal as soon as its ``.tmp-<pid>-*`` file exists (the artifact is being written
    or gated); ``runs`` maps a signal to ``(process, folder)``. The exports run side by side."""
    deadline, waiting = time.monotonic() + timeout, dict(runs)
    while waiting:
        for sig, (proc, folder) in list(waiting.items()):
            if any(p.name.startswith(f".tmp-{proc.pid}-") for p in folder.iterdir()):
                proc.send_signal(sig)
                del waiting[sig]
            else:
                assert proc.poll() is None, f"the export ended before it wrote a temporary file: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no temporary file appeared"
        time.sleep(0.01)


@pytest.mark.slow
def test_interrupted_exports_leave_no_partial_file(tmp_path):
    """SIGINT (Ctrl-C) on a fresh output, SIGTERM (docker stop) on an existing one with --overwrite, side by
    side. Each: exit 130, one line, no temporary left, the old file untouched."""
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    fresh.mkdir()
    kept.mkdir()
    (kept / "m.onnx").write_bytes(b"the previous, good artifact")
    runs = {signal.SIGINT: (_start_export(fresh / "m.onnx"), fresh),
            signal.SIGTERM: (_start_export(kept / "m.onnx", "--overwrite"), kept)}
    try:
        _signal_at_temp(runs)
        for proc, _ in runs.values():
            proc.wait(timeout=120)
    finally:
        for proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
    for proc, _ in runs.values():
        err = proc.stderr.read()
        assert proc.returncode == 130, err
        assert err.strip().splitlines() == ["error: interrupted"], err
    assert list(fresh.iterdir()) == []
    assert [p.name for p in kept.iterdir()] == ["m.onnx"]
    assert (kept / "m.onnx").read_bytes() == b"the previous, good artifact"


# ---- atomic_outputs, the one mechanism every artifact and report goes through ----

def test_a_failed_block_keeps_the_old_files_and_removes_temporaries(tmp_path):
    xml, bin_ = tmp_path / "m.xml", tmp_path / "m.bin"
    xml.write_text("old xml")
    bin_.write_text("old bin")
    with pytest.raises(RuntimeError, match="gate failed"), atomic_outputs(xml, bin_, overwrite=True) as temps:
        for t in temps:
            t.write_text("new, half done")
        raise RuntimeError("gate failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
    assert (xml.read_text(), bin_.read_text()) == ("old xml", "old bin")


def test_the_main_file_is_published_last(tmp_path, monkeypatch):
    """An IR's .xml (what tools open) appears only once its .bin is in place."""
    order = []
    real_link = os.link
    monkeypatch.setattr(artifacts.os, "link", lambda src, dst: (order.append(Path(dst).name), real_link(src, dst)))
    with atomic_outputs(tmp_path / "m.xml", tmp_path / "m.bin") as temps:
        for t in temps:
            t.write_text(t.name)
    assert order == ["m.bin", "m.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]


@pytest.mark.parametrize("hard_links", [True, False], ids=["link", "no-hard-links"])
def test_a_file_that_appears_meanwhile_is_not_clobbered(tmp_path, monkeypatch, hard_links):
    if not hard_links:  # FAT / exFAT SD cards: os.link fails, the check-then-rename fallback is used
        def no_link(src, dst):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(artifacts.os, "link", no_link)
    final = tmp_path / "m.onnx"
    with pytest.raises(OutputError, match="output exists"), atomic_outputs(final) as (tmp,):
        tmp.write_text("ours")
        final.write_text("someone else's")  # another export finished first
    assert final.read_text() == "someone else's" and list(tmp_path.iterdir()) == [final]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_while_writing_is_an_output_error(tmp_path, code):
    final = tmp_path / "m.onnx"
    with pytest.raises(OutputError, match=f"cannot write {final}: {os.strerror(code)}"):
        with atomic_outputs(final) as (tmp,):
            tmp.write_text("half")
            raise OSError(code, os.strerror(code))
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_are_not_relabelled(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_outputs(tmp_path / "m.onnx"):
        open(tmp_path / "some-input-that-is-missing")  # noqa: SIM115 - an input's error stays an input's error
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_renames_is_held_until_both_are_in_place(tmp_path, monkeypatch):
    """With other threads alive (as ORT/OpenVINO pools are), which the OS may hand the signal to."""
    real, stop = artifacts._publish, threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()

    def publish_then_interrupt(tmp, final, overwrite):
        real(tmp, final, overwrite)
        os.kill(os.getpid(), signal.SIGINT)  # arrives between the .bin and the .xml rename
        time.sleep(0.05)  # ... and is handled here, unless it is held

    monkeypatch.setattr(artifacts, "_publish", publish_then_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt), atomic_outputs(tmp_path / "m.xml", tmp_path / "m.bin") as temps:
            for t in temps:
                t.write_text("complete")
    finally:
        stop.set()
        helper.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


# ---- bench reports: replaced (documented convention), but never left half-written ----

class _Broken:
    def as_dict(self):
        raise RuntimeError("row serialization failed")


@pytest.mark.parametrize("writer, name", [(reports.write_json, "r.json"), (reports.write_csv, "r.csv")])
def test_a_failing_report_writer_leaves_the_old_report(tmp_path, writer, name):
    path = tmp_path / name
    path.write_text("previous report")
    broken = SimpleNamespace(rows=[_Broken()], as_dict=_Broken().as_dict)
    with pytest.raises(RuntimeError, match="row serialization failed"):
        writer(broken, path)
    assert path.read_text() == "previous report" and list(tmp_path.iterdir()) == [path]


def test_reports_are_replaced_atomically(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("previous report")
    report = SimpleNamespace(as_dict=lambda: {"rows": [1, float("nan")]})
    reports.write_json(report, path)
    assert json.loads(path.read_text()) == {"rows": [1, None]} and list(tmp_path.iterdir()) == [path]
