"""Stage 3's LLM reward model: a small LM with a scalar head, trained with TRL's `RewardTrainer` on preference
pairs built from the data (`octopus train reward`).

It reads text only: the request, the objects in the scene (the data generator records them) and a candidate
call written with the function's *name* (its tokenizer has no `<nexa_k>`), e.g.

    Request: can you order this for me?
    Objects in the photo: pizza (披萨), plastic cup (塑料杯)
    Call: doordash_delivery(dish="pizza")

Each pair puts the correct call over one plausible wrong one, of a named kind (`WRONG_KINDS`), plus on-policy
negatives: calls the SFT model itself makes that the rules mark wrong. Pairwise accuracy on pairs built from
the test split (held-out templates and objects) is reported overall and per kind in `reward_model.json`.
The backbone is the agent's own LM source (the packaged SmolLM2-135M for `quick`, a HF id or a local folder
otherwise; the tiny profile's random LM in CI).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path

import torch

from octopus.calls import format_call
from octopus.evaluate import read_eval_rows
from octopus.functions import get_function
from octopus.model.config import LMConfig
from octopus.model.lm import build_tiny_tokenizer, resolve_source
from octopus.training.datasets import read_data_file
from octopus.training.loop import resolve_precision
from octopus.training.rewards import call_as_text, describe_request

log = logging.getLogger(__name__)
WRONG_KINDS = ("wrong_function", "other_object", "missing_argument", "invented_argument", "wrong_language",
               "none_when_one_fits", "call_when_none_fits", "on_policy")


def gold_text(row: dict) -> str:
    return call_as_text(format_call(row["function"], row.get("arguments") or {}))


def _call(function: str | None, arguments: dict) -> str:
    return call_as_text(format_call(function, arguments))


def _wrong(row: dict, kind: str, pools: dict, rng: random.Random) -> str | None:
    """One wrong call of `kind` for `row`, or None when that kind does not apply to the row."""
    function, args = row["function"], dict(row.get("arguments") or {})
    meta, language = row.get("meta") or {}, row.get("language")
    if kind == "call_when_none_fits":
        if function is not None:
            return None
        other = rng.choice(pools["with_function"])
        return _call(other["function"], other.get("arguments") or {})
    if function is None:
        return None
    if kind == "none_when_one_fits":
        return "none"
    if kind in ("wrong_function", "other_object"):
        key = (meta.get("template"),) if kind == "other_object" else (meta.get("kind"), language)
        pool = pools["template" if kind == "other_object" else "kind"].get(key, [])
        others = [r for r in pool if r["function"] not in (None, function)]
        if not others:
            return None
        other = rng.choice(others)
        return _call(other["function"], other.get("arguments") or {})
    spec = get_function(function)
    if kind == "missing_argument":
        if not args:
            return None
        del args[rng.choice(sorted(args))]
        return _call(function, args)
    same = [r for r in pools["function"].get(function, []) if r.get("language") == language]
    if kind == "invented_argument":
        unused = [a for a in spec.arguments if a.name not in args]
        made_up = [a for a in unused if a.type == "integer" or a.enum is not None]
        if made_up:  # a quantity, a style or a service nobody asked for
            arg = rng.choice(made_up)
            args[arg.name] = rng.randint(2, 6) if arg.type == "integer" else rng.choice(arg.enum)
            return _call(function, args)
        unused = [a.name for a in unused]
        donors = [r for r in same if set(r.get("arguments") or {}) & set(unused)]
        if unused and donors:
            donor = rng.choice(donors)
            name = rng.choice(sorted(set(donor["arguments"]) & set(unused)))
            args[name] = donor["arguments"][name]
            return _call(function, args)
        strings = [n for n, v in args.items() if isinstance(v, str)]
        donors = [r for r in same if any((r.get("arguments") or {}).get(n) not in (None, args[n]) for n in strings)]
        if not donors:
            return None
        donor = rng.choice(donors)
        name = rng.choice([n for n in strings if donor["arguments"].get(n) not in (None, args[n])])
        args[name] = donor["arguments"][name]
        return _call(function, args)
    if kind == "wrong_language":
        free = [a.name for a in spec.arguments
                if isinstance(args.get(a.name), str) and a.enum is None and a.pattern is None and a.name != "recipient"]
        donors = [r for r in pools["function"].get(function, []) if r.get("language") not in (None, language)
                  and any(isinstance((r.get("arguments") or {}).get(n), str) for n in free)]
        if not free or not donors:
            return None
        donor = rng.choice(donors)
        name = rng.choice([n for n in free if isinstance(donor["arguments"].get(n), str)])
        args[name] = donor["arguments"][name]
        return _call(function, args)
    raise ValueError(f"unknown wrong-call kind {kind!r}")


def _pair(row: dict, rejected: str, kind: str) -> dict:
    return {"prompt": describe_request(row["query"], (row.get("meta") or {}).get("objects")),
            "chosen": gold_text(row), "rejected": rejected, "kind": kind, "language": row.get("language")}


def build_pairs(rows: list[dict], n: int, seed: int = 0, on_policy: list[dict] | None = None) -> list[dict]:
    """About `n` pairs {prompt, chosen, rejected, kind}, the kinds in equal shares (a kind that cannot be made
    for a row is drawn again on another row), plus every on-policy negative given ({row, completion})."""
    rng = random.Random(seed)
    pools = {"with_function": [r for r in rows if r["function"] is not None],
             "template": defaultdict(list), "kind": defaultdict(list), "function": defaultdict(list)}
    for r in rows:
        meta = r.get("meta") or {}
        pools["template"][(meta.get("template"),)].append(r)
        pools["kind"][(meta.get("kind"), r.get("language"))].append(r)
        if r["function"] is not None:
            pools["function"][r["function"]].append(r)
    kinds = [k for k in WRONG_KINDS if k != "on_policy"]
    pairs = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        for _ in range(50):
            row = rng.choice(rows)
            rejected = _wrong(row, kind, pools, rng)
            if rejected is not None and rejected != gold_text(row):
                pairs.append(_pair(row, rejected, kind))
                break
    for item in on_policy or []:
        row, rejected = item["row"], call_as_text(item["completion"])
        if rejected != gold_text(row):
            pairs.append(_pair(row, rejected, "on_policy"))
    rng.shuffle(pairs)
    return pairs


def load_backbone(lm: LMConfig, source: str | Path | None = None):
    """(sequence-classification model with one output, tokenizer) from the agent's LM source or a folder."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    if source is not None:
        return (AutoModelForSequenceClassification.from_pretrained(source, num_labels=1),
                AutoTokenizer.from_pretrained(source))
    if lm.inline is not None:
        inline = dict(lm.inline)
        config = AutoConfig.for_model(inline.pop("model_type"), num_labels=1, **inline)
        return AutoModelForSequenceClassification.from_config(config), build_tiny_tokenizer(config.vocab_size)
    path = resolve_source(lm)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1), AutoTokenizer.from_pretrained(path)


