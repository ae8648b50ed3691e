"""`octopus export`: a trained agent folder -> separate ONNX graphs, a manifest, and parity numbers.

    vision_encoder.onnx          pixels (B, 3, S, S) -> image_embeds (B, N, D)   (image encoder + projector;
                                 with projector.slot_flip the encoder runs on each image's mirror too, and
                                 projector.slot_imagenet's ImageNet head is in it: both inside)
    embed_tokens.onnx            input_ids (B, T) -> inputs_embeds (B, T, D)
    decoder_model_merged.onnx    inputs_embeds, attention_mask, position_ids, past_key_values.* -> logits, present.*
    tokenizer.json, manifest.json

    decoder_model_merged.onnx.data  the decoder's weights (ONNX external data; int8 likewise)
    embed_tokens.npy             the same table as a .npy file: the runtime reads the rows it looks up from it,
                                 so the table is never resident (the fp32 table is 113 MB for SmolLM2)
    output_rows.npy              with --shortlist: the token ids the decoder's logits are for

The decoder comes from ONNX Runtime GenAI's model builder where it supports the LM (fused attention; see
genai_decoder.py), else from torch.onnx (TorchScript) around the unmodified transformers LM with eager
attention and a DynamicCache rebuilt from flat inputs. Either graph serves prefill (any past length, zero
included) and decode, and is checked against the torch LM. The manifest holds each graph's sha256 and parity,
the opset, the token table, the prompt, the preprocessing parameters and the source checkpoint: everything
the torch-free runtime needs.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from octopus.bundle import FORMAT, Manifest, file_entry
from octopus.device.runtime import OnnxAgent
from octopus.exporters.genai_decoder import build_decoder, supports
from octopus.exporters.vocabulary import kept_ids, output_shortlist, parse_scripts, trimmed_tokenizer
from octopus.generation import MAX_NEW_TOKENS
from octopus.model.agent import OctopusAgent
from octopus.model.lm import cache_of, embedding_scale, input_embedding_table, with_cache
from octopus.prompt import PROMPT_PREFIX, PROMPT_SUFFIX

log = logging.getLogger(__name__)
OPSET = 17
SPLIT_BYTES = 16 << 20  # quantized matrices larger than this are split by output rows (split_large_matmuls)
# what decides parity as users see it: the same greedy call text from the fp32 graphs as from torch
GREEDY_CHECK = (("order this for me", 0), ("帮我处理一下这个", 1), ("email bob@example.com about lunch", 2),
                ("给妈妈发短信说我晚点到", 3), ("what's the weather on Mars", 4))


class ExportError(ValueError):
    """An export that failed a check: one line naming the graph, the error and the way out."""


class _Vision(nn.Module):
    def __init__(self, agent: OctopusAgent):
        super().__init__()
        self.agent = agent

    def forward(self, pixels):
        return self.agent.image_embeds(pixels)  # (B, N, D)


class _Embed(nn.Module):
    """The rows the LM reads (`input_embedding_table`), only the kept ones where the vocabulary is trimmed."""

    def __init__(self, agent: OctopusAgent, rows: torch.Tensor | None = None):
        super().__init__()
        table = input_embedding_table(agent.lm).float()
        self.embed = nn.Embedding.from_pretrained(table if rows is None else table[rows], freeze=True)

    def forward(self, input_ids):
        return self.embed(input_ids)  # (B, T, D)


class _Decoder(nn.Module):
    """Flat tensors in and out around the LM, so the graph has named past/present inputs and outputs.

    `logits_to_keep`: logits for that many last positions only (a prefill needs one row, not one per prompt
    token: Gemma's is 1 MB). `rows`: the output rows kept (`octopus.exporters.vocabulary`: a trimmed vocabulary,
    an output shortlist), in the order of the logits. With `hidden`, the graph also gives the final hidden
    states of those positions, from which the runtime scores tokens the shortlist left out."""

    def __init__(self, lm, rows: torch.Tensor | None = None, hidden: bool = False):
        super().__init__()
        self.lm = lm
        self.hidden = hidden
        self.layers = lm.config.num_hidden_layers
        head = lm.get_output_embeddings()
        self.head = head if rows is None else nn.Linear(head.in_features, len(rows), bias=head.bias is not None)
        if rows is not None:
            with torch.no_grad():
                self.head.weight.copy_(head.weight[rows])
                if head.bias is not None:
                    self.head.bias.copy_(head.bias[rows])
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)

    def forward(self, inputs_embeds, attention_mask, position_ids, logits_to_keep, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.lm.config)
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.lm.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                 position_ids=position_ids, **with_cache(cache), use_cache=True)
        hidden = out.last_hidden_state  # (B, T, D)
        hidden = torch.narrow(hidden, 1, hidden.shape[1] - logits_to_keep, logits_to_keep)  # traced: dynamic
        logits = self.head(hidden)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        present = []
        for layer in cache_of(out).layers:
            present += [layer.keys, layer.values]
        return (logits, *present, hidden) if self.hidden else (logits, *present)


def kv_shape(lm) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a transformers causal LM."""
    c = lm.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return c.num_hidden_layers, c.num_key_value_heads, head_dim


