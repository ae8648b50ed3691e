"""Data for user functions (`octopus train extend`): a handful of example requests multiplied into rows.

Each example becomes a template: an argument value that appears in the request word for word becomes a slot
(`{room}`), filled from the values every example and the function file give for that argument in that
language; a value that does not appear (an enum said another way, "打开" for "on") stays fixed with its
wording. The existing registers (polite, terse, typos, ...) vary the surface, and each request is shown over a
rendered scene as the built-in text-decided rows are. Templates and free-text values are split as the
built-in data is (every fourth to test), so test rows use wordings and values no train row has. A function
with `concepts` also gets rows where only the image decides: the built-in generic requests ("help me with
this", "帮我处理一下这个") over a picture of one of its objects (held out every fourth, as built-in objects are),
its `image_argument` filled with the object's name. Replay rows of the ten (and of "no function") come from
the built-in generator itself, so the extended model keeps them.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from octopus.calls import Call, format_call, parse_and_validate
from octopus.function_file import FunctionFileError, load_function_file
from octopus.functions import Function, Registry
from octopus.training.data.assets import TRAINING_STYLES, ensure_style
from octopus.training.data.build import (
    LANGUAGES,
    BuildConfig,
    _held_out,
    _render_all,
    _write_jsonl,
    object_split_of,
    plan_split,
    row_json,
    split_objects,
    split_templates,
)
from octopus.training.data.concepts import CONCEPTS, by_category, concept
from octopus.training.data.queries import IMAGE_CATEGORIES, surface


@dataclass(frozen=True)
class UserTemplate:
    id: str
    language: str
    text: str  # with {argument} slots
    fixed: dict  # arguments whose value the wording itself fixes


def _pattern(value: str) -> str:
    """A value as it must appear: whole words for Latin text, anywhere for Chinese."""
    escaped = re.escape(value)
    return rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])" if value.isascii() else escaped


def derive_templates(function: Function) -> list[UserTemplate]:
    out, counts = [], Counter()
    for example in function.examples:
        text, fixed = example.request, {}
        # longest values first, so a short one ("on") is never found inside a longer one ("living room")
        for name, value in sorted(example.arguments.items(), key=lambda kv: -len(str(kv[1]))):
            match = re.search(_pattern(str(value)), text)
            if match:
                text = text[:match.start()] + "{" + name + "}" + text[match.end():]
            else:
                fixed[name] = value
        k = counts[example.language]
        counts[example.language] += 1
        out.append(UserTemplate(f"{function.name}/text/-/{example.language}/{k}", example.language, text, fixed))
    return out


def slot_values(function: Function, templates: list[UserTemplate]) -> dict[tuple[str, str], list]:
    """(argument, language) -> the values a slot may take: those of the examples that became slots, then the
    file's `values_en` / `values_zh`, in order, without repeats."""
    out: dict[tuple[str, str], list] = {}
    slotted = {(t.language, name) for t in templates for name in re.findall(r"\{(\w+)\}", t.text)}
    for example in function.examples:
        for name, value in example.arguments.items():
            if (example.language, name) in slotted and re.search(_pattern(str(value)), example.request):
                values = out.setdefault((name, example.language), [])
                if value not in values:
                    values.append(value)
    for arg in function.arguments:
        for language, extra in (("en", arg.values_en), ("zh", arg.values_zh)):
            if (language, arg.name) in slotted:
                values = out.setdefault((arg.name, language), [])
                values += [v for v in extra if v not in values]
    return out


def split_user_function(function: Function) -> dict[str, tuple[list[UserTemplate], dict]]:
    """split -> (templates, slot values). Free-text values are held out like templates (every fourth); enum and
    integer values are shared, as there is nothing new to say about them."""
    templates = derive_templates(function)
    values = slot_values(function, templates)
    out = {}
    for split in ("train", "test"):
        chosen = []
        for language in LANGUAGES:
            of_language = [t for t in templates if t.language == language]
            chosen += [t for i, t in enumerate(of_language) if _held_out(i) == split]
        split_values = {}
        for (name, language), vals in values.items():
            arg = function.argument(name)
            held = [v for i, v in enumerate(vals) if _held_out(i) == split]
            free = arg.type == "string" and arg.enum is None and len(vals) >= 4
            split_values[(name, language)] = held if free else vals
        out[split] = (chosen, split_values)
    return out


def plan_user_rows(function: Function, registry: Registry, split: str, n: int, seed: int) -> list[dict]:
    """`n` rows per language of `function` in `split`: rows as the built-in generator writes them, plus a
    `_render` job for the scene."""
    templates, values = split_user_function(function)[split]
    objects = split_objects()[split]
    every = [c for cat in objects for c in objects[cat]]
    rows = []
    for language in LANGUAGES:
        fits = [t for t in templates if t.language == language]
        for index in range(n):
            rng = random.Random(f"{seed}/user/{function.name}/{split}/{language}/{index}")
            template = rng.choice(fits)
            text, register = surface(template.text, language, rng)
            arguments, shown, provenance = dict(template.fixed), {}, {k: "query" for k in template.fixed}
            for name in re.findall(r"\{(\w+)\}", text):
                value = rng.choice(values[(name, language)])
                text = text.replace("{" + name + "}", str(value), 1)
                arguments[name], shown[name], provenance[name] = value, str(value), "query"
            target = format_call(function.name, arguments, registry)
            if parse_and_validate(target, registry) != Call(function.name, arguments):  # pragma: no cover
                raise ValueError(f"{function.name}: example-derived call {target!r} does not validate")
            main = rng.choice(objects["neutral"] if rng.random() < 0.5 else every)
            distractors = [c.key for c in rng.sample(objects["neutral"], rng.choice([0, 0, 1, 1, 2]))
                           if c.key != main.key]
            style = rng.choice(TRAINING_STYLES)
            image = f"images/{split}/{function.name}_{language}_{index:05d}.jpg"
            rows.append({
                "image": image, "query": text, "language": language, "function": function.name,
                "arguments": arguments, "target": target,
                "meta": {"template": template.id, "kind": "text", "register": register, "slots": shown,
                         "provenance": provenance, "objects": [main.key, *distractors], "count": 1, "style": style,
                         "object_split": object_split_of(main.key)},
                "_render": (style, main.key, distractors, 1, rng.getrandbits(63)),
            })
    return rows


