"""The training runner for stages 1 and 2: a plain loop on accelerate, read top to bottom.

It applies the stage's train modes (frozen / full / LoRA through peft, with the agent's new token rows always
trainable), asserts and logs trainable parameter counts per component, caches the vision encoder's output
when the stage freezes it, batches rows of similar length, computes logits only where there are labels
(plus an optional grounding loss: which object and which category the mean image token shows, against the
LM's own embeddings of their names; a stage may train on that loss alone, with no LM forward), trains with
AdamW and a warm-up schedule, checkpoints in the one format of training/checkpoints.py (accelerate's state plus
a meta JSON), resumes from the newest checkpoint after a kill, and finally writes the stage's agent (LoRA merged), a
JSON log of losses and a PNG of the curve. The same code runs on one CPU or, unchanged, under
`accelerate launch` on many GPUs.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from octopus.functions import BUILTIN
from octopus.model.agent import OctopusAgent, text_key
from octopus.training.checkpoints import load_checkpoint, remove_checkpoints, save_checkpoint
from octopus.training.clip import accelerator_available, bf16_is_fast
from octopus.training.codeswitch import code_switched
from octopus.training.data.concepts import CATEGORIES, CATEGORY_NAMES, CONCEPTS
from octopus.training.datasets import (
    IGNORE,
    Collator,
    FeatureCache,
    LengthGroupedBatches,
    NameSwap,
    drop_query_words,
    load_examples,
    minimal_pairs,
)
from octopus.training.stages import COMPONENTS, StageConfig

log = logging.getLogger(__name__)


def apply_train_modes(agent: OctopusAgent, stage: StageConfig) -> None:
    """Set requires_grad per component; wrap the LM with LoRA when asked (new token rows stay trainable)."""
    for component in COMPONENTS:
        module = getattr(agent, component)
        mode = stage.train[component]
        module.requires_grad_(mode == "full")
        if mode in ("frozen", "tokens"):
            module.eval()  # frozen batch-norm statistics do not drift either (nor dropout around fixed weights)
    if stage.train["lm"] == "tokens":
        train_user_token_rows(agent)
    if stage.train["lm"] == "lora":
        from peft import LoraConfig, get_peft_model

        layers = None
        if stage.lora_layers is not None:
            total = agent.lm.config.num_hidden_layers
            layers = list(range(max(0, total - stage.lora_layers), total))
        config = LoraConfig(r=stage.lora_r, lora_alpha=stage.lora_alpha, lora_dropout=stage.lora_dropout,
                            target_modules=list(stage.lora_targets), task_type="CAUSAL_LM",
                            layers_to_transform=layers,
                            trainable_token_indices={"embed_tokens": agent_token_ids(agent)} if stage.token_rows
                            else None)
        agent.lm = get_peft_model(agent.lm, config)
    # below the lowest adapted layer nothing trains: inputs without grad let backward stop there
    agent.input_grad = stage.lora_layers is None


def train_user_token_rows(agent: OctopusAgent) -> None:
    """lm=tokens (`train extend`): only the user functions' token rows train, in the input and (untied) output
    embeddings; every other weight stays as it is, so the ten's answers change only where a new token wins."""
    rows = list(agent.tokens.function_ids[len(BUILTIN):])
    if not rows:
        raise ValueError("lm=tokens trains the user functions' token rows, and this agent has no user function")
    for matrix in {id(m): m for m in (agent.lm.get_input_embeddings().weight,
                                      agent.lm.get_output_embeddings().weight)}.values():
        mask = torch.zeros(matrix.shape[0], 1, dtype=matrix.dtype)
        mask[rows] = 1.0
        matrix.requires_grad_(True)
        matrix.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device, grad.dtype))


def agent_token_ids(agent: OctopusAgent) -> list[int]:
    t = agent.tokens
    return [*t.function_ids, t.no_function_id, t.end_id]


def trainable_counts(agent: OctopusAgent) -> dict[str, dict[str, int]]:
    out = {}
    for component in COMPONENTS:
        params = list(getattr(agent, component).parameters())
        out[component] = {"trainable": sum(p.numel() for p in params if p.requires_grad),
                          "total": sum(p.numel() for p in params)}
    return out