def _past_names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


@dataclass
class GraphSpec:
    """Everything about one exported graph, in one place (as optimum's per-graph ONNX configs): the torch module
    it is traced from and checked against, its named inputs and outputs with their dynamic axes, an example
    input, the parity tolerance and its int8 quantization."""

    name: str
    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    example: tuple
    # fp32 parity, relative to the largest reference output: a fixed max-abs bound on raw logits of a 49k-row
    # vocabulary was a coin toss between training runs (1.4e-3 against 1e-3 on one fresh quick model; the
    # logits' scale there is ~30, so that was 5e-5 of it)
    tolerance: float
    int8: str | None  # default quantization (QUANT_METHODS); None: the fp32 graph serves int8 too

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"

    def export(self, out: Path) -> None:
        log.info("exporting %s", self.name)
        torch.onnx.export(self.module.eval(), self.example, str(out / self.file), input_names=self.inputs,
                          output_names=self.outputs, dynamic_axes=self.dynamic_axes, opset_version=OPSET,
                          dynamo=False)

    def parity(self, path: Path) -> dict[str, float]:
        """The graph at `path` against the torch module on the example input."""
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            reference = self.module(*self.example)
        reference = reference if isinstance(reference, tuple) else (reference,)
        feeds = {n: x.numpy() for n, x in zip(self.inputs, self.example)}
        wanted = [i.name for i in session.get_inputs()]  # the builder's decoder has no position_ids
        got = session.run(self.outputs, {n: feeds[n] for n in wanted})
        error = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, reference))
        scale = max(float(np.abs(r.numpy()).max()) for r in reference)
        return {"max_abs": error, "scale": scale, "relative": error / scale if scale else error}


def graph_specs(agent: OctopusAgent, rows: torch.Tensor | None = None,
                output_rows: torch.Tensor | None = None) -> dict[str, GraphSpec]:
    """The three graphs of a bundle (see the module docstring), by name; `rows`: a trimmed vocabulary's old ids;
    `output_rows`: the old ids of an output shortlist (the decoder then also gives its hidden states)."""
    size = agent.config.vision.image_size
    vocab = len(rows) if rows is not None else agent.lm.get_input_embeddings().weight.shape[0]
    layers, heads, head_dim = kv_shape(agent.lm)
    d_model = agent.lm.get_input_embeddings().weight.shape[1]
    past_in, present_out = _past_names(layers, "past_key_values"), _past_names(layers, "present")
    specs = [
        GraphSpec("vision_encoder", _Vision(agent), ["pixels"], ["image_embeds"],
                  {"pixels": {0: "batch"}, "image_embeds": {0: "batch"}},
                  (torch.randn(2, 3, size, size),), tolerance=1e-4, int8="nbits8"),
        GraphSpec("embed_tokens", _Embed(agent, rows), ["input_ids"], ["inputs_embeds"],
                  {"input_ids": {0: "batch", 1: "sequence"}, "inputs_embeds": {0: "batch", 1: "sequence"}},
                  (torch.tensor([[1, 2, 3, vocab - 1]]),),
                  tolerance=0.0, int8=None),  # a lookup: exact, and int8 gains nothing
        GraphSpec("decoder_model_merged",
                  _Decoder(agent.lm, rows if output_rows is None else output_rows, hidden=output_rows is not None),
                  ["inputs_embeds", "attention_mask", "position_ids", "logits_to_keep", *past_in],
                  ["logits", *present_out, *(["hidden_states"] if output_rows is not None else [])],
                  {"inputs_embeds": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total"},
                   "position_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "kept"},
                   "hidden_states": {0: "batch", 1: "kept"},
                   **{n: {0: "batch", 2: "past"} for n in past_in},
                   **{n: {0: "batch", 2: "total"} for n in present_out}},
                  (torch.randn(1, 5, d_model), torch.ones(1, 8, dtype=torch.long), torch.arange(3, 8)[None],
                   torch.tensor(5),  # every position, as the builder's graph (which has no such input) gives
                   *[torch.randn(1, heads, 3, head_dim) * 0.5 for _ in range(2 * layers)]),
                  tolerance=2e-4, int8="nbits8"),
    ]
    return {spec.name: spec for spec in specs}


