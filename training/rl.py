"""Stage 3: GRPO on the stage-2 agent, with rule, environment, reward-model (and optional judge) rewards.

TRL's `GRPOTrainer` cannot drive this agent (no `inputs_embeds` path for image tokens spliced into the LM's
input, and its decoded completions drop `<nexa_k>`), so the loop is the project's, on accelerate, with TRL's
equations (pinned by tests/test_rl.py against TRL's own `_compute_loss` and advantage formula):

1. prompts: train rows the SFT model gets wrong or is unsure of (teacher-forced, batched: a row is greedy-right
   exactly when every gold token is the argmax), topped up with random rows; never the test splits;
2. per prompt: image tokens from the frozen encoder's cached features; the step's prompts prefilled together
   (left-padded), each one's KV cache repeated G times; G completions of each sampled in one batch (first token
   constrained to the functional tokens as at inference, stop at `<nexa_end>`), decoded with special tokens kept;
3. rewards: weighted sum (None = no opinion, TRL's nansum), advantages relative to the group
   ((r - mean) / (std + 1e-4)); groups with zero spread carry no signal and are dropped (their share logged);
4. loss: DAPO's clipped surrogate, token-level, normalised by the global number of completion tokens, plus an
   optional KL (k3) to the reference policy = the same model with the LoRA disabled (the SFT model); the
   policy's pass runs each prompt once for its G completions (`prompt_groups`: the same logits and gradients);
5. every `probe_every` steps, greedy accuracy on probe rows held out of the prompts; the checkpoint kept at the
   end is the best by that probe (step 0 = the SFT model itself; a later step only by `rl.keep_margin` answers
   or more), never the best by reward.

`losses.json` and `losses.png` hold the curves: mean reward per reward function, KL, entropy, share of
zero-spread groups, the reward model's score of samples vs gold, probe accuracy, and each step's seconds
(sampling, rewards, update).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from octopus.generation import MAX_NEW_TOKENS, first_choice, reject_bias_for
from octopus.model.agent import OctopusAgent, left_padded
from octopus.model.lm import cache_of, with_cache
from octopus.training.checkpoints import load_checkpoint, remove_checkpoints, save_checkpoint
from octopus.training.datasets import IGNORE, Collator, FeatureCache, _balanced, read_data_file
from octopus.training.loop import (
    apply_train_modes,
    check_trainable,
    start_stage,
    write_agent,
)
from octopus.training.stages import StageConfig

log = logging.getLogger(__name__)
COLUMNS = ("function", "arguments", "language", "query", "meta")


# --- GRPO equations (TRL's, see tests/test_rl.py) ----------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, per-group std) for rewards laid out group after group; NaN rewards (no reward function had
    an opinion) are left out of their group's statistics and get advantage 0."""
    grouped = rewards.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    count = (~torch.isnan(grouped)).sum(1, keepdim=True)
    var = torch.nansum((grouped - mean) ** 2, dim=1, keepdim=True) / (count - 1).clamp(min=1)
    std = var.sqrt()
    advantages = ((grouped - mean) / (std + 1e-4)).view(-1)
    return torch.nan_to_num(advantages, nan=0.0), std.view(-1)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              normalizer: torch.Tensor | float, epsilon_low: float, epsilon_high: float, beta: float = 0.0,
              ref_logps: torch.Tensor | None = None) -> torch.Tensor:
    """DAPO's token-level clipped surrogate: sum over completion tokens / `normalizer` (the global token count
    divided by the number of processes). (B, C) log-probs, (B,) advantages, (B, C) mask."""
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    adv = advantages[:, None]
    per_token = -torch.min(ratio * adv, clipped * adv)
    if beta:
        per_token = per_token + beta * kl_k3(logps, ref_logps)
    return (per_token * mask).sum() / normalizer


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    return torch.exp(ref_logps - logps) - (ref_logps - logps) - 1


def weighted_rewards(per_function: dict[str, list], weights: dict[str, float]) -> torch.Tensor:
    """Sum of weight x reward over reward functions, None counted as no opinion; NaN where none had one."""
    names = list(per_function)
    table = torch.tensor([[math.nan if v is None else float(v) for v in per_function[n]] for n in names]).T
    w = torch.tensor([weights[n] for n in names])
    total = torch.nansum(table * w, dim=1)
    total[torch.isnan(table).all(dim=1)] = math.nan
    return total


