"""The systemd unit (systemd-analyze verify + offline security score), the config template, and the
pi-image scripts (shellcheck, bash -n, and build.sh --stage-only for real)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from octopus.device.config import parse_config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "device" / "systemd" / "octopus.service"
SCRIPTS = [REPO / "pi-image" / "build.sh", REPO / "pi-image" / "stage-octopus" / "prerun.sh",
           *sorted((REPO / "pi-image" / "stage-octopus" / "00-octopus").glob("*.sh"))]
MAX_EXPOSURE = 2.5

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def installed_unit(tmp_path: Path) -> Path:
    """The unit as the Pi gets it, with ExecStart pointing at this environment's `octopus` (verify checks it)."""
    octopus = Path(sys.executable).parent / "octopus"
    assert octopus.is_file(), "the octopus console script is not installed"
    unit = tmp_path / "octopus.service"
    unit.write_text(UNIT.read_text().replace("/opt/octopus/venv/bin/octopus", str(octopus)))
    return unit


@needs_systemd
def test_unit_verifies_without_any_warning(tmp_path):
    out = subprocess.run(["systemd-analyze", "verify", str(installed_unit(tmp_path))], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr  # unknown keys only warn, with rc 0


@needs_systemd
def test_verify_would_catch_a_typo(tmp_path):
    unit = installed_unit(tmp_path)
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "Unknown key" in out.stderr  # the reason the test above fails on any stderr


@needs_systemd
def test_unit_security_exposure(tmp_path):
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(installed_unit(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for octopus\.service: ([0-9.]+)", out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    print(f"systemd exposure: {match.group(1)}")
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_unit_has_the_hardening_the_device_needs():
    text = UNIT.read_text()
    for line in ["Type=notify", "WatchdogSec=", "ProtectSystem=strict", "NoNewPrivileges=yes", "User=octopus",
                 "SupplementaryGroups=video gpio", "StateDirectory=octopus", "ConfigurationDirectory=octopus",
                 "LoadCredential=", "DevicePolicy=closed", "CapabilityBoundingSet=\n"]:
        assert line in text, line
    assert not re.search(r"^PrivateDevices=", text, re.M)  # it would hide the camera and the GPIO chips


def test_config_template_is_valid_and_a_dry_run():
    config = parse_config((REPO / "device" / "systemd" / "config.toml").read_text(), "config.toml")
    assert config.actions.execute is False and config.camera.kind == "picamera2"
    assert config.queries.listen == "127.0.0.1:8765"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_pass_bash_n_and_shellcheck(script):
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    out = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_export_image_file_passes_shellcheck():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    out = subprocess.run([shellcheck, str(REPO / "pi-image" / "stage-octopus" / "EXPORT_IMAGE")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_stage_installs_the_apt_parts_picamera2_needs():
    packages = (REPO / "pi-image" / "stage-octopus" / "00-octopus" / "00-packages").read_text().split()
    assert {"python3-picamera2", "python3-lgpio", "python3-venv"} <= set(packages)
    chroot = (REPO / "pi-image" / "stage-octopus" / "00-octopus" / "02-run-chroot.sh").read_text()
    assert "--system-site-packages" in chroot and '"numpy<2"' in chroot and "[device]" in chroot
    assert "systemctl enable octopus.service" in chroot


def test_build_sh_refuses_bad_input_in_one_line(tmp_path):
    build = str(REPO / "pi-image" / "build.sh")
    for argv, message in [([], "--model DIR is required"), (["--model", str(tmp_path)], "no manifest.json"),
                          (["--model", str(tmp_path), "--bogus"], "unknown option --bogus")]:
        out = subprocess.run([build, *argv], capture_output=True, text=True)
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_build_sh_stage_only_stages_wheel_model_unit_and_config(tiny_onnx, tmp_path):
    import json

    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)}
    out = subprocess.run([str(REPO / "pi-image" / "build.sh"), "--model", str(tiny_onnx), "--stage-only"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    files = REPO / "pi-image" / "stage-octopus" / "00-octopus" / "files"
    try:
        [wheel] = list((files / "wheels").glob("octopus_agent-*.whl"))
        import zipfile

        names = zipfile.ZipFile(wheel).namelist()
        assert "octopus/device/runtime.py" in names and "octopus/device/systemd/octopus.service" in names
        manifest = json.loads((files / "model" / "manifest.json").read_text())
        assert all((files / "model" / g["file"]).is_file() for g in manifest["int8"].values())
        assert (files / "octopus.service").read_text() == UNIT.read_text()
        assert (files / "config.toml").is_file()
    finally:
        shutil.rmtree(files)
