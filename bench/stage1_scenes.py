"""Stage 1 on more or fewer naming scenes, side by side: how well its projector reads a new scene's object and
category back, through the very route the category and name slots take at inference (the mean image token's
nearest concept, `NameSlots.index`). The agent follows that read-back: on the shipped default every
trained-object image-decided row whose slot read the right category was answered right, and every other one
wrong. An `--agent` is read back from the image alone whatever its `projector.slot_flip`; `--flip` adds the
read-back from the image and its mirror (what an agent with the flag, such as the shipped default, shows).
Prints one table and writes bench/results/stage1_scenes.{md,json}.

    octopus data build --out runs/data96 --captions-per-concept 32  # the same scenes and rows, plus 16 a style
    python bench/stage1_scenes.py --variant 48=runs/data:5 --variant 96=runs/data96:2.5 --seeds 0 1 2 \
        --eval-data runs/data --work runs/stage1_scenes --agent shipped=runs/default/agent

A variant is NAME=DATA:EPOCHS: stage 1 (`octopus train stage1 --profile quick`) on DATA's naming.jsonl for
EPOCHS epochs (equal steps: 5 epochs of 48 scenes a concept, 2.5 of 96), once a seed, into WORK/NAME_sSEED;
a run whose agent is there already is read back, not trained again (resumable). Seeds of one variant share its
first run's vision cache. Read back on every image row's scene of test (held-out objects), test_trained_objects
(new scenes of trained objects) and test_unseen_style (the Noto style) of --eval-data. One stage 1 takes about
a minute on 2 cores; never run this beside another training.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tables import labelled_files, markdown_table, save_table  # noqa: E402

SPLITS = (("test", "held-out objects"), ("test_trained_objects", "trained objects, new scenes"),
          ("test_unseen_style", "Noto style"))
IMAGE_KINDS = ("image", "ambiguous")  # rows whose picture shows the object the request is about


def parse_variant(text: str) -> tuple[str, Path, float]:
    name, _, rest = text.partition("=")
    data, _, epochs = rest.rpartition(":")
    try:
        value = float(epochs)
    except ValueError:
        value = 0.0
    if not name.isalnum() or not data or value <= 0:
        raise SystemExit(f"error: variant {text!r}: expected NAME=DATA:EPOCHS, e.g. 96=runs/data:2.5")
    if not (Path(data) / "naming.jsonl").is_file():
        raise SystemExit(f"error: variant {name}: no naming.jsonl in {data} (build it with `octopus data build`)")
    return name, Path(data), value


def train(run: Path, data: Path, epochs: float, seed: int, shared_cache: Path | None) -> Path:
    agent = run / "stage1_alignment" / "agent"
    if (agent / "config.json").is_file():
        return agent
    cache = run / "stage1_alignment" / "vision_cache"
    if shared_cache is not None and shared_cache.is_dir() and not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(shared_cache, cache, copy_function=os.link)  # hard links: the cache is read, not written
    octopus = str(Path(sys.executable).parent / "octopus")
    subprocess.run([octopus, "train", "stage1", "--profile", "quick", "--data", str(data), "--out", str(run),
                    "--set", f"stage1_alignment.epochs={epochs}", "--set", f"stage1_alignment.seed={seed}"],
                   check=True)
    return agent


def read_back(agent_dir: Path, eval_data: Path, cache_dir: Path, flip: bool = False) -> dict[str, dict[str, float]]:
    """{split: {"concept": %, "category": %, "scenes": n}} of the agent's slot read-back on each split's scenes.
    `flip`: read back from the scene and its mirror image together, as `projector.slot_flip` does at inference."""
    import torch

    from octopus.model.agent import OctopusAgent
    from octopus.training.data.concepts import CONCEPTS, concept
    from octopus.training.datasets import FeatureCache, read_data_file

    agent = OctopusAgent.load(agent_dir).eval()
    projector = agent.projector
    if projector.names is None:
        raise SystemExit(f"error: {agent_dir} has no name slots to read back (projector.name_slots is empty)")
    names = [entry["en"] for entry in agent.config.projector.names]
    keys = {c.en: c.key for c in CONCEPTS}
    truth = {}
    for split, _ in SPLITS:
        for row in read_data_file(eval_data, f"{split}.jsonl"):
            if row["meta"]["kind"] in IMAGE_KINDS:
                truth.setdefault(split, {})[row["image"]] = row["meta"]["objects"][0]
    images = sorted({path for scenes in truth.values() for path in scenes})
    cache = FeatureCache(cache_dir, agent, images)  # refilled only when the frozen encoder differs
    read = {}
    with torch.no_grad():
        for start in range(0, len(images), 256):
            batch = images[start:start + 256]
            tokens = projector.image_tokens(cache(batch))
            mirror = None
            if flip:
                mirrored = torch.cat([agent.vision_encoder(torch.cat([agent.pixels(p) for p in batch[i:i + 16]])
                                                           .flip(3)) for i in range(0, len(batch), 16)])
                mirror = projector.image_tokens(mirrored)
            index = projector.names.index(tokens, mirror)
            read.update(zip(batch, (names[i] for i in index.tolist())))
    out = {}
    for split, scenes in truth.items():
        hits = [(keys.get(read[p]) == key, keys.get(read[p]) is not None
                 and concept(keys[read[p]]).category == concept(key).category) for p, key in scenes.items()]
        out[split] = {"scenes": len(hits), "concept": 100 * sum(h[0] for h in hits) / len(hits),
                      "category": 100 * sum(h[1] for h in hits) / len(hits)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True, help="NAME=DATA:EPOCHS (repeat)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-data", type=Path, required=True, help="data folder whose test splits are read back")
    parser.add_argument("--work", type=Path, default=Path("runs/stage1_scenes"))
    parser.add_argument("--agent", action="append", default=[],
                        help="LABEL=AGENT_FOLDER: also read back a trained agent as it is (e.g. the shipped default)")
    parser.add_argument("--flip", action="store_true",
                        help="also read each --agent back flip-averaged (the scene and its mirror image)")
    parser.add_argument("--name", default="stage1_scenes", help="bench/results/<name>.{md,json}")
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    agents = labelled_files(args.agent, "agent folder", inside="config.json")
    for split, _ in SPLITS:
        if not (args.eval_data / f"{split}.jsonl").is_file():
            print(f"error: no {split}.jsonl in {args.eval_data}", file=sys.stderr)
            return 2

    import torch

    torch.set_num_threads(2)
    report = {"eval_data": str(args.eval_data), "seeds": args.seeds, "variants": {}}
    for name, data, epochs in variants:
        runs = {}
        for seed in args.seeds:
            first = args.work / f"{name}_s{args.seeds[0]}" / "stage1_alignment" / "vision_cache"
            agent = train(args.work / f"{name}_s{seed}", data, epochs, seed, first if seed != args.seeds[0] else None)
            runs[seed] = read_back(agent, args.eval_data, args.work / "eval_cache")
            print(f"{name} seed {seed}: " + ", ".join(f"{s} {r['category']:.1f}" for s, r in runs[seed].items()),
                  flush=True)
        scenes = sum(1 for _ in (data / "naming.jsonl").open()) // 2  # a row per scene and language
        report["variants"][name] = {"data": str(data), "epochs": epochs, "naming_scenes": scenes, "runs": runs}

    for label, folder in agents.items():
        report.setdefault("agents", {})[label] = read_back(folder, args.eval_data, args.work / "eval_cache")
        if args.flip:
            report["agents"][f"{label}, flip-averaged"] = read_back(folder, args.eval_data, args.work / "eval_cache",
                                                                    flip=True)

    header = ["stage 1", "scenes a concept"] + [f"{what}: {field}" for _, what in SPLITS
                                                for field in ("category", "concept")]
    rows = []
    for name, entry in report["variants"].items():
        cells = [f"{name} ({entry['epochs']:g} epochs)", str(entry["naming_scenes"] // 133)]
        for split, _ in SPLITS:
            for field in ("category", "concept"):
                values = [run[split][field] for run in entry["runs"].values()]
                mean = statistics.mean(values)
                entry.setdefault("mean", {}).setdefault(split, {})[field] = round(mean, 2)
                cells.append(f"{mean:.1f} ({min(values):.1f}–{max(values):.1f})")
        rows.append(cells)
    for label, result in report.get("agents", {}).items():
        rows.append([label, "–"] + [f"{result[split][field]:.1f}" for split, _ in SPLITS
                                    for field in ("category", "concept")])
    counts = next(iter(report["variants"].values()))["runs"][args.seeds[0]]
    note = (f"\nMean over seeds {', '.join(map(str, args.seeds))} (lowest–highest), % of each split's scenes "
            "(" + ", ".join(f"{split} {counts[split]['scenes']}" for split, _ in SPLITS) + ").")
    save_table(args.name, markdown_table(header, rows) + "\n" + note, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