def _greedy_parity(agent: OctopusAgent, out: Path) -> dict:
    """The fp32 graphs through the device runtime against the torch agent: same call text on fixed prompts
    over fixed synthetic images (greedy decoding turns any logit error that matters into different text)."""
    from PIL import Image

    runtime = OnnxAgent(out, precision="fp32")
    same, differing = 0, []
    for query, seed in GREEDY_CHECK:
        pixels = np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGB")
        expected, got = agent.generate(image, query, max_new_tokens=24).raw, runtime.generate(image, query, 24).raw
        if expected == got:
            same += 1
        else:
            differing.append({"query": query, "torch": expected, "onnx": got})
    return {"prompts": len(GREEDY_CHECK), "same": same, "differing": differing}


QUANT_METHODS = ("dynamic", "nbits8", "nbits4")
# chosen per graph by measured accuracy and speed on the quick model (400 held-out rows, 2 cores; fp32: 72.00%):
#   vision dynamic + traced decoder nbits8: 70.25%, image encode p50 76.6 ms (dynamic ConvInteger is slow)
#   vision nbits8 (convs stay fp32) + traced decoder nbits8: 71.75%, image encode 10.7 ms
#   vision nbits8 + onnxruntime-genai decoder int8 (the default where the builder fits): 71.50%, p50 182 ms
#   against 296 ms with the traced decoder (same rows). nbits4 decoder: ~20% less time a token, not measured
#   for accuracy on the held-out split, so not the default (GraphSpec.int8 holds each graph's default).
# 2026-11-24, AVX2 EPYC, the shipped default: dynamic int8 (MatMulInteger, per-tensor activation scales) on the
#   builder's fp32 graph prefills 63 tokens 2.6x faster than MatMulNBits int8 (255 vs 653 ms) but writes garbage
#   (function accuracy 9.5%, every call "none" or babble; keeping down_proj and lm_head fp32 does not help):
#   SmolLM2's activations have outliers a per-tensor scale cannot hold, so weight-only stays.
#   nbits4 (the builder's int4, blocks of 32): end to end 0.70x of int8 (prefill 209 vs 370 ms, a token 13.9
#   vs 17.7 ms, RSS 298 vs 394 MB; bench/results/latency_variants.md) but 76.75% on 400 test rows against
#   int8's 90.0% (EN 84.0 vs 92.2, ZH 69.1 vs 87.6; bench/results/int4_vs_int8_eval.json): int8 stays.


