"""A stage-3 GRPO step's three costs, as they were and as they are now, side by side on the same rows.

- sampling: before, a loop per prompt decoded a batch of G; now the step's prompts are left-padded and prefilled
  together and one loop decodes B x G (`octopus.training.rl.sample_groups`);
- the policy pass (forward and backward over the sampled completions, stage 3's fresh LoRA on the LM): before,
  every row ran its prompt whole; now each prompt runs once for its G completions (`prompt_groups`);
- the reward model: before, it scored every completion; now each distinct text once, in batches of similar
  length (`RewardModel.scores`);
- and, once before the steps, the stage-2 agent's greedy calls that become the reward model's on-policy
  negatives: before, `agent.generate` row by row; now a batch (`sft_calls`), checked to write the same calls.

Same rows, seeds and quick-profile settings (batch, G, temperature, token limit) in both arms, alternating which
goes first; the policy pass runs on the "now" arm's completions in both arms, and its loss is checked to agree.
Writes bench/results/grpo_step.{md,json}.

    .venv/bin/python bench/grpo_step.py --model runs/quick/stage2_functional/agent --data runs/data \
        --reward-model runs/quick/reward_model --steps 6
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
from tables import markdown_table, save_table

from octopus.model.agent import OctopusAgent
from octopus.training.datasets import FeatureCache, _balanced, read_data_file
from octopus.training.loop import apply_train_modes
from octopus.training.rl import completion_logps, sample_groups, sft_calls
from octopus.training.stages import profile

ARMS = ("before", "now")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a stage-2 agent folder")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reward-model", type=Path, help="a trained reward-model folder (its part is left out "
                                                          "without one)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--sft-rows", type=int, default=16, help="rows whose greedy calls (the reward model's "
                                                                    "on-policy negatives) are timed both ways; 0: none")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--cache", type=Path, default=Path("runs/grpo_step_cache"))
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"error: {args.model} is not a saved agent (no config.json)")
    reward_model = None
    if args.reward_model is not None:
        from octopus.training.reward_model import RewardModel, encode_text
        from octopus.training.rewards import call_as_text, describe_request

        try:
            reward_model = RewardModel(args.reward_model)
        except FileNotFoundError as error:
            raise SystemExit(f"error: {error}") from None
    stage = profile(args.profile).stages[-1]
    rl = stage.rl
    agent = OctopusAgent.load(args.model)
    rows = _balanced(read_data_file(args.data, "train.jsonl"), args.steps * stage.batch_size, random.Random(0))
    sft = sft_calls_side_by_side(agent, rows[:args.sft_rows]) if args.sft_rows else None
    apply_train_modes(agent, stage)  # stage 3's fresh LoRA: the policy pass trains it
    features = FeatureCache(args.cache, agent, [r["image"] for r in rows])
    parts = ("sampling", "policy pass", "reward model") if reward_model else ("sampling", "policy pass")
    seconds = {part: {arm: [] for arm in ARMS} for part in parts}
    passes: dict[str, list[int]] = {arm: [] for arm in ARMS}
    distinct, tokens, loss_gaps = [], [], []
    for step in range(args.steps):
        batch = rows[step * stage.batch_size:(step + 1) * stage.batch_size]
        agent.eval()
        with torch.no_grad():
            embeds = [agent.projector(features([r["image"]])) for r in batch]
        prompts = [agent.encode_prompt(r["query"]) for r in batch]
        order = ARMS if step % 2 == 0 else ARMS[::-1]
        groups = None
        agent.lm.merge_adapter()  # as stage 3 samples
        for arm in order:
            generator = torch.Generator().manual_seed(step)
            started = time.perf_counter()
            if arm == "before":
                sampled = [sample_groups(agent, [p], [e], rl.group_size, rl.temperature, rl.max_new_tokens,
                                         generator)[0] for p, e in zip(prompts, embeds)]
                passes[arm].append(sum(max(len(c) for c in g) for g in sampled))
            else:
                groups = sample_groups(agent, prompts, embeds, rl.group_size, rl.temperature, rl.max_new_tokens,
                                       generator)
                passes[arm].append(max(len(c) for g in groups for c in g))
            seconds["sampling"][arm].append(time.perf_counter() - started)
        agent.lm.unmerge_adapter()
        completions = [c for g in groups for c in g]
        texts = [agent.tokenizer.decode(c, skip_special_tokens=False) for c in completions]
        distinct.append(len(set(texts)) / len(texts))
        tokens.append(statistics.mean(len(c) for c in completions))
        row_prompts = [p for p in prompts for _ in range(rl.group_size)]
        image_batch = torch.cat([e for e in embeds for _ in range(rl.group_size)])
        agent.train()
        losses = {}
        for arm in order:
            started = time.perf_counter()
            logps, mask, _ = completion_logps(agent, agent, row_prompts, completions, image_batch, rl.temperature,
                                              prompt_groups=arm == "now")
            loss = -(logps * mask).sum() / mask.sum()
            loss.backward()
            agent.zero_grad()
            seconds["policy pass"][arm].append(time.perf_counter() - started)
            losses[arm] = float(loss.detach())
        loss_gaps.append(abs(losses["before"] - losses["now"]))
        if reward_model is not None:
            row_texts = [describe_request(r["query"], (r.get("meta") or {}).get("objects")) + call_as_text(t)
                         for r, t in zip((r for r in batch for _ in range(rl.group_size)), texts)]
            for arm in order:
                started = time.perf_counter()
                if arm == "before":  # every completion, repeats included, in batches of the model's size, as before
                    for i in range(0, len(row_texts), reward_model.batch_size):
                        reward_model.batch_scores([encode_text(reward_model.tokenizer, t)
                                                   for t in row_texts[i:i + reward_model.batch_size]])
                else:
                    reward_model.scores(row_texts)
                seconds["reward model"][arm].append(time.perf_counter() - started)
        print(f"step {step + 1}/{args.steps}: " + "; ".join(
            f"{part} " + ", ".join(f"{a} {seconds[part][a][-1]:.2f} s" for a in ARMS) for part in parts), flush=True)
    median = {part: {arm: statistics.median(v) for arm, v in seconds[part].items()} for part in parts}
    header = ["seconds a GRPO step, median", *ARMS, "ratio"]
    lines = [(part, [f"{median[part][a]:.2f}" for a in ARMS] + [f"{median[part]['before'] / median[part]['now']:.2f}x"])
             for part in parts]
    total = {a: sum(median[p][a] for p in parts) for a in ARMS}
    lines.append(("these parts together",
                  [f"{total[a]:.2f}" for a in ARMS] + [f"{total['before'] / total['now']:.2f}x"]))
    lines.append(("decode passes a step, mean", [f"{statistics.mean(passes[a]):.1f}" for a in ARMS] + [""]))
    if sft is not None:
        lines.append((f"greedy calls of {args.sft_rows} rows (reward-model negatives), s",
                      [f"{sft[a]:.2f}" for a in ARMS] + [f"{sft['before'] / sft['now']:.2f}x"]))
    table = markdown_table(header, [[label, *cells] for label, cells in lines])
    table += (f"\n\n{args.steps} steps of {stage.batch_size} prompts x {rl.group_size} samples (temperature "
              f"{rl.temperature}, at most {rl.max_new_tokens} tokens), {torch.get_num_threads()} threads, alternating "
              f"order. Completions average {statistics.mean(tokens):.1f} tokens; {statistics.mean(distinct):.0%} of "
              f"a step's completions are distinct texts. The policy pass's loss agrees to {max(loss_gaps):.1e}.")
    save_table("grpo_step", table, {"model": str(args.model), "steps": args.steps, "batch": stage.batch_size,
                                    "group_size": rl.group_size, "seconds": seconds, "passes": passes,
                                    "median": median, "distinct_share": distinct, "completion_tokens": tokens,
                                    "max_loss_gap": max(loss_gaps), "sft_calls_seconds": sft})


def sft_calls_side_by_side(agent: OctopusAgent, rows: list[dict]) -> dict[str, float]:
    """Seconds for the stage-2 agent's greedy calls on `rows`, one `agent.generate` at a time (before) and in one
    batch (now); the calls must be the same."""
    started = time.perf_counter()
    alone = [agent.generate(r["image"], r["query"]).raw for r in rows]
    before = time.perf_counter() - started
    started = time.perf_counter()
    together = [c["completion"] for c in sft_calls(agent, rows, progress=False, batch_size=len(rows))]
    now = time.perf_counter() - started
    if together != alone:
        differ = sum(a != b for a, b in zip(alone, together))
        print(f"warning: {differ} of {len(rows)} batched greedy calls differ from agent.generate's")
    return {"before": before, "now": now, "same_calls": sum(a == b for a, b in zip(alone, together)),
            "rows": len(rows)}


if __name__ == "__main__":
    main()