def check_trainable(agent: OctopusAgent, stage: StageConfig) -> dict[str, dict[str, int]]:
    """Assert that exactly the components the stage declares have trainable parameters; log the counts."""
    counts = trainable_counts(agent)
    for component, mode in stage.train.items():
        trainable = counts[component]["trainable"]
        if (mode == "frozen") != (trainable == 0):
            raise RuntimeError(f"stage {stage.name}: {component} is declared {mode} but has {trainable} trainable "
                               "parameters")
        log.info("stage %s: %-14s %-6s %11d / %11d trainable", stage.name, component, mode, trainable,
                 counts[component]["total"])
    return counts


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, function_ids: torch.Tensor,
                  function_weight: float, reduce=None,
                  distilled: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Cross-entropy of (N, V) logits at labelled positions; functional tokens weighted by `function_weight`.

    `reduce` (accelerate's, across processes) makes it the mean over the *global* batch's labelled tokens: each
    process divides its sum by the mean per-process weight, and averaging the gradients across processes then
    gives exactly the gradient of the global mean (a plain per-process mean would weigh a process's tokens by
    how few it has).

    `distilled` = (loss, mask), both (N,): at the masked positions (replay rows) that loss, with weight 1,
    replaces the cross-entropy (`distillation`)."""
    losses = F.cross_entropy(logits.float(), targets, reduction="none")  # (N,)
    weights = torch.ones_like(losses)
    if function_weight != 1.0:
        weights = torch.where(torch.isin(targets, function_ids), function_weight, 1.0)
    if distilled is not None:
        losses, weights = torch.where(distilled[1], distilled[0], losses), torch.where(distilled[1], 1.0, weights)
    total = weights.sum().detach()
    if reduce is not None:
        total = reduce(total, reduction="mean")
    return (losses * weights).sum() / total.clamp(min=1.0)


class GroundingHeads(torch.nn.Module):
    """Training-only: which object (of the concept table) and which category the image shows, read from the
    mean image token by cosine similarity to the LM's own input embeddings of their EN + ZH names.

    It pulls image tokens towards the words the LM already knows for the object and its kind (the image ->
    name -> category route), costs no LM forward, and covers every concept the naming data shows, held-out
    objects included. Not part of the agent; not exported.
    """

    def __init__(self, agent: OctopusAgent):
        super().__init__()

        table = agent.lm.get_input_embeddings().weight.detach().float()  # (V, D)

        def word(*texts: str) -> torch.Tensor:
            return text_key(table, agent.tokenizer, texts)

        self.register_buffer("concepts", torch.stack([word(c.en, c.zh) for c in CONCEPTS]))  # (K, D)
        self.register_buffer("categories", torch.stack([word(*CATEGORY_NAMES[c]) for c in CATEGORIES]))  # (C, D)
        self.concept_keys = [c.key for c in CONCEPTS]
        self.grid = agent.config.projector.num_image_tokens  # the image tokens proper, not the name slots
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(20.0)))

    def forward(self, image_embeds: torch.Tensor, concept: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        mean = F.normalize(image_embeds[:, :self.grid].float().mean(1), dim=-1)  # (B, D)
        scale = self.log_scale.exp().clamp(max=100.0)
        loss = image_embeds.sum() * 0.0
        for table, labels in ((self.concepts, concept), (self.categories, category)):
            if bool((labels != IGNORE).any()):
                loss = loss + F.cross_entropy(scale * mean @ table.T, labels, ignore_index=IGNORE)
        return loss


def training_loss(agent, batch: dict, function_ids: torch.Tensor, stage: StageConfig,
                  heads: GroundingHeads | None, reduce=None) -> torch.Tensor:
    """`agent` is the prepared (possibly distributed-wrapped) module: its forward is what gets called."""
    if stage.lm_loss_weight == 0:  # projector alignment only: no LM forward at all
        image_embeds = agent(None, pixels=batch.get("pixels"), vision_features=batch.get("vision_features"),
                             image_only=True)
        return stage.grounding_loss_weight * heads(image_embeds, batch["concept"], batch["category"])
    inputs = dict(pixels=batch.get("pixels"), vision_features=batch.get("vision_features"),
                  attention_mask=batch["attention_mask"], labels=batch["labels"], labelled_only=True,
                  name_index=batch.get("name_index"))
    out = agent(batch["input_ids"], **inputs)
    distilled = distillation(agent, batch, inputs, out.logits, stage.distill_weight) \
        if stage.distill_weight > 0 and bool(batch["replay"].any()) else None
    loss = stage.lm_loss_weight * weighted_loss(out.logits, out.targets, function_ids, stage.function_token_weight,
                                                reduce, distilled)
    if heads is not None:
        loss = loss + stage.grounding_loss_weight * heads(out.image_embeds, batch["concept"], batch["category"])
    return loss


def distillation(agent, batch: dict, inputs: dict, logits: torch.Tensor,
                 weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight x KL to the model with its LoRA off, replay mask), both (N,) over the labelled positions: on
    replay rows the model the extension started from is the target, not the gold call."""
    with torch.no_grad(), getattr(agent, "module", agent).lm.disable_adapter():
        teacher = agent(batch["input_ids"], **inputs).logits.float()  # (N, V)
    labelled = batch["labels"][:, 1:] != IGNORE  # (B, T-1), in the order labelled_logits flattens them
    replay = batch["replay"][:, None].expand_as(labelled)[labelled]  # (N,)
    log_teacher = F.log_softmax(teacher, -1)
    kl = (log_teacher.exp() * (log_teacher - F.log_softmax(logits.float(), -1))).sum(-1)  # (N,)
    return weight * kl, replay


def resolve_precision(precision: str) -> str:
    """accelerate's mixed_precision for a stage's `precision` on this machine."""
    if precision != "auto":
        return precision
    return "bf16" if bf16_is_fast() else "no"


def _schedule(optimizer, stage: StageConfig, total_steps: int):
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[stage.schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=math.ceil(total_steps * stage.warmup_ratio),
                         num_training_steps=total_steps)


def _save(accelerator, stage_dir: Path, step: int, epoch: int, batch_in_epoch: int, history: list) -> None:
    save_checkpoint(stage_dir, step, {"epoch": epoch, "batch_in_epoch": batch_in_epoch, "history": history},
                    accelerator)


def start_stage(stage: StageConfig, stage_dir: Path, batch_meaning: str, **accelerator_kwargs):
    """Seed, resolve the precision, make the stage's Accelerator (one process or N), check that the global batch
    splits across the processes, and record the stage's settings in `stage_dir/stage.json`."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(stage.seed)
    precision = resolve_precision(stage.precision)
    accelerator = Accelerator(mixed_precision=precision, cpu=not accelerator_available(), **accelerator_kwargs)
    if stage.batch_size % accelerator.num_processes:
        raise ValueError(f"stage {stage.name}: batch_size {stage.batch_size} ({batch_meaning}) must be a multiple "
                         f"of the {accelerator.num_processes} processes")
    if accelerator.is_main_process:
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / "stage.json").write_text(json.dumps(stage.to_dict(), indent=2))
    accelerator.wait_for_everyone()
    log.info("stage %s: precision %s (asked %s)", stage.name, precision, stage.precision)
    return accelerator


def write_agent(agent: OctopusAgent, stage_dir: Path) -> None:
    """The stage's agent, LoRA (and trainable token rows) folded into plain weights, written atomically."""
    if hasattr(agent.lm, "merge_and_unload"):
        agent.lm = agent.lm.merge_and_unload()
    agent.float()
    staging = stage_dir / "agent.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    agent.save(staging)
    staging.rename(stage_dir / "agent")


def run_stage(agent: OctopusAgent, stage: StageConfig, data_dir: Path, stage_dir: Path,
              max_steps: int | None = None) -> Path:
    """Train one stage and write `stage_dir/agent`; resumes from the newest checkpoint in `stage_dir`."""
    from accelerate.utils import DataLoaderConfiguration

    final = stage_dir / "agent"
    if (final / "config.json").is_file():
        log.info("stage %s: %s exists, skipping", stage.name, final)
        return final
    # split_batches: `batch_size` is the global batch and each of N processes takes 1/N of every batch, so one
    # process and N see the same batches, steps and schedule (the hyper-parameters do not depend on N)
    accelerator = start_stage(stage, stage_dir, "the global batch", gradient_accumulation_steps=stage.grad_accum,
                              dataloader_config=DataLoaderConfiguration(split_batches=True))  # (the plain
    # split_batches= argument is ignored in accelerate 1.x)
    apply_train_modes(agent, stage)
    counts = check_trainable(agent, stage)
    examples = load_examples(data_dir, stage.data, stage.max_examples, stage.seed, stage.kind_shares,
                             stage.language_shares)
    partners = None
    if stage.minimal_pairs:
        examples, partners = minimal_pairs(examples, stage.minimal_pairs, stage.seed)
        log.info("stage %s: %d image-decided rows in minimal pairs", stage.name, sum(p >= 0 for p in partners))
    if stage.query_dropout:
        examples = drop_query_words(examples, stage.query_dropout, stage.seed)
        log.info("stage %s: word dropout %.2f on the requests", stage.name, stage.query_dropout)
    if stage.code_switch:
        examples = code_switched(examples, stage.code_switch, stage.seed)
        log.info("stage %s: %.0f%% of the requests code-switched", stage.name, 100 * stage.code_switch)
    features = None
    if stage.train["vision_encoder"] == "frozen":
        with accelerator.main_process_first():  # the main process fills the cache; the others then read it
            features = FeatureCache(stage_dir / "vision_cache", agent, [r["image"] for r in examples])
    swap = None
    if stage.name_swap and agent.config.projector.name_slots:
        swap = NameSwap(agent.config.projector.names, examples, stage.name_swap, stage.seed,
                        agent.config.projector.spells_names())
        log.info("stage %s: name swap on %.0f%% of the %d rows whose argument the picture names", stage.name,
                 100 * stage.name_swap, sum(swap.named(r) is not None for r in examples))
    collator = Collator(agent, stage.kind, stage.max_length, features, swap)
    sampler = LengthGroupedBatches([collator.length(r) for r in examples], stage.batch_size, stage.seed, partners)
    # its own generator: an iterator draws its base seed from it where an epoch (or a resume) starts. From the
    # global RNG, that draw sat at an epoch's start in one run and at the resume in another, shifting every later
    # dropout mask, so a resumed run drifted from the one never stopped (tests/test_training.py checks equality)
    loader = DataLoader(examples, batch_sampler=sampler, collate_fn=collator,
                        generator=torch.Generator().manual_seed(stage.seed))
    steps_per_epoch = max(1, len(loader) // stage.grad_accum)
    total_steps = max(1, math.ceil(steps_per_epoch * stage.epochs))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    heads = GroundingHeads(agent) if stage.grounding_loss_weight > 0 else None
    if heads is None and stage.lm_loss_weight == 0:
        raise ValueError(f"stage {stage.name}: lm_loss_weight 0 needs grounding_loss_weight > 0 (nothing to learn)")
    params = [p for p in agent.parameters() if p.requires_grad]
    params += list(heads.parameters()) if heads is not None else []
    optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    scheduler = _schedule(optimizer, stage, total_steps)
    agent, optimizer, loader, scheduler = accelerator.prepare(agent, optimizer, loader, scheduler)
    if heads is not None:
        heads = accelerator.prepare(heads)
    function_ids = torch.tensor(agent_token_ids(accelerator.unwrap_model(agent)), device=accelerator.device)

    step, start_epoch, skip, history = 0, 0, 0, []
    resume = load_checkpoint(stage_dir, accelerator)
    if resume is not None:
        meta = resume.meta
        step, start_epoch, skip, history = meta["step"], meta["epoch"], meta["batch_in_epoch"], meta["history"]
        log.info("stage %s: resuming from %s (step %d)", stage.name, resume.path, step)
    log.info("stage %s: %d examples, %d steps of %d, lr %g, %s", stage.name, len(examples), total_steps,
             stage.batch_size * stage.grad_accum, stage.lr, counts)

    progress = tqdm(total=total_steps, initial=step, desc=stage.name, disable=not accelerator.is_main_process)
    started = time.perf_counter()
    epoch = start_epoch
    while step < total_steps:
        sampler.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch_index, batch in enumerate(batches, start=skip):
            with accelerator.accumulate(agent):
                with accelerator.autocast():
                    loss = training_loss(agent, batch, function_ids, stage, heads,
                                         accelerator.reduce if accelerator.num_processes > 1 else None)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            loss_value = accelerator.gather(loss.detach()).mean().item()
            history.append({"step": step, "loss": round(loss_value, 5), "lr": scheduler.get_last_lr()[0]})
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}")
            if step % stage.log_every == 0:
                log.info("stage %s: step %d/%d loss %.4f", stage.name, step, total_steps, loss_value)
            if step % stage.save_every == 0 or step == total_steps:
                _save(accelerator, stage_dir, step, epoch, batch_index + 1, history)
            if step >= total_steps:
                break
        else:
            epoch, skip = epoch + 1, 0
            continue
        break
    progress.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _finish(accelerator.unwrap_model(agent), stage, stage_dir, history, time.perf_counter() - started,
                collator.truncated)
    accelerator.wait_for_everyone()
    return final


def _finish(agent: OctopusAgent, stage: StageConfig, stage_dir: Path, history: list, seconds: float,
            truncated: int) -> None:
    write_agent(agent, stage_dir)
    summary = {"stage": stage.name, "steps": len(history), "seconds_this_run": round(seconds, 1),
               "final_loss": history[-1]["loss"] if history else None, "truncated_examples": truncated,
               "history": history}
    (stage_dir / "losses.json").write_text(json.dumps(summary, indent=1))
    plot_losses(history, stage_dir / "losses.png", stage.name)
    remove_checkpoints(stage_dir)


def plot_losses(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["loss"] for h in history], lw=1)
    ax.set(xlabel="optimizer step", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
