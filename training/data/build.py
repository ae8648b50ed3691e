"""`octopus data build`: the bilingual function-call dataset, caption sets and their verification.

Splits measure generalisation: every template, slot value and object is assigned to train or test (every
fourth of each group goes to test), so a test row shares none of them with train. `test_unseen_style` is the
test split re-rendered, row for row, in the held-out Noto art style. Caption sets (for stage 0 and stage 1)
cover every concept in the training styles: they stand in for the web-scale perception pretraining a CLIP
would have, while the function-call splits keep objects apart. Rows are planned and verified in this process
(deterministically from the seed) and rendered by a pool of workers. Same seed, same bytes. Paths in the
JSONL and CSV files are relative to the dataset folder.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from octopus.calls import Call, format_call, parse_and_validate
from octopus.functions import FUNCTIONS, get_function
from octopus.training.data.assets import STYLES, TRAINING_STYLES, UNSEEN_STYLE, ensure_style
from octopus.training.data.card import write_card
from octopus.training.data.concepts import (
    CATEGORY_FUNCTION,
    CATEGORY_NAMES,
    CONCEPTS,
    Concept,
    by_category,
    concept,
    image_decided_functions,
)
from octopus.training.data.llm_verify import LLMVerifier
from octopus.training.data.queries import (
    OPTIONAL_SLOT_ARGS,
    RECYCLE_MATERIAL,
    SLOTS,
    TEMPLATES,
    TRAINING_SLOTS,
    Template,
    surface,
    typo,
)
from octopus.training.data.rows import read_rows
from octopus.training.data.scenes import captions, encode_jpeg, is_plural, render_scene

log = logging.getLogger(__name__)
LANGUAGES = ("en", "zh")
SPLITS = ("train", "test")
NEW_WORDINGS = "test_new_wordings"  # text-decided and irrelevant rows in the extra bank's held-out wordings
EXTRA_TRAINING = ("off", "text", "all")  # what of the rest of the extra bank trains (BuildConfig.extra_wordings)
SLOT_VALUES = ("base", "more")  # "more": training rows also draw on TRAINING_SLOTS (BuildConfig.slot_values)
NOISE_RATE = 0.02  # share of rows given a transcription slip anywhere, as generated data has; verification drops them


@dataclass
class BuildConfig:
    n_per_function: int = 1000  # train rows per function per language
    test_fraction: float = 0.2  # test rows per function per language, as a fraction of n_per_function
    diagnostic_per_function: int = 50  # image-decided rows over *trained* objects, new images (per language)
    irrelevant_share: float = 0.1  # share of rows (per split and language) whose answer is no function
    seed: int = 0
    with_description: bool = False  # append "Function description: ..." to targets (Octopus v2 style)
    # naming/caption scenes per concept per training style: 16 (48 a concept) lift stage 1's read-back of a new
    # image's category from 81% to 94% (held-out objects 78% -> 93%) over 4; they cost ~50 s to render. 32 lifted
    # it again (+1.0 / +1.6 / +0.5 points, three seeds, bench/stage1_scenes.py), but a whole quick build with them
    # was not better on the bars (bench/MEASURED.md, "The agent follows its category slot exactly"), so the
    # recipe stays at 16
    captions_per_concept: int = 16
    # the extra bank's training wordings: "off" (its held-out fourth still makes test_new_wordings), "text" or
    # "all". Off by default: with "all", stage 2 declined the vague "这个需要帮忙" over a picture (README, Data)
    extra_wordings: str = "off"
    # "more": training rows also draw on TRAINING_SLOTS (about 30 more values a slot and language, never held out),
    # so the LM learns where an argument starts and stops rather than 24 values by heart; "base": SLOTS only
    slot_values: str = "more"
    # wordings composed from the training wordings' own pieces, per function and language (0: none): a text-decided
    # wording is an opening, a slot, a joint, a slot, an ending; swapping those pieces among one function's training
    # wordings that name the same slots in the same order shows each joint after many openings, so the LM may learn
    # where a value starts and stops from the joint rather than from the whole wording. No piece of a held-out
    # wording is used, and a composition that is any bank's wording is skipped
    composed_wordings: int = 0
    clip_val_per_concept: int = 2  # zero-shot evaluation scenes per concept per style
    workers: int = 2
    llm_verify_url: str | None = None  # an OpenAI-compatible endpoint for the optional LLM verdict
    llm_verify_model: str | None = None


@dataclass
class Plan:
    """Everything needed to render one row's image and write the row."""

    split: str
    image: str
    query: str
    language: str
    function: str | None
    arguments: dict[str, Any]
    provenance: dict[str, str]
    template: str
    register: str
    kind: str
    main: str
    distractors: list[str]
    count: int
    style: str
    render_seed: int
    slots: dict[str, str] = field(default_factory=dict)  # slot -> the text shown in the query


