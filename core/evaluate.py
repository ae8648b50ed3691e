"""`octopus eval`: function accuracy, argument exact match and latency of an agent on a JSONL file.

Back-end agnostic: anything with `generate(image, query) -> Generation` (the torch agent here; the exported
ONNX runtime plugs in the same way). Rows need `image`, `query` and `function`; `arguments` and `language`
are optional. Image paths are relative to the data file's folder unless absolute.

Overall accuracy hides whether the agent sees (text-only shortcuts inflate it), so metrics also split by
request kind (`meta.kind`: the text decides / the image names the object / only the image decides /
irrelevant), by whether the pictured object was trained on (`meta.object_split`), and `swap_rows` builds the
image-swap check: an image-decided query over the image of a row of the same template whose object is of
another category; a model that sees follows the new image's function.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm


def jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed line) of each non-blank line of a JSONL file; a ValueError naming the line that is
    not JSON."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number} is not JSON") from None


def read_eval_rows(path: Path) -> list[dict]:
    rows = []
    for number, row in jsonl_rows(path):
        missing = {"image", "query", "function"} - set(row)
        if missing:
            raise ValueError(f"{path}:{number} lacks {', '.join(sorted(missing))}")
        image = Path(row["image"])
        row["image_path"] = str(image if image.is_absolute() else path.parent / image)
        rows.append(row)
    return rows


KIND_NAMES = {"text": "text_decides", "image": "image_names_object", "ambiguous": "image_decides",
              "irrelevant": "irrelevant"}


def sample_rows(rows: list[dict], limit: int | None, seed: int = 0) -> list[dict]:
    """A seeded sample of `limit` rows kept in file order (a stride could alias the generator's patterns)."""
    import random

    if not limit or limit >= len(rows):
        return rows
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), limit))]


def swap_rows(rows: list[dict], seed: int = 0) -> list[dict]:
    """For each image-decided row, the same query over the image of a row with the same template whose
    function differs; `function` is the donor's (its image decides), `swapped_from` the original function."""
    by_template: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("meta", {}).get("kind") == "ambiguous":
            by_template[row["meta"]["template"]].append(row)
    rng = random.Random(seed)
    out = []
    for _, group in sorted(by_template.items()):
        for row in group:
            donors = [d for d in group if d["function"] != row["function"]]
            if not donors:
                continue
            donor = rng.choice(donors)
            out.append({**row, "image": donor["image"], "image_path": donor["image_path"],
                        "function": donor["function"], "arguments": donor.get("arguments", {}),
                        "swapped_from": row["function"], "meta": {**row["meta"], "objects": donor["meta"]["objects"],
                                                                  "object_split": donor["meta"].get("object_split")}})
    return out


def _rate(hits: Iterable[bool]) -> float | None:
    hits = list(hits)
    return round(sum(hits) / len(hits), 4) if hits else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 1)


def evaluate(backend, rows: list[dict], progress: bool = True) -> tuple[dict[str, Any], list[dict]]:
    """(metrics, predictions): one prediction per row (the row plus predicted fields)."""
    predictions = []
    for row in tqdm(rows, desc="eval", unit="row", disable=not progress, mininterval=2):
        generation = backend.generate(row["image_path"], row["query"])
        out = {k: v for k, v in row.items() if k != "image_path"}
        out.update(predicted_function=generation.function, predicted_arguments=generation.arguments,
                   raw=generation.raw, timings_ms={k: round(v, 2) for k, v in generation.timings_ms.items()})
        predictions.append(out)
    return metrics(predictions), predictions


