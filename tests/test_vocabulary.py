"""Trimming the vocabulary to the scripts a model answers in: exact for their text, bytes for the rest, and an
export whose runtime answers as the full-vocabulary torch agent does."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from octopus.bpe import CompactBPE
from octopus.exporters.vocabulary import VocabularyError, kept_ids, parse_scripts, trimmed_tokenizer
from octopus.functions import FUNCTIONS
from octopus.model.lm import OTHER_SCRIPTS, build_tiny_tokenizer

TEXTS = ["order this for me", "帮我处理一下这个", "email bob@example.com about lunch, 12:30 — café?",
         "给妈妈发短信：我快到了！", "《三体》多少钱？", *[f.description_en for f in FUNCTIONS],
         *[f.description_zh for f in FUNCTIONS]]


@pytest.fixture(scope="module")
def source() -> dict:
    return json.loads(build_tiny_tokenizer(1024, "sentencepiece").backend_tokenizer.to_str())


def test_text_in_the_kept_scripts_tokenizes_exactly_as_before(source):
    kept = kept_ids(source, parse_scripts("en,zh"), required=set())
    full, trimmed = Tokenizer.from_str(json.dumps(source)), Tokenizer.from_str(json.dumps(trimmed_tokenizer(source,
                                                                                                         kept)))
    assert trimmed.get_vocab_size() == len(kept) < full.get_vocab_size()
    for text in TEXTS:
        before, after = full.encode(text, add_special_tokens=False), trimmed.encode(text, add_special_tokens=False)
        assert after.tokens == before.tokens, text
        assert after.ids == [kept.index(i) for i in before.ids], text  # renumbered in the old order
        assert trimmed.decode(after.ids) == text


def test_other_scripts_lose_their_tokens_and_are_spelled_in_bytes(source):
    kept = kept_ids(source, ("en", "zh"), required=set())
    vocab = source["model"]["vocab"]
    dropped = [piece for piece, i in vocab.items() if i not in set(kept)]
    assert any("П" in piece for piece in dropped) and any("م" in piece for piece in dropped)
    assert all(not any("\u0400" <= ch <= "\u06ff" for ch in piece) for piece in vocab if vocab[piece] in set(kept))
    trimmed = Tokenizer.from_str(json.dumps(trimmed_tokenizer(source, kept)))
    for text in OTHER_SCRIPTS:
        ids = trimmed.encode(text, add_special_tokens=False).ids
        assert trimmed.decode(ids) == text  # nothing refused or lost
        assert sum(t.startswith("<0x") for t in trimmed.encode(text, add_special_tokens=False).tokens) > len(text) // 2


def test_required_ids_are_kept_and_a_script_list_is_checked(source):
    russian = source["model"]["vocab"]["Пр"]
    assert russian in kept_ids(source, ("en",), required={russian})
    assert russian not in kept_ids(source, ("en",), required=set())
    with pytest.raises(VocabularyError, match="unknown vocabulary script"):
        parse_scripts("en,klingon")


def test_a_byte_level_vocabulary_is_refused_with_the_reason():
    byte_level = json.loads(build_tiny_tokenizer(512).backend_tokenizer.to_str())
    with pytest.raises(VocabularyError, match="SentencePiece-style"):
        kept_ids(byte_level, ("en", "zh"), required=set())


def test_a_trimmed_export_answers_as_the_full_torch_agent(tmp_path, photo):
    """A Gemma-style tiny agent exported with --vocab en,zh: smaller embedding table, output layer and tokenizer,
    control tokens renumbered, and the runtime's answers (fp32 and int8 alike) the torch agent's. An untrained
    LM writes any token; its rows for the dropped ones are zeroed, as a model trained on English and Chinese
    never picks them (the export's own greedy check would catch one that did)."""
    torch = pytest.importorskip("torch")
    from octopus.cli import main
    from octopus.device.runtime import OnnxAgent
    from octopus.exporters.onnx_export import export
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import TINY_LM, tiny

    config = tiny()
    config.lm.inline = {**TINY_LM, "model_type": "gemma3_text", "head_dim": 16, "vocab_size": 1024,
                        "tokenizer": "sentencepiece"}
    torch.manual_seed(0)
    agent = OctopusAgent.build(config)
    source = json.loads(agent.tokenizer.backend_tokenizer.to_str())
    kept = set(kept_ids(source, ("en", "zh"), required=set(agent.tokens.function_ids)))
    dropped = [i for i in range(len(agent.tokenizer)) if i not in kept and i not in agent.tokens.function_ids]
    with torch.no_grad():
        agent.lm.get_output_embeddings().weight[dropped] = 0.0
    agent.save(tmp_path / "agent")
    manifest = export(tmp_path / "agent", tmp_path / "onnx", int8=True, vocab="en,zh")
    vocabulary = manifest["vocabulary"]
    assert vocabulary["scripts"] == ["en", "zh"] and vocabulary["kept"] < vocabulary["of"] == len(agent.tokenizer)
    assert manifest["greedy_parity_fp32"]["same"] == manifest["greedy_parity_fp32"]["prompts"]
    table = np.load(tmp_path / "onnx" / "embed_tokens.npy")
    assert table.shape[0] == vocabulary["kept"]
    export(tmp_path / "agent", tmp_path / "full", int8=True, decoder="torch")  # the same graphs, every row
    agent = OctopusAgent.load(tmp_path / "agent")
    trimmed, full = OnnxAgent(tmp_path / "onnx", precision="fp32"), OnnxAgent(tmp_path / "full", precision="fp32")
    trimmed8, full8 = OnnxAgent(tmp_path / "onnx"), OnnxAgent(tmp_path / "full")
    assert trimmed.tokenizer.get_vocab_size() == vocabulary["kept"]
    assert isinstance(trimmed.tokenizer, CompactBPE) and isinstance(full.tokenizer, CompactBPE)  # read exactly
    assert trimmed.tokenizer.id_to_token(trimmed.end_id) == "<nexa_end>"
    for query in ["order this for me", "帮我处理一下这个", "email bob@example.com about lunch"]:
        expected = agent.generate(photo, query, max_new_tokens=10).raw
        assert trimmed.generate(photo, query, max_new_tokens=10).raw == expected
        assert full.generate(photo, query, max_new_tokens=10).raw == expected
        # int8 blocks run along each output row, so a kept row is quantized as in the full graph: same answers
        assert trimmed8.generate(photo, query, max_new_tokens=10).raw == full8.generate(photo, query, 10).raw
    # the builder's graph has the full output layer: a trimmed vocabulary needs the traced decoder
    with pytest.raises(ValueError, match="--decoder torch"):
        export(tmp_path / "agent", tmp_path / "other", vocab="en", decoder="genai")
    assert main(["export", "--model", str(tmp_path / "agent"), "--out", str(tmp_path / "x"), "--vocab", "en,xx"]) == 2


def _tiny_gemma_agent(listed_only: bool = False, top: int = 50):
    """A Gemma-style tiny agent; with `listed_only`, the output rows of every token outside the en,zh shortlist
    of `top` zeroed, as a model trained on English and Chinese that never writes them."""
    import torch

    from octopus.exporters.vocabulary import output_shortlist
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import TINY_LM, tiny

    config = tiny()
    config.lm.inline = {**TINY_LM, "model_type": "gemma3_text", "head_dim": 16, "vocab_size": 1024,
                        "tokenizer": "sentencepiece"}
    torch.manual_seed(0)
    agent = OctopusAgent.build(config)
    if listed_only:
        t = agent.tokens
        required = {*t.function_ids, t.no_function_id, t.end_id, t.image_id}
        source = json.loads(agent.tokenizer.backend_tokenizer.to_str())
        kept = kept_ids(source, ("en", "zh"), required)
        listed = {kept[i] for i in output_shortlist(trimmed_tokenizer(source, kept), top, [],
                                                    {kept.index(i) for i in required})}
        with torch.no_grad():
            agent.lm.get_output_embeddings().weight[[i for i in range(len(agent.tokenizer)) if i not in listed]] = 0
    return agent


def test_a_shortlisted_output_layer_scores_the_requests_other_tokens_from_the_table(tmp_path, photo):
    """`--shortlist`: the graph's output layer keeps the listed rows only; the runtime scores the request's other
    tokens from its hidden states and the embedding table (Gemma's is scaled by sqrt(d): the output rows are
    the table over that scale) and gives every other token -inf. Listed and request tokens score as in the
    full graph."""
    pytest.importorskip("torch")
    from octopus.device.runtime import OnnxAgent
    from octopus.exporters.onnx_export import ExportError, export

    _tiny_gemma_agent().save(tmp_path / "agent")
    export(tmp_path / "agent", tmp_path / "full", vocab="en,zh")
    try:  # an untrained LM writes tokens no shortlist keeps: the export's greedy check says what to do
        export(tmp_path / "agent", tmp_path / "short", vocab="en,zh", shortlist=50)
    except ExportError as exc:
        assert "raise --shortlist or add the training data with --shortlist-data" in str(exc)
    full, short = OnnxAgent(tmp_path / "full", precision="fp32"), OnnxAgent(tmp_path / "short", precision="fp32")
    listed = short.shortlist.rows
    assert len(listed) == short.manifest["output_shortlist"]["count"] < full.tokenizer.get_vocab_size()
    query = "email grace.h@example.com about Привет and 丢失 keys"
    rest = short.encode(short.query_part(query))
    assert set(short.encode("grace.h@example.com")) <= set(short.shortlist.request_tokens(short.tokenizer, query))
    others = short.shortlist.others(rest + short.shortlist.request_tokens(short.tokenizer, query))
    assert len(others) > 3 and not np.isin(others, listed).any()
    embeds = np.concatenate([full.image_embeds(photo), full.embed(rest)], axis=1)
    expected, _ = full._decode_step(embeds, full.prefix_past, full.prefix_length)  # every position
    got, _ = short._decode_step(embeds, short.prefix_past, short.prefix_length, others=others)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got[:, listed], expected[:, listed], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[:, others], expected[:, others], rtol=1e-4, atol=1e-4)
    assert np.abs(expected[:, others]).max() > 0.1
    rest_of_vocabulary = np.setdiff1d(np.arange(got.shape[1]), np.concatenate([listed, others]))
    assert np.isneginf(got[:, rest_of_vocabulary]).all()


