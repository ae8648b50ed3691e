"""The torch-free runtime: an exported model folder answered with onnxruntime + numpy + tokenizers (or, for a
SentencePiece-style tokenizer, `octopus.bpe`).

At load it checks the graphs against the manifest's sha256s, opens one session per graph (intra-op threads
set, no spinning: the Pi's cores stay free between requests) and computes the KV cache of the fixed prompt
prefix once, as Octopus v2 does on phones. A request then runs the image encoder, prefills the image
embeddings and the query after that cached prefix, and decodes greedily (the first token a functional token
or the no-function token; enumerated and copied argument values kept to the schema and the request,
`octopus.generation.ArgumentConstraint`), stopping at `<nexa_end>`; each decoder pass also checks the tokens
`octopus.drafting.CallDrafter` expects next and keeps those greedy would pick (`DecoderState` rewinds the
KV cache past the rest). Same parser and validator as
training, reading the function table the manifest carries (user functions included). Torch must never be
imported here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from octopus.bpe import load_tokenizer
from octopus.bundle import Manifest, ManifestError
from octopus.calls import parse_and_validate
from octopus.drafting import CallDrafter
from octopus.generation import MAX_NEW_TOKENS, ArgumentConstraint, Generation, greedy_decode, reject_bias_for
from octopus.preprocess import load_image, preprocess
from octopus.prompt import check_query_ids, check_query_text, query_limit, split_prompt


def session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False  # the arena keeps prefill's peak buffers: -20 MB RSS, no slower (measured)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class RowTable:
    """A .npy table (V, D) whose rows are read from the file when asked for (`table[ids]`), never mapped: a
    memory-mapped table grew the process by ~3.7 MB a request on Gemma's (every row read mapped the pages the
    kernel read ahead around it, MADV_RANDOM or not), while read rows stay in the page cache, which the system
    can take back. A request reads a few hundred rows, ~0.1 ms."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            self.shape, fortran, self.dtype = read_header(f)
            self.offset = f.tell()
        if fortran or len(self.shape) != 2:
            raise ManifestError(f"{path} is not a (rows, width) table in C order")
        self.path, self.row_bytes = Path(path), self.shape[1] * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def __getitem__(self, ids) -> np.ndarray:
        ids = np.atleast_1d(np.asarray(ids, np.int64))
        if ids.size and (ids.min() < 0 or ids.max() >= self.shape[0]):
            raise IndexError(f"token id out of range 0..{self.shape[0] - 1}")
        out = bytearray(len(ids) * self.row_bytes)
        for k, i in enumerate(ids.tolist()):
            out[k * self.row_bytes:(k + 1) * self.row_bytes] = os.pread(self.fd, self.row_bytes,
                                                                      self.offset + i * self.row_bytes)
        return np.frombuffer(out, self.dtype).reshape(len(ids), self.shape[1])

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)


