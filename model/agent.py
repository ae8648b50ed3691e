"""The agent: `vision_encoder` -> `projector` -> `lm`, three named children of one module.

The prompt is tokenized with N image placeholder tokens (`octopus.prompt`); `embed` replaces the embeddings
at those positions with the projected image tokens by mask, so the sequence length never changes inside the
model (which also keeps the ONNX graphs simple). `generate` is greedy, constrains the first token to the
functional tokens and the no-function token, and stops at `<nexa_end>`. The LM is any transformers causal LM,
used as it is: no subclassing. `save`/`load` move the whole agent as one directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from octopus.calls import parse_and_validate
from octopus.generation import MAX_NEW_TOKENS, ArgumentConstraint, Generation, greedy_decode, reject_bias_for
from octopus.model.config import NAME_KEY, AgentConfig, slot_spells_name
from octopus.model.lm import cache_of, input_embedding_table, load_lm, with_cache
from octopus.model.projector import ClassNames, NameSlots, Projector
from octopus.model.tokens import TokenTable, add_agent_tokens
from octopus.model.vision import VisionEncoder, imagenet_head
from octopus.preprocess import load_image, preprocess
from octopus.prompt import check_query_ids, check_query_text, query_limit, split_prompt

VISION_WEIGHTS = "vision_projector.safetensors"
IMAGENET_NAMES = Path(__file__).parent / "imagenet_names.json"  # name -> its ImageNet classes (slot_imagenet)
LABEL_IGNORE = -100  # positions without a label, as transformers' losses mark them


MIN_SHARED_PREFIX = 4  # tokens: below this, running the head once saves less than the extra call costs


def shared_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, image_id: int) -> int:
    """How many leading positions every row of a batch shares (same token, unpadded, no image placeholder:
    those carry each row's own image), or 0 for a batch of one row or fewer than MIN_SHARED_PREFIX."""
    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(0) & (input_ids[0] != image_id)  # (T,)
    if attention_mask is not None:
        same &= attention_mask.bool().all(0)
    length = int(same.long().cumprod(0).sum())
    # the last position stays out, so the second call always has a token of each row to run
    length = min(length, input_ids.shape[1] - 1)
    return length if length >= MIN_SHARED_PREFIX else 0


def left_padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of embeddings (T_i, D) as one batch, padded on the left so each ends at the last column: (B, T, D)
    embeddings, the (B, T) attention mask and (B, T) position ids counting from 0 at each row's first token."""
    width = max(len(r) for r in rows)
    embeds = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=rows[0].device)
    for i, r in enumerate(rows):
        embeds[i, width - len(r):], mask[i, width - len(r):] = r, 1
    return embeds, mask, (mask.cumsum(1) - 1).clamp(min=0)


def text_key(table: torch.Tensor, tokenizer, texts) -> torch.Tensor:
    """(D,) the unit mean of each text's unit mean token embedding (rows of `table`, (V, D)): the vector stage 1
    pulls the mean image token of an object (its EN and ZH names) or a category towards, and a name slot's key."""
    rows = [torch.nn.functional.normalize(table[tokenizer.encode(t, add_special_tokens=False)].float().mean(0), dim=0)
            for t in texts]
    return torch.nn.functional.normalize(torch.stack(rows).mean(0), dim=0)


