"""Probes of what the agent sees, beside the function-call metrics (`octopus eval --probe naming`).

The naming probe gives the LM only the image tokens and a cue ("This is" / "这是"), decodes greedily and
checks that the text starts with the pictured object's name in that language: top-1 naming through the very
image tokens the agent reads. Rows are `clip_val.jsonl`-style (`image`, `concept`). Results split by
whether function-call training rows show the object (`trained_objects`) or hold it out. Torch only.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from octopus.training.data.build import NAMING_CUES, object_split_of
from octopus.training.data.concepts import concept

STOP = re.compile(r"[,，。.;；\n]")


def _normalise(text: str, language: str) -> str:
    text = text.strip().lower()
    if language == "en":
        text = re.sub(r"^(a|an|the|two)\s+", "", text)
    return STOP.split(text, 1)[0].strip()


@torch.no_grad()
def describe(agent, image_embeds: torch.Tensor, cue: str, max_new_tokens: int = 10) -> str:
    """Greedy continuation of image tokens + a cue, with no prompt around them."""
    ids = [agent.tokens.image_id] * agent.num_image_tokens + agent.tokenizer.encode(cue, add_special_tokens=False)
    out = agent.lm(inputs_embeds=agent.embed(torch.tensor([ids]), image_embeds=image_embeds), use_cache=True)
    generated: list[int] = []
    past = out.past_key_values
    eos = agent.tokenizer.eos_token_id
    for _ in range(max_new_tokens):
        token = int(out.logits[0, -1].argmax())
        if token == eos:
            break
        generated.append(token)
        text = agent.tokenizer.decode(generated)
        if STOP.search(text):
            break
        out = agent.lm(input_ids=torch.tensor([[token]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
    return agent.tokenizer.decode(generated, skip_special_tokens=True)


def naming_probe(agent, rows: list[dict], data_dir: Path, progress: bool = True) -> tuple[dict[str, Any], list]:
    """(metrics, per-row answers): top-1 naming per language, overall and by object split."""
    agent.eval()
    hits: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    answers = []
    for row in tqdm(rows, desc="naming probe", unit="image", disable=not progress, mininterval=2):
        c = concept(row["concept"])
        image_embeds = agent.image_embeds(agent.pixels(data_dir / row["image"]))
        split = "trained_objects" if object_split_of(c.key) == "train" else "held_out_objects"
        for language, cue in NAMING_CUES.items():
            text = describe(agent, image_embeds, cue)
            hit = _normalise(text, language) == _normalise(c.name(language), language)
            for group in ("all", split, f"style:{row.get('style', '?')}"):
                hits[group][language].append(hit)
            answers.append({"image": row["image"], "concept": c.key, "language": language, "answer": text,
                            "hit": hit})
    metrics = {"rows": len(rows), "top1": {g: {lang: round(sum(v) / len(v), 4) for lang, v in d.items()}
                                           for g, d in sorted(hits.items())}}
    return metrics, answers
