"""Jetson detection and tegrastats power sampling, on recorded streams and a simulated board root."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import BackendMissingError
from lsnet_deploy.runtime import jetson

FIXTURES = Path(__file__).parents[1] / "fixtures"
ORIN = (FIXTURES / "tegrastats_orin.txt").read_text().splitlines()
NANO = (FIXTURES / "tegrastats_nano.txt").read_text().splitlines()
XAVIER = (FIXTURES / "tegrastats_xavier.txt").read_text().splitlines()


def test_parse_orin_line():
    s = jetson.parse_tegrastats(ORIN[0])
    assert s.rails_mw == {"VDD_IN": 5211, "VDD_CPU_GPU_CV": 1220, "VDD_SOC": 1464}  # RAM/SWAP/EMC are not rails
    assert (s.total_mw, s.ram_used_mb, s.ram_total_mb, s.gpu_util) == (5211, 2448, 7764, 61)
    assert jetson.parse_tegrastats(ORIN[1]).total_mw == 6011  # instantaneous value, not the running average


def test_parse_jetpack4_pom_rails():
    s = jetson.parse_tegrastats(NANO[1])
    assert s.rails_mw == {"POM_5V_IN": 6280, "POM_5V_GPU": 2761, "POM_5V_CPU": 1013}
    assert (s.total_mw, s.gpu_util, s.ram_used_mb) == (6280, 99, 1912)


def test_board_without_input_rail_sums_its_rails():
    s = jetson.parse_tegrastats(XAVIER[0])
    assert s.rails_mw == {"GPU": 0, "CPU": 311, "SOC": 1090, "CV": 0, "VDDRQ": 155, "SYS5V": 1818}
    assert s.total_mw == 3374


def test_line_without_power_has_no_total():
    assert jetson.parse_tegrastats("RAM 1900/3956MB (lfb 74x4MB) CPU [9%@1479]").total_mw is None


def test_energy_per_image():
    # 6000 mW for 2 s over 400 images = 12 J / 400 = 30 mJ per image
    assert jetson.energy_per_image_mj(6000.0, 2.0, 400) == pytest.approx(30.0)


def fake_board(root: Path, locked: bool) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text(
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
        "DATE: Tue Aug  1 19:57:35 UTC 2023\n")
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    for cpu in ("cpu0", "cpu1"):
        freq = root / "sys/devices/system/cpu" / cpu / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_max_freq").write_text("1510400\n")
        (freq / "scaling_min_freq").write_text("1510400\n" if locked else "115200\n")
    gpu = root / "sys/class/devfreq/17000000.ga10b"
    gpu.mkdir(parents=True)
    (gpu / "max_freq").write_text("624750000\n")
    (gpu / "min_freq").write_text("624750000\n")
    return root


@pytest.mark.parametrize("locked", [True, False])
def test_detect_simulated_orin(tmp_path, locked):
    info = jetson.detect(fake_board(tmp_path, locked))
    assert (info.model, info.l4t, info.jetpack) == ("NVIDIA Jetson Orin Nano Developer Kit", "35.4.1", "5.1.2")
    assert info.clocks_locked is locked
    assert info.as_dict()["l4t"] == "35.4.1"


def test_not_a_jetson(tmp_path):
    assert jetson.detect(tmp_path) is None
    with pytest.raises(BackendMissingError, match="this is not a Jetson"):
        jetson.require_jetson(tmp_path)
    assert jetson.clocks_locked(tmp_path) is None
    assert jetson.l4t_release("garbage") is None


def replay_command(lines: list[str], delay: float = 0.01) -> list[str]:
    """A stand-in for ``tegrastats``: prints the recorded lines over and over, ``delay`` s apart."""
    code = (f"import sys, time\nlines = {lines!r}\n"
            f"while True:\n    for l in lines:\n        print(l, flush=True); time.sleep({delay})")
    return [sys.executable, "-c", code]


def test_sampler_averages_a_replayed_stream():
    import time

    with jetson.TegrastatsSampler(replay_command(ORIN)) as sampler:
        start = time.monotonic()
        deadline = start + 20
        while len(sampler.samples) < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        end = time.monotonic()
    assert len(sampler.samples) >= 12
    powers = [s.total_mw for _, s in sampler.samples]
    assert set(powers) <= {5211, 6011, 6411, 6367}
    mean = sampler.mean_power_mw(start, end)
    in_window = [s.total_mw for t, s in sampler.samples if start <= t <= end]
    assert mean == pytest.approx(sum(in_window) / len(in_window))
    assert 5211 <= mean <= 6411
    assert sampler.mean_power_mw(end + 100, end + 200) is None


def test_missing_tegrastats_is_reported():
    with pytest.raises(BackendMissingError, match="no-such-tegrastats not found"):
        jetson.TegrastatsSampler(["no-such-tegrastats"]).__enter__()


@pytest.mark.skipif(Path("/etc/nv_tegra_release").exists(), reason="this is a Jetson")
def test_bench_device_jetson_fails_off_jetson(capsys, tmp_path):
    code = run(["bench", "--model", str(tmp_path / "m.onnx"), "--device", "jetson"])
    err = capsys.readouterr().err
    assert code == 4
    assert err.strip() == "error: --device jetson: this is not a Jetson (/etc/nv_tegra_release not found)"