def test_a_model_that_writes_listed_tokens_answers_alike_with_the_shortlist(tmp_path, photo):
    pytest.importorskip("torch")
    from octopus.device.runtime import OnnxAgent
    from octopus.exporters.onnx_export import export

    agent = _tiny_gemma_agent(listed_only=True)
    agent.save(tmp_path / "agent")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"target": "<nexa_3>(product=\"water bottle\")<nexa_end>"}) + "\n")
    manifest = export(tmp_path / "agent", tmp_path / "short", int8=True, vocab="en,zh", shortlist=50,
                      shortlist_data=[tmp_path / "rows.jsonl"])
    assert manifest["greedy_parity_fp32"]["same"] == manifest["greedy_parity_fp32"]["prompts"]
    export(tmp_path / "agent", tmp_path / "full", int8=True, vocab="en,zh")
    short, full = OnnxAgent(tmp_path / "short"), OnnxAgent(tmp_path / "full")
    assert set(short.encode('"water bottle"')) <= set(short.shortlist.rows.tolist())  # the data's pieces
    for query in ["order this for me", "帮我处理一下这个", "email bob@example.com about lunch"]:
        assert short.generate(photo, query, max_new_tokens=10).raw == full.generate(photo, query, 10).raw


def test_rows_are_read_from_the_table_file_as_numpy_would(tmp_path):
    from octopus.device.runtime import RowTable

    table = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    np.save(tmp_path / "t.npy", table)
    rows = RowTable(tmp_path / "t.npy")
    assert rows.shape == (50, 7)
    np.testing.assert_array_equal(rows[[3, 0, 49, 3]], table[[3, 0, 49, 3]])
    np.testing.assert_array_equal(rows[np.array([], np.int64)], table[:0])
    with pytest.raises(IndexError):
        rows[[50]]
