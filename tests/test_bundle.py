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
            "int8/decoder_model_merged"} <= set(checked)
    listed = {entry["file"] for entry in Manifest.load(tiny_onnx).files().values()}
    on_disk = {p.name for p in tiny_onnx.iterdir() if p.name != "manifest.json" and not p.name.endswith(".data")}
    assert on_disk <= listed, on_disk - listed  # nothing the runtime could read goes unchecked


@pytest.mark.parametrize("damage", ["embed_tokens.npy", "tokenizer.json"])
def test_build_sh_and_the_cli_verifier_refuse_what_only_the_runtime_used_to_catch(tiny_onnx, tmp_path, damage):
    model = tmp_path / "onnx"
    shutil.copytree(tiny_onnx, model)
    with open(model / damage, "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ManifestError, match=f"{damage} does not match"):
        Manifest.load(model).verify()
    for argv in ([sys.executable, str(REPO / "core" / "bundle.py"), "verify", str(model)],  # standard library only
                 [sys.executable, "-m", "octopus.bundle", "verify", str(model)]):
        out = subprocess.run(argv, capture_output=True, text=True)
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and damage in out.stderr, out.stderr
    out = subprocess.run([str(REPO / "pi-image" / "build.sh"), "--model", str(model), "--stage-only"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert out.returncode == 2 and "does not match its manifest" in out.stderr, out.stdout + out.stderr


def test_a_manifest_naming_a_file_outside_its_folder_is_refused(tiny_onnx, tmp_path):
    model = tmp_path / "onnx"
    shutil.copytree(tiny_onnx, model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["tokenizer"]["file"] = "../../etc/passwd"
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="outside the folder"):
        Manifest.load(model)
