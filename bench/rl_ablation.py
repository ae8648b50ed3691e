"""Stage 3 before / after on every held-out row: the RL issue's metrics for several agents, paired row by row.

    .venv/bin/python bench/rl_ablation.py --before runs/default/agent \
        --after "rules=runs/abl_rules/stage3_rl/agent" --after "both=runs/rm_onpolicy/stage3_rl/agent" ...

A 400-row sample holds 45 Chinese image-decided rows, so one row moves that metric 2.2 points and the issue's
"no other metric down more than 0.5 point" cannot be read off it. This scores *all* rows of `test` (4,444) and
`test_trained_objects` (800), plus every image-decided row of `test` over another category's image (the swap),
teacher-forced: the function is the first token's argmax among the functional tokens (equal to greedy's) and a
call is exact when every gold token is the argmax (greedy writes it; greedy's enum constraint can only add
exact calls). No reject bias is applied, to any agent. For each metric and agent it reports the change from
`before` with the rows gained and lost (a paired count: a change of 3 rows out of 480 is noise, 30 is not).
Stage 3 freezes the vision tower, so one feature cache (runs/proxy) serves every agent.

Prints a markdown table and writes bench/results/<name>.{md,json}.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tables import markdown_table, save_table
from teacher_forced import sample_rows, score

from octopus.evaluate import KIND_NAMES, swap_rows
from octopus.functions import FUNCTIONS
from octopus.model.agent import OctopusAgent


def row_groups(row: dict, split: str) -> list[tuple[str, str]]:
    """(metric, which of the row's scores counts) for each metric the row belongs to."""
    lang, kind = row["language"], KIND_NAMES.get(row.get("meta", {}).get("kind"), "?")
    prefix = "" if split == "test" else "trained objects: "
    out = [(f"{prefix}function {lang}", "function"), (f"{prefix}{kind} {lang}", "function")]
    if row["function"] is not None:
        out.append((f"{prefix}argument exact {lang}", "exact"))
        out.append((f"{prefix}argument exact, {kind} {lang}", "exact"))
    return out


def evaluate(model: str, splits: dict[str, list[dict]], swapped: list[dict], cache: Path) -> dict[str, list[bool]]:
    """Per metric, one hit per row (rows in a fixed order, so two agents' lists pair up)."""
    agent = OctopusAgent.load(model).eval()
    hits: dict[str, list[bool]] = {}
    for split, rows in splits.items():
        for row, scored in zip(rows, score(agent, rows, cache / f"cache_{split}", progress=True)):
            for metric, field in row_groups(row, split):
                hits.setdefault(metric, []).append(scored[field])
    if swapped:
        scored = score(agent, swapped, cache / "cache_test_swap", progress=True)
        hits["image swap follows"] = [s["function"] for s in scored]
    return hits


def rate(values: list[bool]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the stage-2 agent")
    parser.add_argument("--after", action="append", required=True, metavar="NAME=AGENT", help="an agent after RL")
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--rows", type=int, default=None, help="a seeded sample of N rows per split (default: all)")
    parser.add_argument("--cache", default="runs/proxy", help="where the rows' vision features are cached")
    parser.add_argument("--name", default="rl_ablation", help="bench/results/<name>.{md,json}")
    args = parser.parse_args()
    models = {"before": args.before}
    for item in args.after:
        name, sep, path = item.partition("=")
        if not sep or not (Path(path) / "config.json").is_file():
            raise SystemExit(f"error: expected NAME=AGENT_DIR of a saved agent, got {item!r}")
        models[name] = path
    splits = {split: sample_rows(Path(args.data), split, args.rows) for split in ("test", "test_trained_objects")}
    names = [f.name for f in FUNCTIONS]
    swapped = swap_rows(splits["test"])
    for row in swapped:  # the first token alone is read: right when it follows the new image's function
        row["target"] = f"<nexa_{names.index(row['function'])}>"
    results = {name: evaluate(path, splits, swapped, Path(args.cache)) for name, path in models.items()}
    before = results["before"]
    lines = []
    report = {"models": models, "metrics": {}}
    for metric in sorted(before, key=lambda m: (m.startswith("trained"), "exact" in m, m)):
        base = before[metric]
        cells, entry = [], {"rows": len(base), "before": round(rate(base), 4), "after": {}}
        for name, hits in results.items():
            if name == "before":
                continue
            gained = sum(h and not b for h, b in zip(hits[metric], base))
            lost = sum(b and not h for h, b in zip(hits[metric], base))
            delta = 100 * (rate(hits[metric]) - rate(base))
            # McNemar's exact two-sided p for the discordant pairs: is the change more than row-level noise?
            n, k = gained + lost, min(gained, lost)
            p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
            entry["after"][name] = {"rate": round(rate(hits[metric]), 4), "gained": gained, "lost": lost,
                                    "p": round(p, 4)}
            cells.append(f"{100 * rate(hits[metric]):.1f}% ({delta:+.1f}; +{gained}/−{lost}{'*' if p < 0.05 else ''})")
        report["metrics"][metric] = entry
        lines.append([metric, str(len(base)), f"{100 * rate(base):.1f}%", *cells])
    table = markdown_table(["metric", "rows", "before (stage 2)", *(n for n in models if n != "before")], lines)
    table += "\n\n(+gained/−lost rows against before; * McNemar p < 0.05)"
    save_table(args.name, table, report)


if __name__ == "__main__":
    main()