# --- scoring the SFT model, batched ------------------------------------------------------------------------------
@torch.no_grad()
def teacher_forced(agent: OctopusAgent, rows: list[dict], features: FeatureCache, batch_size: int = 16,
                   progress: bool = False) -> list[dict]:
    """Per row: `exact` (greedy decoding writes the gold call: every gold token is the argmax, the first among
    the functional tokens as at inference), `function` (its first token is right), `first` (the functional
    token greedy writes first) and `gold_prob`. Logits only at labelled positions; each batch moves to the LM's
    device (the vision tower that fills the feature cache may stay on the CPU)."""
    device = next(agent.lm.parameters()).device
    collator = Collator(agent, "functional", 256, features)
    allowed = torch.tensor(agent.tokens.first_token_ids, device=device)
    out = []
    for start in tqdm(range(0, len(rows), batch_size), desc="scoring rows", disable=not progress, mininterval=2):
        chunk = rows[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collator(chunk).items()}
        result = agent(batch["input_ids"], vision_features=batch["vision_features"],
                       attention_mask=batch["attention_mask"], labels=batch["labels"], labelled_only=True,
                       name_index=batch.get("name_index"))  # name_index: another name in the slots
        logits, targets = result.logits.float(), result.targets
        counts = (batch["labels"][:, 1:] != IGNORE).sum(1).tolist()
        first = torch.zeros(len(targets), dtype=torch.bool, device=device)
        first[torch.tensor([0, *counts[:-1]], device=device).cumsum(0)] = True
        masked = logits.clone()
        masked[first] = torch.full_like(masked[first], -1e9).index_copy(1, allowed, logits[first][:, allowed])
        logp = F.log_softmax(masked, -1).gather(1, targets[:, None])[:, 0]
        hit = masked.argmax(-1) == targets
        firsts = masked[first].argmax(-1).tolist()
        for logp_row, hit_row, first_token in zip(logp.split(counts), hit.split(counts), firsts):
            out.append({"exact": bool(hit_row.all()), "function": bool(hit_row[0]), "first": first_token,
                        "gold_prob": round(float(logp_row.sum().exp()), 4)})
    return out


def probe_accuracy(agent: OctopusAgent, rows: list[dict], features: FeatureCache) -> dict[str, float]:
    scored = teacher_forced(agent, rows, features)
    return {"function": round(sum(s["function"] for s in scored) / len(scored), 4),
            "exact": round(sum(s["exact"] for s in scored) / len(scored), 4)}


def beats_kept(result: dict[str, float], kept: dict | None, rows: int, margin: int) -> bool:
    """Whether a step's probe `result` replaces the `kept` one (None: nothing kept yet): right on at least `margin`
    more of the probe's answers (its function and its exact call, each row's two counted apiece), so a step that
    wins by a row's noise does not replace the model it started from."""
    if kept is None:
        return True
    gain = round((result["function"] - kept["function"] + result["exact"] - kept["exact"]) * rows)
    return gain >= max(margin, 1)


def sft_calls(agent: OctopusAgent, rows: list[dict], progress: bool = True, batch_size: int = 16) -> list[dict]:
    """The SFT model's greedy calls on rows it gets wrong (as `agent.generate` writes them, `batch_size` rows a
    batch): on-policy negatives for the reward model."""
    out = []
    for start in tqdm(range(0, len(rows), batch_size), desc="SFT calls on wrong rows", disable=not progress,
                      mininterval=2):
        chunk = rows[start:start + batch_size]
        calls = greedy_calls(agent, [r["image"] for r in chunk], [r["query"] for r in chunk])
        out += [{"row": row, "completion": call} for row, call in zip(chunk, calls)]
    return out


