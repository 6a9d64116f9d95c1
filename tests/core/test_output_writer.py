"""Issue #15: the one output writer (``artifacts.atomic_outputs``) and what it finds at an output path.

Regular files are replaced atomically; symlinks are followed (the link stays); device nodes and
FIFOs get reports written into them and are never replaced; artifacts refuse them; disk full is
``OutputError`` with the old file untouched and no temporary left. Device nodes are private
``mknod`` copies in a temporary folder: the machine's /dev is never a target.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from pathlib import Path

import pytest

from lsnet_deploy.core import artifacts
from lsnet_deploy.core.artifacts import atomic_outputs, backend_write, check_outputs, path_kind, write_bytes
from lsnet_deploy.core.errors import OutputError, UsageError
from lsnet_deploy.runtime import report as reports

from fs_helpers import device_node, fifo_reader, fill, leftovers, small_fs, tiny_report

WRITERS = {"json": reports.write_json, "csv": reports.write_csv, "md": reports.write_markdown}


def test_path_kinds(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    os.mkfifo(tmp_path / "fifo")
    assert [path_kind(tmp_path / n) for n in ("f", "link", "fifo", "missing")] == ["file", "file", "special",
                                                                                 "missing"]
    assert path_kind(tmp_path) == "directory"
    assert path_kind("/proc/self/fd/1") == "special"  # stands for this process's stdout, whatever it is


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_report_into_a_null_device_leaves_the_device(tmp_path, fmt):
    null = device_node(tmp_path / "null", 3)
    WRITERS[fmt](tiny_report(), null)
    assert stat.S_ISCHR(null.stat().st_mode) and null.stat().st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_report_into_a_full_device_is_exit_6_and_the_device_stays(tmp_path, fmt):
    full = device_node(tmp_path / "full", 7)
    with pytest.raises(OutputError, match=f"cannot write {full}: No space left on device") as info:
        WRITERS[fmt](tiny_report(), full)
    assert info.value.exit_code == 6
    assert stat.S_ISCHR(full.stat().st_mode) and full.stat().st_rdev == os.makedev(1, 7)


def test_the_real_dev_full_is_written_into_not_replaced():
    """Read-only use of the machine's /dev/full: writing into it is fine, replacing it was the bug."""
    before = os.stat("/dev/full")
    with pytest.raises(OutputError, match="No space left on device"):
        reports.write_json(tiny_report(), Path("/dev/full"))
    after = os.stat("/dev/full")
    assert (after.st_ino, after.st_rdev, stat.S_ISCHR(after.st_mode)) == (before.st_ino, before.st_rdev, True)