def name_slots(names: list[dict[str, str]], slots: dict[str, int], tokenizer,
               embeddings: torch.Tensor) -> NameSlots | None:
    """The name-slot tables for `projector.names` / `projector.name_slots`, from the LM's input embeddings (V, D).

    Each name's key is the mean of its names' unit mean token embeddings, every language it has (the vectors
    stage 1 pulls the mean image token to); its slots hold, key by key of `slots`, the embeddings of the tokens
    of a text, left-padded with zeros (and cut) to the key's slot count: a language key (`en`) spells the
    entry's `show` text in that language (the name itself when it has none), a `name.` key (`name.zh`) always
    the object's own name, so an agent can show the category (which decides the function) and the name (which
    an argument copies) side by side. Slots that spell an object's own name are the ones training's name swap
    may change. None when `slots` is empty."""
    if not slots:
        return None
    if not names:
        raise ValueError("projector.name_slots needs projector.names: the objects the agent can name")
    if any(not isinstance(n, int) or n < 1 for n in slots.values()):
        raise ValueError(f"projector.name_slots must map each key (a language, or {NAME_KEY}<language>) to a "
                         f"positive count, got {slots}")
    table = embeddings.detach().float()
    keys, rows = [], []
    for entry in names:
        shown = entry.get("show") or {}
        texts = {key: entry.get(key.removeprefix(NAME_KEY)) if key.startswith(NAME_KEY) else (shown or entry).get(key)
                 for key in slots}
        missing = [(f"show.{key}" if shown and not key.startswith(NAME_KEY) else key.removeprefix(NAME_KEY))
                   for key, text in texts.items() if not text]
        if missing:
            raise ValueError(f"projector.names entry {entry} has no {'/'.join(missing)} name")
        parts = []
        for key, count in slots.items():
            ids = tokenizer.encode(texts[key], add_special_tokens=False)[:count]
            parts.append(torch.cat([table.new_zeros(count - len(ids), table.shape[1]), table[ids]]))
        # the key reads every name the entry has (EN and ZH), as stage 1's grounding loss does, whichever
        # languages the slots spell
        keys.append(text_key(table, tokenizer, [name for name in entry.values() if isinstance(name, str)]))
        rows.append(torch.cat(parts))
    swappable = torch.cat([torch.full((count,), slot_spells_name(key, names)) for key, count in slots.items()])
    return NameSlots(torch.stack(keys), torch.stack(rows), swappable)


def imagenet_names(config: AgentConfig) -> ClassNames | None:
    """The packaged ImageNet head as a reader of `projector.names` (`projector.slot_imagenet`): each name's
    classes are its entry's `imagenet` list, else those `imagenet_names.json` gives its English name; a name with
    none is never read this way. None when the setting is off."""
    threshold = config.projector.slot_imagenet
    if not threshold:
        return None
    if not config.projector.name_slots:
        raise ValueError("projector.slot_imagenet chooses what the name slots show: the agent has no name slots")
    weight, bias = imagenet_head(config.vision)
    table = {k: v for k, v in json.loads(IMAGENET_NAMES.read_text(encoding="utf-8")).items() if not k.startswith("_")}
    members = torch.zeros(len(weight), len(config.projector.names))
    for j, entry in enumerate(config.projector.names):
        classes = entry.get("imagenet", table.get(entry.get("en"), []))
        if not isinstance(classes, list) or any(not isinstance(c, int) or not 0 <= c < len(weight) for c in classes):
            raise ValueError(f"projector.names entry {entry.get('en')!r}: imagenet must list class indices in "
                             f"0..{len(weight) - 1}, got {classes!r}")
        members[classes, j] = 1
    return ClassNames(weight, bias, members, threshold)


class LabelledLogits(NamedTuple):
    logits: torch.Tensor  # (N, V) at the labelled positions
    targets: torch.Tensor  # (N,)
    image_embeds: torch.Tensor | None  # (B, N_image, D), for auxiliary losses on the projector