def mine_prompts(agent: OctopusAgent, stage: StageConfig, data_dir: Path, features_dir: Path,
                 progress: bool = True, with_on_policy: bool = True) -> dict:
    """Probe rows, and prompts for every step: irrelevant rows (share `irrelevant_share`), then the rows the SFT
    model gets wrong or is unsure of (share `hard_share` of the others), the rest at random; plus the SFT's wrong
    greedy calls (on-policy negatives for the reward model). Train split only."""
    rl = stage.rl
    rows = read_data_file(data_dir, stage.data)
    rng = random.Random(stage.seed)
    chosen = _balanced(rows, rl.probe_rows + rl.mine_rows, rng)
    probe, candidates = chosen[:rl.probe_rows], chosen[rl.probe_rows:]
    features = FeatureCache(features_dir, agent, [r["image"] for r in chosen])
    scored = teacher_forced(agent, candidates, features, progress=progress)
    hard = [r for r, s in zip(candidates, scored) if not s["exact"] or s["gold_prob"] < rl.unsure_below]
    easy = [r for r, s in zip(candidates, scored) if s["exact"] and s["gold_prob"] >= rl.unsure_below]
    wrong = [r for r, s in zip(candidates, scored) if not s["exact"]]
    on_policy = sft_calls(agent, wrong[:rl.on_policy_rows], progress) if with_on_policy else []
    irrelevant = [r for r in candidates if r.get("function") is None]
    need = rl.steps * stage.batch_size
    queues: dict[str, list[dict]] = {"hard": [], "easy": [], "irrelevant": []}
    schedule = []
    for _ in range(need):
        if irrelevant and rng.random() < rl.irrelevant_share:
            name, source = "irrelevant", irrelevant
        elif hard and (rng.random() < rl.hard_share or not easy):
            name, source = "hard", hard
        else:
            name, source = "easy", easy
        if not queues[name]:
            queues[name].extend(rng.sample(source, len(source)))
        schedule.append(queues[name].pop())
    stats = {"candidates": len(candidates), "hard": len(hard), "wrong": len(wrong),
             "sft_exact": round(sum(s["exact"] for s in scored) / max(1, len(scored)), 4),
             "sft_function": round(sum(s["function"] for s in scored) / max(1, len(scored)), 4)}
    log.info("stage %s: prompts from %d scored train rows: %d hard (%d wrong), SFT exact %.3f", stage.name,
             len(candidates), len(hard), len(wrong), stats["sft_exact"])
    return {"probe": probe, "schedule": schedule, "on_policy": on_policy, "stats": stats,
            "wrong": wrong[:rl.on_policy_rows],
            "images": features.images}  # the cache's key: stage 3 reads the same cache


# --- sampling and log-probs ------------------------------------------------------------------------------------
@torch.no_grad()
def decode_batch(agent: OctopusAgent, prompts: list[list[int]], image_embeds: list[torch.Tensor], repeat: int,
                 first: Callable[[torch.Tensor], list[int]], pick: Callable[[torch.Tensor, list[list[int]]], list[int]],
                 max_new_tokens: int) -> list[list[int]]:
    """`repeat` completions of each prompt, all in one batch: the prompts left-padded (each with its own
    positions) and prefilled together, the KV cache repeated `repeat` times, then one decode loop for the whole
    batch until every row wrote `<nexa_end>` or `max_new_tokens`. `first(logits)` picks each row's first token
    from the prefill's (R, V) last logits; `pick(logits, completions)` each next one. Rows finished early run
    along; nothing is appended to them. A loop per prompt at a batch of G left 2 cores idle between small matrix
    products (bench/results/grpo_step.md). Runs where the LM is; `first` and `pick` get logits there."""
    device = next(agent.lm.parameters()).device
    embeds, mask, positions = left_padded([agent.embed(torch.tensor([p], device=device), image_embeds=e)[0]
                                           for p, e in zip(prompts, image_embeds)])  # each row its own positions
    out = agent.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
    past = cache_of(out)
    past.batch_repeat_interleave(repeat)
    mask = mask.repeat_interleave(repeat, 0)
    position = positions[:, -1:].repeat_interleave(repeat, 0)  # (R, 1)
    completions = [[token] for token in first(out.logits[:, -1].float().repeat_interleave(repeat, 0))]
    end = agent.tokens.end_id
    done = [c[-1] == end for c in completions]
    while not all(done) and max(len(c) for c in completions) < max_new_tokens:
        mask = torch.cat([mask, mask.new_ones((len(mask), 1))], 1)
        position = position + 1
        tokens = torch.tensor([[c[-1]] for c in completions], device=device)
        out = agent.lm(input_ids=tokens, attention_mask=mask, position_ids=position, **with_cache(past),
                       use_cache=True)
        past = cache_of(out)
        for i, token in enumerate(pick(out.logits[:, -1].float(), completions)):
            if not done[i]:
                completions[i].append(token)
                done[i] = token == end
    return completions