def _held_out(index: int) -> str:
    return "test" if index % 4 == 3 else "train"


_SLOT = re.compile(r"\{\w+\}")  # a template's slot: "{contact}", "{number2}"


def composed_templates(train: list[Template], per_group: int, seed: int = 0) -> list[Template]:
    """Up to `per_group` new text-decided wordings per (function, language), each piece (the text before, between
    and after the slots) drawn from one of that group's `train` wordings with the same slots in the same order;
    never a wording of any bank (`TEMPLATES`) or one already drawn. Ids end in "c<n>"."""
    if per_group <= 0:
        return []
    known = {t.text for t in TEMPLATES}
    groups: dict[tuple, list[Template]] = {}
    for t in train:
        if t.kind == "text" and t.bank == "base":
            groups.setdefault((t.function, t.language, tuple(_SLOT.findall(t.text))), []).append(t)
    rng = random.Random(seed)
    out: list[Template] = []
    counts: Counter = Counter()
    for (function, language, slots), group in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1:])):
        if len(group) < 2 or not slots:
            continue
        pieces = [_SLOT.split(t.text) for t in group]  # len(slots) + 1 pieces each
        for _ in range(per_group * 20):
            if counts[(function, language)] >= per_group:
                break
            chosen = [rng.choice(pieces)[k] for k in range(len(slots) + 1)]
            text = chosen[0] + "".join(slot + piece for slot, piece in zip(slots, chosen[1:]))
            if text in known:
                continue
            known.add(text)
            n = counts[(function, language)]
            counts[(function, language)] += 1
            out.append(Template(f"{function}/text/-/{language}/c{n}", language, text, function, dict(group[0].args),
                                "text", (), "composed"))
    return out


def split_templates(extra: str = "off", composed: int = 0) -> dict[str, list[Template]]:
    """Templates by split: a fourth of each group of the base bank is `test`'s, a fourth of the extra bank's is
    `test_new_wordings`'. The rest of the base bank trains, and of the extra bank what `extra` lets in
    (`BuildConfig.extra_wordings`: "off", "text" for its text-decided wordings, "all"), and `composed` wordings
    a function and language cut from the training ones (`composed_templates`)."""
    if extra not in EXTRA_TRAINING:
        raise ValueError(f"extra_wordings must be one of {EXTRA_TRAINING}, got {extra!r}")
    groups: dict[tuple, list[Template]] = {}
    for t in TEMPLATES:
        groups.setdefault((t.bank, t.function, t.kind, t.categories, t.language), []).append(t)
    out: dict[str, list[Template]] = {"train": [], "test": [], NEW_WORDINGS: []}
    for (bank, *_), group in groups.items():
        for i, t in enumerate(group):
            split = _held_out(i)
            if bank == "base":
                out[split].append(t)
            elif split == "test":
                out[NEW_WORDINGS].append(t)
            elif extra == "all" or (extra == "text" and t.kind == "text"):
                out["train"].append(t)
    out["train"] += composed_templates(out["train"], composed)
    return out


def split_slots(slot_values: str = "more") -> dict[str, dict[str, dict[str, list[tuple[str, str]]]]]:
    """Slot values by split: every fourth value of SLOTS is `test`'s, the rest train, and with "more"
    (`BuildConfig.slot_values`) TRAINING_SLOTS train too. `test` is the same either way."""
    if slot_values not in SLOT_VALUES:
        raise ValueError(f"slot_values must be one of {SLOT_VALUES}, got {slot_values!r}")
    out: dict = {"train": {}, "test": {}}
    for slot, by_lang in SLOTS.items():
        for lang, values in by_lang.items():
            for i, value in enumerate(values):
                out[_held_out(i)].setdefault(slot, {}).setdefault(lang, []).append(value)
    if slot_values == "more":
        for slot, by_lang in TRAINING_SLOTS.items():
            for lang, values in by_lang.items():
                out["train"][slot][lang].extend(values)
    return out


