"""Side by side: how several built models answer each held-out wording, from their `octopus eval --out` rows.

A language's function accuracy on the test split is decided by a few held-out wordings, each missed on most of
its rows (bench/wording_errors.py). This reads the predictions of several models over the same rows and gives,
for one language and request kind, each wording's accuracy under each model, the wordings where they differ
most first: it shows whether two builds miss the same wordings (a limit of the LM) or different ones (which
wording a build happens to miss is a draw, and one build's figure is read against that spread).

    .venv/bin/python bench/wording_compare.py --name wordings_zh_text --language zh --kind text \
        shipped=runs/model/eval/test.predictions.jsonl candidate=runs/b16/eval/test.predictions.jsonl

Prints a markdown table and writes bench/results/<name>.md and .json.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from tables import labelled_files, markdown_table, save_table

from octopus.evaluate import KIND_NAMES


def wording_accuracy(path: Path, language: str, kind: str) -> dict[str, dict]:
    """{template: {"rows", "right", "query" (one of its requests), "taken_for" {function: count}}} over the rows
    of `language` and `kind` in one predictions file."""
    out: dict[str, dict] = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                meta = row["meta"]
                if row["language"] != language or meta["kind"] != kind:
                    continue
                template, want, got = meta["template"], row["function"], row["predicted_function"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise SystemExit(f"error: {path}:{number} is not a prediction row of `octopus eval --out` "
                                 f"({e})") from None
            entry = out.setdefault(template, {"rows": 0, "right": 0, "query": row["query"],
                                              "taken_for": defaultdict(int)})
            entry["rows"] += 1
            entry["right"] += want == got
            if want != got:
                entry["taken_for"][str(got)] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="writes bench/results/<name>.md and .json")
    parser.add_argument("--language", default="zh", choices=("en", "zh"))
    parser.add_argument("--kind", default="text", choices=list(KIND_NAMES),
                        help="meta.kind of the rows: text decides, image names the object, ambiguous (only the "
                             "image decides), irrelevant")
    parser.add_argument("--differ", type=float, default=0.5,
                        help="a wording counts as differing when its accuracy spread across models is at least this")
    parser.add_argument("predictions", nargs="+", metavar="LABEL=PREDICTIONS_JSONL")
    args = parser.parse_args()
    files = labelled_files(args.predictions, "predictions file")
    per_model = {label: wording_accuracy(path, args.language, args.kind) for label, path in files.items()}
    templates = sorted(set().union(*per_model.values()))
    if not templates:
        raise SystemExit(f"error: no {args.language} rows of kind {args.kind!r} in the predictions")
    uneven = [t for t in templates if len({m[t]["rows"] for m in per_model.values() if t in m}) > 1
              or any(t not in m for m in per_model.values())]
    if uneven:
        raise SystemExit(f"error: the predictions do not cover the same rows (wording {uneven[0]})")

    def acc(label: str, t: str) -> float:
        return per_model[label][t]["right"] / per_model[label][t]["rows"]

    def spread(t: str) -> float:
        values = [acc(label, t) for label in per_model]
        return max(values) - min(values)

    order = sorted(templates, key=lambda t: (-spread(t), min(acc(label, t) for label in per_model), t))
    first = next(iter(per_model.values()))  # every model holds the same rows (checked above)
    rows_total = sum(first[t]["rows"] for t in templates)
    totals = {label: sum(m[t]["right"] for t in templates) / rows_total for label, m in per_model.items()}
    differing = [t for t in templates if spread(t) >= args.differ]
    missed_by_all = [t for t in templates if all(acc(label, t) < 0.5 for label in per_model)]
    table_rows = [["**all**", str(rows_total), *(f"**{100 * totals[label]:.1f}**" for label in per_model), ""]]
    for t in order:
        if all(acc(label, t) >= 0.9 for label in per_model):
            continue  # right on 90% of its rows or more under every model: not listed (the footnote says so)
        table_rows.append([f"`{t}` {first[t]['query']}", str(first[t]["rows"]),
                           *(f"{100 * acc(label, t):.0f}" for label in per_model), f"{100 * spread(t):.0f}"])
    header = [f"{args.language} {KIND_NAMES[args.kind]} wording (one request)", "rows", *per_model, "spread"]
    table = markdown_table(header, table_rows)
    table += (f"\n\n{len(templates)} wordings; {len(differing)} differ by ≥ {100 * args.differ:.0f} points between "
              f"the models, {len(missed_by_all)} are missed (< 50%) by all. Wordings right on ≥ 90% of their rows "
              "under every model are not listed.")
    report = {"language": args.language, "kind": args.kind, "predictions": {k: str(v) for k, v in files.items()},
              "accuracy": totals, "wordings": len(templates), "differing": differing, "missed_by_all": missed_by_all,
              "per_wording": {t: {label: {**m[t], "taken_for": dict(m[t]["taken_for"])}
                                  for label, m in per_model.items()} for t in order}}
    save_table(args.name, table, report)


if __name__ == "__main__":
    main()
