"""Fast grounding proxy: teacher-forced function accuracy and whole-call exact match, by request kind,
language and object split (and for calls with an argument only the picture names), plus the image-swap
follow rate, in one batched forward per 32 rows.

Both numbers equal greedy decoding's (the first token is constrained to the functional tokens, as at
inference; a call is exact when every target token is the argmax given the ones before it, which is when
greedy reproduces it), at a fraction of the cost: vision features are cached under runs/proxy/. Greedy
decoding also keeps enumerated and copied values inside the schema and the request
(`octopus.generation.ArgumentConstraint`), so there an exact call only needs the gold value to be the best
allowed one: this exact match is a lower bound of greedy's, and greedy counts a call whose function token is
right but whose arguments fail validation as wrong. Iterate on this; confirm with `octopus eval`. Writes
bench/results/teacher_forced.json.

    .venv/bin/python bench/teacher_forced.py --model runs/quick/agent --data runs/data --rows 1000
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import torch

from octopus.evaluate import KIND_NAMES, swap_rows
from octopus.functions import FUNCTIONS
from octopus.model.agent import OctopusAgent
from octopus.training.datasets import FeatureCache, read_data_file
from octopus.training.rl import teacher_forced as rl_teacher_forced

RESULTS = Path(__file__).parent / "results"


def score(agent, rows: list[dict], cache_dir: Path, batch_size: int = 32, progress: bool = False) -> list[dict]:
    """Training's scorer (`octopus.training.rl.teacher_forced`, logits only where there are labels) over the
    rows' vision features, cached under `cache_dir`: per row `function`, `exact`, `first` and `gold_prob`."""
    features = FeatureCache(cache_dir, agent, [r["image"] for r in rows])
    return rl_teacher_forced(agent, rows, features, batch_size, progress)


def teacher_forced(agent, rows: list[dict], cache_dir: Path, batch_size: int = 32) -> list[tuple[bool, bool, int]]:
    """(function right, whole call right, predicted first token) per row."""
    return [(s["function"], s["exact"], s["first"]) for s in score(agent, rows, cache_dir, batch_size)]


def sample_rows(data: Path, split: str, n: int | None) -> list[dict]:
    """A seeded sample of N rows of a split (all of them when N is None), with `image_path` set as
    `octopus.evaluate.swap_rows` reads it."""
    rows = read_data_file(data, f"{split}.jsonl")
    random.Random(0).shuffle(rows)
    return [{**r, "image_path": r["image"]} for r in rows[:n]]


def summarise(rows: list[dict], results: list[tuple[bool, bool, int]]) -> dict[str, dict]:
    groups: dict[str, list] = defaultdict(list)
    for row, (function_ok, exact, _) in zip(rows, results):
        meta = row.get("meta", {})
        kind = KIND_NAMES.get(meta.get("kind"), "?")
        keys = [f"all/{row['language']}", f"{kind}/{row['language']}"]
        if meta.get("kind") in ("image", "ambiguous"):
            keys.append(f"{kind}/objects:{meta.get('object_split')}")
        if "image" in (meta.get("provenance") or {}).values():  # an argument only the picture names
            keys.append(f"argument named by the image/{row['language']}")
        for key in keys:
            groups[key].append((function_ok, exact))
    return {k: {"function": round(sum(f for f, _ in v) / len(v), 4), "exact": round(sum(e for _, e in v) / len(v), 4),
                "rows": len(v)} for k, v in sorted(groups.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--rows", type=int, default=1000, help="a seeded sample of N rows per split")
    parser.add_argument("--splits", nargs="+", default=["test", "test_trained_objects"])
    parser.add_argument("--cache", default="runs/proxy", help="where the vision features of the rows are cached")
    parser.add_argument("--out", default=str(RESULTS / "teacher_forced.json"))
    args = parser.parse_args()
    agent = OctopusAgent.load(args.model).eval()
    if torch.cuda.is_available():  # the vision cache is filled on the CPU, the LM forward runs on the GPU
        agent.lm.to("cuda")
        agent.projector.to("cuda")
    data, report = Path(args.data), {"model": args.model}
    names = [f.name for f in FUNCTIONS]
    function_of = {token: names[i] for i, token in enumerate(agent.tokens.function_ids)}
    for split in args.splits:
        rows = sample_rows(data, split, args.rows)
        result = summarise(rows, teacher_forced(agent, rows, Path(args.cache) / f"cache_{split}"))
        swapped = swap_rows([r for r in rows if r.get("meta", {}).get("kind") == "ambiguous"])
        if swapped:
            for row in swapped:
                row["target"] = "<nexa_0>"  # only the first token is read
            answers = teacher_forced(agent, swapped, Path(args.cache) / f"cache_{split}_swap")
            follow = sum(function_of.get(p) == r["function"] for r, (_, _, p) in zip(swapped, answers))
            result["image_swap_follow"] = {"rate": round(follow / len(swapped), 4), "rows": len(swapped)}
        report[split] = result
        print(f"\n{split}: {len(rows)} rows")
        for key, value in result.items():
            print(f"  {key:<40} {value}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
