"""The torch-free runtime: an exported model folder answered with onnxruntime + numpy + tokenizers.

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


class OnnxAgent:
    def __init__(self, directory: str | Path, precision: str = "auto", threads: int | None = None,
                 verify: bool = True):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        bundle = Manifest.load(self.directory)
        self.manifest = bundle.data
        if precision == "auto":
            precision = "int8" if "int8" in bundle.precisions else "fp32"
        graphs = bundle.graphs(precision)
        if verify:  # every file of this precision, as doctor and pi-image/build.sh check it (one verdict), the
            bundle.verify([precision])  # unread embed_tokens graph included (~0.15 s for its 113 MB on x86)
        self.precision = precision
        options = session_options(threads)
        self.sessions = {}
        self.embed_table = None
        if "embed_table" in self.manifest:  # memory-mapped: only the rows looked up become resident
            path = bundle.path_of(self.manifest["embed_table"], verify=False)
            self.embed_table = np.load(path, mmap_mode="r")  # (V, D)
            graphs = {k: v for k, v in graphs.items() if k != "embed_tokens"}
        for name, entry in graphs.items():
            path = bundle.path_of(entry, verify=False)
            self.sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        tokenizer_path = self.directory / "tokenizer.json"
        if "tokenizer" in self.manifest:  # older exports did not list it
            tokenizer_path = bundle.path_of(self.manifest["tokenizer"], verify=False)
        elif not tokenizer_path.is_file():
            raise ManifestError(f"{self.directory} has no tokenizer.json")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # control tokens are placed by id only: a user typing "<nexa_0>" or "<nexa_end>" gets plain text
        self.tokenizer.encode_special_tokens = True
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
        self.reject_bias = {k: float(v) for k, v in self.manifest.get("decoding", {}).get("reject_bias", {}).items()}
        decoder = self.manifest["decoder"]
        self.empty_past = [np.zeros((1, decoder["kv_heads"], 0, decoder["head_dim"]), np.float32)
                           for _ in range(2 * decoder["layers"])]
        decoder_session = self.sessions["decoder_model_merged"]
        inputs = [i.name for i in decoder_session.get_inputs()]
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        self.uses_position_ids = "position_ids" in inputs  # the onnxruntime-genai graph derives positions itself
        prefix_ids = self.encode(self.manifest["prompt"]["prefix"])
        _, self.prefix_past = self._decode_step(self.embed(prefix_ids), self.empty_past, 0)
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

    def _decode_step(self, embeds: np.ndarray, past: list[np.ndarray], past_length: int):
        total = past_length + embeds.shape[1]
        feeds = {"inputs_embeds": embeds.astype(np.float32), "attention_mask": np.ones((1, total), np.int64)}
        if self.uses_position_ids:
            feeds["position_ids"] = np.arange(past_length, total, dtype=np.int64)[None]
        feeds.update(zip(self.past_names, past))
        logits, *present = self.sessions["decoder_model_merged"].run(["logits", *self.present_names], feeds)
        return logits[0], present  # (T, V): one row per position fed

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
        logits, past = self._decode_step(embeds, self.prefix_past, self.prefix_length)
        length = self.prefix_length + embeds.shape[1]
        timings["prefill"] = (time.perf_counter() - t0) * 1e3
        state = DecoderState(self, past, length)
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

    def __init__(self, agent: OnnxAgent, past: list[np.ndarray], length: int):
        self.agent, self.past, self.length, self.passes = agent, past, length, 0

    def feed(self, tokens: list[int], discard: int = 0) -> np.ndarray:
        if discard:
            self.length -= discard
            self.past = [np.ascontiguousarray(p[:, :, :self.length]) for p in self.past]
        rows, self.past = self.agent._decode_step(self.agent.embed(tokens), self.past, self.length)
        self.length += len(tokens)
        self.passes += 1
        return rows  # (len(tokens), V)
