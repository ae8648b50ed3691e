"""The torch-free runtime and `octopus ask` on damaged exports and odd requests: one line, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from octopus.bundle import ManifestError
from octopus.device.runtime import OnnxAgent
from octopus.prompt import QueryError

OCTOPUS = [sys.executable, "-m", "octopus.cli"]


def damaged(tiny_onnx, tmp_path, edit):
    folder = tmp_path / "onnx"
    shutil.copytree(tiny_onnx, folder)
    edit(folder)
    return folder


def manifest_edit(change):
    def edit(folder):
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return edit


@pytest.mark.parametrize("edit, precision, message", [
    (lambda d: (d / "manifest.json").write_text("{ not json"), "auto", "is not JSON"),
    (lambda d: (d / "manifest.json").write_text("[1, 2]"), "auto", "not an octopus export manifest (a JSON list)"),
    (manifest_edit(lambda m: m.pop("tokens")), "auto", "lacks tokens"),
    (manifest_edit(lambda m: m["tokens"].pop("end_id")), "auto", "lacks tokens.end_id"),
    (manifest_edit(lambda m: m.pop("graphs")), "fp32", "lacks graphs"),
    (manifest_edit(lambda m: m.pop("int8")), "int8", "has no int8 graphs"),  # was a KeyError before the check
    (manifest_edit(lambda m: m["int8"]["vision_encoder"].pop("sha256")), "int8", "has no file and sha256"),
])
def test_a_damaged_manifest_is_one_line_for_the_runtime_and_the_cli(tiny_onnx, tmp_path, edit, precision, message):
    folder = damaged(tiny_onnx, tmp_path, edit)
    with pytest.raises(ManifestError, match=re.escape(message)):
        OnnxAgent(folder, precision=precision)
    Image.new("RGB", (64, 48), "grey").save(tmp_path / "img.png")
    out = subprocess.run([*OCTOPUS, "ask", "--model", str(folder), "--image", str(tmp_path / "img.png"), "--query",
                          "hi", "--precision", precision], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_doctor_checks_the_tokenizer_against_the_manifest(tiny_onnx, tmp_path):
    from octopus.device.config import parse_config
    from octopus.device.doctor import check_model

    def swap(folder):
        text = (folder / "tokenizer.json").read_text(encoding="utf-8")
        text = text.replace("<nexa_0>", "<nexa_X>").replace("<nexa_3>", "<nexa_0>").replace("<nexa_X>", "<nexa_3>")
        (folder / "tokenizer.json").write_text(text, encoding="utf-8")

    assert check_model(parse_config(f'[model]\npath = "{tiny_onnx}"\n')).ok is True
    result = check_model(parse_config(f'[model]\npath = "{damaged(tiny_onnx, tmp_path, swap)}"\n'))
    assert result.ok is False and "tokenizer.json" in result.detail and "does not match" in result.detail


def test_a_query_that_is_not_unicode_text_is_one_line(tiny_onnx, tmp_path):
    Image.new("RGB", (64, 48), "grey").save(tmp_path / "img.png")
    # what a Latin-1 terminal passes for "café": the byte 0xe9, which Python's argv holds as a lone surrogate
    out = subprocess.run([*OCTOPUS, "ask", "--model", str(tiny_onnx), "--image", str(tmp_path / "img.png"),
                          "--query", b"caf\xe9"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not valid UTF-8" in out.stderr, out.stderr
    with pytest.raises(QueryError, match="not valid UTF-8"):
        OnnxAgent(tiny_onnx).generate(tmp_path / "img.png", "caf\udce9")


def test_the_query_limit_leaves_room_for_the_answer_in_a_small_decoder(tiny_onnx, tiny_agent, tmp_path):
    """The tiny decoder has 256 positions: prefix + image + a 40-emoji query + 64 new tokens overflowed them
    (onnxruntime INVALID_ARGUMENT); the limit now comes from the positions left."""
    image = Image.new("RGB", (64, 48), "grey")
    from octopus.generation import MAX_NEW_TOKENS

    onnx = OnnxAgent(tiny_onnx)
    assert onnx.max_positions == 256 and onnx.max_new_tokens == MAX_NEW_TOKENS  # both read from the manifest
    query = "🐙" * 40
    for backend in (onnx, tiny_agent):
        with pytest.raises(QueryError, match="the limit is"):
            backend.generate(image, query, max_new_tokens=64)
        backend.generate(image, "🐙" * 5, max_new_tokens=8)  # a short one still answers
