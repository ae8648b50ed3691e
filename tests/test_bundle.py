"""The exported bundle's one home (octopus.bundle): every file the runtime reads is in the manifest and checked
the same way by the runtime, doctor, the latency bench and pi-image/build.sh."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from octopus.bundle import Manifest, ManifestError

REPO = Path(__file__).resolve().parents[1]


def test_the_manifest_lists_every_file_the_runtime_reads(tiny_onnx):
    checked = Manifest.load(tiny_onnx).verify()
    assert {"embed_table", "tokenizer", "fp32/vision_encoder", "fp32/decoder_model_merged", "int8/vision_encoder",
            "int8/decoder_model_merged", "fp32/decoder_model_merged.data",
            "int8/decoder_model_merged.data"} <= set(checked)
    listed = {entry["file"] for entry in Manifest.load(tiny_onnx).files().values()}
    on_disk = {p.name for p in tiny_onnx.iterdir() if p.name != "manifest.json"}
    assert on_disk <= listed, on_disk - listed  # nothing the runtime could read goes unchecked


# every file of a bundle (the test below checks this list against the manifest, so a new file cannot be missed)
BUNDLE_FILES = ("vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx", "vision_encoder.int8.onnx",
                "decoder_model_merged.int8.onnx", "decoder_model_merged.onnx.data",
                "decoder_model_merged.int8.onnx.data", "embed_tokens.npy", "tokenizer.json")


def test_the_corruption_test_covers_every_file_of_the_bundle(tiny_onnx):
    assert {e["file"] for e in Manifest.load(tiny_onnx).files().values()} == set(BUNDLE_FILES)


@pytest.mark.parametrize("damage", BUNDLE_FILES)
def test_runtime_doctor_and_build_sh_refuse_a_damaged_file_with_the_same_line(tiny_onnx, tmp_path, damage):
    """One check (octopus.bundle), four places that run it: the runtime on load, `octopus doctor`, the bundle's
    own verifier and pi-image/build.sh; each refuses the same damaged file with the same one-line message."""
    from octopus.device.runtime import OnnxAgent

    model = tmp_path / "onnx"
    shutil.copytree(tiny_onnx, model)
    with open(model / damage, "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ManifestError) as refused:
        Manifest.load(model).verify()
    message = str(refused.value)
    assert f"{damage} does not match" in message and "\n" not in message
    with pytest.raises(ManifestError) as runtime:
        OnnxAgent(model, precision="int8" if ".int8." in damage else "fp32")
    assert str(runtime.value) == message
    config = tmp_path / "config.toml"
    config.write_text(f'[model]\npath = "{model}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n')
    doctor = subprocess.run([sys.executable, "-m", "octopus.cli", "doctor", "--config", str(config), "--no-network"],
                            capture_output=True, text=True)
    assert doctor.returncode != 0 and message in doctor.stdout + doctor.stderr, doctor.stdout + doctor.stderr
    assert "Traceback" not in doctor.stderr
    for argv in ([sys.executable, str(REPO / "core" / "bundle.py"), "verify", str(model)],  # standard library only
                 [sys.executable, "-m", "octopus.bundle", "verify", str(model)]):
        out = subprocess.run(argv, capture_output=True, text=True)
        assert out.returncode == 1 and out.stderr == f"bundle: {message}\n", out.stderr
    out = subprocess.run([str(REPO / "pi-image" / "build.sh"), "--model", str(model), "--stage-only"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert out.returncode == 2 and f"bundle: {message}\n" in out.stderr, out.stdout + out.stderr


def test_a_manifest_naming_a_file_outside_its_folder_is_refused(tiny_onnx, tmp_path):
    model = tmp_path / "onnx"
    shutil.copytree(tiny_onnx, model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["tokenizer"]["file"] = "../../etc/passwd"
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="outside the folder"):
        Manifest.load(model)
