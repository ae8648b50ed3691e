"""The decoder graph built by ONNX Runtime GenAI's model builder, where it supports the LM.

The builder writes a LLaMA-family decoder with onnxruntime's fused kernels (GroupQueryAttention with rotary
embeddings, SkipSimplifiedLayerNormalization, MatMulNBits for int8/int4): about 340 nodes for SmolLM2-135M
where the traced graph has about 6,900, and about a third less time per decoded token on 2 cores (measured:
bench/results/latency.json). `exclude_embeds=true` makes it take `inputs_embeds`, so image embeddings can be
spliced in as with the traced graph. It has no `position_ids` input (positions come from the attention mask)
and its own input order; the runtime feeds by name. Only the builder's graph is used: the device runs it with
plain onnxruntime, not the GenAI runtime.

The builder runs in a subprocess (it configures logging and prints progress) and writes external data; the
result is re-saved as one file named like the traced graph, so the manifest and the runtime do not care
which exporter made it.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                           "Phi3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM"}


class BuilderUnavailable(RuntimeError):
    """The builder is not installed or does not support this LM."""


def builder_version() -> str | None:
    if importlib.util.find_spec("onnxruntime_genai") is None:
        return None
    from importlib.metadata import version

    return version("onnxruntime-genai")


def supports(lm) -> bool:
    c = lm.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    architectures = c.architectures or [type(lm).__name__]
    return (builder_version() is not None and any(a in SUPPORTED_ARCHITECTURES for a in architectures)
            and head_dim % 16 == 0)  # GroupQueryAttention's CPU kernel needs it


def build_decoder(lm, tokenizer, target: Path, precision: str) -> str:
    """Write the decoder for `lm` at `target` (one .onnx file). precision: fp32 | int8 | int4."""
    import onnx

    if not supports(lm):
        raise BuilderUnavailable("onnxruntime-genai is not installed or does not support "
                                 f"{lm.config.architectures}")
    with tempfile.TemporaryDirectory(prefix="octopus-genai-") as tmp:
        tmp = Path(tmp)
        lm.save_pretrained(tmp / "hf")
        tokenizer.save_pretrained(tmp / "hf")
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(tmp / "hf"),
                   "-o", str(tmp / "onnx"), "-p", precision, "-e", "cpu", "-c", str(tmp / "cache"),
                   "--extra_options", "exclude_embeds=true", "int4_block_size=32", "int4_accuracy_level=4"]
        log.info("building the %s decoder with onnxruntime-genai %s", precision, builder_version())
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode != 0 or not (tmp / "onnx" / "model.onnx").is_file():
            tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
            raise BuilderUnavailable(f"onnxruntime-genai builder failed: {' | '.join(tail)}")
        model = onnx.load(str(tmp / "onnx" / "model.onnx"))  # pulls in model.onnx.data
        onnx.save(model, str(target))
    weights = "fp32 MatMul" if precision == "fp32" else f"{precision} MatMulNBits, blocks of 32, int8 compute"
    return f"onnxruntime-genai {builder_version()} model builder (fused GroupQueryAttention + rotary; {weights})"
