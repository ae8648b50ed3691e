"""`octopus eval`: function accuracy, argument exact match and latency of an agent on a JSONL file.

Back-end agnostic: anything with `generate(image, query) -> Generation` (the torch agent here; the exported
ONNX runtime plugs in the same way). Rows need `image`, `query` and `function`; `arguments` and `language`
are optional. Image paths are relative to the data file's folder unless absolute.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm


def read_eval_rows(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number} is not JSON") from None
        missing = {"image", "query", "function"} - set(row)
        if missing:
            raise ValueError(f"{path}:{number} lacks {', '.join(sorted(missing))}")
        image = Path(row["image"])
        row["image_path"] = str(image if image.is_absolute() else path.parent / image)
        rows.append(row)
    return rows


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
    totals = [p["timings_ms"].get("total", 0.0) for p in predictions]
    return {
        "rows": len(predictions),
        "function_accuracy": _rate(correct),
        "function_accuracy_by_language": {k: _rate(v) for k, v in sorted(by_language.items())},
        "function_accuracy_by_function": {k: _rate(v) for k, v in sorted(by_function.items())},
        "irrelevant_rejection": _rate(irrelevant),
        "argument_exact_match": _rate(arg_match),
        "argument_exact_match_by_language": {
            lang: _rate(m for p, m in zip(with_args, arg_match) if (p.get("language") or "unknown") == lang)
            for lang in sorted({p.get("language") or "unknown" for p in with_args})},
        "latency_ms": {"p50": _percentile(totals, 0.5), "p95": _percentile(totals, 0.95),
                       "mean": round(statistics.fmean(totals), 1) if totals else None},
    }


def format_metrics(m: dict[str, Any]) -> str:
    lines = [f"rows: {m['rows']}",
             f"function accuracy: {m['function_accuracy']}  by language: {m['function_accuracy_by_language']}",
             f"irrelevant rejection: {m['irrelevant_rejection']}",
             f"argument exact match: {m['argument_exact_match']}  by language: {m['argument_exact_match_by_language']}",
             f"latency ms: p50 {m['latency_ms']['p50']}  p95 {m['latency_ms']['p95']}",
             "per function:"]
    lines += [f"  {name:<20} {acc}" for name, acc in m["function_accuracy_by_function"].items()]
    return "\n".join(lines)
