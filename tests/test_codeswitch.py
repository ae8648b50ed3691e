"""Code-switched requests (training/codeswitch.py) on the real CC-CEDICT and jieba word lists."""

from __future__ import annotations

import functools

import pytest

from octopus.training.codeswitch import (
    Lexicon,
    cedict_path,
    clean_gloss,
    code_switch,
    code_switched,
    jieba_path,
    read_cedict,
    read_frequencies,
)
from octopus.training.stages import StageConfig

ROWS = [
    {"image": "a.jpg", "query": "where do I throw this cup", "language": "en", "target": "<nexa_4>",
     "meta": {"slots": {}}},
    {"image": "b.jpg", "query": "help me order this for dinner", "language": "en", "target": "<nexa_8>",
     "meta": {"slots": {}}},
    {"image": "c.jpg", "query": "给王阿姨发短信：面包没了，谢谢", "language": "zh", "target": "<nexa_1>",
     "meta": {"slots": {"recipient": "王阿姨", "message": "面包没了"}}},
    {"image": "d.jpg", "query": "这个扔到垃圾桶吗", "language": "zh", "target": "<nexa_4>", "meta": {"slots": {}}},
    {"image": "e.jpg", "query": "please text Aunt Linda that the bus is late", "language": "en", "target": "<nexa_1>",
     "meta": {"slots": {"recipient": "Aunt Linda", "message": "the bus is late"}}},
]


@functools.cache
def lexicon() -> Lexicon:
    return Lexicon.from_rows(ROWS, read_cedict(cedict_path()), read_frequencies(jieba_path()))


def test_glosses_become_plain_english_and_notes_are_dropped():
    assert clean_gloss("to throw away") == "throw away"
    assert clean_gloss("supermarket (abbr. for 超級市場|超级市场[chao1 ji2 shi4 chang3])") == "supermarket"
    assert clean_gloss("CL:個|个[ge4]") is None
    assert clean_gloss("(archaic) I") is None
    assert clean_gloss("Canada", "加") is None  # a single character's proper-noun sense
    assert clean_gloss("a very long gloss of many words") is None


def test_the_lexicon_holds_the_requests_words_in_their_common_senses_and_nothing_else():
    lex = lexicon()
    assert lex.en_to_zh["throw"] == "扔" and lex.zh_to_en["扔"] == "throw"
    assert lex.en_to_zh["help"] == "帮助"  # jieba's frequency picks it over rare headwords glossed "help"
    assert lex.zh_to_en["这个"] == "this" and lex.zh_to_en["垃圾桶"] == "rubbish bin"
    assert "了" not in lex.zh_to_en and "吗" not in lex.zh_to_en  # particles stay as they are
    assert "the" not in lex.en_to_zh and "for" not in lex.en_to_zh
    assert "recycle" not in lex.en_to_zh and "王阿姨" not in lex.zh_to_en  # not in the requests / a slot value
    assert "bus" not in lex.en_to_zh  # inside a slot value: never segmented, so never swapped


def test_switched_requests_keep_their_slot_values_targets_and_images():
    rows = ROWS * 20
    switched = code_switch(rows, lexicon(), share=1.0, rate=1.0, seed=0)
    assert code_switch(rows, lexicon(), share=1.0, rate=1.0, seed=0) == switched  # seeded
    assert "扔" in switched[0]["query"] and "throw" not in switched[0]["query"]
    assert switched[3]["query"] == "this throw reach rubbish bin 吗"  # 吗, a particle, stays
    for before, after in zip(rows, switched):
        assert after["image"] == before["image"] and after["target"] == before["target"]
        for value in before["meta"]["slots"].values():
            assert value in after["query"]  # the call still copies what the request says
    assert sum(a["query"] != b["query"] for a, b in zip(rows, switched)) == len(rows)
    half = code_switch(rows, lexicon(), share=0.5, rate=0.5, seed=0)
    assert 0.2 * len(rows) < sum(a is not b for a, b in zip(rows, half)) < 0.6 * len(rows)
    assert code_switch(rows, lexicon(), share=0.0, rate=0.5, seed=0) == rows
    with pytest.raises(ValueError, match="share"):
        code_switch(rows, lexicon(), share=1.5, rate=0.5, seed=0)


def test_the_stage_setting_switches_a_share_and_only_functional_stages_take_it():
    switched = code_switched(ROWS * 10, 0.5, seed=3)
    assert 0 < sum(a is not b for a, b in zip(ROWS * 10, switched)) < len(ROWS) * 10
    with pytest.raises(ValueError, match="code_switch"):
        StageConfig(name="s", kind="alignment", train={"vision_encoder": "frozen", "projector": "full",
                                                       "lm": "frozen"}, data="captions.csv", code_switch=0.5)
