"""Probes of what the agent sees, beside the function-call metrics (`octopus eval --probe naming`).

The naming probe gives the LM only the image tokens and a cue ("This is" / "这是") and reads the object's name
back two ways, through the very image tokens the agent reads:

- `top1` (greedy): the LM's own continuation must start with the pictured object's name in that language. An LM
  tuned only to emit calls no longer continues a caption, so this reads near 0 after stage 2 whatever it sees.
- `ranked_top1` (closed set): every known object's name is scored as the continuation (its tokens' summed
  log-probability, the name closed by a comma as stage 1's naming text closes it), and the best must be the
  pictured one: top-1 of 133-way naming by the LM's own next-token distribution. `ranked_top1_blank` is the
  same over a plain grey image (one answer for every row: the share of rows that answer happens to fit), the
  floor the picture must beat.
- `ranked_over_blank_top1`: the same ranking of each name's score less its score over the grey image (what the
  picture adds to the name; contextual calibration), so that names the LM favours whatever it sees ("a cat"
  after "This is") do not win by their prior alone.

Rows are `clip_val.jsonl`-style (`image`, `concept`). Results split by whether function-call training rows show
the object (`trained_objects`) or hold it out. Torch only.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from octopus.model.lm import cache_of, with_cache
from octopus.training.data.build import NAMING_CUES, naming_text, object_split_of
from octopus.training.data.concepts import CONCEPTS, concept

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
    past = cache_of(out)
    eos = agent.tokenizer.eos_token_id
    for _ in range(max_new_tokens):
        token = int(out.logits[0, -1].argmax())
        if token == eos:
            break
        generated.append(token)
        text = agent.tokenizer.decode(generated)
        if STOP.search(text):
            break
        out = agent.lm(input_ids=torch.tensor([[token]]), **with_cache(past), use_cache=True)
        past = cache_of(out)
    return agent.tokenizer.decode(generated, skip_special_tokens=True)


def continuation(key: str, language: str) -> str:
    """What follows the cue when the object is named: stage 1's naming text up to its comma, after the space
    stage 1 puts between an English cue and its text (" a cat," after "This is", "猫，" after "这是")."""
    comma = "，" if language == "zh" else ","
    text = naming_text(key, language)
    return ("" if language == "zh" else " ") + text[:text.index(comma) + 1]


class NameScorer:
    """Scores every known object's name as the continuation of image tokens + a cue: the cue runs once, and its
    cached keys and values go to the names in chunks of like length (Chinese names run 3 to 13 tokens: padding
    them all to the longest would more than double the work). `best` is the name (its key in `keys`) of the
    highest summed log-probability."""

    def __init__(self, agent, language: str, keys: tuple[str, ...] | None = None, chunk: int = 32):
        self.agent, self.language = agent, language
        self.keys = keys or tuple(c.key for c in CONCEPTS)
        tok = agent.tokenizer
        self.cue = tok.encode(NAMING_CUES[language], add_special_tokens=False)
        names = [tok.encode(continuation(k, language), add_special_tokens=False) for k in self.keys]
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        order = sorted(range(len(names)), key=lambda i: len(names[i]))
        self.chunks = []  # (indices into keys, (n, width) ids, (n, width) mask)
        for start in range(0, len(order), chunk):
            index = order[start:start + chunk]
            width = max(len(names[i]) for i in index)
            ids = torch.tensor([names[i] + [pad] * (width - len(names[i])) for i in index])
            mask = torch.tensor([[1] * len(names[i]) + [0] * (width - len(names[i])) for i in index])
            self.chunks.append((torch.tensor(index), ids, mask))

    @torch.no_grad()
    def scores(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(len(keys),) summed log-probability of each name after the image tokens and the cue."""
        agent = self.agent
        prefix = [agent.tokens.image_id] * agent.num_image_tokens + self.cue
        out = agent.lm(inputs_embeds=agent.embed(torch.tensor([prefix]), image_embeds=image_embeds), use_cache=True)
        first = out.logits[:, -1:].float()  # (1, 1, V): predicts each name's first token
        scores = torch.empty(len(self.keys))
        for index, ids, mask in self.chunks:
            n = len(index)
            past = copy.deepcopy(cache_of(out))
            past.batch_repeat_interleave(n)
            attention = torch.cat([torch.ones(n, len(prefix), dtype=mask.dtype), mask], dim=1)
            logits = agent.lm(input_ids=ids, attention_mask=attention, **with_cache(past), use_cache=True).logits
            # token j of a name is predicted by the position before it: the cue's last for j = 0
            steps = torch.cat([first.expand(n, 1, -1), logits[:, :-1].float()], dim=1).log_softmax(-1)
            scores[index] = (steps.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
        return scores

    def best(self, image_embeds: torch.Tensor) -> str:
        return self.keys[int(self.scores(image_embeds).argmax())]


def naming_probe(agent, rows: list[dict], data_dir: Path, progress: bool = True,
                 ranked: bool = True) -> tuple[dict[str, Any], list]:
    """(metrics, per-row answers): top-1 naming per language, greedy and (with `ranked`) over every known name,
    overall and by object split and style."""
    agent.eval()
    hits: dict[str, dict[str, dict[str, list[bool]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    answers = []
    scorers = {language: NameScorer(agent, language) for language in NAMING_CUES} if ranked else {}
    floor = {}  # each name's score over a plain grey image: what the LM says with nothing to see
    if ranked:
        grey = agent.image_embeds(agent.pixels(Image.new("RGB", (224, 224), (128, 128, 128))))
        floor = {language: scorer.scores(grey) for language, scorer in scorers.items()}
    for row in tqdm(rows, desc="naming probe", unit="image", disable=not progress, mininterval=2):
        c = concept(row["concept"])
        image_embeds = agent.image_embeds(agent.pixels(data_dir / row["image"]))
        split = "trained_objects" if object_split_of(c.key) == "train" else "held_out_objects"
        for language, cue in NAMING_CUES.items():
            text = describe(agent, image_embeds, cue)
            hit = _normalise(text, language) == _normalise(c.name(language), language)
            answer = {"image": row["image"], "concept": c.key, "language": language, "answer": text, "hit": hit}
            found = {"top1": hit}
            if ranked:
                scorer = scorers[language]
                scores = scorer.scores(image_embeds)
                answer["ranked"] = scorer.keys[int(scores.argmax())]
                answer["ranked_over_blank"] = scorer.keys[int((scores - floor[language]).argmax())]
                found["ranked_top1"] = answer["ranked_hit"] = answer["ranked"] == c.key
                found["ranked_over_blank_top1"] = answer["ranked_over_blank_hit"] = answer["ranked_over_blank"] == c.key
            for group in ("all", split, f"style:{row.get('style', '?')}"):
                for metric, value in found.items():
                    hits[metric][group][language].append(value)
            answers.append(answer)
    metrics: dict[str, Any] = {"rows": len(rows)}
    for metric, groups in hits.items():
        metrics[metric] = {g: {lang: round(sum(v) / len(v), 4) for lang, v in d.items()}
                           for g, d in sorted(groups.items())}
    if ranked and rows:
        metrics["ranked_top1_blank"] = {}
        for language, scorer in scorers.items():
            answer = scorer.keys[int(floor[language].argmax())]
            metrics["ranked_top1_blank"][language] = round(sum(r["concept"] == answer for r in rows) / len(rows), 4)
    return metrics, answers