def read_user_functions(path: Path, registry: Registry) -> list[Function]:
    """A function file's functions, checked as the file's own reader does and against the concept table."""
    functions = load_function_file(path, registry)
    try:
        check_concepts(functions, registry)
    except FunctionFileError as exc:
        raise FunctionFileError(f"{path}: {exc}") from None
    return functions


def check_concepts(functions: list[Function], registry: Registry) -> None:
    """Each function's `concepts` must be keys of the concept table that imply no function yet (neutral objects,
    not claimed by another user function); a one-line FunctionFileError otherwise."""
    known = {c.key: c for c in CONCEPTS}
    claimed = {key: f.name for f in registry.user_functions for key in f.concepts}
    for function in functions:
        for key in function.concepts:
            if key not in known:
                raise FunctionFileError(f"function {function.name!r}: 'concepts' names {key!r}, which is not in the "
                                        f"concept table (objects implying nothing yet: "
                                        f"{', '.join(c.key for c in by_category('neutral'))})")
            if known[key].function is not None or key in claimed:
                raise FunctionFileError(f"function {function.name!r}: concept {key!r} already means "
                                        f"{known[key].function or claimed[key]}")
            claimed[key] = function.name


def plan_image_rows(function: Function, registry: Registry, split: str, n: int, seed: int) -> list[dict]:
    """`n` rows per language where only the image decides: a generic request over one of the function's objects."""
    objects = [concept(k) for k in function.concepts]
    if len(objects) >= 4:
        objects = [c for i, c in enumerate(objects) if _held_out(i) == split]
    templates = [t for t in split_templates()[split] if t.function is None and t.kind == "image"
                 and set(t.categories) == set(IMAGE_CATEGORIES) and "{" not in t.text]
    neutral = [c for c in split_objects()[split]["neutral"] if c.key not in function.concepts]
    rows = []
    for language in LANGUAGES:
        fits = [t for t in templates if t.language == language]
        for index in range(n):
            rng = random.Random(f"{seed}/user-image/{function.name}/{split}/{language}/{index}")
            template, main = rng.choice(fits), rng.choice(objects)
            text, register = surface(template.text, language, rng)
            arguments = {function.image_argument: main.name(language)}
            distractors = [c.key for c in rng.sample(neutral, min(len(neutral), rng.choice([0, 0, 1, 1, 2])))]
            style = rng.choice(TRAINING_STYLES)
            rows.append({
                "image": f"images/{split}/{function.name}_image_{language}_{index:05d}.jpg", "query": text,
                "language": language, "function": function.name, "arguments": arguments,
                "target": format_call(function.name, arguments, registry),
                "meta": {"template": template.id, "kind": "ambiguous", "register": register, "slots": {},
                         "provenance": {function.image_argument: "image"}, "objects": [main.key, *distractors],
                         "count": 1, "style": style,
                         "object_split": "train" if split == "train" or len(function.concepts) < 4 else "test"},
                "_render": (style, main.key, distractors, 1, rng.getrandbits(63)),
            })
    return rows


def build_extension_data(out: Path, functions: list[Function], registry: Registry, n_per_function: int,
                         test_per_function: int, replay_per_function: int, seed: int = 0, workers: int = 2) -> dict:
    """train.jsonl (the new functions' rows plus replay rows of the ten and of no function) and test.jsonl (the
    new functions on held-out wordings and values) in `out`, scenes rendered; returns row counts."""
    out.mkdir(parents=True, exist_ok=True)
    for style in TRAINING_STYLES:
        ensure_style(style)
    rows = {"train": [], "test": []}
    for function in functions:
        rows["train"] += plan_user_rows(function, registry, "train", n_per_function, seed)
        rows["test"] += plan_user_rows(function, registry, "test", test_per_function, seed)
        if function.concepts:  # a third more rows, where only the image decides
            rows["train"] += plan_image_rows(function, registry, "train", max(1, n_per_function // 3), seed)
            rows["test"] += plan_image_rows(function, registry, "test", max(1, test_per_function // 2), seed)
    jobs = [(r["image"], r.pop("_render")) for split in rows.values() for r in split]
    if replay_per_function:
        config = BuildConfig(n_per_function=replay_per_function, seed=seed, workers=workers)
        plans = plan_split("train", config, Counter())
        for plan in plans:  # their own folder: the built-in generator names images by function and index too
            plan.image = plan.image.replace("images/train/", "images/replay/")
        replay = [row_json(p, config) for p in plans]
        for row in replay:
            row["meta"]["replay"] = True  # (a stage with distill_weight keeps the model's own answers on these)
        rows["train"] += replay
        jobs += [(p.image, (p.style, p.main, p.distractors, p.count, p.render_seed)) for p in plans]
    random.Random(seed).shuffle(rows["train"])
    _render_all(out, jobs, workers)
    for split, split_rows in rows.items():
        _write_jsonl(out / f"{split}.jsonl", split_rows)
    return {split: len(split_rows) for split, split_rows in rows.items()}
