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


def test_ask_and_eval_on_an_exported_model_in_the_device_venv(device_venv, tmp_path):
    torch = pytest.importorskip("torch")
    import json

    from PIL import Image

    from octopus.exporters.onnx_export import export
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    torch.manual_seed(6)
    OctopusAgent.build(tiny()).save(tmp_path / "agent")
    export(tmp_path / "agent", tmp_path / "onnx", int8=True)
    Image.new("RGB", (64, 48), (30, 160, 60)).save(tmp_path / "green.png")
    rows = [{"image": "green.png", "query": q, "function": f, "language": lang, "arguments": {}}
            for q, f, lang in [("order this", "amazon_shopping", "en"), ("打开手电筒", None, "zh")]]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    octopus = str(device_venv.parent / "octopus")
    ask = subprocess.run([octopus, "ask", "--model", str(tmp_path / "onnx"), "--image", str(tmp_path / "green.png"),
                          "--query", "order this for me", "--json"], capture_output=True, text=True)
    assert ask.returncode == 0, ask.stderr
    assert json.loads(ask.stdout)["raw"].startswith("<nexa_")
    evaluation = subprocess.run([octopus, "eval", "--model", str(tmp_path / "onnx"), "--data",
                                 str(tmp_path / "rows.jsonl"), "--json"], capture_output=True, text=True)
    assert evaluation.returncode == 0, evaluation.stderr
    assert json.loads(evaluation.stdout)["rows"] == 2
