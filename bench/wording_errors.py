"""Which held-out wordings a model misses: teacher-forced function accuracy per wording (template) of a split.

The test split's wordings are held out of training, so a wording the model does not understand fails on most of
its rows, whatever the image or the slot values: a language's accuracy is then decided by a few wordings, not
spread evenly. This scores every row of one language of a split (by request kind), lists the worst wordings
with what they were taken for, and how much of the misses the worst few carry. Writes
bench/results/wording_errors_<language>.{md,json}.

    .venv/bin/python bench/wording_errors.py --model runs/quick/stage2_functional/agent --data runs/data \
        --language zh
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from tables import markdown_table, save_table
from teacher_forced import score

from octopus.evaluate import KIND_NAMES
from octopus.functions import FUNCTIONS
from octopus.model.agent import OctopusAgent
from octopus.training.datasets import read_data_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an agent folder")
    parser.add_argument("--data", type=Path, default=Path("runs/data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--language", default="zh", choices=("en", "zh"))
    parser.add_argument("--kinds", nargs="+", default=["text", "irrelevant", "ambiguous"], choices=list(KIND_NAMES))
    parser.add_argument("--worst", type=int, default=6, help="wordings listed per kind")
    parser.add_argument("--cache", type=Path, default=Path("runs/proxy"))
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"error: {args.model} is not a saved agent (no config.json)")
    try:
        rows = [r for r in read_data_file(args.data, f"{args.split}.jsonl")
                if r["language"] == args.language and r["meta"].get("kind") in args.kinds]
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    agent = OctopusAgent.load(args.model).eval()
    names = {token: f.name for token, f in zip(agent.tokens.function_ids, FUNCTIONS)}
    scored = score(agent, rows, args.cache / f"cache_{args.split}_{args.language}", progress=True)
    by_wording: dict[tuple[str, str], list] = defaultdict(list)
    for row, s in zip(rows, scored):
        by_wording[(row["meta"]["kind"], row["meta"]["template"])].append((row, s))
    lines, report = [], {"model": str(args.model), "split": args.split, "language": args.language, "kinds": {}}
    for kind in args.kinds:
        wordings = {t: v for (k, t), v in by_wording.items() if k == kind}
        if not wordings:
            continue
        misses = sum(not s["function"] for v in wordings.values() for _, s in v)
        total = sum(len(v) for v in wordings.values())
        ranked = sorted(wordings.items(), key=lambda item: sum(s["function"] for _, s in item[1]) / len(item[1]))
        carried = 0
        entries = []
        for template, pairs in ranked:
            wrong = [names.get(s["first"], "no function") for _, s in pairs if not s["function"]]
            carried += len(wrong)
            entries.append({"template": template, "example": pairs[0][0]["query"], "rows": len(pairs),
                            "function": round(1 - len(wrong) / len(pairs), 4),
                            "taken_for": Counter(wrong).most_common(2),
                            "misses_carried": round(carried / max(1, misses), 4)})
        for e in entries[:args.worst]:
            taken = ", ".join(f"{f} {n}" for f, n in e["taken_for"]) or "–"
            lines.append([KIND_NAMES[kind], e["example"], str(e["rows"]), f"{e['function']:.0%}", taken,
                          f"{e['misses_carried']:.0%}"])
        report["kinds"][kind] = {"rows": total, "wordings": len(wordings), "function": round(1 - misses / total, 4),
                                 "misses": misses, "by_wording": entries}
    table = markdown_table(["kind", "a row of the wording", "rows", "function", "taken for (rows)",
                            "misses carried by this and the worse ones"], lines)
    table += "\n\n" + "; ".join(
        f"{KIND_NAMES[k]}: {v['function']:.1%} of {v['rows']} rows over {v['wordings']} wordings, {v['misses']} missed"
        for k, v in report["kinds"].items()) + (f" ({args.split}, {args.language}, teacher-forced, {args.model}).")
    save_table(f"wording_errors_{args.language}", table, report)


if __name__ == "__main__":
    main()