def split_objects() -> dict[str, dict[str, list[Concept]]]:
    out: dict = {"train": {}, "test": {}}
    for category in CATEGORY_FUNCTION:
        for i, c in enumerate(by_category(category)):
            out[_held_out(i)].setdefault(category, []).append(c)
    return out


def category_of(function: str) -> str:
    return next(cat for cat, (fn, _) in CATEGORY_FUNCTION.items() if fn == function)


def _fill(template_text: str, language: str, slots: dict, rng: random.Random) -> tuple[str, dict[str, tuple]]:
    """Fill `{slot}` holes; returns the text and the (text, value) chosen for each slot."""
    chosen: dict[str, tuple[str, str]] = {}
    for name in (hole[1:-1] for hole in _SLOT.findall(template_text)):
        table = "number" if name == "number2" else name
        options = [v for v in slots[table][language] if v not in chosen.values()]
        chosen[name] = rng.choice(options)
    text = template_text
    for name, (shown, _) in chosen.items():
        text = text.replace("{" + name + "}", shown, 1)
    return text, chosen


def _arguments(template: Template, function: str, main: Concept, language: str,
               chosen: dict[str, tuple[str, str]]) -> tuple[dict[str, Any], dict[str, str]]:
    spec = get_function(function)
    args: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    sources = dict(template.args)
    if template.function is None:  # ambiguous: the object's category decides; the object names the argument
        sources = {CATEGORY_FUNCTION[main.category][1]: "@object"}
        if main.category == "recyclable":
            sources["material"] = "@material"
    for slot, arg in OPTIONAL_SLOT_ARGS.items():
        if slot in chosen and spec.argument(arg) is not None:
            sources.setdefault(arg, "{" + slot + "}")
    for arg, source in sources.items():
        if source == "@object":
            args[arg], provenance[arg] = main.name(language), "image"
        elif source == "@material":
            args[arg], provenance[arg] = main.material, "image"
        elif source == "@slot_material":
            args[arg], provenance[arg] = RECYCLE_MATERIAL[chosen["recycle"][1]], "mapped"
        else:
            shown, value = chosen[source.strip("{}")]
            typed = int(value) if spec.argument(arg).type == "integer" else value
            args[arg], provenance[arg] = typed, ("query" if shown == value else "mapped")
    return args, provenance


def verify(plan: Plan) -> str | None:
    """The paper's binary verification, as rules: the reason a row is rejected, or None if it passes."""
    target = format_call(plan.function, plan.arguments)
    result = parse_and_validate(target)
    if not isinstance(result, Call) or result != Call(plan.function, plan.arguments):
        return "call_invalid"
    main = concept(plan.main)
    spec = get_function(plan.function) if plan.function is not None else None
    for arg, source in plan.provenance.items():
        value = plan.arguments[arg]
        if source == "query" and str(value) not in plan.query:
            return "copied_argument_not_in_query"
        if source == "mapped" and spec.argument(arg).enum is None:  # only an enum maps words to a value
            return "free_text_argument_not_in_query"
        if source == "image" and value not in (main.name(plan.language), main.material):
            return "named_object_not_in_scene"
    if plan.function is not None and plan.kind != "text" and main.function != plan.function:
        return "object_does_not_imply_function"
    has_cjk = bool(re.search(r"[\u4e00-\u9fff]", plan.query))
    if has_cjk != (plan.language == "zh"):
        return "language_mismatch"
    return None


