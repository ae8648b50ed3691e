"""Training examples: rows from the data folder -> padded token ids, labels, category ids and image inputs.

Alignment rows are (image, [cue], caption): the sequence is the image placeholders, an optional text cue
("This is") and the caption, loss on the caption only. Functional rows are (image, query, target): the
prompt then the target call, loss on the target only. Every row also carries the category id of the main
object it shows (or IGNORE), for the projector's auxiliary category loss. Image inputs are pixels, or the
frozen vision encoder's cached output (`FeatureCache`) when the stage does not train the encoder. Paths in
data files are relative to the data folder. Knows the agent's tokenization and nothing about optimisation.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from octopus.training.data.concepts import CATEGORIES, CONCEPTS, concept

log = logging.getLogger(__name__)
IGNORE = -100
KINDS = ("text", "image", "ambiguous", "irrelevant")
CONCEPT_KEYS = [c.key for c in CONCEPTS]


def read_data_file(data_dir: Path, file: str) -> list[dict]:
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
    return rows


def _balanced(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """n rows, round-robin over (function, language) groups, each group in a seeded random order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row.get("function"), row.get("language"))].append(row)
    queues = [rng.sample(g, len(g)) for _, g in sorted(groups.items(), key=lambda kv: str(kv[0]))]
    subset: list[dict] = []
    while len(subset) < n and any(queues):
        for queue in queues:
            if queue and len(subset) < n:
                subset.append(queue.pop())
    return subset


def _counts(n: int, shares: dict[str, float]) -> dict[str, int]:
    """`n` dealt over `shares` by largest remainders: the counts sum to `n`."""
    names = sorted(shares)
    total = sum(shares.values())
    if total <= 0 or min(shares.values()) < 0:
        raise ValueError(f"shares must be >= 0 with a positive sum, got {shares}")
    exact = [n * shares[k] / total for k in names]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(names)), key=lambda i: counts[i] - exact[i])[:n - sum(counts)]:
        counts[i] += 1
    return dict(zip(names, counts))


def load_examples(data_dir: Path, file: str, max_examples: int | None, seed: int,
                  kind_shares: dict[str, float] | None = None,
                  language_shares: dict[str, float] | None = None) -> list[dict]:
    """Rows of a data file; a seeded subset balanced over (function, language) when `max_examples` is set.

    `kind_shares` ({"ambiguous": 0.4, ...}) sets the share of each request kind (`meta.kind`) in the subset,
    `language_shares` ({"en": 0.35, "zh": 0.65}) the share of each language within every kind (else the
    languages share alike); a kind or language with fewer rows than its share gives what it has.
    """
    rows = read_data_file(data_dir, file)
    if max_examples is None or max_examples >= len(rows):
        return rows
    rng = random.Random(seed)
    if not kind_shares and not language_shares:
        return _balanced(rows, max_examples, rng)
    unknown = set(kind_shares or {}) - set(KINDS)
    if unknown:
        raise ValueError(f"kind_shares names unknown kinds {sorted(unknown)}; choose from {KINDS}")
    languages = {row.get("language") for row in rows}
    unknown = set(language_shares or {}) - languages
    if unknown:
        raise ValueError(f"language_shares names unknown languages {sorted(unknown)}; the data has {sorted(languages)}")
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_kind[row.get("meta", {}).get("kind", "text") if kind_shares else "all"].append(row)
    subset = []
    for kind, count in _counts(max_examples, kind_shares or {"all": 1.0}).items():
        if not language_shares:
            subset += _balanced(by_kind[kind], count, rng)
            continue
        by_language: dict[str, list[dict]] = defaultdict(list)
        for row in by_kind[kind]:
            by_language[row.get("language")].append(row)
        for language, share in _counts(count, language_shares).items():
            subset += _balanced(by_language[language], share, rng)
    rng.shuffle(subset)
    return subset


def main_object(row: dict) -> str | None:
    """The key of the object the row's image is about: its concept (naming rows) or the scene's first object."""
    return row.get("concept") or (row.get("meta", {}).get("objects") or [None])[0]


def concept_id(row: dict) -> int:
    """Index of the main object in the concept table, or IGNORE."""
    key = main_object(row)
    return CONCEPT_KEYS.index(key) if key in CONCEPT_KEYS else IGNORE


def category_id(row: dict) -> int:
    """Class id of the main object's category, or IGNORE."""
    key = main_object(row)
    return CATEGORIES.index(concept(key).category) if key in CONCEPT_KEYS else IGNORE


