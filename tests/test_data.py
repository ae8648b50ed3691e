"""The generated dataset: determinism, validity, held-out splits, balance, assets, CLI."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import SMALL_DATA, ChatServer

from octopus.calls import Call, format_call, parse_and_validate
from octopus.functions import get_function
from octopus.training.data.assets import STYLES, render_icon
from octopus.training.data.build import (
    BuildConfig,
    Plan,
    _arguments,
    _fill,
    build,
    category_of,
    composed_templates,
    object_split_of,
    planned_rows,
    read_rows,
    split_slots,
    split_templates,
    verify,
)
from octopus.training.data.concepts import CONCEPTS, by_category, image_decided_functions
from octopus.training.data.queries import RECYCLE_MATERIAL, SLOTS, TEMPLATES, TRAINING_SLOTS


@pytest.fixture(scope="module")
def dataset(small_data) -> Path:
    return small_data


def test_same_seed_gives_byte_identical_files(dataset, tmp_path):
    build(tmp_path / "b", BuildConfig(**SMALL_DATA))
    for name in ("train.jsonl", "test.jsonl", "test_unseen_style.jsonl", "captions.csv", "clip_val.jsonl"):
        assert (dataset / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    rows = read_rows(dataset / "train.jsonl")
    for row in rows[::37]:
        assert (dataset / row["image"]).read_bytes() == (tmp_path / "b" / row["image"]).read_bytes()


def test_another_seed_gives_other_rows(dataset):
    assert planned_rows("train", BuildConfig(**SMALL_DATA)) == read_rows(dataset / "train.jsonl")  # what build wrote
    other = planned_rows("train", BuildConfig(**SMALL_DATA, seed=1))
    assert len(other) == len(read_rows(dataset / "train.jsonl"))
    assert other != read_rows(dataset / "train.jsonl")


def test_every_row_validates_and_has_its_image(dataset):
    for split in ("train", "test", "test_unseen_style", "test_new_wordings"):
        for row in read_rows(dataset / f"{split}.jsonl"):
            assert set(row) >= {"image", "query", "language", "function", "arguments", "target"}
            assert parse_and_validate(row["target"]) == Call(row["function"], row["arguments"])
            assert (dataset / row["image"]).is_file()
            spec = get_function(row["function"]) if row["function"] else None
            for arg, source in row["meta"]["provenance"].items():
                if source == "query":
                    assert str(row["arguments"][arg]) in row["query"]
                if source == "mapped":  # words -> an enum value; a free-text argument is the words themselves
                    assert spec.argument(arg).enum is not None, (row["query"], row["arguments"])


def test_test_split_shares_no_template_slot_value_or_object_with_train(dataset):
    train, test = read_rows(dataset / "train.jsonl"), read_rows(dataset / "test.jsonl")

    def parts(rows, key):
        if key == "slots":
            return {(k.rstrip("2"), v) for r in rows for k, v in r["meta"]["slots"].items()}
        if key == "objects":
            return {o for r in rows for o in r["meta"]["objects"]}
        return {r["meta"][key] for r in rows}

    for key in ("template", "slots", "objects"):
        assert parts(train, key) and parts(test, key)
        assert not parts(train, key) & parts(test, key), key
    # the extra bank's held-out wordings: held-out slot values and objects, wordings no other split has
    new = read_rows(dataset / "test_new_wordings.jsonl")
    assert {r["meta"]["kind"] for r in new} == {"text", "irrelevant"}
    for key in ("slots", "objects"):
        assert parts(new, key) and not parts(new, key) & parts(train, key), key
    assert not parts(new, "template") & (parts(train, "template") | parts(test, "template"))
    assert not any("/x" in t for t in parts(train, "template"))  # the rest of the extra bank trains only on request


def test_the_extra_bank_leaves_the_test_split_as_the_base_bank_makes_it():
    """`test` is the base bank's held-out fourth alone, in the base bank's order: widening training with a
    second bank must not move a single test row (so figures before and after it compare)."""
    base = [t for t in TEMPLATES if t.bank == "base"]
    groups: dict = {}
    for t in base:
        groups.setdefault((t.function, t.kind, t.categories, t.language), []).append(t)
    off, text, every = (split_templates(extra) for extra in ("off", "text", "all"))
    for splits in (off, text, every):
        assert splits["test"] == [t for group in groups.values() for i, t in enumerate(group) if i % 4 == 3]
        assert splits["test_new_wordings"] == off["test_new_wordings"]
        assert all(t.bank == "extra" for t in splits["test_new_wordings"])
        assert splits["train"][:len(off["train"])] == off["train"]  # the base bank's train wordings, in order
    assert all(t.bank == "base" for t in off["train"])
    extra_train = [t for t in every["train"] if t.bank == "extra"]
    assert len(every["test_new_wordings"]) * 3 == len(extra_train)
    assert [t for t in text["train"] if t.bank == "extra"] == [t for t in extra_train if t.kind == "text"]
    assert not {t.text for t in base} & {t.text for t in TEMPLATES if t.bank == "extra"}
    with pytest.raises(ValueError, match="extra_wordings"):
        split_templates("some")


def test_composed_wordings_use_only_training_pieces_and_leave_every_held_out_split_alone():
    """A composed wording is pieces of one function's training wordings (the text before, between and after
    the same slots), never a wording of any bank; held-out splits are unchanged, and its rows make valid calls."""
    off, composed = split_templates(), split_templates("off", 6)
    for split in ("test", "test_new_wordings"):
        assert composed[split] == off[split]
    assert composed["train"][:len(off["train"])] == off["train"]
    new = composed["train"][len(off["train"]):]
    assert new and all(t.bank == "composed" and t.kind == "text" for t in new)
    assert not {t.text for t in new} & {t.text for t in TEMPLATES}
    assert len({t.text for t in new}) == len(new) and len({t.id for t in new}) == len(new)
    slot = re.compile(r"\{\w+\}")
    for t in new:
        group = [g for g in off["train"] if (g.function, g.language, g.kind) == (t.function, t.language, "text")
                 and slot.findall(g.text) == slot.findall(t.text)]
        for k, piece in enumerate(slot.split(t.text)):  # each piece is that piece of a training wording
            assert piece in {slot.split(g.text)[k] for g in group}, (t.id, piece)
    counts = Counter((t.function, t.language) for t in new)
    assert max(counts.values()) <= 6 and counts[("send_text_message", "zh")] == 6
    assert composed_templates(off["train"], 0) == [] and composed_templates(off["train"], 6) == new
    rng = random.Random(0)
    for t in new:
        query, chosen = _fill(t.text, t.language, SLOTS, rng)
        args, _ = _arguments(t, t.function, rng.choice(CONCEPTS), t.language, chosen)
        assert parse_and_validate(format_call(t.function, args)) == Call(t.function, args), t.id


def test_every_wording_of_the_bank_fills_into_a_valid_call_in_its_language():
    rng = random.Random(0)
    for template in TEMPLATES:
        for _ in range(4):  # values drawn from both splits' slot tables
            query, chosen = _fill(template.text, template.language, SLOTS, rng)
            assert "{" not in query and "}" not in query, template.id
            assert bool(re.search(r"[\u4e00-\u9fff]", query)) == (template.language == "zh"), template.id
            if template.function is None:  # irrelevant, or the object's category decides (checked on rows)
                continue
            main = rng.choice(by_category(category_of(template.function)) if template.kind == "image" else CONCEPTS)
            args, provenance = _arguments(template, template.function, main, template.language, chosen)
            assert parse_and_validate(format_call(template.function, args)) == Call(template.function, args), \
                template.id
            for arg, source in provenance.items():  # free text is copied from the query, never mapped
                spec = get_function(template.function).argument(arg)
                assert source in ("query", "image") or spec.enum is not None, (template.id, arg, args[arg])


def test_copied_slots_have_enough_values_to_teach_copying_and_never_name_a_held_out_object():
    """With 9 training values a slot, the quick model wrote learned items for unseen ones ("where should I throw
    a yogurt cup?" -> item="toyota camry"): free-text slots hold 32 values a language (24 train, 8 test). A slot
    value naming a held-out image object ("hamster" once) would teach its name in text rows."""
    held_out_names = {name.lower() for c in CONCEPTS if object_split_of(c.key) == "test" for name in (c.en, c.zh)}
    for slot in ("email", "contact", "subject", "body", "message", "topic", "product", "grocery", "dish", "pet",
                 "location", "lost", "recycle", "space"):
        for language in ("en", "zh"):
            shown = [text for text, _ in SLOTS[slot][language]]
            assert len(set(shown)) == len(shown) >= 32, (slot, language)
            assert not {text.lower() for text in shown} & held_out_names, (slot, language)


def test_training_only_slot_values_are_new_never_name_a_held_out_object_and_leave_the_test_split_alone():
    """TRAINING_SLOTS widen what training rows copy (24 values a slot taught "孙阿姨晚安" as a recipient). They must
    never be a SLOTS value of any split, never name a held-out object (as a word in English, anywhere in a
    Chinese string: "贵宾犬" is one), and only ever train: `test` draws the same values either way."""
    held_out = [c for c in CONCEPTS if object_split_of(c.key) == "test"]
    for slot, by_language in TRAINING_SLOTS.items():
        for language, values in by_language.items():
            shown = [text for text, _ in values]
            assert len(set(shown)) == len(shown) >= 24, (slot, language)
            assert not set(shown) & {text for table in SLOTS.values() for text, _ in table.get(language, [])}
            for text in shown:
                for c in held_out:
                    name = c.name(language).lower()
                    found = name in text if language == "zh" else re.search(rf"\b{re.escape(name)}s?\b", text.lower())
                    assert not found, (slot, language, text, name)
    base, more = split_slots("base"), split_slots("more")
    assert more["test"] == base["test"]
    for slot, by_language in base["train"].items():
        for language, values in by_language.items():
            assert more["train"][slot][language] == values + TRAINING_SLOTS.get(slot, {}).get(language, [])
    for language in ("en", "zh"):  # every training-only recyclable maps to its material
        assert {text for text, _ in TRAINING_SLOTS["recycle"][language]} <= set(RECYCLE_MATERIAL)
    with pytest.raises(ValueError, match="slot_values"):
        split_slots("some")


def test_text_decided_recycling_names_the_item_and_maps_only_its_material():
    """The item was once its material ("how do I recycle a yogurt cup?" -> item="plastic"): 800 training rows."""
    template = next(t for t in TEMPLATES if t.id == "smart_recycling/text/-/en/0")
    args, provenance = _arguments(template, "smart_recycling", CONCEPTS[0], "en",
                                  {"recycle": ("yogurt cup", "yogurt cup")})
    assert args == {"item": "yogurt cup", "material": "plastic"}
    assert provenance == {"item": "query", "material": "mapped"}
    for language in ("en", "zh"):
        assert {value for _, value in SLOTS["recycle"][language]} <= set(RECYCLE_MATERIAL)


def test_every_enum_value_the_test_split_asks_for_is_taught_at_least_as_often_in_training():
    """Every 4th slot value is held out; for mapped slots that once held out "boarding", the only phrase for
    pet_care's `boarding`, so no model could answer the test's 52 boarding rows, and 3 of 4 organic recyclables
    (the quick model answered "paper" for coffee grounds, tea bags and banana peels)."""
    splits = split_slots()
    for slot in ("service", "style", "recycle"):
        for language in ("en", "zh"):
            train, test = (Counter(RECYCLE_MATERIAL[text] if slot == "recycle" else value
                                   for text, value in splits[split][slot][language]) for split in ("train", "test"))
            for value, n in test.items():
                assert train[value] >= n, (slot, language, value, train[value], n)


def test_test_split_holds_enough_unseen_wordings_to_be_a_measurement():
    """A per-language figure over 2-4 held-out wordings is a few wordings' luck: on 4 irrelevant Chinese
    wordings the shipped model rejected 33% of the requests, on 10 of them 71% (an early default)."""
    splits = split_templates()
    for language in ("en", "zh"):
        for kind, least in (("text", 4), ("irrelevant", 10)):
            held = Counter(t.function for t in splits["test"] if t.language == language and t.kind == kind)
            seen = Counter(t.function for t in splits["train"] if t.language == language and t.kind == kind)
            assert held and set(held) == set(seen) and min(held.values()) >= least, (language, kind, held)
            assert min(seen.values()) >= 3 * least, (language, kind, seen)  # one wording in four held out


def test_ambiguous_image_decided_rows_exist_for_every_image_decided_function(dataset):
    for split in ("train", "test"):
        rows = read_rows(dataset / f"{split}.jsonl")
        ambiguous = {r["function"] for r in rows if r["meta"]["kind"] == "ambiguous"}
        assert ambiguous == set(image_decided_functions()), split
    example = next(r for r in read_rows(dataset / "train.jsonl") if r["meta"]["kind"] == "ambiguous")
    assert example["function"] is not None


def test_languages_are_balanced_and_every_function_is_covered(dataset):
    for split in ("train", "test"):
        rows = read_rows(dataset / f"{split}.jsonl")
        by_language = Counter(r["language"] for r in rows)
        assert by_language["en"] == by_language["zh"] > 0
        assert Counter(r["function"] for r in rows if r["language"] == "en") == \
            Counter(r["function"] for r in rows if r["language"] == "zh")
        assert len({r["function"] for r in rows}) == 11  # ten functions and no function


def test_irrelevant_share_is_configurable():
    for share in (0.0, 0.3):
        rows = planned_rows("train", BuildConfig(n_per_function=10, irrelevant_share=share))
        actual = sum(r["function"] is None for r in rows) / len(rows)
        assert actual == pytest.approx(share, abs=0.01)


def test_unseen_style_is_the_test_split_in_noto(dataset):
    test, unseen = read_rows(dataset / "test.jsonl"), read_rows(dataset / "test_unseen_style.jsonl")
    assert [r["query"] for r in test] == [r["query"] for r in unseen]
    assert {r["meta"]["style"] for r in unseen} == {"noto"}
    assert "noto" not in {r["meta"]["style"] for r in read_rows(dataset / "train.jsonl")}
    assert (dataset / test[0]["image"]).read_bytes() != (dataset / unseen[0]["image"]).read_bytes()


def test_captions_csv_is_bilingual_and_in_training_styles(dataset):
    lines = (dataset / "captions.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "filepath\ttitle"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 2 * len({p for p, _ in rows})
    assert all((dataset / p).is_file() for p, _ in rows[:50])
    assert sum(c.isascii() for _, c in rows) == len(rows) // 2
    assert not any("noto" in p for p, _ in rows)


def test_every_concept_renders_in_every_style():
    for style in STYLES:
        for c in CONCEPTS:
            icon = render_icon(style, c.codepoint, 48)
            assert icon is not None and icon.size == (48, 48), (style, c.key)
            assert icon.getchannel("A").getextrema()[1] > 0


def _plan(**overrides) -> Plan:
    base = dict(split="train", image="x.jpg", query="email bob@mail.org about dinner plans", language="en",
                function="send_email", arguments={"recipient": "bob@mail.org", "subject": "dinner plans"},
                provenance={"recipient": "query", "subject": "query"}, template="t", register="plain", kind="text",
                main="pencil", distractors=[], count=1, style="openmoji", render_seed=1)
    return Plan(**{**base, **overrides})


def test_verification_rejects_bad_rows():
    assert verify(_plan()) is None
    assert verify(_plan(query="email bob@mial.org about dinner plans")) == "copied_argument_not_in_query"
    assert verify(_plan(arguments={"recipient": "bob", "subject": "x"})) == "call_invalid"
    assert verify(_plan(language="zh")) == "language_mismatch"
    wrong_object = _plan(function="pet_care", arguments={"pet": "dog"}, provenance={"pet": "image"},
                         kind="image", main="cat", query="take care of my pet")
    assert verify(wrong_object) == "named_object_not_in_scene"
    wrong_function = _plan(function="pet_care", arguments={"pet": "pizza"}, provenance={"pet": "image"},
                           kind="ambiguous", main="pizza", query="take care of this")
    assert verify(wrong_function) == "object_does_not_imply_function"
    mapped_free_text = _plan(function="smart_recycling", arguments={"item": "plastic", "material": "plastic"},
                             provenance={"item": "mapped", "material": "mapped"}, query="recycle a yogurt cup")
    assert verify(mapped_free_text) == "free_text_argument_not_in_query"


def test_build_reports_rejects_and_writes_a_card(dataset):
    import json

    build_info = json.loads((dataset / "build.json").read_text())
    assert "verification_rejects" in build_info["stats"]
    card = (dataset / "DATASET.md").read_text(encoding="utf-8")
    assert "OpenMoji" in card and "CC BY-SA 4.0" in card and "## Counts" in card


def test_stats_cli_writes_a_contact_sheet(dataset):
    from PIL import Image

    octopus = str(Path(sys.executable).parent / "octopus")
    out = subprocess.run([octopus, "data", "stats", str(dataset)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "train:" in out.stdout and "languages" in out.stdout
    with Image.open(dataset / "contact_sheet.png") as sheet:
        assert sheet.width >= 1000 and sheet.height >= 800


def test_cli_rejects_bad_input(tmp_path):
    octopus = str(Path(sys.executable).parent / "octopus")
    bad = subprocess.run([octopus, "data", "build", "--out", str(tmp_path), "--n-per-function", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    negative = subprocess.run([octopus, "data", "build", "--out", str(tmp_path), "--composed-wordings", "-1"],
                              capture_output=True, text=True)
    assert negative.returncode == 2 and "--composed-wordings" in negative.stderr and "Traceback" not in negative.stderr
    assert not any(tmp_path.iterdir())
    missing = subprocess.run([octopus, "data", "stats", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no train.jsonl" in missing.stderr


def _refuse_polite_rows(body: dict) -> str:
    """The data verifier's judge: "no" to a row whose query says please."""
    assert body["messages"][0]["role"] == "system"
    return "no" if "please" in body["messages"][1]["content"].split("\n")[0].lower() else "yes"


def test_optional_llm_verification_rejects_what_the_judge_refuses(tmp_path):
    with ChatServer(_refuse_polite_rows) as judge:
        build(tmp_path, BuildConfig(n_per_function=4, captions_per_concept=0, clip_val_per_concept=0,
                                    diagnostic_per_function=0, llm_verify_url=judge.url, llm_verify_model="judge"))
    rows = read_rows(tmp_path / "train.jsonl")
    assert len(judge.requests) >= len(rows)
    assert {path for path, _, _ in judge.requests} == {"/v1/chat/completions"}
    assert not any("please" in r["query"].lower() for r in rows)
    rejects = json.loads((tmp_path / "build.json").read_text())["stats"]["verification_rejects"]
    assert rejects.get("train:llm_rejected", 0) > 0


def test_unreachable_llm_endpoint_is_a_one_line_error(tmp_path):
    octopus = str(Path(sys.executable).parent / "octopus")
    out = subprocess.run([octopus, "data", "build", "--out", str(tmp_path), "--n-per-function", "1",
                          "--llm-verify-url", "http://127.0.0.1:9/v1"], capture_output=True, text=True)
    assert out.returncode == 2 and "LLM verification" in out.stderr and out.stderr.count("\n") == 1


def test_cli_and_profiles_build_the_data_the_build_config_defines():
    """`octopus data build` with no options, and `train all` on a quick profile with no data, build the same
    data as `BuildConfig()`: the CLI repeats the defaults (it imports no training code), so they can drift."""
    from octopus.cli import build_parser
    from octopus.training.stages import profile

    args = build_parser().parse_args(["data", "build", "--out", "x"])
    defaults = BuildConfig()
    assert (args.n_per_function, args.captions_per_concept, args.seed, args.irrelevant_share, args.extra_wordings,
            args.slot_values) == (defaults.n_per_function, defaults.captions_per_concept, defaults.seed,
                                  defaults.irrelevant_share, defaults.extra_wordings, defaults.slot_values)
    quick = profile("quick")
    assert (quick.data_n_per_function, quick.data_captions_per_concept) == (
        defaults.n_per_function, defaults.captions_per_concept)


def test_training_on_a_folder_built_otherwise_says_so_and_keeps_it(dataset, caplog):
    """`train all` uses an existing data folder as it is (never rebuilds a user's data), and logs where its build
    differs from the profile's recipe: the naming scenes a concept decide stage 1's read-back."""
    from octopus.training.pipeline import ensure_data
    from octopus.training.stages import profile

    before = (dataset / "train.jsonl").read_bytes()
    with caplog.at_level("WARNING", logger="octopus.training.pipeline"):
        ensure_data(dataset, profile("quick"))
    assert (dataset / "train.jsonl").read_bytes() == before
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "captions_per_concept 1 (the quick profile builds 16)" in warned
    assert "n_per_function 10 (the quick profile builds 1000)" in warned
    caplog.clear()
    tiny = profile("tiny")
    tiny.data_captions_per_concept = SMALL_DATA["captions_per_concept"]
    with caplog.at_level("WARNING", logger="octopus.training.pipeline"):
        ensure_data(dataset, tiny)
    assert not caplog.records  # the same build: nothing to say


def test_a_folder_without_a_readable_build_record_trains_without_a_warning(tmp_path, caplog):
    from octopus.training.pipeline import warn_if_other_build
    from octopus.training.stages import profile

    quick = profile("quick")
    assert warn_if_other_build(tmp_path, quick) == []  # a user's own data: no build.json
    for text in ("[]", "{not json", '{"config": "16"}', '{"stats": {}}'):
        (tmp_path / "build.json").write_text(text)
        assert warn_if_other_build(tmp_path, quick) == []
    (tmp_path / "build.json").write_text(json.dumps({"config": {"captions_per_concept": 32}}))
    assert warn_if_other_build(tmp_path, quick) == ["captions_per_concept 32 (the quick profile builds 16)"]