def quantize_graph(source: Path, target: Path, method: str, split_bytes: int = SPLIT_BYTES) -> str:
    """Quantize one graph; returns a description of what was done.

    dynamic: int8 weights per channel and int8 activations quantized at run time (MatMul, Gemm, Conv).
    nbits8 / nbits4: weight-only MatMulNBits, blocks of 32 with their own scale, int8 compute
    (accuracy_level 4); activations stay fp32, which small LMs tolerate far better. A quantized matrix larger
    than `split_bytes` is split by output rows (`split_large_matmuls`).
    """
    if method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Conv"])
        return "dynamic int8 (per-channel weights, run-time activation scales) on MatMul/Gemm/Conv"
    if method in ("nbits8", "nbits4"):
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        # that module logs a line per node at INFO (and configures the root logger when imported)
        logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
        bits = int(method[-1])
        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=bits, block_size=32, is_symmetric=True,
                                         accuracy_level=4)
        quantizer.process()
        parts = split_large_matmuls(quantizer.model.model, split_bytes)
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
        split = f"; weight matrices over {split_bytes >> 20} MiB split by output rows: {parts}" if parts else ""
        return f"weight-only MatMulNBits, {bits}-bit blocks of 32, int8 compute{split}"
    raise ValueError(f"unknown quantization {method!r}; choose one of {QUANT_METHODS}")


def split_large_matmuls(model, max_bytes: int) -> int:
    """Split every MatMulNBits whose packed weights exceed `max_bytes` into MatMulNBits over slices of its
    output rows and a Concat of their outputs; returns how many were split. Each output row is computed from
    its own weight row, blocks and scales, so the result is the same up to the kernel's float rounding (it
    tiles the rows differently: 3e-6 at most in the test). onnxruntime repacks each matrix at load while the
    file's copy is still mapped, so the load peaks at the largest matrix twice: for Gemma 3's output layer (93k
    shortlisted rows, 60 MB at 8 bits) the load peak fell 422 -> 374 MB with four slices (measured, 2 threads;
    the same 100 answers, no slower)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    split = 0
    for node in list(graph.node):
        if node.op_type != "MatMulNBits" or len(node.input) != 3 or node.input[1] not in inits \
                or node.input[2] not in inits:
            continue  # zero points, group indices or a bias: left whole
        weights = numpy_helper.to_array(inits[node.input[1]])  # (N, blocks, block bytes)
        scales = numpy_helper.to_array(inits[node.input[2]])
        parts = -(-weights.nbytes // max_bytes)
        if parts < 2:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        rows = attrs["N"]
        flat = scales.ndim == 1  # (N * blocks,) or (N, blocks): each slice is stored the same way
        scales = scales.reshape(rows, -1)
        bounds = np.linspace(0, rows, parts + 1).astype(int)
        nodes, outputs = [], []
        for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            names = [f"{node.input[1]}_rows{k}", f"{node.input[2]}_rows{k}", f"{node.output[0]}_rows{k}"]
            graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(weights[lo:hi]), names[0]),
                                      numpy_helper.from_array(np.ascontiguousarray(
                                          scales[lo:hi].reshape(-1) if flat else scales[lo:hi]), names[1])])
            nodes.append(helper.make_node("MatMulNBits", [node.input[0], *names[:2]], [names[2]],
                                          name=f"{node.name}_rows{k}", domain=node.domain,
                                          **{**attrs, "N": int(hi - lo)}))
            outputs.append(names[2])
        nodes.append(helper.make_node("Concat", outputs, [node.output[0]], name=f"{node.name}_concat", axis=-1))
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for k, new in enumerate(nodes):
            graph.node.insert(at + k, new)
        if not any(name in n.input for n in graph.node for name in node.input[1:]):
            graph.initializer.remove(inits[node.input[1]])
            graph.initializer.remove(inits[node.input[2]])
        split += 1
    return split


def weights_beside(path: Path) -> None:
    """Move a graph's weights into `<file>.data` beside it (ONNX external data; the manifest lists and checks
    both files). onnxruntime then maps the weights from that file instead of copying them out of the parsed
    graph, which lowers the load's peak memory: 374 -> 322 MB for the shipped default's int8 decoder, 601 ->
    551 MB for Gemma 3's (measured, 2 threads)."""
    import onnx

    data = path.with_name(f"{path.name}.data")
    model = onnx.load(str(path))  # its weights, wherever they are now
    data.unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    data.chmod(path.stat().st_mode & 0o777)  # onnx creates it 0600: a service user could not read it