class FeatureCache:
    """The frozen vision encoder's output for a fixed list of images, computed once into a float16 memmap.

    Keyed by a fingerprint of the encoder's weights and preprocessing, so a changed encoder never reads a
    stale cache; filled in chunks with progress, and a killed fill resumes at the first missing chunk.
    """

    CHUNK = 64  # images a resume step covers
    FORWARD_BATCH = 16  # images a forward covers: on 2 CPU cores 16 ran 2-3x faster than 64 (bench/feature_cache.py)
    CHANNELS_LAST = True  # the convolutions' memory layout while filling (1.6x faster on CPU)

    def __init__(self, directory: Path, agent, images: list[str]):
        self.images = sorted(set(images))
        self.index = {p: i for i, p in enumerate(self.images)}
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.fingerprint = _encoder_fingerprint(agent, self.images)
        meta_path = directory / "features.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta.get("fingerprint") != self.fingerprint:
            meta = {"fingerprint": self.fingerprint, "done_chunks": 0}
            (directory / "features.npy").unlink(missing_ok=True)
        tokens, width = agent.vision_encoder.output_shape(agent.config.vision.image_size)
        shape = (len(self.images), tokens, width)
        mode = "r+" if (directory / "features.npy").is_file() else "w+"
        self.array = np.lib.format.open_memmap(directory / "features.npy", mode=mode, dtype=np.float16, shape=shape)
        self._fill(agent, meta, meta_path)

    @torch.no_grad()
    def _fill(self, agent, meta: dict, meta_path: Path) -> None:
        chunks = range(meta["done_chunks"], -(-len(self.images) // self.CHUNK))
        if not chunks:
            return
        encoder = agent.vision_encoder
        was_training = encoder.training
        encoder.eval()
        # the weights go back to the default layout afterwards, so what is saved or exported never sees the change
        layout = torch.channels_last if self.CHANNELS_LAST else torch.contiguous_format
        encoder.to(memory_format=layout)

        def decode(chunk: int) -> torch.Tensor:
            return torch.cat([agent.pixels(p) for p in self.images[chunk * self.CHUNK:(chunk + 1) * self.CHUNK]])

        try:
            with ThreadPoolExecutor(1) as pool:  # decodes the next chunk's JPEGs while this one runs
                pending = pool.submit(decode, chunks[0])
                for chunk in tqdm(chunks, desc="caching vision features", unit="chunk", mininterval=2):
                    pixels = pending.result()
                    if chunk + 1 < chunks.stop:
                        pending = pool.submit(decode, chunk + 1)
                    start = chunk * self.CHUNK
                    for i in range(0, len(pixels), self.FORWARD_BATCH):
                        batch = pixels[i:i + self.FORWARD_BATCH].contiguous(memory_format=layout)
                        # fp32: bf16 autocast ran this CNN 7x slower on an AVX2 CPU
                        features = encoder(batch)  # (B, T, C)
                        self.array[start + i:start + i + len(batch)] = features.float().numpy()
                    meta["done_chunks"] = chunk + 1
                    if chunk % 8 == 7 or chunk == chunks[-1]:
                        self.array.flush()
                        meta_path.write_text(json.dumps(meta))
        finally:
            encoder.to(memory_format=torch.contiguous_format)
            encoder.train(was_training)

    def __call__(self, paths: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.array[self.index[p]] for p in paths]).astype(np.float32))


def _encoder_fingerprint(agent, images: list[str]) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(agent.vision_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes()[:4096])
        digest.update(str(float(tensor.float().sum())).encode())
    digest.update(json.dumps(agent.config.vision.__dict__, sort_keys=True, default=str).encode())
    digest.update("\n".join(images).encode())
    return digest.hexdigest()[:16]