def metrics(predictions: list[dict]) -> dict[str, Any]:
    correct = [p["predicted_function"] == p["function"] for p in predictions]
    by_function: dict[str, list[bool]] = defaultdict(list)
    by_language: dict[str, list[bool]] = defaultdict(list)
    for p, hit in zip(predictions, correct):
        by_function[p["function"] or "none"].append(hit)
        by_language[p.get("language") or "unknown"].append(hit)
    with_args = [p for p in predictions if "arguments" in p and p["function"] is not None]
    arg_match = [p["predicted_function"] == p["function"] and p["predicted_arguments"] == p["arguments"]
                 for p in with_args]
    irrelevant = [p["predicted_function"] is None for p in predictions if p["function"] is None]
    irrelevant_by_language: dict[str, list[bool]] = defaultdict(list)
    for p in predictions:
        if p["function"] is None:
            irrelevant_by_language[p.get("language") or "unknown"].append(p["predicted_function"] is None)
    by_kind: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    by_object: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for p, hit in zip(predictions, correct):
        meta = p.get("meta") or {}
        kind = KIND_NAMES.get(meta.get("kind"), "unknown")
        language = p.get("language") or "unknown"
        by_kind[kind][language].append(hit)
        by_kind[kind]["all"].append(hit)
        if meta.get("kind") in ("image", "ambiguous") and meta.get("object_split"):
            objects = "trained_objects" if meta["object_split"] == "train" else "held_out_objects"
            by_object[f"{kind}/{objects}"][language].append(hit)
            by_object[f"{kind}/{objects}"]["all"].append(hit)
    # argument exact match by request kind: a held-out object's name (image rows of `test`) is a word the agent
    # never wrote in training, unlike a value copied from the request, so the overall figure mixes two problems
    args_by_kind: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for p, m in zip(with_args, arg_match):
        kind = KIND_NAMES.get((p.get("meta") or {}).get("kind"), "unknown")
        args_by_kind[kind][p.get("language") or "unknown"].append(m)
        args_by_kind[kind]["all"].append(m)
    totals = [p["timings_ms"].get("total", 0.0) for p in predictions]
    return {
        "rows": len(predictions),
        "function_accuracy": _rate(correct),
        "function_accuracy_by_language": {k: _rate(v) for k, v in sorted(by_language.items())},
        "function_accuracy_by_function": {k: _rate(v) for k, v in sorted(by_function.items())},
        "irrelevant_rejection": _rate(irrelevant),
        "irrelevant_rejection_by_language": {k: _rate(v) for k, v in sorted(irrelevant_by_language.items())},
        "function_accuracy_by_kind": {k: {lang: _rate(v) for lang, v in sorted(d.items())}
                                      for k, d in sorted(by_kind.items())},
        "image_rows_by_object_split": {k: {lang: _rate(v) for lang, v in sorted(d.items())}
                                       for k, d in sorted(by_object.items())},
        "argument_exact_match": _rate(arg_match),
        "argument_exact_match_by_language": {
            lang: _rate(m for p, m in zip(with_args, arg_match) if (p.get("language") or "unknown") == lang)
            for lang in sorted({p.get("language") or "unknown" for p in with_args})},
        "argument_exact_match_by_kind": {k: {lang: _rate(v) for lang, v in sorted(d.items())}
                                         for k, d in sorted(args_by_kind.items())},
        "latency_ms": {"p50": _percentile(totals, 0.5), "p95": _percentile(totals, 0.95),
                       "mean": round(statistics.fmean(totals), 1) if totals else None},
    }


def format_metrics(m: dict[str, Any]) -> str:
    lines = [f"rows: {m['rows']}",
             f"function accuracy: {m['function_accuracy']}  by language: {m['function_accuracy_by_language']}",
             f"irrelevant rejection: {m['irrelevant_rejection']}",
             f"argument exact match: {m['argument_exact_match']}  by language: {m['argument_exact_match_by_language']}",
             f"latency ms: p50 {m['latency_ms']['p50']}  p95 {m['latency_ms']['p95']}",
             *([f"reject bias: {m['reject_bias']}"] if m.get("reject_bias") else []),
             "by request kind (all / per language):"]
    lines += [f"  {kind:<20} {d.get('all')}  {_languages(d)}" for kind, d in m["function_accuracy_by_kind"].items()]
    if m.get("argument_exact_match_by_kind"):
        lines.append("argument exact match by request kind:")
        lines += [f"  {kind:<20} {d.get('all')}  {_languages(d)}"
                  for kind, d in m["argument_exact_match_by_kind"].items()]
    if m["image_rows_by_object_split"]:
        lines.append("image rows by object (trained on / held out):")
        lines += [f"  {k:<40} {d.get('all')}  {_languages(d)}" for k, d in m["image_rows_by_object_split"].items()]
    if "image_swap" in m:
        s = m["image_swap"]
        lines.append(f"image swap: {s['rows']} image-decided rows over another category's image; prediction follows "
                     f"the new image {s['follow_rate']}, keeps the old answer {s['kept_original_rate']}  "
                     f"{s['follow_rate_by_language']}")
    lines.append("per function:")
    lines += [f"  {name:<20} {acc}" for name, acc in m["function_accuracy_by_function"].items()]
    return "\n".join(lines)


def _languages(d: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items() if k != "all")


def swap_metrics(predictions: list[dict]) -> dict[str, Any]:
    """How often an image-decided prediction follows a swapped-in image of another category."""
    by_language: dict[str, list[bool]] = defaultdict(list)
    for p in predictions:
        by_language[p.get("language") or "unknown"].append(p["predicted_function"] == p["function"])
    return {"rows": len(predictions),
            "follow_rate": _rate(p["predicted_function"] == p["function"] for p in predictions),
            "kept_original_rate": _rate(p["predicted_function"] == p["swapped_from"] for p in predictions),
            "follow_rate_by_language": {k: _rate(v) for k, v in sorted(by_language.items())}}
