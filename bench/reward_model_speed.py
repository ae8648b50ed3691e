"""The stage-3 reward model's training step with and without activation checkpointing, side by side.

TRL's RewardConfig turns activation checkpointing on, and transformers then makes the input embeddings require
grad: backward, and the forward it recomputes, ran through every layer of the LM, the frozen ones below
`rl.reward_model_layers` included. Off, the frozen layers run forward only. Same pairs, seed and steps in both
arms (rows as `octopus data build` plans them, images not rendered: the reward model reads text), so their
losses must agree step by step; the table gives the seconds of the optimizer steps alone and the held-out
pairwise accuracy. Writes bench/results/reward_model_speed.{md,json}.

    .venv/bin/python bench/reward_model_speed.py --steps 20
"""

from __future__ import annotations

import json
import time

from reward_prompt import reward_bench_setup
from tables import markdown_table, save_table

from octopus.training.reward_model import train_reward_model

ARMS = {"checkpointing on (TRL's default, before)": True, "checkpointing off (now)": False}


def main() -> None:
    args, prof, stage = reward_bench_setup(__doc__.splitlines()[0], "reward_model_speed", 20)
    rl = stage.rl
    reports = {}
    for arm, checkpointing in ARMS.items():
        started = time.perf_counter()
        target = train_reward_model(prof.agent.lm, args.work / "rows", args.work / ("on" if checkpointing else "off"),
                                    pairs=rl.reward_model_pairs, steps=args.steps, batch_size=rl.reward_model_batch,
                                    lr=rl.reward_model_lr, seed=stage.seed, train_layers=rl.reward_model_layers,
                                    activation_checkpointing=checkpointing)
        reports[arm] = json.loads((target / "reward_model.json").read_text())
        reports[arm]["seconds"] = round(time.perf_counter() - started, 1)  # ~0 when the arm was already trained
    losses = {arm: [round(h["loss"], 4) for h in r["history"]] for arm, r in reports.items()}
    first, second = losses.values()
    gap = max((abs(a - b) for a, b in zip(first, second)), default=float("nan"))
    rows = [("optimizer steps, seconds", [f"{r['train_seconds']:.0f}" for r in reports.values()]),
            ("seconds a step", [f"{r['train_seconds'] / args.steps:.1f}" for r in reports.values()]),
            ("whole call (pairs, training, held-out and train accuracy), s", [f"{r['seconds']:.0f}"
                                                                              for r in reports.values()]),
            ("held-out pairwise accuracy", [f"{r['accuracy']:.1%}" for r in reports.values()]),
            ("held-out EN / ZH", [f"{r['by_language']['en']:.1%} / {r['by_language']['zh']:.1%}"
                                  for r in reports.values()]),
            ("final logged loss", [f"{v[-1]:.4f}" for v in losses.values()])]
    header = ["reward model", *ARMS]
    table = markdown_table(header, [[label, *cells] for label, cells in rows])
    table += (f"\n\n{args.steps} steps of {rl.reward_model_batch} pairs, top {rl.reward_model_layers} layers trained, "
              f"same pairs and seed; the logged losses differ by at most {gap:.4f} over {len(first)} logged steps.")
    save_table("reward_model_speed", table,
               {"profile": args.profile, "steps": args.steps, "losses": losses, "max_loss_gap": gap,
                "arms": {arm: {k: v for k, v in r.items() if k != "history"} for arm, r in reports.items()}})

if __name__ == "__main__":
    main()