class RewardModel:
    """A trained reward model folder, callable as a stage-3 reward (sigmoid of the score, in [0, 1])."""

    __name__ = "reward_model_reward"

    def __init__(self, directory: str | Path, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        directory = Path(directory)
        if not (directory / "model" / "config.json").is_file():
            raise FileNotFoundError(f"{directory} is not a reward model (train one with `octopus train reward`)")
        self.model = AutoModelForSequenceClassification.from_pretrained(directory / "model").eval()
        self.tokenizer = AutoTokenizer.from_pretrained(directory / "model")
        self.batch_size = batch_size

    @torch.no_grad()
    def scores(self, texts: list[str]) -> list[float]:
        """One score a text; each distinct text runs once (a GRPO group's samples are often the same call), in
        batches of similar lengths (English and Chinese texts differ by 2x in tokens: less padding)."""
        encoded = {t: encode_text(self.tokenizer, t) for t in texts}
        unique = sorted(encoded, key=lambda t: len(encoded[t]))
        out: list[float] = []
        for start in range(0, len(unique), self.batch_size):
            out += self.batch_scores([encoded[t] for t in unique[start:start + self.batch_size]])
        score = dict(zip(unique, out))
        return [score[t] for t in texts]

    @torch.no_grad()
    def batch_scores(self, ids: list[list[int]]) -> list[float]:
        """The scores of one batch of encoded texts (`encode_text`), right-padded."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, row in enumerate(ids):
            input_ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
        return self.model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().tolist()

    def __call__(self, prompts, completions, **columns) -> list[float]:
        queries = columns.get("query") or [""] * len(completions)
        metas = columns.get("meta") or [{}] * len(completions)
        texts = [describe_request(q, (m or {}).get("objects")) + call_as_text(c)
                 for q, m, c in zip(queries, metas, completions)]
        return [1.0 / (1.0 + math.exp(-s)) for s in self.scores(texts)]

    def pairwise_accuracy(self, pairs: list[dict]) -> dict:
        chosen = self.scores([p["prompt"] + p["chosen"] for p in pairs])
        rejected = self.scores([p["prompt"] + p["rejected"] for p in pairs])
        by_kind: dict[str, list[bool]] = defaultdict(list)
        by_language: dict[str, list[bool]] = defaultdict(list)
        for p, c, r in zip(pairs, chosen, rejected):
            by_kind[p["kind"]].append(c > r)
            by_language[p.get("language") or "unknown"].append(c > r)
        hits = [h for v in by_kind.values() for h in v]
        share = lambda groups: {k: round(sum(v) / len(v), 4) for k, v in sorted(groups.items())}  # noqa: E731
        return {"pairs": len(pairs), "accuracy": round(sum(hits) / max(1, len(hits)), 4),
                "by_kind": share(by_kind), "by_language": share(by_language)}


def encode_text(tokenizer, text: str, max_length: int = 256) -> list[int]:
    """A reward-model input as training and scoring both read it: the text, then the end-of-text token."""
    return tokenizer(text + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"][:max_length]


def _tokenized(pairs: list[dict], tokenizer, max_length: int = 256) -> list[dict]:
    return [{"chosen_ids": encode_text(tokenizer, p["prompt"] + p["chosen"], max_length),
             "rejected_ids": encode_text(tokenizer, p["prompt"] + p["rejected"], max_length)} for p in pairs]


def is_trained(out_dir: Path) -> bool:
    """A reward model folder is trained once its report is written (the last thing training does)."""
    return (out_dir / "reward_model.json").is_file()


def train_reward_model(lm: LMConfig, data_dir: Path, out_dir: Path, *, pairs: int, steps: int, batch_size: int,
                       lr: float, seed: int = 0, on_policy: list[dict] | None = None,
                       source: str | Path | None = None, train_layers: int | None = None,
                       activation_checkpointing: bool = False) -> Path:
    """Train (or resume) the reward model into `out_dir` (model/, reward_model.json); skips when it exists.

    `activation_checkpointing` stays off: TRL's RewardConfig turns it on, and transformers then makes the input
    embeddings require grad, so backward (and the recomputed forward) ran through every layer of the LM, the frozen
    ones below `train_layers` included (twice the time a step, bench/reward_model_speed.py)."""
    from accelerate import PartialState
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    if is_trained(out_dir):
        log.info("reward model: %s exists, skipping", out_dir)
        return out_dir
    state = PartialState()
    train_rows = read_data_file(data_dir, "train.jsonl")
    train_pairs = build_pairs(train_rows, pairs, seed, on_policy)
    test_rows = read_eval_rows(data_dir / "test.jsonl")
    held_out = build_pairs(test_rows, max(len(WRONG_KINDS) * 25, pairs // 4), seed + 1)
    torch.manual_seed(seed)  # the score head starts at random: the same seed, the same reward model
    model, tokenizer = load_backbone(lm, source)
    model.get_input_embeddings().requires_grad_(False)
    layers = getattr(getattr(model, "base_model", model), "layers", None)
    if train_layers is not None and layers is not None:  # the layers below run without grad: backward stops at
        for layer in list(layers)[:max(0, len(layers) - train_layers)]:  # the lowest trained one (measured on 2
            layer.requires_grad_(False)  # cores: all 30 layers of SmolLM2 took 15-17 s a step of 16 pairs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    log.info("reward model: %d training pairs (%s), %d held-out pairs, %d steps of %d", len(train_pairs),
             dict(sorted(_count(train_pairs).items())), len(held_out), steps, batch_size)
    checkpoints = out_dir / "checkpoints"
    args = RewardConfig(output_dir=str(checkpoints), max_steps=steps, per_device_train_batch_size=batch_size,
                        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=max(1, steps // 20),
                        logging_steps=max(1, steps // 30), save_steps=max(1, steps // 5), save_total_limit=1,
                        report_to=[], seed=seed, max_length=256, disable_tqdm=not state.is_main_process,
                        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
                        bf16=resolve_precision("auto") == "bf16", save_only_model=False,
                        gradient_checkpointing=activation_checkpointing)
    trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_list(_tokenized(train_pairs, tokenizer)))
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = round(time.perf_counter() - started, 1)
    if state.is_main_process:
        trainer.model.save_pretrained(out_dir / "model")
        tokenizer.save_pretrained(out_dir / "model")
        report = RewardModel(out_dir).pairwise_accuracy(held_out)
        report["train_accuracy"] = RewardModel(out_dir).pairwise_accuracy(train_pairs[:400])["accuracy"]
        report["training_pairs"] = dict(sorted(_count(train_pairs).items()))
        report["train_seconds"] = train_seconds  # the optimizer steps alone (this run's, if it resumed)
        report["history"] = [h for h in trainer.state.log_history if "loss" in h]
        (out_dir / "reward_model.json").write_text(json.dumps(report, indent=1))
        log.info("reward model: held-out pairwise accuracy %s, by kind %s", report["accuracy"], report["by_kind"])
        shutil.rmtree(checkpoints, ignore_errors=True)
    state.wait_for_everyone()
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # the Trainer's precision settings must not bind stage 3's Accelerator
    return out_dir


def _count(pairs: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for p in pairs:
        counts[p["kind"]] += 1
    return counts