def _plan_row(split: str, function: str | None, language: str, index: int, config: BuildConfig,
              templates: list[Template], slots: dict, objects: dict, attempt: int,
              modes: str = "tiatiatiat") -> Plan:
    rng = random.Random(f"{config.seed}/{split}/{function}/{language}/{index}/{attempt}")
    fits = [t for t in templates if t.language == language]
    if function is None:
        template = rng.choice([t for t in fits if t.kind == "irrelevant"])
        kind = "irrelevant"
    else:
        text_ts = [t for t in fits if t.function == function and t.kind == "text"]
        image_ts = [t for t in fits if t.function == function and t.kind == "image"]
        ambiguous = [t for t in fits if t.function is None and t.kind == "image"
                     and function in {CATEGORY_FUNCTION[c][0] for c in t.categories}]
        mode = modes[index % len(modes)]  # default exact shares: 40% text-decided, 30% image-named, 30% ambiguous
        pool = text_ts if (not image_ts or mode == "t") else image_ts if mode == "i" else ambiguous
        template = rng.choice(pool)
        kind = template.kind if template.function is not None else "ambiguous"
    if kind in ("image", "ambiguous"):
        main = rng.choice(objects[category_of(function)])
    else:
        main = rng.choice(objects["neutral"] if rng.random() < 0.5 else
                          [c for cat in objects for c in objects[cat]])
    text, register = surface(template.text, language, rng)
    query, chosen = _fill(text, language, slots, rng)
    args, provenance = ({}, {}) if function is None else _arguments(template, function, main, language, chosen)
    if rng.random() < NOISE_RATE and language == "en":
        words = query.split(" ")
        i = rng.randrange(len(words))
        words[i] = typo(words[i], rng)
        query, register = " ".join(words), "noisy"
    distractors = [c.key for c in rng.sample(objects["neutral"], rng.choice([0, 0, 1, 1, 2]))
                   if c.key != main.key]
    style = rng.choice(TRAINING_STYLES)
    count = 2 if kind != "text" and rng.random() < 0.1 else 1
    name = f"{function or 'none'}_{language}_{index:05d}.jpg"
    return Plan(split, f"images/{split}/{name}", query, language, function, args, provenance, template.id,
                register, kind, main.key, distractors, count, style, rng.getrandbits(63),
                {k: v[0] for k, v in sorted(chosen.items())})


def plan_split(split: str, config: BuildConfig, rejects: Counter, verifier=None) -> list[Plan]:
    templates = split_templates(config.extra_wordings, config.composed_wordings)[split]
    held = "test" if split == NEW_WORDINGS else split  # new wordings fill in test's slots and objects
    slots = split_slots(config.slot_values)[held]
    objects = split_objects()[held]
    n = config.n_per_function if split == "train" else max(1, round(config.n_per_function * config.test_fraction))
    per_language_function_rows = n * len(FUNCTIONS)
    n_irrelevant = round(per_language_function_rows * config.irrelevant_share / (1 - config.irrelevant_share))
    plans = []
    for language in LANGUAGES:
        jobs = [(f.name, i) for f in FUNCTIONS for i in range(n)] + [(None, i) for i in range(n_irrelevant)]
        for function, index in jobs:
            for attempt in range(20):
                plan = _plan_row(split, function, language, index, config, templates, slots, objects, attempt)
                reason = verify(plan)
                if reason is None and verifier is not None and not verifier.judge(
                        plan.query, [plan.main, *plan.distractors], format_call(plan.function, plan.arguments)):
                    reason = "llm_rejected"
                if reason is None:
                    plans.append(plan)
                    break
                rejects[f"{split}:{reason}"] += 1
            else:  # pragma: no cover - would mean a broken template bank
                raise RuntimeError(f"no valid row for {split}/{function}/{language}/{index} after 20 tries")
    return plans


def plan_diagnostic(config: BuildConfig, rejects: Counter) -> list[Plan]:
    """Image-decided rows (image names the object / image decides) over objects that *train* rows show, in new
    images, with test templates and slots: grounding progress, apart from transfer to held-out objects."""
    templates, slots = split_templates()["test"], split_slots()["test"]
    objects = split_objects()["train"]
    plans = []
    for language in LANGUAGES:
        for function in image_decided_functions():
            for index in range(config.diagnostic_per_function):
                for attempt in range(20):
                    plan = _plan_row("test_trained_objects", function, language, index, config, templates, slots,
                                     objects, attempt, modes="ia")
                    reason = verify(plan)
                    if reason is None:
                        plans.append(plan)
                        break
                    rejects[f"test_trained_objects:{reason}"] += 1
    return plans


