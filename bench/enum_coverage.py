"""Exact calls on the test split's text-decided requests with an enumerated argument (pet_care's service,
smart_recycling's material, interior_design's style), by the value the request asks for, for several agents.

Until d314fe7 the held-out fourth of the slot values took pet_care's only "boarding" phrase and 3 of the 4
organic recyclables, so no model trained on a request for boarding and one item taught "organic". This shows
what the data fix buys, value by value, teacher-forced on every such row of `test` (whole-call exact: every
gold token is the argmax, as in bench/teacher_forced.py; no reject bias):

    .venv/bin/python bench/enum_coverage.py --model "before=runs/model/stage2_functional/agent" \
        --model "after=runs/model4/stage2_functional/agent"

Prints a markdown table and writes bench/results/enum_coverage.{md,json}.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from tables import labelled_files, markdown_table, save_table
from teacher_forced import sample_rows, score

from octopus.functions import get_function
from octopus.model.agent import OctopusAgent


def enumerated(row: dict) -> list[str]:
    """`arg=value` for each argument of the row's call that the function's schema enumerates."""
    if not row["function"]:
        return []
    enums = {a.name for a in get_function(row["function"]).arguments if a.enum is not None}
    return [f"{arg}={value}" for arg, value in sorted(row["arguments"].items()) if arg in enums]


def enum_rows(data: Path) -> list[dict]:
    return [r for r in sample_rows(data, "test", None) if r["meta"]["kind"] == "text" and enumerated(r)]


def groups_of(row: dict) -> list[str]:
    return [f"{row['function']}/{row['language']}", *(f"{e}/{row['language']}" for e in enumerated(row))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="label=agent folder (repeatable)")
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--cache", default="runs/proxy/cache_test", help="the test split's vision features")
    args = parser.parse_args()
    models = {label: str(path) for label, path in labelled_files(args.model, "agent folder", "config.json").items()}
    rows = enum_rows(Path(args.data))
    report: dict = {"rows": len(rows), "models": models, "exact": {}}
    for label, path in models.items():
        results = score(OctopusAgent.load(path).eval(), rows, Path(args.cache), progress=True)
        exact: dict[str, list[bool]] = defaultdict(list)
        for row, result in zip(rows, results):
            for key in groups_of(row):
                exact[key].append(result["exact"])
        report["exact"][label] = {k: [round(sum(v) / len(v), 4), len(v)] for k, v in sorted(exact.items())}
    keys = sorted({k for by_key in report["exact"].values() for k in by_key},
                  key=lambda k: ("=" in k, k))
    rows = []
    for key in keys:
        cells = [report["exact"][label].get(key) for label in models]
        n = next(c[1] for c in cells if c)
        rows.append([key, str(n), *(f"{100 * c[0]:.1f}%" if c else "–" for c in cells)])
    save_table("enum_coverage", markdown_table(["exact call, teacher-forced", "rows", *models], rows), report)


if __name__ == "__main__":
    main()