class NameSwap:
    """Training's name swap (`StageConfig.name_swap`) for an agent with name slots: a seeded share of the rows
    whose arguments only the picture names shows another object's name in the slots, and the target names that
    object too, while the function stays the picture's.

    Without it the LM learns the function from the name it reads in the slots, which it has seen only for the
    objects it trained on, and on held-out objects it then picks the function worse than without slots
    (teacher-forced, 400 test rows: image-decided 85.5% -> 78.3%, image swap followed 81.5% -> 64.2%). With
    it the name carries the argument and nothing about the function, which the image tokens must decide
    (share 0.5: function right with another category's name in the slots 39% -> 85% EN, 45% -> 81% ZH;
    held-out image-decided 79.5%, swap followed 70.4%; `bench/results/name_slots.md`). The other name is one
    the training rows name (never a held-out object's); each row's choice is fixed by the seed, so a resumed
    run sees the same batches.
    """

    def __init__(self, names: list[dict[str, str]], rows: list[dict], share: float, seed: int,
                 spells_names: bool | None = None):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"name_swap is a share of rows between 0 and 1, got {share}")
        self.names, self.share, self.seed = names, share, seed
        # only slots that spell the object's own name can carry an argument (`ProjectorConfig.spells_names`):
        # with slots that only `show` other text (a category) nothing is swapped; beside `name.` slots, the
        # swap changes those alone and the category slots keep showing the picture's category
        # (None: as the names say, which is right unless `name.` slots are asked for beside a category)
        if spells_names is None:
            spells_names = not any(entry.get("show") for entry in names)
        self.index = {(lang, name): i for i, entry in enumerate(names) for lang, name in entry.items()
                      if isinstance(name, str)} if spells_names else {}
        seen = {self.named(r) for r in rows} - {None}
        self.candidates = sorted({i for i, _ in seen})

    def named(self, row: dict) -> tuple[int, tuple[str, ...]] | None:
        """(name index, arguments) when every argument only the picture names is one object's name in the
        row's language, else None (e.g. a recycling call whose material the picture decides)."""
        provenance = (row.get("meta") or {}).get("provenance") or {}
        image_args = tuple(a for a, p in provenance.items() if p == "image")
        values = {row.get("arguments", {}).get(a) for a in image_args}
        if not image_args or len(values) != 1:
            return None
        found = self.index.get((row.get("language"), values.pop()))
        return None if found is None else (found, image_args)

    def __call__(self, row: dict) -> tuple[dict, int]:
        """The row as trained (swapped or not) and the name index its slots show (-1: the read-back one)."""
        named = self.named(row) if self.share > 0 else None
        if named is None:
            return row, -1
        rng = random.Random(f"{self.seed}|{row['image']}|{row['query']}")
        index, image_args = named
        others = [i for i in self.candidates if i != index]
        if not others or rng.random() >= self.share:
            return row, -1
        other = rng.choice(others)
        old, new = self.names[index][row["language"]], self.names[other].get(row["language"])
        if not new:
            return row, -1
        target = row["target"]
        for arg in image_args:
            target = target.replace(f'{arg}="{old}"', f'{arg}="{new}"')
        if target == row["target"]:  # the target does not spell the argument as `arg="name"`: keep the row whole
            return row, -1
        arguments = {**row["arguments"], **{a: new for a in image_args}}
        return {**row, "target": target, "arguments": arguments}, other


def minimal_pairs(rows: list[dict], share: float, seed: int) -> tuple[list[dict], list[int]]:
    """Training's minimal pairs (`StageConfig.minimal_pairs`): (rows, partner), `partner[i]` the index of row
    i's partner or -1. A seeded share of the image-decided rows (`meta.kind` ambiguous) whose request has no
    slot is paired with another such row of the same template whose function differs, and the second row
    takes the first's request word for word: the same words over two pictures of different categories, each
    with its own call. `LengthGroupedBatches` puts a pair in one batch, so a step cannot lower the loss of
    both rows from the words alone. The rows, their kinds and their count stay as they were."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"minimal_pairs is a share of image-decided rows between 0 and 1, got {share}")
    rng = random.Random(seed)
    rows, partner = list(rows), [-1] * len(rows)
    by_template: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        meta = row.get("meta") or {}
        if meta.get("kind") == "ambiguous" and not meta.get("slots") and rng.random() < share:
            by_template[meta["template"]].append(i)
    for _, free in sorted(by_template.items()):
        rng.shuffle(free)
        while free:
            a = free.pop()
            b = next((j for j, k in enumerate(free) if rows[k]["function"] != rows[a]["function"]), None)
            if b is None:
                continue
            b = free.pop(b)
            rows[b] = {**rows[b], "query": rows[a]["query"],
                       "meta": {**rows[b]["meta"], "register": rows[a]["meta"].get("register")}}
            partner[a], partner[b] = b, a
    return rows, partner


# a unit of a request that word dropout may drop: one CJK character, or one run of other non-space characters
# (an English word with its punctuation) with the spaces after it
_UNIT = re.compile(r"[\u3400-\u9fff]|[^\s\u3400-\u9fff]+\s*|\s+")


def slot_mask(row: dict) -> list[bool]:
    """Which characters of the request lie inside a slot value the call copies or maps (`meta.slots`): what
    request augmentation keeps as it is, so the target still matches what the request says."""
    query = row["query"]
    kept = [False] * len(query)
    for value in map(str, ((row.get("meta") or {}).get("slots") or {}).values()):
        for found in re.finditer(re.escape(value), query) if value else ():
            kept[found.start():found.end()] = [True] * len(value)
    return kept


def drop_query_words(rows: list[dict], rate: float, seed: int) -> list[dict]:
    """Training's word dropout (`StageConfig.query_dropout`): each request loses each of its units (a Chinese
    character, an English word) with probability `rate`, except the units inside a slot value the call copies
    or maps (`meta.slots`), so the target still matches what the request says. The LM then cannot lean on one
    word of a trained wording ("掉" of "我好像把钥匙掉在沙发了") and must read the rest of the request too.
    Each row's draw is fixed by the seed, so a resumed run sees the same batches; rows whose request would lose
    every unit keep it whole."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"query_dropout is a probability in [0, 1), got {rate}")
    if rate == 0:
        return rows
    out = []
    for row in rows:
        query, kept = row["query"], slot_mask(row)
        rng = random.Random(f"{seed}|{row['image']}|{query}")
        parts, dropped = [], False
        for unit in _UNIT.finditer(query):
            text, start, end = unit.group(), unit.start(), unit.end()
            if not text.isspace() and not any(kept[start:end]) and rng.random() < rate:
                dropped = True
                continue
            parts.append(text)
        words = "".join(parts).strip()
        out.append({**row, "query": words} if dropped and words else row)
    return out