def sample_groups(agent: OctopusAgent, prompts: list[list[int]], image_embeds: list[torch.Tensor], group_size: int,
                  temperature: float, max_new_tokens: int, generator: torch.Generator) -> list[list[list[int]]]:
    """G completions of each prompt, every prompt's group in one batch (`decode_batch`): sampled at
    `temperature`, the first token among the functional tokens as at inference, never an image placeholder.
    The draws are made on the CPU, where `generator` is (the same samples for a seed on any device)."""
    t = agent.tokens
    allowed = torch.tensor(t.first_token_ids)

    def first(logits: torch.Tensor) -> list[int]:
        logits = logits.cpu()
        constrained = torch.full_like(logits, -math.inf).index_copy(1, allowed, logits[:, allowed])
        return torch.multinomial(F.softmax(constrained / temperature, -1), 1, generator=generator)[:, 0].tolist()

    def pick(logits: torch.Tensor, completions: list[list[int]]) -> list[int]:
        logits = logits.cpu()
        logits[:, t.image_id] = -math.inf  # an image placeholder is never text
        return torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=generator)[:, 0].tolist()

    flat = decode_batch(agent, prompts, image_embeds, group_size, first, pick, max_new_tokens)
    return [flat[i:i + group_size] for i in range(0, len(flat), group_size)]


