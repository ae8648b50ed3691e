"""`octopus.device` and the registry import in a venv that has only the `device` extra: no torch there."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory) -> Path:
    """A fresh venv with `pip install .[device]` (non-editable: the installed wheel is what a Pi gets)."""
    root = tmp_path_factory.mktemp("device-venv")
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    f"{REPO}[device]"], check=True, timeout=900)
    return python


def test_device_extra_has_no_torch_and_imports_the_runtime(device_venv):
    code = (
        "import importlib.util, json, octopus.device, octopus.calls, octopus.preprocess, octopus.prompt\n"
        "assert importlib.util.find_spec('torch') is None, 'torch is installed'\n"
        "import onnxruntime, numpy, PIL\n"
        "from octopus.functions import registry_json\n"
        "print(len(registry_json()))\n"
    )
    out = subprocess.run([str(device_venv), "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"
    cli = subprocess.run([str(device_venv.parent / "octopus"), "functions", "--json"], capture_output=True, text=True)
    assert cli.returncode == 0 and '"pet_care"' in cli.stdout
    assert sys.executable != str(device_venv)