def object_split_of(key: str) -> str:
    """'train' if function-call training rows may show this object, else 'test' (held out)."""
    return "train" if any(c.key == key for cs in split_objects()["train"].values() for c in cs) else "test"


def target_text(plan: Plan, with_description: bool) -> str:
    text = format_call(plan.function, plan.arguments)
    if with_description and plan.function is not None:
        text += f"\n\nFunction description: {get_function(plan.function).description_en}"
    return text


def row_json(plan: Plan, config: BuildConfig, image: str | None = None, style: str | None = None) -> dict:
    return {
        "image": image or plan.image,
        "query": plan.query,
        "language": plan.language,
        "function": plan.function,
        "arguments": plan.arguments,
        "target": target_text(plan, config.with_description),
        "meta": {"template": plan.template, "kind": plan.kind, "register": plan.register,
                 "slots": plan.slots, "provenance": plan.provenance, "objects": [plan.main, *plan.distractors],
                 "count": plan.count, "style": style or plan.style, "object_split": object_split_of(plan.main)},
    }


def planned_rows(split: str, config: BuildConfig) -> list[dict]:
    """A split's rows as `build` writes them, without rendering their images (the planner decides them)."""
    return [row_json(plan, config) for plan in plan_split(split, config, Counter())]


def _render_job(job: tuple) -> tuple[bytes, str, str]:
    """Worker: render one scene; its JPEG bytes and (EN, ZH) captions, deterministic from the job."""
    style, main, distractors, count, seed = job
    rng = random.Random(seed)
    image, scene = render_scene(rng, style, concept(main), [concept(d) for d in distractors], count)
    en, zh = captions(scene, random.Random(seed + 1))
    return encode_jpeg(image, rng), en, zh


def _render_all(out: Path, jobs: list[tuple[str, tuple]], workers: int) -> dict[str, tuple[str, str]]:
    """Render every job to its path (written atomically); returns the captions of each path."""
    for path, _ in jobs:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
    captions_by_path = {}
    with get_context("forkserver").Pool(workers) as pool:  # fork would copy other threads' held locks
        results = pool.imap(_render_job, [job for _, job in jobs], chunksize=16)
        progress = tqdm(zip(jobs, results), total=len(jobs), desc="rendering", unit="img", mininterval=2)
        for (path, _), (data, en, zh) in progress:
            tmp = out / (path + ".tmp")
            tmp.write_bytes(data)
            tmp.rename(out / path)
            captions_by_path[path] = (en, zh)
    return captions_by_path


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")


def caption_plans(config: BuildConfig) -> tuple[list, list, list]:
    """(captions, clip_val, clip_val_unseen) scene jobs: (path, job, concept key)."""
    neutral = by_category("neutral")
    caption, val, unseen = [], [], []
    for c in CONCEPTS:
        for style in (*TRAINING_STYLES, UNSEEN_STYLE):
            sets = ([("captions", config.captions_per_concept, caption)] if style != UNSEEN_STYLE else []) + [
                ("clip_val" if style != UNSEEN_STYLE else "clip_val_unseen", config.clip_val_per_concept,
                 val if style != UNSEEN_STYLE else unseen)]
            for name, n, target in sets:
                for i in range(n):
                    rng = random.Random(f"{config.seed}/{name}/{c.key}/{style}/{i}")
                    distractors = [d.key for d in rng.sample(neutral, rng.choice([0, 1, 2])) if d.key != c.key]
                    if name != "captions":
                        distractors = []  # zero-shot classification: one object per image
                    count = 2 if name == "captions" and rng.random() < 0.1 else 1
                    job = (style, c.key, distractors, count, rng.getrandbits(63))
                    target.append((f"images/{name}/{c.key}_{style}_{i}.jpg", job, c.key))
    return caption, val, unseen


def write_captions(out: Path, caption_jobs: list, captions_by_path: dict) -> None:
    """captions.csv (tab-separated `filepath`, `title`, as open_clip's trainer reads): EN and ZH per scene."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(["filepath", "title"])
    for path, _, _ in caption_jobs:
        en, zh = captions_by_path[path]
        writer.writerow([path, en])
        writer.writerow([path, zh])
    (out / "captions.csv").write_text(buffer.getvalue(), encoding="utf-8")


NAMING_CUES = {"en": "This is", "zh": "这是"}


def naming_text(key: str, language: str) -> str:
    """What the naming stage teaches an image to say: the object's name, then its kind."""
    c = concept(key)
    kind_en, kind_zh = CATEGORY_NAMES[c.category]
    if language == "zh":
        return f"{c.zh}，{kind_zh}。"
    article = "" if is_plural(c.en) else ("an " if c.en[0].lower() in "aeiou" else "a ")
    return f"{article}{c.en}, {kind_en}."


