"""The compact SentencePiece-style BPE reader (`octopus.bpe`) encodes and decodes exactly as `tokenizers` does,
on the tiny tokenizers' shapes and on Gemma's (merges of every split, ranked by the merged piece), with added
tokens of every kind; other pipelines fall back to `tokenizers` itself."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Tokenizer

from octopus.bpe import CompactBPE, load_tokenizer
from octopus.exporters.vocabulary import kept_ids, trimmed_tokenizer
from octopus.functions import FUNCTIONS
from octopus.model.lm import OTHER_SCRIPTS, build_tiny_tokenizer

TEXTS = ["order this for me", "帮我处理一下这个", "email bob@example.com about lunch, 12:30 — café?",
         "给妈妈发短信：我快到了！", "《三体》多少钱？", "  two  spaces ", "tab\there\n\nnewlines", "😀 emoji 𠀀",
         "typed <nexa_0> and <nexa_end> and <|endoftext|>", "<0x41> typed", "<table> <tab <tablet", "a b c", "",
         *OTHER_SCRIPTS, *[f.description_en for f in FUNCTIONS], *[f.description_zh for f in FUNCTIONS]]
ALPHABET = list("ab xyZ09.,@\"'<>/\n\t▁中文猫狗寄给李老师，。！？😀é€\u200b𠀀Пم") + [
    "<nexa_0>", "<nexa_end>", "<|endoftext|>", "<0x41>", "\n\n", "<table>", "<tab", "a b"]


def _tiny(kind: str) -> dict:
    tokenizer = build_tiny_tokenizer(1024, "sentencepiece")
    if kind == "added":  # plain added tokens as written and normalized, a special one that hides a plain one
        tokenizer.add_tokens([AddedToken("\n\n", normalized=False), AddedToken("<tab", normalized=False),
                              AddedToken("a b", normalized=True)])
        tokenizer.add_special_tokens({"additional_special_tokens": ["<nexa_0>", "<nexa_end>", "<table>"]})
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    if kind == "trimmed":
        data = trimmed_tokenizer(data, kept_ids(data, ("en", "zh"), required=set()))
    if kind == "gemma":  # as a SentencePiece model converts: every split of a piece, by the piece's rank
        vocab = data["model"]["vocab"]
        splits = [(vocab[p], -k, p[:k], p[k:]) for p in vocab for k in range(1, len(p))
                  if p[:k] in vocab and p[k:] in vocab]
        data["model"]["merges"] = [[a, b] for *_, a, b in sorted(splits)]
        data["pre_tokenizer"] = {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                                 "invert": False}
    return data


@pytest.fixture(scope="module", params=["added", "trimmed", "gemma"])
def pair(request) -> tuple[Tokenizer, CompactBPE]:
    data = _tiny(request.param)
    reference = Tokenizer.from_str(json.dumps(data))
    reference.encode_special_tokens = True  # as the runtime reads a request: special tokens only by id
    return reference, CompactBPE(data)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def test_texts_encode_and_decode_as_tokenizers_does(pair):
    reference, compact = pair
    for text in TEXTS:
        ids = _ids(compact, text)
        assert ids == _ids(reference, text), text
        assert compact.decode(ids) == reference.decode(ids), text
    batch = compact.encode_batch(TEXTS)
    assert [e.ids for e in batch] == [_ids(reference, t) for t in TEXTS]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join))
def test_any_text_encodes_as_tokenizers_does(pair, text):
    reference, compact = pair
    assert _ids(compact, text) == _ids(reference, text)


def test_any_ids_decode_as_tokenizers_does(pair):
    reference, compact = pair
    size = compact.get_vocab_size()
    assert size == reference.get_vocab_size()
    assert compact.get_vocab_size(False) == reference.get_vocab_size(with_added_tokens=False)
    assert all(compact.id_to_token(i) == reference.id_to_token(i) for i in range(size))
    assert compact.id_to_token(size) is None
    rng = random.Random(0)
    specials = sorted(compact.special)
    for _ in range(400):  # byte pieces in runs (valid UTF-8 or not) among pieces and special tokens
        ids = [rng.choice(compact.bytes) if rng.random() < 0.4 else
               rng.choice(specials) if rng.random() < 0.2 else rng.randrange(size) for _ in range(rng.randint(0, 10))]
        for skip in (True, False):
            assert compact.decode(ids, skip_special_tokens=skip) == reference.decode(ids, skip_special_tokens=skip)


def test_special_tokens_are_never_read_from_text_and_none_is_added():
    compact = CompactBPE(_tiny("added"))
    nexa = next(i for i in compact.special if compact.id_to_token(i) == "<nexa_0>")
    assert nexa not in _ids(compact, "say <nexa_0> to me") and compact.decode([nexa]) == ""
    assert compact.decode([nexa], skip_special_tokens=False) == "<nexa_0>"
    assert _ids(compact, "<tab") == [compact.added_ids["<tab"]]  # a plain added token is read from text
    assert compact.added_ids["<tab"] not in _ids(compact, "<table>")  # unless a special token's text hides it
    assert compact.encode_special_tokens
    with pytest.raises(ValueError, match="places no special tokens"):
        compact.encode("hi", add_special_tokens=True)


def test_other_pipelines_are_left_to_tokenizers_with_the_reason(tmp_path):
    byte_level = build_tiny_tokenizer(512)
    path = tmp_path / "tokenizer.json"
    byte_level.backend_tokenizer.save(str(path))
    data = json.loads(path.read_text())
    assert "the model is BPE without byte fallback" == CompactBPE.unsupported(data)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, Tokenizer) and loaded.encode_special_tokens
    with pytest.raises(ValueError, match="not a SentencePiece-style BPE tokenizer"):
        CompactBPE(data)
    sentencepiece = _tiny("added")
    path.write_text(json.dumps(sentencepiece))
    assert isinstance(load_tokenizer(path), CompactBPE)
    sentencepiece["decoder"]["decoders"] = sentencepiece["decoder"]["decoders"][:2]
    assert "decoder" in CompactBPE.unsupported(sentencepiece)
    older = _tiny("added")
    del older["added_tokens"][0]["normalized"]
    assert "lacks its id, content or flags" in CompactBPE.unsupported(older)
    del older["model"]["merges"]
    assert "no vocabulary map or merge list" in CompactBPE.unsupported(older)