def test_a_report_into_a_fifo_reaches_its_reader(tmp_path):
    with fifo_reader(tmp_path / "pipe") as got:
        reports.write_json(tiny_report(), tmp_path / "pipe")
    assert json.loads(got["data"])["results"][0]["batch"] == 1
    assert stat.S_ISFIFO((tmp_path / "pipe").stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.parametrize("maker", ["fifo", "device"])
def test_an_artifact_refuses_a_fifo_or_device_before_any_work(tmp_path, maker):
    path = tmp_path / "m.onnx"
    os.mkfifo(path) if maker == "fifo" else device_node(path, 3)
    with pytest.raises(OutputError, match="not a regular file .*never replaced"):
        with atomic_outputs(path, overwrite=True) as (tmp,):
            raise AssertionError("the block must not run")
    assert not stat.S_ISREG(path.stat().st_mode)


def test_a_socket_is_refused_even_for_reports(tmp_path):
    path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(OutputError, match="is a socket"):
            reports.write_json(tiny_report(), path)
    assert stat.S_ISSOCK(path.stat().st_mode)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_symlinked_report_updates_its_target_and_keeps_the_link(tmp_path, fmt):
    (tmp_path / "real").mkdir()
    target, link = tmp_path / "real" / f"r.{fmt}", tmp_path / f"latest.{fmt}"
    target.write_text("stale")
    link.symlink_to(target)
    WRITERS[fmt](tiny_report(), link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() != "stale" and "onnxruntime" in target.read_text()
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "real") == []


def test_a_dangling_symlink_gets_its_target_created(tmp_path):
    link = tmp_path / "m.onnx"
    link.symlink_to("store/m-v2.onnx")
    (tmp_path / "store").mkdir()
    with atomic_outputs(link) as (tmp,):
        assert tmp.parent == tmp_path / "store"  # the temporary lives beside the target: rename stays atomic
        tmp.write_bytes(b"model")
    assert link.is_symlink() and (tmp_path / "store" / "m-v2.onnx").read_bytes() == b"model"


def test_a_symlink_to_an_existing_artifact_needs_overwrite(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"old")
    (tmp_path / "l.onnx").symlink_to(tmp_path / "a.onnx")
    with pytest.raises(OutputError, match="output exists"):
        check_outputs(tmp_path / "l.onnx")


def test_a_multi_file_artifact_refuses_symlinks(tmp_path):
    (tmp_path / "elsewhere.xml").write_text("x")
    (tmp_path / "m.xml").symlink_to(tmp_path / "elsewhere.xml")
    with pytest.raises(OutputError, match="side by side, not through the symlink"):
        check_outputs(tmp_path / "m.xml", tmp_path / "m.bin", overwrite=True)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_injected_enospc_in_each_report_keeps_the_old_report(tmp_path, monkeypatch, fmt):
    path = tmp_path / f"r.{fmt}"
    path.write_text("previous report")

    def full(tmp, final):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    def full_publish(tmp, final, overwrite):
        full(tmp, final)

    monkeypatch.setattr(artifacts, "_publish", full_publish)
    with pytest.raises(OutputError, match="No space left on device"):
        WRITERS[fmt](tiny_report(), path)
    assert path.read_text() == "previous report" and leftovers(tmp_path) == []


def test_reports_on_a_full_tmpfs(tmp_path):
    """Every report format (plot included) on a full filesystem holding an older report of each."""
    pytest.importorskip("matplotlib")
    with small_fs(tmp_path / "fs", "64k") as fs:
        writers = [*WRITERS.items(), ("png", reports.write_plot)]
        for fmt, _ in writers:
            (fs / f"r.{fmt}").write_text("old")
        fill(fs / "filler")
        for fmt, writer in writers:
            path = fs / f"r.{fmt}"
            with pytest.raises(OutputError, match=f"cannot write {path}"):
                writer(tiny_report(rows=3), path)
            assert path.read_text() == "old" and leftovers(fs) == [], fmt


def test_a_backend_failure_on_a_full_folder_reads_as_disk_full(tmp_path):
    """OpenVINO's save_model says ``basic_ios::clear`` and removes its partial file; the writer names the cause."""
    with small_fs(tmp_path / "fs", "256k") as fs:
        with pytest.raises(OutputError, match=r"no space left on device \(0\.3 MB free, about 50\.0 MB needed\)"):
            with backend_write(fs / "m.xml", need=50_000_000):
                raise RuntimeError("basic_ios::clear: iostream error")
    with pytest.raises(OutputError, match="cannot write .*m.xml: permission trouble"):
        with backend_write(tmp_path / "m.xml", need=10):
            raise RuntimeError("permission trouble")


def test_unknown_exceptions_in_a_nearly_full_folder_become_output_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "free_bytes", lambda folder: 4096)
    with pytest.raises(OutputError, match="no space left on device"):
        with atomic_outputs(tmp_path / "m.onnx") as (tmp,):
            raise RuntimeError("some backend's own words for ENOSPC")
    assert list(tmp_path.iterdir()) == []


def test_caches_are_replaced_atomically(tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    write_bytes(cache, b"new cache")
    assert cache.read_bytes() == b"new cache" and leftovers(tmp_path) == []


@pytest.mark.parametrize("name, ok", [("p.png", True), ("p.svg", True), ("p.PDF", True), ("p", True),
                                      ("p.gif", False), ("p.json", False)])
def test_plot_suffixes_are_checked_before_the_run(tmp_path, name, ok):
    pytest.importorskip("matplotlib")
    if ok:
        reports.check_report_paths(plot_path=tmp_path / name)
        return
    with pytest.raises(UsageError, match=r"--plot path must end in \.png or \.svg or \.pdf"):
        reports.check_report_paths(plot_path=tmp_path / name)