def quantize_int8(out: Path, methods: dict[str, str]) -> dict[str, str]:
    """One int8 graph per entry of `methods` (graph name -> method)."""
    done = {}
    for name, method in methods.items():
        log.info("quantizing %s (%s)", name, method)
        done[name] = quantize_graph(out / f"{name}.onnx", out / f"{name}.int8.onnx", method)
    return done


def _decoder_exporter(choice: str, lm) -> str:
    if choice not in ("auto", "genai", "torch"):
        raise ValueError(f"unknown decoder exporter {choice!r}: auto, genai or torch")
    if choice == "auto":
        return "genai" if supports(lm) else "torch"
    return choice


def export(model_dir: str | Path, out: str | Path, int8: bool = False, methods: dict[str, str] | None = None,
           decoder: str = "auto", reject_bias: dict[str, float] | None = None, vocab: str | None = None,
           shortlist: int | None = None, shortlist_data: list[str | Path] = ()) -> dict:
    """`decoder`: "genai" (onnxruntime-genai's builder), "torch" (torch.onnx), or "auto" (genai where it can,
    falling back to the traced decoder, with a warning, when the builder's graph fails a parity check).
    `reject_bias` replaces the agent's own, language by language, in the manifest (`decoding.reject_bias`).
    `vocab`: scripts to trim the vocabulary to ("en,zh"; `octopus.exporters.vocabulary`), traced decoder only.
    `shortlist`: an output layer of the `shortlist` most frequent pieces, every single character and the pieces of
    `shortlist_data`'s targets (JSONL rows) and of the enumerated values (`vocabulary.output_shortlist`)."""
    model_dir, out = Path(model_dir), Path(out)
    scripts = parse_scripts(vocab) if vocab else None
    agent = OctopusAgent.load(model_dir).eval()
    agent.reject_bias.update(reject_bias or {})
    agent.lm.config._attn_implementation = "eager"  # traceable attention; same numbers as sdpa
    chosen = _decoder_exporter(decoder, agent.lm)
    if (scripts or shortlist) and chosen == "genai":
        if decoder == "genai":
            raise ValueError("a trimmed vocabulary (--vocab, --shortlist) needs the traced decoder: use --decoder "
                             "torch or auto")
        chosen = "torch"
    trim = _trim(agent, scripts) if scripts else None
    if shortlist:
        trim = _shortlist(agent, trim, shortlist, [Path(p) for p in shortlist_data])
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _export(agent, model_dir, out, int8, methods, chosen, trim)
    except ExportError as exc:
        if decoder != "auto" or chosen != "genai":
            raise
        log.warning("the onnxruntime-genai decoder failed its check (%s); exporting the traced decoder instead", exc)
        manifest = _export(agent, model_dir, out, int8, methods, "torch", trim)
        manifest["decoder_fallback"] = str(exc)
        Manifest(manifest, out).write()
        return manifest


@dataclass
class _Trim:
    """A vocabulary cut to some scripts: the old ids kept (new id = position) and the trimmed tokenizer.json;
    and an output shortlist (new ids), if any."""

    scripts: tuple[str, ...]
    kept: list[int]
    tokenizer: dict
    output: list[int] | None = None

    @cached_property
    def _index(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.kept)}

    def new_id(self, old: int) -> int:
        return self._index[old]


def _control_ids(agent: OctopusAgent) -> set[int]:
    """The ids a trimmed vocabulary keeps whatever they are: the agent's tokens and the tokenizer's specials."""
    t, tok = agent.tokens, agent.tokenizer
    ids = {*t.function_ids, t.no_function_id, t.end_id, t.image_id}
    return ids | {i for i in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) if i is not None}


