"""Function accuracy by request kind and language on every row of a split, teacher-forced, for several torch
agents side by side: the first token's scores only (one batched forward a row), which for the function are
exact for greedy decoding, and a sweep of the reject bias over the same scores (`bench/reject_bias.py`'s rule).

The cheap read of a stage-2 lever on whole splits (minutes, not the 30 an int8 `octopus eval` of them takes);
`bench/teacher_forced.py` reads whole calls on a sample.

    .venv/bin/python bench/first_token_kinds.py --name stage2_budget \
        shipped=runs/base/stage2_functional/agent "6,000 examples"=runs/ex6k/stage2_functional/agent

Prints a markdown table and writes bench/results/<name>.json and .md; each agent's per-row scores are kept
beside the feature cache (`--cache`) and reused when the agent, split and rows match.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from reject_bias import picks, scored_rows, scores_key
from tables import labelled_files, markdown_table, save_table

KINDS = {"text": "text decides", "image": "image names the object", "ambiguous": "only the image decides",
         "irrelevant": "irrelevant declined"}
BIASES = (0.0, 1.0, 1.5, 2.0, 2.5)


def rates(rows: list[dict], logprobs: list[list[float]], gold: list[int]) -> dict:
    """Per language: accuracy by kind at no bias, and the fitting / irrelevant / all rates over BIASES."""
    out: dict[str, dict] = {}
    for language in sorted({r["language"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["language"] == language]
        kinds: dict[str, dict] = {}
        for kind in KINDS:
            ks = [i for i in idx if rows[i]["meta"].get("kind") == kind]
            if ks:
                hits = sum(p == gold[i] for i, p in zip(ks, picks([logprobs[i] for i in ks], 0.0)))
                kinds[kind] = {"rows": len(ks), "right": round(100 * hits / len(ks), 1)}
        sweep = []
        for bias in BIASES:
            ok = [p == gold[i] for i, p in zip(idx, picks([logprobs[i] for i in idx], bias))]
            irr = [o for i, o in zip(idx, ok) if rows[i]["meta"].get("kind") == "irrelevant"]
            fits = [o for i, o in zip(idx, ok) if rows[i]["meta"].get("kind") != "irrelevant"]
            sweep.append({"bias": bias, "fits": round(100 * sum(fits) / max(1, len(fits)), 1),
                          "irrelevant": round(100 * sum(irr) / max(1, len(irr)), 1),
                          "all": round(100 * sum(ok) / len(ok), 2)})
        out[language] = {"kinds": kinds, "sweep": sweep}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("agents", nargs="+", help="label=path of a torch agent folder")
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--splits", nargs="+", default=["test", "test_new_wordings"],
                        help="split names; SPLIT:LANG keeps one language's rows (test_new_wordings:zh)")
    parser.add_argument("--cache", default="runs/proxy", help="where the rows' vision features and scores are kept")
    parser.add_argument("--name", default="first_token_kinds", help="bench/results/<name>.json and .md")
    args = parser.parse_args()
    from octopus.training.datasets import read_data_file

    agents = labelled_files(args.agents, "agent", inside="config.json")
    report: dict[str, dict] = {}
    for label, model in agents.items():
        report[label] = {}
        for split in args.splits:
            name, _, language = split.partition(":")
            rows = [r for r in read_data_file(Path(args.data), f"{name}.jsonl")
                    if not language or r["language"] == language]
            if not rows:
                raise SystemExit(f"error: {name} has no rows in language {language!r}")
            cache = Path(args.cache)
            name = hashlib.sha256(json.dumps(scores_key(model, split, rows), sort_keys=True).encode()).hexdigest()
            logprobs, gold = scored_rows(model, split, rows, cache, cache / f"first_token_{name[:16]}.json")
            report[label][split] = rates(rows, logprobs, gold)
    lines = []
    first = report[next(iter(report))]
    for split in args.splits:
        for language, result in first[split].items():
            for kind, cell in result["kinds"].items():
                lines.append([f"{split} {language.upper()}: {KINDS[kind]} ({cell['rows']:,} rows)"]
                             + [f"{report[a][split][language]['kinds'][kind]['right']}%" for a in report])
            for i, s in enumerate(result["sweep"]):
                lines.append([f"{split} {language.upper()}, all rows at reject bias {s['bias']:+.1f}: fitting right "
                              "/ irrelevant declined / all"]
                             + [" / ".join(f"{report[a][split][language]['sweep'][i][k]}" for k in
                                           ("fits", "irrelevant", "all")) + "%" for a in report])
    table = markdown_table(["teacher-forced, first token", *report], lines)
    save_table(args.name, table, {"method": __doc__.split("\n")[0], "agents": {a: str(p) for a, p in agents.items()},
                                  "results": report})


if __name__ == "__main__":
    main()