def write_naming(out: Path, caption_jobs: list) -> None:
    """naming.jsonl: per caption scene and language, a cue ("This is") and the object's name + kind."""
    rows = [{"image": path, "concept": key, "language": lang, "prompt": NAMING_CUES[lang],
             "caption": naming_text(key, lang)} for path, _, key in caption_jobs for lang in LANGUAGES]
    _write_jsonl(out / "naming.jsonl", rows)


def build(out: Path, config: BuildConfig) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for style in STYLES:
        ensure_style(style)

    verifier = LLMVerifier.from_settings(config.llm_verify_url, config.llm_verify_model)
    rejects: Counter = Counter()
    plans = {split: plan_split(split, config, rejects, verifier) for split in SPLITS}
    rows = {split: [row_json(p, config) for p in plans[split]] for split in SPLITS}
    diagnostic = plan_diagnostic(config, rejects)
    rows["test_trained_objects"] = [row_json(p, config) for p in diagnostic]
    new_wordings = plan_split(NEW_WORDINGS, config, rejects, verifier)
    rows[NEW_WORDINGS] = [row_json(p, config) for p in new_wordings]
    rows["test_unseen_style"] = [
        row_json(p, config, image=p.image.replace("images/test/", "images/test_unseen_style/"), style=UNSEEN_STYLE)
        for p in plans["test"]
    ]
    jobs = [(p.image, (p.style, p.main, p.distractors, p.count, p.render_seed))
            for p in [*plans["train"], *plans["test"], *diagnostic, *new_wordings]]
    jobs += [(r["image"], (UNSEEN_STYLE, p.main, p.distractors, p.count, p.render_seed))
             for r, p in zip(rows["test_unseen_style"], plans["test"])]
    caption_jobs, val_jobs, unseen_jobs = caption_plans(config)
    all_jobs = jobs + [(path, job) for path, job, _ in caption_jobs + val_jobs + unseen_jobs]
    captions_by_path = _render_all(out, all_jobs, config.workers)
    for split, split_rows in rows.items():
        _write_jsonl(out / f"{split}.jsonl", split_rows)
    write_captions(out, caption_jobs, captions_by_path)
    write_naming(out, caption_jobs)
    for name, jobs_ in (("clip_val", val_jobs), ("clip_val_unseen", unseen_jobs)):
        _write_jsonl(out / f"{name}.jsonl", [{"image": p, "concept": key, "style": j[0]} for p, j, key in jobs_])
    stats = dataset_stats(out, rejects)
    (out / "build.json").write_text(json.dumps({"config": asdict(config), "stats": stats}, indent=2,
                                               ensure_ascii=False) + "\n")
    write_card(out, config, stats)
    return stats


def dataset_stats(out: Path, rejects: Counter | None = None) -> dict:
    stats: dict[str, Any] = {}
    for split in ("train", "test", "test_unseen_style", "test_trained_objects", NEW_WORDINGS):
        path = out / f"{split}.jsonl"
        if not path.is_file():
            continue
        split_rows = read_rows(path)
        stats[split] = {
            "rows": len(split_rows),
            "by_language": dict(sorted(Counter(r["language"] for r in split_rows).items())),
            "by_function": dict(sorted(Counter(r["function"] or "none" for r in split_rows).items())),
            "by_kind": dict(sorted(Counter(r.get("meta", {}).get("kind", "?") for r in split_rows).items())),
            "by_register": dict(sorted(Counter(r.get("meta", {}).get("register", "?") for r in split_rows).items())),
        }
    if rejects is not None:
        stats["verification_rejects"] = dict(sorted(rejects.items()))
    if (out / "captions.csv").is_file():
        stats["caption_rows"] = sum(1 for _ in (out / "captions.csv").open(encoding="utf-8")) - 1
    return stats