def _shortlist(agent: OctopusAgent, trim: _Trim | None, top: int, data: list[Path]) -> _Trim:
    if agent.lm.get_output_embeddings().bias is not None:
        raise ValueError("--shortlist needs an output layer without a bias (the runtime scores the request's "
                         "other tokens from its rows)")
    if trim is None:  # the whole vocabulary, as ids
        source = json.loads(agent.tokenizer.backend_tokenizer.to_str())
        trim = _Trim((), list(range(len(agent.tokenizer))), source)
    texts = [str(v) for f in agent.registry for a in f.arguments for v in (a.enum or ())]
    for path in data:
        try:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, ValueError) as exc:
            raise ValueError(f"--shortlist-data {path}: not a JSONL file of rows ({exc})") from None
        texts += [row["target"] for row in rows if isinstance(row, dict) and isinstance(row.get("target"), str)]
    trim.output = output_shortlist(trim.tokenizer, top, texts, {trim.new_id(i) for i in _control_ids(agent)})
    log.info("output shortlist: %d of %d tokens (%d target texts)", len(trim.output), len(trim.kept), len(texts))
    return trim


def _trim(agent: OctopusAgent, scripts: tuple[str, ...]) -> _Trim:
    source = json.loads(agent.tokenizer.backend_tokenizer.to_str())
    kept = kept_ids(source, scripts, _control_ids(agent))
    log.info("vocabulary trimmed to %s: %d of %d tokens", ",".join(scripts), len(kept), len(agent.tokenizer))
    return _Trim(scripts, kept, trimmed_tokenizer(source, kept))


def _write_shortlist(agent: OctopusAgent, trim: _Trim, out: Path) -> dict:
    """`output_rows.npy` (the new ids the logits are for) and where the runtime reads the rows of the others:
    the embedding table over its `embedding_scale` where the LM ties its output layer to its input table
    (SmolLM2, Gemma), else `output_table.npy`."""
    np.save(out / "output_rows.npy", np.array(trim.output, np.int32))
    head, embeddings = agent.lm.get_output_embeddings(), agent.lm.get_input_embeddings()
    entry = {**file_entry(out, "output_rows.npy", count=len(trim.output)),
             "scale": 1.0 / embedding_scale(agent.lm),
             "softcap": getattr(agent.lm.config, "final_logit_softcapping", None)}
    if head.weight.data_ptr() != embeddings.weight.data_ptr():  # untied: the output rows are a table of their own
        weight = head.weight.detach().float()[torch.tensor(trim.kept)].numpy()  # (V, D) in the new ids' order
        np.save(out / "output_table.npy", weight)
        entry.update(scale=1.0, table=file_entry(out, "output_table.npy"))
    return entry