@torch.no_grad()
def greedy_calls(agent: OctopusAgent, images: list, queries: list[str],
                 max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """What `agent.generate` writes for each (image, query), decoded in one batch (`decode_batch`): the same
    first choice (with the agent's reject bias) and the same argument constraint, row by row."""
    device = next(agent.lm.parameters()).device
    image_embeds = [agent.image_embeds(agent.pixels(image).to(device)) for image in images]
    prompts = [agent.encode_prompt(q) for q in queries]
    allowed = agent.tokens.first_token_ids

    def first(logits: torch.Tensor) -> list[int]:
        logits = logits.cpu()
        return [allowed[first_choice([float(row[a]) for a in allowed], reject_bias_for(agent.reject_bias, q))]
                for row, q in zip(logits, queries)]

    def pick(logits: torch.Tensor, completions: list[list[int]]) -> list[int]:
        logits = logits.cpu()
        if agent.constraint is None:
            return logits.argmax(-1).tolist()
        end = agent.tokens.end_id  # a finished row takes nothing more (decode_batch drops it): no need to choose
        return [end if c[-1] == end else agent.constraint.choose(c, row, q)
                for row, c, q in zip(logits, completions, queries)]

    completions = decode_batch(agent, prompts, image_embeds, 1, first, pick, max_new_tokens)
    return [agent.tokenizer.decode(c, skip_special_tokens=False) for c in completions]


def completion_logps(model, agent: OctopusAgent, prompts: list[list[int]], completions: list[list[int]],
                     image_embeds: torch.Tensor, temperature: float,
                     prompt_groups: bool = True) -> tuple[torch.Tensor, ...]:
    """(B, C) log-probs of each completion token (the first under the constrained first-token distribution, as
    sampled), the (B, C) mask and (B, C) entropies. `model` is what the forward goes through (the prepared,
    possibly distributed module); labels mark the completion so only its logits are computed, and with
    `prompt_groups` the rows that share a prompt (a group's G samples) run it once."""
    pad = agent.tokenizer.pad_token_id if agent.tokenizer.pad_token_id is not None else agent.tokenizer.eos_token_id
    width = max(len(p) + len(c) for p, c in zip(prompts, completions))
    batch = len(prompts)
    input_ids = torch.full((batch, width), pad, dtype=torch.long)
    labels = torch.full((batch, width), IGNORE, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        input_ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        labels[i, len(p):len(p) + len(c)] = torch.tensor(c)
        attention[i, :len(p) + len(c)] = 1
    device = image_embeds.device
    out = model(input_ids.to(device), image_embeds=image_embeds, attention_mask=attention.to(device),
                labels=labels.to(device), labelled_only=True, prompt_groups=prompt_groups)  # a group's prompt runs once
    logits, targets = out.logits.float() / temperature, out.targets
    lengths = [len(c) for c in completions]
    first = torch.zeros(len(targets), dtype=torch.bool, device=logits.device)
    first[torch.tensor([0, *lengths[:-1]]).cumsum(0).to(logits.device)] = True
    allowed = torch.tensor(agent.tokens.first_token_ids, device=logits.device)
    allowed_mask = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    allowed_mask[allowed] = True
    logits = torch.where(first[:, None] & ~allowed_mask[None], torch.full_like(logits, -1e9), logits)
    logp_all = F.log_softmax(logits, -1)
    logps = logp_all.gather(1, targets[:, None])[:, 0]
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    width_c = max(lengths)
    mask = torch.zeros((batch, width_c), device=logits.device)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    flat = mask.bool()
    out_logps = torch.zeros((batch, width_c), device=logits.device).masked_scatter(flat, logps)
    out_entropy = torch.zeros((batch, width_c), device=logits.device).masked_scatter(flat, entropy.detach())
    return out_logps, mask, out_entropy


# --- the stage ----------------------------------------------------------------------------------------------------
def trainable_state(agent: OctopusAgent) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().contiguous() for n, p in agent.named_parameters() if p.requires_grad}


def run_rl_stage(agent: OctopusAgent, stage: StageConfig, data_dir: Path, stage_dir: Path, reward_fns: dict,
                 max_steps: int | None = None, mined: dict | None = None) -> Path:
    """Train stage 3 and write `stage_dir/agent` (the best checkpoint by the probe); resumable.
    `reward_fns`: name -> (function, weight), from `octopus.training.rewards.build_rewards`."""
    final = stage_dir / "agent"
    if (final / "config.json").is_file():
        log.info("stage %s: %s exists, skipping", stage.name, final)
        return final
    rl = stage.rl
    accelerator = start_stage(stage, stage_dir, "prompts a step")
    if mined is None:
        raise ValueError("run_rl_stage needs the mined prompts (octopus.training.rl.mine_prompts)")
    apply_train_modes(agent, stage)
    check_trainable(agent, stage)
    images = mined.get("images") or [r["image"] for r in mined["schedule"] + mined["probe"]]
    with accelerator.main_process_first():
        features = FeatureCache(stage_dir / "vision_cache", agent, images)
    steps = min(rl.steps, max_steps) if max_steps is not None else rl.steps
    params = [p for p in agent.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    model, optimizer = accelerator.prepare(agent, optimizer)
    unwrapped: OctopusAgent = accelerator.unwrap_model(model)
    weights = {name: weight for name, (_, weight) in reward_fns.items()}

    step, history, best = 0, [], {"score": -1.0, "step": None}
    best_path = stage_dir / "best" / "trainable.safetensors"
    resume = load_checkpoint(stage_dir, accelerator)
    if resume is not None:
        step, history, best = resume.meta["step"], resume.meta["history"], resume.meta["best"]
        log.info("stage %s: resuming from %s (step %d)", stage.name, resume.path, step)
    per_process = stage.batch_size // accelerator.num_processes
    log.info("stage %s: GRPO, %d steps of %d prompts x %d samples, rewards %s, lr %g, beta %g", stage.name, steps,
             stage.batch_size, rl.group_size, weights, stage.lr, rl.beta)

    def probe(at: int) -> dict:
        unwrapped.eval()
        result = probe_accuracy(unwrapped, mined["probe"], features)
        score = (result["function"] + result["exact"]) / 2
        better = beats_kept(result, best.get("probe"), len(mined["probe"]), rl.keep_margin)
        if better and accelerator.is_main_process:
            best_path.parent.mkdir(parents=True, exist_ok=True)
            save_file(trainable_state(unwrapped), str(best_path))
        if better:
            best.update(score=score, step=at, probe=result)
        log.info("stage %s: probe at step %d: function %.3f exact %.3f (best step %s)", stage.name, at,
                 result["function"], result["exact"], best["step"])
        return result

    if step == 0:
        history.append({"step": 0, "probe": probe(0)})
    progress = tqdm(total=steps, initial=step, desc=stage.name, disable=not accelerator.is_main_process)
    started = time.perf_counter()
    while step < steps:
        generator = torch.Generator().manual_seed(stage.seed * 100003 + step * 101 + accelerator.process_index)
        batch_rows = mined["schedule"][step * stage.batch_size:(step + 1) * stage.batch_size]
        batch_rows = batch_rows[accelerator.process_index * per_process:(accelerator.process_index + 1) * per_process]
        unwrapped.eval()
        clock = [time.perf_counter()]  # where a step's time goes: sampling, rewards, the update (losses.json)
        prompts, completions, embeds, texts = [], [], [], []
        lora = hasattr(unwrapped.lm, "merge_adapter")
        if lora:  # sampling decodes token by token: 210 unmerged LoRA modules cost more than the model itself
            unwrapped.lm.merge_adapter()
        with torch.no_grad(), accelerator.autocast():
            row_embeds = [unwrapped.projector(features([row["image"]]).to(accelerator.device)) for row in batch_rows]
            row_prompts = [unwrapped.encode_prompt(row["query"]) for row in batch_rows]
            groups = sample_groups(unwrapped, row_prompts, row_embeds, rl.group_size, rl.temperature,
                                   rl.max_new_tokens, generator)
            for prompt, image_embeds, group in zip(row_prompts, row_embeds, groups):
                for completion in group:
                    prompts.append(prompt)
                    completions.append(completion)
                    embeds.append(image_embeds)
                    texts.append(unwrapped.tokenizer.decode(completion, skip_special_tokens=False))
        if lora:
            unwrapped.lm.unmerge_adapter()
        clock.append(time.perf_counter())
        columns = {c: [row.get(c) for row in batch_rows for _ in range(rl.group_size)] for c in COLUMNS}
        per_function = {name: fn(texts, texts, **columns) for name, (fn, _) in reward_fns.items()}
        rewards = weighted_rewards(per_function, weights)
        advantages, std = group_advantages(rewards, rl.group_size)
        spread = (std > 1e-6).repeat_interleave(rl.group_size)  # per completion
        keep = [i for i in range(len(texts)) if bool(spread[i]) or not rl.drop_zero_spread]
        record = {"step": step + 1, "reward": _nanmean(rewards),
                  "rewards": {n: _mean(v) for n, v in per_function.items()},
                  "zero_spread_groups": round(float((std <= 1e-6).float().mean()), 4),
                  "completion_tokens": round(sum(len(c) for c in completions) / len(completions), 2)}
        diagnose = (step + 1) % rl.diagnose_every == 0 or step + 1 == steps
        if "reward_model" in reward_fns and diagnose:
            rm = reward_fns["reward_model"][0]
            gold = [row["target"] for row in batch_rows]
            gold_columns = {c: [row.get(c) for row in batch_rows] for c in COLUMNS}
            record["reward_model_gold"] = _mean(rm(gold, gold, **gold_columns))
        clock.append(time.perf_counter())
        kept_tokens = torch.tensor(float(sum(len(completions[i]) for i in keep)), device=accelerator.device)
        global_tokens = accelerator.reduce(kept_tokens, reduction="sum")
        if float(global_tokens) > 0:
            unwrapped.train()
            picks = keep or [0]  # a process with no signal still joins the all-reduce, with its loss masked to 0

            def sub(xs: list, picks: list[int] = picks) -> list:
                return [xs[i] for i in picks]

            image_batch = torch.cat(sub(embeds))
            adv = advantages[keep].to(accelerator.device) if keep else torch.zeros(1, device=accelerator.device)
            need_ref = rl.beta > 0 or diagnose
            ref_logps = None
            with torch.no_grad(), accelerator.autocast():
                if need_ref:
                    with unwrapped.lm.disable_adapter():
                        ref_logps, _, _ = completion_logps(unwrapped, unwrapped, sub(prompts), sub(completions),
                                                           image_batch, rl.temperature)
                old_logps = None
                if rl.iterations > 1:
                    old_logps, _, _ = completion_logps(unwrapped, unwrapped, sub(prompts), sub(completions),
                                                       image_batch, rl.temperature)
            normalizer = global_tokens / accelerator.num_processes
            for _ in range(rl.iterations):
                with accelerator.autocast():
                    logps, mask, entropy = completion_logps(model, unwrapped, sub(prompts), sub(completions),
                                                            image_batch, rl.temperature)
                    if not keep:
                        mask = mask * 0  # this process has no signal; it still joins the gradient all-reduce
                    old = logps.detach() if old_logps is None else old_logps
                    loss = grpo_loss(logps, old, adv, mask, normalizer, rl.epsilon_low, rl.epsilon_high,
                                     rl.beta, ref_logps)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad()
            tokens = mask.sum().clamp(min=1)
            record["loss"] = round(float(loss.detach()), 5)
            record["entropy"] = round(float((entropy * mask).sum() / tokens), 4)
            if ref_logps is not None:
                record["kl"] = round(float((kl_k3(logps.detach(), ref_logps) * mask).sum() / tokens), 5)
        clock.append(time.perf_counter())
        record["seconds"] = {part: round(b - a, 2) for part, a, b in zip(("sampling", "rewards", "update"), clock,
                                                                           clock[1:])}
        step += 1
        history.append(record)
        progress.update(1)
        progress.set_postfix(reward=f"{record['reward']:.3f}", zero=f"{record['zero_spread_groups']:.2f}")
        if step % stage.log_every == 0:
            log.info("stage %s: step %d/%d %s", stage.name, step, steps,
                     {k: v for k, v in record.items() if k != "step"})
        if step % rl.probe_every == 0 or step == steps:
            history.append({"step": step, "probe": probe(step)})
        if step % stage.save_every == 0 or step == steps:
            _save_rl(accelerator, stage_dir, step, history, best)
    progress.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _finish_rl(unwrapped, stage, stage_dir, history, best, best_path, time.perf_counter() - started,
                   mined["stats"])
    accelerator.wait_for_everyone()
    return final


def _mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def _nanmean(t: torch.Tensor) -> float:
    return round(float(torch.nanmean(t)), 4) if bool((~torch.isnan(t)).any()) else float("nan")


def _save_rl(accelerator, stage_dir: Path, step: int, history: list, best: dict) -> None:
    save_checkpoint(stage_dir, step, {"history": history, "best": best}, accelerator)


def _finish_rl(agent: OctopusAgent, stage: StageConfig, stage_dir: Path, history: list, best: dict,
               best_path: Path, seconds: float, mining: dict) -> None:
    if stage.rl.keep == "last":
        state = trainable_state(agent)
        best = {**best, "kept": "last"}
    else:
        state = load_file(str(best_path))
    missing = set(trainable_state(agent)) - set(state)
    if missing:
        raise RuntimeError(f"best checkpoint {best_path} lacks {sorted(missing)[:3]}")
    with torch.no_grad():
        for name, parameter in agent.named_parameters():
            if name in state:
                parameter.copy_(state[name])
    log.info("stage %s: keeping %s (best probe: step %s, %s)", stage.name,
             "the last step" if stage.rl.keep == "last" else f"step {best['step']}", best["step"], best.get("probe"))
    write_agent(agent, stage_dir)
    summary = {"stage": stage.name, "steps": sum(1 for h in history if "reward" in h),
               "seconds_this_run": round(seconds, 1), "best": best, "mining": mining, "history": history}
    (stage_dir / "losses.json").write_text(json.dumps(summary, indent=1))
    plot_rl(history, stage_dir / "losses.png", stage.name)
    remove_checkpoints(stage_dir)


def plot_rl(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h for h in history if "reward" in h]
    probes = [h for h in history if "probe" in h]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6))
    ax = axes[0][0]
    for name in (steps[0]["rewards"] if steps else {}):
        points = [(h["step"], h["rewards"][name]) for h in steps if h["rewards"].get(name) is not None]
        ax.plot(*zip(*points), lw=1, label=name) if points else None
    ax.set(title="mean reward per reward function", xlabel="step")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    ax.plot([h["step"] for h in probes], [h["probe"]["function"] for h in probes], "o-", label="function")
    ax.plot([h["step"] for h in probes], [h["probe"]["exact"] for h in probes], "o-", label="exact call")
    ax.set(title="probe accuracy (greedy, held out of the prompts)", xlabel="step")
    ax.legend(fontsize=7)
    ax = axes[1][0]
    for key in ("kl", "entropy"):
        points = [(h["step"], h[key]) for h in steps if key in h]
        if points:
            ax.plot(*zip(*points), lw=1, label=key)
    ax.set(title="KL to the reference, entropy", xlabel="step")
    ax.legend(fontsize=7)
    ax = axes[1][1]
    ax.plot([h["step"] for h in steps], [h["zero_spread_groups"] for h in steps], lw=1, label="zero-spread groups")
    points = [(h["step"], h["reward_model_gold"]) for h in steps if h.get("reward_model_gold") is not None]
    if points:
        ax.plot(*zip(*points), lw=1, label="reward model on gold")
        ax.plot([h["step"] for h in steps], [h["rewards"].get("reward_model") for h in steps], lw=1,
                label="reward model on samples")
    ax.set(title="signal and reward hacking guards", xlabel="step")
    ax.legend(fontsize=7)
    for a in axes.flat:
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