class OctopusAgent(nn.Module):
    def __init__(self, config: AgentConfig, vision_encoder: VisionEncoder, lm: nn.Module, tokenizer):
        super().__init__()
        self.config = config
        self.vision_encoder = vision_encoder
        grid_tokens, vision_width = vision_encoder.output_shape(config.vision.image_size)
        text_embeddings = input_embedding_table(lm)  # (V, D), as the LM reads them
        d_model = text_embeddings.shape[1]
        text_rms = float(text_embeddings.float().pow(2).mean().sqrt())
        names = name_slots(config.projector.names, config.projector.name_slots, tokenizer, text_embeddings)
        self.projector = Projector(config.projector, grid_tokens, vision_width, d_model, text_rms, names)
        self.class_names = imagenet_names(config)  # buffers only: nothing of it is saved or trained
        self.lm = lm
        self.tokenizer = tokenizer
        self.registry = config.registry()  # the ten, then any user functions
        self.tokens = TokenTable.from_tokenizer(tokenizer, self.registry)
        self.input_grad = True  # False: training adapts only upper LM layers, so inputs need no grad
        self.reject_bias = dict(config.reject_bias)  # decoding only: eval and ask may change it
        # enumerated argument values are decoded from their schema's list and copied ones from the request, as on
        # the device (None: plain greedy)
        self.constraint: ArgumentConstraint | None = ArgumentConstraint.for_registry(
            self.registry, self.tokens.function_ids, lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
            tokenizer.convert_ids_to_tokens)

    @classmethod
    def build(cls, config: AgentConfig, load_pretrained: bool = True) -> OctopusAgent:
        """A new agent from a config: pretrained parts loaded, agent tokens added and initialised."""
        vision_encoder = VisionEncoder.from_config(config.vision, load_pretrained)
        lm, tokenizer = load_lm(config.lm)
        add_agent_tokens(lm, tokenizer, config.tokens.init, config.tokens.extra_descriptions, config.registry())
        return cls(config, vision_encoder, lm, tokenizer)

    @property
    def num_image_tokens(self) -> int:
        """Placeholders a prompt holds for an image: the image tokens, then any name slots."""
        return self.config.projector.num_image_tokens + sum(self.config.projector.name_slots.values())

    # --- tokenization -------------------------------------------------------------------------------
    def encode_prompt(self, query: str, with_image: bool = True) -> list[int]:
        """Prompt ids: the fixed prefix, N image placeholders, then the query (tokenized separately). Control tokens
        are placed by id only: text that spells one (a user typing "<nexa_0>") is tokenized as plain text."""
        prefix, _, rest = split_prompt(query, 0)
        images = [self.tokens.image_id] * (self.num_image_tokens if with_image else 0)
        return self.encode_text(prefix) + images + self.encode_text(rest)

    def encode_text(self, text: str) -> list[int]:
        """Ids of user or prompt text, never a special token (the runtime's `encode` does the same)."""
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def encode_target(self, target: str) -> list[int]:
        return self.tokenizer.encode(target, add_special_tokens=False)

    def pixels(self, image) -> torch.Tensor:
        """(1, 3, S, S) pixels for a PIL image or an image path."""
        if isinstance(image, (str, Path)):
            image = load_image(image)
        v = self.config.vision
        return torch.from_numpy(preprocess(image, v.image_size, v.mean, v.std))[None]

    # --- forward ------------------------------------------------------------------------------------
    def image_embeds(self, pixels: torch.Tensor, name_index: torch.Tensor | None = None) -> torch.Tensor:
        if self.projector.names is not None and self.config.projector.slot_flip:
            # the image and its mirror in one vision pass; the mirror only steers which name the slots show
            patches, mirror = self.vision_encoder(torch.cat([pixels, pixels.flip(-1)])).chunk(2)
        else:
            patches, mirror = self.vision_encoder(pixels), None
        known = None if self.class_names is None else self.class_names(patches, mirror)  # (B,): -1 where unsure
        return self.projector(patches, name_index, mirror, known)  # (B, N, D)

    def embed(self, input_ids: torch.Tensor, pixels: torch.Tensor | None = None,
              image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the image placeholders replaced by image embeddings (same length)."""
        embeds = self.lm.get_input_embeddings()(input_ids)  # (B, T, D)
        if pixels is None and image_embeds is None:
            return embeds
        if image_embeds is None:
            image_embeds = self.image_embeds(pixels)  # (B, N, D)
        mask = input_ids == self.tokens.image_id  # (B, T)
        counts = mask.sum(1)
        if not bool(((counts == image_embeds.shape[1]) | (counts == 0)).all()):
            raise ValueError(f"each row needs 0 or {image_embeds.shape[1]} image tokens, got {counts.tolist()}")
        slot = (mask.long().cumsum(1) - 1).clamp(min=0)  # (B, T): index of the image token at each position
        gathered = torch.gather(image_embeds.to(embeds.dtype), 1,
                                slot[..., None].expand(-1, -1, embeds.shape[-1]))  # (B, T, D)
        return torch.where(mask[..., None], gathered, embeds)

    def forward(self, input_ids, pixels=None, attention_mask=None, labels=None, image_embeds=None,
                vision_features=None, labelled_only: bool = False, image_only: bool = False, name_index=None,
                prompt_groups: bool = False):
        """The LM's output for a batch; image input as pixels, the vision encoder's output (`vision_features`,
        e.g. cached) or ready image embeddings. `labelled_only=True` (training) returns `LabelledLogits`;
        `image_only=True` returns the image embeddings without running the LM. `name_index` (B,): the name
        slots to show per row where >= 0 instead of the read-back ones (training's name swap).
        `prompt_groups=True` (with `labelled_only`): rows are a prompt then its labelled completion, and rows in a
        run with the same prompt share one pass over it (GRPO's G samples of a prompt)."""
        if vision_features is not None:
            image_embeds = self.projector(vision_features, name_index)  # (B, N, D)
        elif pixels is not None and image_embeds is None:
            image_embeds = self.image_embeds(pixels, name_index)
        if image_only:
            return image_embeds
        if labelled_only and prompt_groups:
            return self.grouped_labelled_logits(input_ids, labels, image_embeds)
        if labelled_only:
            return self.labelled_logits(input_ids, labels, attention_mask, image_embeds)
        embeds = self.embed(input_ids, image_embeds=image_embeds)
        return self.lm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)

    def labelled_logits(self, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask=None,
                        image_embeds: torch.Tensor | None = None) -> LabelledLogits:
        """Next-token logits (N, V) at the N labelled positions only, and their targets (N,).

        Training needs no logits elsewhere, and the output layer over a 49k vocabulary at every position
        cost a third of a training step. The LM's decoder and output layer are its own, called in order.
        The prompt's instruction, the same tokens at the head of every row, runs once and its KV cache is
        repeated over the batch (`shared_prefix`): the same numbers, a quarter fewer token-steps in stage 2.
        """
        embeds = self.embed(input_ids, image_embeds=image_embeds)  # (B, T, D)
        if not self.input_grad:  # training with the lower layers frozen (StageConfig.lora_layers)
            embeds = embeds.detach()
        causal = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm  # LoRA-wrapped or not
        decoder = causal.get_decoder()
        shared = shared_prefix(input_ids, attention_mask, self.tokens.image_id)
        if shared:
            head = decoder(inputs_embeds=embeds[:1, :shared], use_cache=True)  # (1, P, D), once
            past = cache_of(head)
            past.batch_repeat_interleave(len(embeds))  # autograd sums the rows' gradients back into the one pass
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            rest = decoder(inputs_embeds=embeds[:, shared:], attention_mask=mask, **with_cache(past),
                           use_cache=True).last_hidden_state  # (B, T-P, D)
            hidden = torch.cat([head.last_hidden_state.expand(len(embeds), -1, -1), rest], 1)  # (B, T, D)
        else:
            hidden = decoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        targets = labels[:, 1:]  # (B, T-1): position t predicts token t+1
        keep = targets != LABEL_IGNORE
        logits = causal.get_output_embeddings()(hidden[:, :-1][keep])  # (N, V)
        return LabelledLogits(logits, targets[keep], image_embeds)

    def grouped_labelled_logits(self, input_ids: torch.Tensor, labels: torch.Tensor,
                                image_embeds: torch.Tensor | None = None) -> LabelledLogits:
        """`labelled_logits` for rows that are each a prompt (every position before the first label) and then a
        completion (the labelled positions, contiguous, right-padded), where runs of rows share a prompt, as the
        G samples of a GRPO prompt do. Each distinct prompt runs once (left-padded, with its own positions), its
        KV cache goes to each of its rows, and the completions run after it: the same logits and gradients as
        `labelled_logits` (tests/test_rl.py), for a prompt of ~80 tokens and completions of ~15 a third of the
        token-steps at G = 4."""
        embeds = self.embed(input_ids, image_embeds=image_embeds)  # (B, T, D)
        if not self.input_grad:
            embeds = embeds.detach()
        causal = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        decoder = causal.get_decoder()
        labelled = labels != LABEL_IGNORE  # (B, T)
        starts, counts = labelled.long().argmax(1).tolist(), labelled.sum(1).tolist()
        if min(counts) < 1 or any(not bool(labelled[i, s:s + n].all()) for i, (s, n) in enumerate(zip(starts, counts))):
            raise ValueError("prompt_groups needs each row's labels to be one contiguous, non-empty completion")
        heads: list[int] = []  # the first row of each run of rows sharing a prompt
        group: list[int] = []  # each row's run
        for i, s in enumerate(starts):
            h = heads[-1] if heads else None
            if h is None or starts[h] != s or not torch.equal(embeds[h, :s], embeds[i, :s]):
                heads.append(i)
            group.append(len(heads) - 1)
        prompt, prompt_mask, positions = left_padded([embeds[h, :starts[h]] for h in heads])
        head = decoder(inputs_embeds=prompt, attention_mask=prompt_mask, position_ids=positions, use_cache=True)
        past = cache_of(head)
        index = torch.tensor(group, device=embeds.device)
        past.batch_select_indices(index)  # autograd sums each row's gradient back into its prompt's one pass
        length = max(counts)
        completion = embeds.new_zeros((len(starts), length, embeds.shape[-1]))
        completion_mask = torch.zeros((len(starts), length), dtype=torch.long, device=embeds.device)
        for i, (s, n) in enumerate(zip(starts, counts)):
            completion[i, :n], completion_mask[i, :n] = embeds[i, s:s + n], 1
        rest = decoder(inputs_embeds=completion, attention_mask=torch.cat([prompt_mask[index], completion_mask], 1),
                       position_ids=positions[index, -1:] + 1 + torch.arange(length, device=embeds.device),
                       **with_cache(past), use_cache=True).last_hidden_state  # (B, L, D)
        last = head.last_hidden_state[:, -1]  # (heads, D): each prompt's last position predicts the first label
        hidden = torch.cat([torch.cat([last[group[i]][None], rest[i, :n - 1]]) for i, n in enumerate(counts)])
        targets = torch.cat([labels[i, s:s + n] for i, (s, n) in enumerate(zip(starts, counts))])
        return LabelledLogits(causal.get_output_embeddings()(hidden), targets, image_embeds)

    # --- generation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, image, query: str, max_new_tokens: int = MAX_NEW_TOKENS) -> Generation:
        timings = {}
        start = time.perf_counter()
        check_query_text(query)
        prefix, _, rest = split_prompt(query, 0)
        check_query_ids(self.encode_text(rest), query_limit(
            getattr(self.lm.config, "max_position_embeddings", None), len(self.encode_text(prefix)),
            self.num_image_tokens if image is not None else 0, max_new_tokens))
        image_embeds = None
        if image is not None:
            image_embeds = self.image_embeds(self.pixels(image))
        timings["image_encode"] = (time.perf_counter() - start) * 1e3
        ids = torch.tensor([self.encode_prompt(query, with_image=image is not None)])  # (1, T)
        t0 = time.perf_counter()
        out = self.lm(inputs_embeds=self.embed(ids, image_embeds=image_embeds), use_cache=True)
        timings["prefill"] = (time.perf_counter() - t0) * 1e3
        past = cache_of(out)

        def step(token: int) -> torch.Tensor:
            nonlocal past
            out = self.lm(input_ids=torch.tensor([[token]]), **with_cache(past), use_cache=True)
            past = cache_of(out)
            return out.logits[0, -1]  # (V,)

        t0 = time.perf_counter()
        generated = greedy_decode(out.logits[0, -1], step, self.tokens.first_token_ids, self.tokens.end_id,
                                  max_new_tokens, reject_bias_for(self.reject_bias, query), self.constraint, query)
        timings["decode"] = (time.perf_counter() - t0) * 1e3
        timings["decode_per_token"] = timings["decode"] / max(1, len(generated) - 1)
        timings["decode_passes"] = len(generated) - 1  # one token a pass (drafts are the ONNX runtime's)
        timings["total"] = (time.perf_counter() - start) * 1e3
        raw = self.tokenizer.decode(generated, skip_special_tokens=False)
        return Generation(raw, parse_and_validate(raw, self.registry), timings)

    # --- persistence --------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / "config.json")
        state = {f"vision_encoder.{k}": v for k, v in self.vision_encoder.state_dict().items()}
        state |= {f"projector.{k}": v for k, v in self.projector.state_dict().items()}
        save_file({k: v.contiguous() for k, v in state.items()}, directory / VISION_WEIGHTS)
        self.lm.save_pretrained(directory / "lm")
        self.tokenizer.save_pretrained(directory / "tokenizer")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> OctopusAgent:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        directory = Path(directory)
        if not (directory / "config.json").is_file() or not (directory / VISION_WEIGHTS).is_file():
            raise FileNotFoundError(f"{directory} is not a saved octopus agent (no config.json / {VISION_WEIGHTS})")
        config = AgentConfig.load(directory / "config.json")
        vision_encoder = VisionEncoder.from_config(config.vision, load_pretrained=False)
        lm = AutoModelForCausalLM.from_pretrained(directory / "lm")
        tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
        agent = cls(config, vision_encoder, lm, tokenizer)
        state = load_file(directory / VISION_WEIGHTS)
        agent.vision_encoder.load_state_dict({k[15:]: v for k, v in state.items() if k.startswith("vision_encoder.")})
        agent.projector.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("projector.")})
        return agent.eval()