def _export(agent: OctopusAgent, model_dir: Path, out: Path, int8: bool, methods: dict[str, str] | None,
            decoder: str, trim: _Trim | None = None) -> dict:
    way_out = (" (try --decoder torch)" if decoder == "genai"
               else " (the traced graph is wrong for this LM: try --decoder genai if its builder supports the LM)")
    if trim and trim.output:
        way_out = (" (the output shortlist leaves out tokens the model writes: raise --shortlist or add the "
                   "training data with --shortlist-data)")
    rows = torch.tensor(trim.kept) if trim else None
    output_rows = torch.tensor([trim.kept[i] for i in trim.output]) if trim and trim.output else None
    graphs = graph_specs(agent, rows, output_rows)
    how = {}
    for name, spec in graphs.items():
        if name == "decoder_model_merged" and decoder == "genai":  # still checked against the torch module
            how[name] = build_decoder(agent.lm, agent.tokenizer, out / spec.file, "fp32")
        else:
            spec.export(out)
            how[name] = "torch.onnx"
    parity = {name: spec.parity(out / spec.file) for name, spec in graphs.items()}
    for name, p in parity.items():
        if p["relative"] > graphs[name].tolerance:
            raise ExportError(f"{name}: ONNX differs from torch by {p['max_abs']:.2e} ({p['relative']:.1e} of the "
                              f"output scale {p['scale']:.3g}; tolerance {graphs[name].tolerance:.0e}){way_out}")
    weights_beside(out / graphs["decoder_model_merged"].file)
    table = graphs["embed_tokens"].module.embed.weight  # (V, D), as embed_tokens.onnx (kept rows if trimmed)
    np.save(out / "embed_tokens.npy", table.numpy())
    if trim and trim.scripts:
        (out / "tokenizer.json").write_text(json.dumps(trim.tokenizer, ensure_ascii=False), encoding="utf-8")
    else:
        agent.tokenizer.save_pretrained(out / "tokenizer_hf")
        shutil.copy(out / "tokenizer_hf" / "tokenizer.json", out / "tokenizer.json")
        shutil.rmtree(out / "tokenizer_hf")
    layers, heads, head_dim = kv_shape(agent.lm)
    v = agent.config.vision
    new_id = trim.new_id if trim else (lambda i: i)
    t = agent.tokens
    manifest = {
        "format": FORMAT,
        "opset": OPSET,
        "source": str(Path(model_dir).resolve()),
        "config": agent.config.to_dict(),
        "graphs": {name: file_entry(out, spec.file, exporter=how[name], parity_max_abs=parity[name]["max_abs"],
                                    parity_relative=parity[name]["relative"], tolerance_relative=spec.tolerance)
                   for name, spec in graphs.items()},
        "tokenizer": file_entry(out, "tokenizer.json"),
        "embed_table": file_entry(out, "embed_tokens.npy", dtype="float32", shape=list(table.shape)),
        "tokens": {"function_ids": [new_id(i) for i in t.function_ids], "no_function_id": new_id(t.no_function_id),
                   "end_id": new_id(t.end_id), "image_id": new_id(t.image_id)},
        "functions": agent.registry.to_json(),  # the table the runtime, validator and actions read (user's too)
        "prompt": {"prefix": PROMPT_PREFIX, "suffix": PROMPT_SUFFIX, "num_image_tokens": agent.num_image_tokens},
        "preprocess": {"image_size": v.image_size, "mean": list(v.mean), "std": list(v.std)},
        "decoder": {"layers": layers, "kv_heads": heads, "head_dim": head_dim,
                    "max_positions": agent.lm.config.max_position_embeddings, "max_new_tokens": MAX_NEW_TOKENS},
        "decoding": {"reject_bias": dict(agent.reject_bias)},
    }
    if trim and trim.scripts:
        manifest["vocabulary"] = {"scripts": list(trim.scripts), "kept": len(trim.kept), "of": len(agent.tokenizer)}
    if trim and trim.output:
        manifest["output_shortlist"] = _write_shortlist(agent, trim, out)
    if int8:
        methods = {**{name: spec.int8 for name, spec in graphs.items() if spec.int8}, **(methods or {})}
        decoder_method = methods.pop("decoder_model_merged")
        done = quantize_int8(out, methods)
        if decoder == "genai":  # its builder quantizes its own graph (the same MatMulNBits kernels)
            precision = {"nbits8": "int8", "nbits4": "int4"}.get(decoder_method)
            if precision is None:
                raise ValueError(f"the genai decoder takes nbits8 or nbits4, not {decoder_method}")
            done["decoder_model_merged"] = build_decoder(agent.lm, agent.tokenizer,
                                                         out / "decoder_model_merged.int8.onnx", precision)
        else:
            done["decoder_model_merged"] = quantize_graph(out / "decoder_model_merged.onnx",
                                                          out / "decoder_model_merged.int8.onnx", decoder_method)
        weights_beside(out / "decoder_model_merged.int8.onnx")
        int8_graphs = {name: file_entry(out, f"{name}.int8.onnx", method=method) for name, method in done.items()}
        for name in [n for n in graphs if n not in done]:  # not quantized (GraphSpec.int8 None): fp32 serves
            int8_graphs[name] = {**manifest["graphs"][name], "method": "fp32 (the same graph)"}
        manifest["int8"] = int8_graphs
    bundle = Manifest(manifest, out)  # checked as the runtime will read it
    bundle.write()
    greedy = _greedy_parity(agent, out)
    manifest["greedy_parity_fp32"] = greedy
    bundle.write()
    if greedy["same"] < greedy["prompts"]:
        first, wrong = greedy["differing"][0], greedy["prompts"] - greedy["same"]
        raise ExportError(f"decoder_model_merged: greedy calls differ from torch on {wrong} of {greedy['prompts']} "
                          f"prompts (e.g. {first['query']!r}: {first['torch']!r} vs "
                          f"{first['onnx']!r}){way_out}")
    return manifest