def release_freed_memory() -> None:
    """Give the heap that loading freed back to the system. glibc keeps freed memory for reuse, so after a load
    the process stays at its peak: +270 MB after parsing Gemma's tokenizer, +80 MB after opening the SmolLM2
    decoder (measured). No-op where the C library has no malloc_trim (musl, macOS)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class OnnxAgent:
    def __init__(self, directory: str | Path, precision: str = "auto", threads: int | None = None,
                 verify: bool = True):
        import onnxruntime as ort

        self.directory = Path(directory)
        bundle = Manifest.load(self.directory)
        self.manifest = bundle.data
        if precision == "auto":
            precision = "int8" if "int8" in bundle.precisions else "fp32"
        graphs = bundle.graphs(precision)
        if verify:  # every file of this precision, as doctor and pi-image/build.sh check it (one verdict), the
            bundle.verify([precision])  # unread embed_tokens graph included (~0.15 s for its 113 MB on x86)
        self.precision = precision
        # first the tokenizer, whose parse is a peak of its own (Gemma's trimmed 11.5 MB tokenizer.json: +155 MB),
        # held in flat arrays where it can be (15 MB kept against 58 MB in `tokenizers`; `octopus.bpe`)
        tokenizer_path = self.directory / "tokenizer.json"
        if "tokenizer" in self.manifest:  # older exports did not list it
            tokenizer_path = bundle.path_of(self.manifest["tokenizer"], verify=False)
        elif not tokenizer_path.is_file():
            raise ManifestError(f"{self.directory} has no tokenizer.json")
        self.tokenizer = load_tokenizer(tokenizer_path)  # special tokens are placed by id only: a user typing
        # "<nexa_0>" or "<nexa_end>" gets plain text
        release_freed_memory()
        options = session_options(threads)
        self.sessions = {}
        self.embed_table = None
        if "embed_table" in self.manifest:  # read a row at a time: only what a request needs is read
            path = bundle.path_of(self.manifest["embed_table"], verify=False)
            self.embed_table = RowTable(path)  # (V, D), rows read on demand
            graphs = {k: v for k, v in graphs.items() if k != "embed_tokens"}
        for name, entry in graphs.items():
            path = bundle.path_of(entry, verify=False)
            self.sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            release_freed_memory()
        self.registry = bundle.registry()  # the ten, then the user functions the model was extended with
        tokens = self.manifest["tokens"]
        self.first_token_ids = np.array([*tokens["function_ids"], tokens["no_function_id"]])
        self.end_id = tokens["end_id"]
        # enumerated argument values are decoded from their schema's list and copied ones from the request
        # (None: plain greedy, for comparison)
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        self.constraint: ArgumentConstraint | None = ArgumentConstraint.for_registry(
            self.registry, tokens["function_ids"], decode, self.tokenizer.id_to_token)
        # drafts of the call's next tokens from its schema and the request, checked several to a pass (None: one
        # token a pass; the answer is the same up to rounding, `bench/latency.py` measures both)
        self.drafter: CallDrafter | None = CallDrafter.for_registry(
            self.registry, tokens["function_ids"], tokens["no_function_id"], self.end_id, self.encode, decode)
        # the bias toward "no function" the model was exported with (older exports have none); callers may change it
        self.shortlist: OutputShortlist | None = None  # an output layer of a shortlist, the rest from a table
        if "output_shortlist" in self.manifest:
            entry = self.manifest["output_shortlist"]
            table = (RowTable(bundle.path_of(entry["table"], verify=False)) if "table" in entry
                     else self.embed_table)
            self.shortlist = OutputShortlist(np.load(bundle.path_of(entry, verify=False)), table, entry["scale"],
                                             entry.get("softcap"))
        self.reject_bias = {k: float(v) for k, v in self.manifest.get("decoding", {}).get("reject_bias", {}).items()}
        decoder = self.manifest["decoder"]
        self.empty_past = [np.zeros((1, decoder["kv_heads"], 0, decoder["head_dim"]), np.float32)
                           for _ in range(2 * decoder["layers"])]
        decoder_session = self.sessions["decoder_model_merged"]
        inputs = [i.name for i in decoder_session.get_inputs()]
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        self.uses_position_ids = "position_ids" in inputs  # the onnxruntime-genai graph derives positions itself
        self.keeps_logits = "logits_to_keep" in inputs  # the traced graph can skip the prompt's other rows
        prefix_ids = self.encode(self.manifest["prompt"]["prefix"])
        _, self.prefix_past = self._decode_step(self.embed(prefix_ids), self.empty_past, 0, last_only=True)
        self.prefix_length = len(prefix_ids)
        self.max_positions = decoder.get("max_positions")  # older exports did not record it
        self.max_new_tokens = decoder.get("max_new_tokens", MAX_NEW_TOKENS)

    def query_part(self, query: str) -> str:
        """The prompt after the image placeholders, as the exported model was trained to read it."""
        prompt = self.manifest["prompt"]
        return split_prompt(query, 0, prompt["prefix"], prompt["suffix"])[2]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def embed(self, ids: list[int]) -> np.ndarray:
        if self.embed_table is not None:
            return np.asarray(self.embed_table[ids], np.float32)[None]  # (1, T, D)
        return self.sessions["embed_tokens"].run(None, {"input_ids": np.array([ids], np.int64)})[0]  # (1, T, D)

    def image_embeds(self, image) -> np.ndarray:
        p = self.manifest["preprocess"]
        pixels = preprocess(image, p["image_size"], p["mean"], p["std"])[None]  # (1, 3, S, S)
        return self.sessions["vision_encoder"].run(None, {"pixels": pixels})[0]  # (1, N, D)

    def _decode_step(self, embeds: np.ndarray, past: list[np.ndarray], past_length: int, last_only: bool = False,
                     others: np.ndarray | tuple = ()):
        total = past_length + embeds.shape[1]
        feeds = {"inputs_embeds": embeds.astype(np.float32), "attention_mask": np.ones((1, total), np.int64)}
        if self.uses_position_ids:
            feeds["position_ids"] = np.arange(past_length, total, dtype=np.int64)[None]
        if self.keeps_logits:
            feeds["logits_to_keep"] = np.array(1 if last_only else embeds.shape[1], np.int64)
        feeds.update(zip(self.past_names, past))
        if self.shortlist is None:
            logits, *present = self.sessions["decoder_model_merged"].run(["logits", *self.present_names], feeds)
            return logits[0], present  # (T, V): one row per position fed (the last one only if `last_only` and
            # the graph can; the builder's graph always gives every row)
        logits, *present, hidden = self.sessions["decoder_model_merged"].run(
            ["logits", *self.present_names, "hidden_states"], feeds)
        return self.shortlist.expand(logits[0], hidden[0], others), present  # `others`: the request's tokens

    def generate(self, image, query: str, max_new_tokens: int | None = None) -> Generation:
        max_new_tokens = max_new_tokens or self.max_new_tokens
        timings = {}
        start = time.perf_counter()
        if isinstance(image, (str, Path)):
            image = load_image(image)
        check_query_text(query)
        rest = self.encode(self.query_part(query))
        image_embeds = self.image_embeds(image)
        timings["image_encode"] = (time.perf_counter() - start) * 1e3
        check_query_ids(rest, query_limit(self.max_positions, self.prefix_length, image_embeds.shape[1],
                                          max_new_tokens))
        t0 = time.perf_counter()
        embeds = np.concatenate([image_embeds, self.embed(rest)], axis=1)  # image placeholders, then the query
        others = (self.shortlist.others(rest + self.shortlist.request_tokens(self.tokenizer, query))
                  if self.shortlist is not None else ())
        logits, past = self._decode_step(embeds, self.prefix_past, self.prefix_length, last_only=True, others=others)
        length = self.prefix_length + embeds.shape[1]
        timings["prefill"] = (time.perf_counter() - t0) * 1e3
        state = DecoderState(self, past, length, others)
        t0 = time.perf_counter()
        generated = greedy_decode(logits[-1], lambda token: state.feed([token])[-1], self.first_token_ids,
                                  self.end_id, max_new_tokens, reject_bias_for(self.reject_bias, query),
                                  self.constraint, query, self.drafter, state.feed)
        timings["decode"] = (time.perf_counter() - t0) * 1e3
        timings["decode_per_token"] = timings["decode"] / max(1, len(generated) - 1)
        timings["decode_passes"] = state.passes
        timings["total"] = (time.perf_counter() - start) * 1e3
        raw = self.tokenizer.decode(generated, skip_special_tokens=False)
        return Generation(raw, parse_and_validate(raw, self.registry), timings)


class DecoderState:
    """One request's KV cache after its prefill: `feed(tokens, discard)` first drops the last `discard` tokens
    fed (a draft's tokens greedy did not take), then feeds `tokens` in one pass and returns their logits."""

    def __init__(self, agent: OnnxAgent, past: list[np.ndarray], length: int, others: np.ndarray | tuple = ()):
        self.agent, self.past, self.length, self.passes, self.others = agent, past, length, 0, others

    def feed(self, tokens: list[int], discard: int = 0) -> np.ndarray:
        if discard:
            self.length -= discard
            self.past = [np.ascontiguousarray(p[:, :, :self.length]) for p in self.past]
        rows, self.past = self.agent._decode_step(self.agent.embed(tokens), self.past, self.length,
                                                  others=self.others)
        self.length += len(tokens)
        self.passes += 1
        return rows  # (len(tokens), V)


class OutputShortlist:
    """Logits over the whole vocabulary from a decoder whose output layer keeps a shortlist of rows (`octopus
    export --shortlist`): the listed tokens' logits come from the graph, the request's other tokens' from its
    final hidden states times their rows of a table read from disk (the embedding table times `scale` where the
    LM ties the two), and every other token gets -inf, so it is never written."""

    def __init__(self, rows: np.ndarray, table, scale: float, softcap: float | None = None):
        self.rows, self.table, self.scale, self.softcap = rows.astype(np.int64), table, float(scale), softcap
        self.listed = np.zeros(table.shape[0], bool)
        self.listed[self.rows] = True

    def others(self, ids: list[int]) -> np.ndarray:
        """The tokens of `ids` the output layer does not list."""
        ids = np.unique(np.asarray(ids, np.int64))
        return ids[~self.listed[ids]]

    def request_tokens(self, tokenizer, query: str) -> list[int]:
        """Every token a value copied from `query` may be written in: a copy may start at any character, and
        a piece's tokens depend on where it starts ("grace.h@..." after a quote is not "▁grace.h@..."), so the
        tokens of each suffix of the request, and of each word alone."""
        texts = [query[i:] for i in range(len(query)) if not query[i].isspace()] + query.split()
        return [i for e in tokenizer.encode_batch(texts, add_special_tokens=False) for i in e.ids]

    def expand(self, logits: np.ndarray, hidden: np.ndarray, others: np.ndarray | tuple = ()) -> np.ndarray:
        """(T, shortlist) logits and (T, D) hidden states -> (T, V) logits."""
        full = np.full((logits.shape[0], self.table.shape[0]), -np.inf, np.float32)
        full[:, self.rows] = logits
        if len(others):
            extra = hidden @ (np.asarray(self.table[others], np.float32) * self.scale).T  # (T, len(others))
            if self.softcap:
                extra = np.tanh(extra / self.softcap) * self.softcap
            full[:, others] = extra
        return full