class Collator:
    """Turns a list of rows into a padded batch for the training loop."""

    def __init__(self, agent, kind: str, max_length: int, features: FeatureCache | None = None,
                 name_swap: NameSwap | None = None):
        if kind not in ("alignment", "functional"):
            raise ValueError(f"unknown stage kind {kind!r}")
        self.agent, self.kind, self.max_length, self.features = agent, kind, max_length, features
        self.name_swap = name_swap
        tok = agent.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.eos_id = tok.eos_token_id
        self.truncated = 0

    def encode(self, row: dict) -> tuple[list[int], list[int]]:
        agent = self.agent
        if self.kind == "alignment":
            cue = row.get("prompt") or ""
            prompt = [agent.tokens.image_id] * agent.num_image_tokens
            prompt += agent.tokenizer.encode(cue, add_special_tokens=False) if cue else []
            space = " " if cue and row.get("language") != "zh" else ""  # "This is" + " a pizza"; "这是" + "披萨"
            target = agent.encode_target(space + row["caption"]) + [self.eos_id]
        else:
            prompt = agent.encode_prompt(row["query"])
            target = agent.encode_target(row["target"])
        ids = prompt + target
        if len(ids) > self.max_length:
            self.truncated += 1
            ids = ids[: self.max_length]
        labels = [IGNORE] * len(prompt) + target
        return ids, labels[: len(ids)]

    def length(self, row: dict) -> int:
        return min(self.max_length, len(self.encode(row)[0]))

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        name_index = None
        if self.name_swap is not None:
            rows, name_index = zip(*(self.name_swap(r) for r in rows))
        encoded = [self.encode(r) for r in rows]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            attention[i, : len(ids)] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention,
                 "category": torch.tensor([category_id(r) for r in rows]),
                 "concept": torch.tensor([concept_id(r) for r in rows]),
                 "replay": torch.tensor([bool(r.get("meta", {}).get("replay")) for r in rows])}
        if name_index is not None:
            batch["name_index"] = torch.tensor(name_index)
        if self.features is not None:
            batch["vision_features"] = self.features([r["image"] for r in rows])  # (B, T, C)
        else:
            batch["pixels"] = torch.cat([self.agent.pixels(r["image"]) for r in rows])  # (B, 3, S, S)
        return batch


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Seeded batches of similar length: a permutation per epoch, cut into windows of 32 batches, each window
    sorted by length and cut into batches, the batches shuffled (a short last batch stays last). Less padding,
    the same data per epoch, and the same order after a resume. With `partners` (`minimal_pairs`) a pair is
    one unit, placed side by side in one batch (a pair that would straddle two waits for the next single row),
    and a window's rows that do not fill a batch open the next window's first batch."""

    WINDOW = 32

    def __init__(self, lengths: list[int], batch_size: int, seed: int, partners: list[int] | None = None):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0
        self.units: list[tuple[int, ...]] = []
        for i in range(len(lengths)):
            other = partners[i] if partners else -1
            if other < 0:
                self.units.append((i,))
            elif other > i:
                self.units.append((i, other))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = [self.units[u] for u in torch.randperm(len(self.units), generator=g).tolist()]
        window, size = self.WINDOW * self.batch_size, self.batch_size
        batches, carry = [], []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda unit: max(self.lengths[i] for i in unit))
            flat, waiting = list(carry), []
            for unit in chunk:  # a pair that would straddle a batch's edge waits for the next single row
                if len(unit) == 2 and len(flat) % size == size - 1:
                    waiting.append(unit)
                    continue
                flat += unit
                while waiting and len(flat) % size != size - 1:
                    flat += waiting.pop(0)
            flat += [i for unit in waiting for i in unit]
            cut = len(flat) if start + window >= len(order) else len(flat) - len(flat) % size
            batches += [flat[i:i + size] for i in range(0, cut, size)]
            carry = flat[cut:]
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        # the one short batch goes last: split across N processes, accelerate yields only full batches and
        # completes the last one, so 1 and N processes then take the same batches in the same order
        full = [b for b in shuffled if len(b) == self.batch_size]
        return iter(full + [b for b in shuffled if len(b) < self.batch_size])

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)
