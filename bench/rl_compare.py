"""Stage 3 before / after: the metrics the RL issue names, side by side, from `octopus eval --json` outputs.

    python bench/rl_compare.py --before before.json --after "rules+RM=after.json" [--after "random=r.json" ...]

Each input is one `octopus eval --json` result on the same rows (e.g. test.jsonl, --limit 400 --swap, int8).
Prints a markdown table (function accuracy per language and per request kind, argument exact match and
irrelevant rejection per language, image-swap follow rate) with each run's change from `before`, and writes
it with the raw figures to bench/results/rl.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tables import markdown_table, save_table


def figures(result: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for lang, value in result["function_accuracy_by_language"].items():
        out[f"function accuracy {lang}"] = value
    for kind, by_lang in result["function_accuracy_by_kind"].items():
        for lang in ("en", "zh"):
            out[f"{kind} {lang}"] = by_lang.get(lang)
    for lang, value in result["argument_exact_match_by_language"].items():
        out[f"argument exact match {lang}"] = value
    for lang, value in result["irrelevant_rejection_by_language"].items():
        out[f"irrelevant rejection {lang}"] = value
    if "image_swap" in result:
        out["image swap follow"] = result["image_swap"]["follow_rate"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="eval JSON of the stage-2 model")
    parser.add_argument("--after", action="append", required=True, metavar="NAME=FILE", help="eval JSON after RL")
    parser.add_argument("--name", default="rl", help="output name under bench/results/")
    args = parser.parse_args()
    before = figures(json.loads(Path(args.before).read_text()))
    runs = {}
    for item in args.after:
        name, _, file = item.partition("=")
        runs[name] = figures(json.loads(Path(file).read_text()))
    rows = []
    for key, value in before.items():
        cells = []
        for run in runs.values():
            after = run.get(key)
            cells.append("—" if after is None or value is None else f"{after:.3f} ({after - value:+.3f})")
        rows.append([key, "—" if value is None else f"{value:.3f}", *cells])
    table = markdown_table(["metric", "before (stage 2)", *runs], rows)
    save_table(args.name, table, {"before": before, "after": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
