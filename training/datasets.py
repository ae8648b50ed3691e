"""Training examples: rows from the data folder -> padded token ids, labels and pixels.

Alignment rows are (image, caption): the sequence is the image placeholders then the caption, loss on the
caption tokens only. Functional rows are (image, query, target): the sequence is the prompt then the target
call, loss on the target only. Paths in data files are relative to the data folder. Knows the agent's
tokenization (`encode_prompt`, `encode_target`) and nothing about optimisation.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path

import torch

IGNORE = -100


def load_examples(data_dir: Path, file: str, max_examples: int | None, seed: int) -> list[dict]:
    """Rows of a data file; a seeded subset balanced over (function, language) when `max_examples` is set."""
    path = data_dir / file
    if not path.is_file():
        raise FileNotFoundError(f"no {file} in {data_dir} (build data with `octopus data build --out {data_dir}`)")
    if file.endswith(".csv"):
        with path.open(encoding="utf-8") as f:
            rows = [{"image": r["filepath"], "caption": r["title"]} for r in csv.DictReader(f, delimiter="\t")]
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row["image"] = str(data_dir / row["image"])
    if max_examples is None or max_examples >= len(rows):
        return rows
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row.get("function"), row.get("language"))].append(row)
    rng = random.Random(seed)
    queues = [rng.sample(g, len(g)) for _, g in sorted(groups.items(), key=lambda kv: str(kv[0]))]
    subset = []
    while len(subset) < max_examples:  # round-robin over groups keeps the subset balanced
        for queue in queues:
            if queue and len(subset) < max_examples:
                subset.append(queue.pop())
    return subset


class Collator:
    """Turns a list of rows into a padded batch for `OctopusAgent.forward`."""

    def __init__(self, agent, kind: str, max_length: int):
        if kind not in ("alignment", "functional"):
            raise ValueError(f"unknown stage kind {kind!r}")
        self.agent, self.kind, self.max_length = agent, kind, max_length
        tok = agent.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.eos_id = tok.eos_token_id
        self.truncated = 0

    def encode(self, row: dict) -> tuple[list[int], list[int]]:
        agent = self.agent
        if self.kind == "alignment":
            prompt = [agent.tokens.image_id] * agent.num_image_tokens
            target = agent.encode_target(row["caption"]) + [self.eos_id]
        else:
            prompt = agent.encode_prompt(row["query"])
            target = agent.encode_target(row["target"])
        ids = prompt + target
        if len(ids) > self.max_length:
            self.truncated += 1
            ids = ids[: self.max_length]
        labels = [IGNORE] * len(prompt) + target
        return ids, labels[: len(ids)]

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        encoded = [self.encode(r) for r in rows]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            attention[i, : len(ids)] = 1
        pixels = torch.cat([self.agent.pixels(r["image"]) for r in rows])  # (B, 3, S, S)
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention, "pixels": pixels}


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch, so a resumed run sees the same order and can skip what it did."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n
