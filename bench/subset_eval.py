"""Stage-2 agents side by side on seeded subsets of the held-out splits, decoded in full by `octopus eval` (the
torch agent, fp32): function accuracy and exact calls where the text decides (Chinese `test`, Chinese new
wordings, English `test`), Chinese irrelevant requests declined, and Chinese exact calls per function. About 1.5 s a
row on 2 cores, so 750 rows an agent take ~19 min; a cheaper proxy than `make model`'s whole int8 evaluation.

    .venv/bin/python bench/subset_eval.py --data runs/data --cache runs/evalsets --name composed_wordings \
        base=runs/tr/stage2_functional/agent composed=runs/comp/stage2_functional/agent

Each (agent, subset) eval is kept under --cache (m_<label>_<subset>.json, pred_<label>_<subset>.jsonl) and not
run again. Prints a markdown table and writes bench/results/<name>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tables import labelled_files, markdown_table, save_table

from octopus.evaluate import sample_rows

# name: (split, language, kind, rows)
SUBSETS = {"test_zh_text": ("test", "zh", "text", 300), "new_zh_text": ("test_new_wordings", "zh", "text", 200),
           "test_zh_irr": ("test", "zh", "irrelevant", 100), "test_en_text": ("test", "en", "text", 150)}


def write_subset(data: Path, cache: Path, name: str) -> Path:
    """The subset's rows (a seeded sample, file order kept), images pointed back at `data`."""
    path = cache / f"{name}.jsonl"
    if path.is_file():
        return path
    split, language, kind, n = SUBSETS[name]
    rows = [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["language"] == language and r["meta"]["kind"] == kind]
    rows = sample_rows(rows, n)
    to_data = Path(os.path.relpath(data.resolve(), cache.resolve()))  # eval reads images beside the file
    lines = [json.dumps({**r, "image": str(to_data / r["image"])}, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def evaluate(agent: Path, label: str, subset: Path, cache: Path) -> tuple[dict, list[dict]]:
    metrics, predictions = cache / f"m_{label}_{subset.stem}.json", cache / f"pred_{label}_{subset.stem}.jsonl"
    if not (metrics.is_file() and metrics.stat().st_size and predictions.is_file()):
        octopus = Path(sys.executable).with_name("octopus")
        with open(metrics, "w") as out:
            subprocess.run([str(octopus), "eval", "--model", str(agent), "--data", str(subset), "--json", "--out",
                            str(predictions)], stdout=out, check=True)
        print(f"{label} {subset.stem} evaluated", flush=True)
    return (json.loads(metrics.read_text()),
            [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()])


def exact(row: dict) -> bool:
    return row["predicted_function"] == row["function"] and row["predicted_arguments"] == row["arguments"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/data"))
    parser.add_argument("--cache", type=Path, default=Path("runs/evalsets"))
    parser.add_argument("--subsets", nargs="+", choices=tuple(SUBSETS), default=list(SUBSETS))
    parser.add_argument("--name", required=True, help="writes bench/results/<name>.md and .json")
    parser.add_argument("agents", nargs="+", metavar="LABEL=AGENT_DIR")
    args = parser.parse_args()
    agents = labelled_files(args.agents, "agent folder (with config.json)", inside="config.json")
    args.cache.mkdir(parents=True, exist_ok=True)
    report: dict = {"agents": {k: str(v) for k, v in agents.items()}, "subsets": {}}
    for name in args.subsets:
        subset = write_subset(args.data, args.cache, name)
        for label, agent in agents.items():
            metrics, predictions = evaluate(agent, label, subset, args.cache)
            per_function = Counter((r["function"], exact(r)) for r in predictions if r["language"] == "zh")
            report["subsets"].setdefault(name, {})[label] = {
                "rows": metrics["rows"], "function_accuracy": metrics["function_accuracy"],
                "argument_exact_match": metrics["argument_exact_match"],
                "irrelevant_rejection": metrics.get("irrelevant_rejection"),
                "exact_calls_by_function": {f: [per_function[(f, True)], per_function[(f, True)] +
                                                per_function[(f, False)]]
                                            for f in sorted({f for f, _ in per_function})}}
    table = []
    for name in args.subsets:
        results = report["subsets"][name]
        rows = next(iter(results.values()))["rows"]
        if SUBSETS[name][2] == "irrelevant":
            table.append([f"{name}: declined ({rows} rows)", *(f"{100 * (r['irrelevant_rejection'] or 0):.1f}"
                                                               for r in results.values())])
            continue
        table.append([f"{name}: function ({rows} rows)", *(f"{100 * r['function_accuracy']:.1f}"
                                                           for r in results.values())])
        table.append([f"{name}: exact calls", *(f"{100 * r['argument_exact_match']:.1f}" for r in results.values())])
    if "test_zh_text" in report["subsets"]:
        results = report["subsets"]["test_zh_text"]
        functions = sorted({f for r in results.values() for f in r["exact_calls_by_function"]})
        for f in functions:
            table.append([f"test_zh_text: {f} exact", *("{}/{}".format(*r["exact_calls_by_function"].get(f, (0, 0)))
                                                        for r in results.values())])
    save_table(args.name, markdown_table(["fp32 torch agent, full decode", *agents], table), report)


if __name__ == "__main__":
    main()
