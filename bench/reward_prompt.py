"""Does naming the scene's objects in both languages help the stage-3 reward model? Two reward models side by
side, same pairs, seed and steps, differing only in the prompt's object list: "pizza, plastic cup" (English
names, the earlier prompt) against "pizza (披萨), plastic cup (塑料杯)" (English and Chinese, the current one).
A Chinese call names its object in Chinese (`dish="披萨"`), so with English names only the reward model must
translate to tell the photo's object from another one.

Rows come from the data planner (the same rows `octopus data build` writes for the profile, without rendering
images: the reward model reads text only). No on-policy negatives (they need a stage-2 agent); the held-out
pairs are built from the test split (held-out templates and objects). Writes
bench/results/reward_prompt_<steps>.json and prints held-out pairwise accuracy overall, per language and per
kind. 5–13 min an arm at 50 steps on 2 cores, by CPU.

    .venv/bin/python bench/reward_prompt.py --steps 50
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from unittest import mock

from octopus.training.data.build import SPLITS, BuildConfig, planned_rows
from octopus.training.reward_model import train_reward_model
from octopus.training.rewards import describe_request
from octopus.training.stages import profile

RESULTS = Path(__file__).parent / "results"

# the earlier prompt named objects in English only
ARMS = {"english_names": partial(describe_request, name=lambda concept: concept.en),
        "english_and_chinese_names": describe_request}


def write_rows(out: Path, n_per_function: int, seed: int) -> None:
    """train.jsonl and test.jsonl as `build` plans them (images not rendered)."""
    if (out / "test.jsonl").is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    config = BuildConfig(n_per_function=n_per_function, seed=seed)
    for split in SPLITS:
        rows = planned_rows(split, config)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def reward_bench_setup(description: str, name: str, steps: int):
    """What the reward-model benches share: --profile, --steps, --work (default runs/<name>_<steps>) and --seed
    parsed, and the planned rows written under WORK/rows: (args, the profile, its stage 3)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--work", type=Path, default=None, help=f"default: runs/{name}_<steps>")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    prof = profile(args.profile)
    args.work = args.work or Path(f"runs/{name}_{args.steps}")
    write_rows(args.work / "rows", prof.data_n_per_function, args.seed)
    return args, prof, next(s for s in prof.stages if s.kind == "rl")


def main() -> None:
    args, prof, stage = reward_bench_setup(__doc__.splitlines()[0], "reward_prompt", 50)
    rl = stage.rl
    results = {"profile": args.profile, "steps": args.steps, "batch": rl.reward_model_batch,
               "pairs": rl.reward_model_pairs, "train_layers": rl.reward_model_layers, "lr": rl.reward_model_lr,
               "arms": {}}
    for arm, prompt in ARMS.items():
        started = time.perf_counter()
        with mock.patch("octopus.training.reward_model.describe_request", prompt):
            target = train_reward_model(prof.agent.lm, args.work / "rows", args.work / arm, pairs=rl.reward_model_pairs,
                                        steps=args.steps, batch_size=rl.reward_model_batch, lr=rl.reward_model_lr,
                                        seed=stage.seed, train_layers=rl.reward_model_layers)
        report = json.loads((target / "reward_model.json").read_text())
        report.pop("history", None)
        report["seconds"] = round(time.perf_counter() - started, 1)  # ~0 when the arm was already trained
        results["arms"][arm] = report
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"reward_prompt_{args.steps}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    arms = list(results["arms"].values())
    print(f"{'held-out pairs':<22}" + "".join(f"{a:>28}" for a in ARMS))
    print(f"{'all':<22}" + "".join(f"{r['accuracy']:>28.1%}" for r in arms))
    for group in ("by_language", "by_kind"):
        for key in arms[0][group]:
            print(f"{key:<22}" + "".join(f"{r[group].get(key, float('nan')):>28.1%}" for r in arms))
    print(f"{'train (400 pairs)':<22}" + "".join(f"{r['train_accuracy']:>28.1%}" for r in arms))


if __name__ == "__main__":
    main()
