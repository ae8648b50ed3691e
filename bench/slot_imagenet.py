"""Where the packaged ImageNet head would choose the name slots (`projector.slot_imagenet`), split by split and
on real photographs, against the keys alone; nothing is trained or generated.

    .venv/bin/python bench/slot_imagenet.py --agent runs/default/agent --data runs/data \
        --splits train:1500,test,test_trained_objects,test_unseen_style --name slot_imagenet

For every image of each split (`:N`: a seeded sample of N), the name the keys read it as (with the agent's own
`slot_flip`) and the name the head is sure of at each threshold: how many images the head takes over, and the
name / category right on the rows whose picture names or decides (their first object is the one the request is
about). The threshold is chosen on `train`, where icons are what the keys were learnt on. Then the same for
photographs: the demo's photo and the photographs scikit-image bundles (only the cat is among the names).
Prints a table and writes bench/results/<name>.md and .json.

    .venv/bin/python bench/slot_imagenet.py --onnx-compare runs/default/onnx runs/imnet/onnx --data runs/data \
        --splits test,test_trained_objects,test_unseen_style,test_new_wordings --name slot_imagenet_int8

compares two exports of one agent, without and with the setting, as deployed (int8): the images whose name slots
differ between them are the only ones whose rows can be answered differently; it lists them.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
from tables import markdown_table, save_table
from tqdm import tqdm

from octopus.model.agent import IMAGENET_NAMES, OctopusAgent, imagenet_names

THRESHOLDS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png", "motorcycle_left.png",
          "horse.png", "coins.png")  # scikit-image's bundled pictures (horse.png: a silhouette, no photograph)


def _photos() -> list[Path]:
    photos = [Path("model/default/examples/photo_cat.jpg")]
    try:
        import skimage
    except ImportError:
        return photos
    data = Path(skimage.__file__).parent / "data"
    return photos + [data / name for name in PHOTOS if (data / name).is_file()]


def _read(agent: OctopusAgent, paths: list[Path], head, what: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) the keys' name index and (B, K) the head's probability on each name's classes."""
    keys, masses = [], []
    for i in tqdm(range(0, len(paths), 32), desc=what, unit="batch", disable=not what):
        pixels = torch.cat([agent.pixels(p) for p in paths[i:i + 32]])
        with torch.no_grad():
            if agent.config.projector.slot_flip:
                patches, mirror = agent.vision_encoder(torch.cat([pixels, pixels.flip(-1)])).chunk(2)
            else:
                patches, mirror = agent.vision_encoder(pixels), None
            tokens = agent.projector.image_tokens(patches)
            keys.append(agent.projector.names.index(tokens, None if mirror is None else
                                                     agent.projector.image_tokens(mirror)))
            masses.append(head.probabilities(patches, mirror) @ head.members)
    return torch.cat(keys), torch.cat(masses)


def _right(index: torch.Tensor, scored: list[int], truth: list[int], of: list[str] | None = None) -> int:
    """How many scored images read as their object (`of`: as an object of its category)."""
    return sum((of[int(index[i])] == of[g]) if of else int(index[i]) == g for i, g in zip(scored, truth))


def _split_images(data: str, spec: str) -> tuple[str, list[str], dict[str, str | None]]:
    """A split's images (`split:N`: a seeded sample of N) and, per image, the object its image row is about."""
    split, _, limit = spec.partition(":")
    rows = [json.loads(line) for line in (Path(data) / f"{split}.jsonl").open(encoding="utf-8")]
    about: dict[str, str | None] = {}  # image -> the object its request is about (image rows), else None
    for r in rows:
        obj = (r["meta"].get("objects") or [None])[0] if r["meta"]["kind"] in ("image", "ambiguous") else None
        if about.get(r["image"]) is None:
            about[r["image"]] = obj.replace("_", " ") if obj else None
    images = sorted(about)
    if limit:
        random.Random(0).shuffle(images)
        images = sorted(images[:int(limit)])
    return split, images, about


def _compare_exports(args: argparse.Namespace) -> None:
    from octopus.device.runtime import OnnxAgent
    from octopus.preprocess import load_image

    without, with_head = (OnnxAgent(d, precision="int8") for d in args.onnx_compare)
    grid = without.manifest["prompt"]["num_image_tokens"] - sum(
        without.manifest["config"]["projector"]["name_slots"].values())
    report, rows_out = {"without": args.onnx_compare[0], "with": args.onnx_compare[1], "splits": {}}, []
    for spec in args.splits.split(","):
        split, images, _ = _split_images(args.data, spec)
        differ = []
        for image in tqdm(images, desc=f"{split}: {len(images)} images", unit="image"):
            picture = load_image(Path(args.data) / image)
            a, b = (agent.image_embeds(picture)[0, grid:] for agent in (without, with_head))
            if not np.array_equal(a, b):
                differ.append(image)
        report["splits"][split] = {"images": len(images), "slots_differ": differ}
        rows_out.append([split, str(len(images)), str(len(differ))])
    save_table(args.name, markdown_table(["split", "images", "name slots differ (int8, without → with)"], rows_out),
               report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", help="a saved agent (not with --onnx-compare)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--splits", default="train:1500,test,test_trained_objects,test_unseen_style")
    parser.add_argument("--name", default="slot_imagenet")
    parser.add_argument("--onnx-compare", nargs=2, metavar=("WITHOUT", "WITH"), default=None,
                        help="two exports of one agent: list the images whose name slots differ (int8)")
    args = parser.parse_args()
    if args.onnx_compare:
        return _compare_exports(args)
    if not args.agent:
        raise SystemExit("error: --agent is required (or --onnx-compare WITHOUT WITH)")
    agent = OctopusAgent.load(args.agent)
    agent.config.projector.slot_imagenet = 0.5  # any: builds the head; the thresholds are applied below
    head = imagenet_names(agent.config)
    names = agent.config.projector.names
    en = [n["en"] for n in names]
    category = [(n.get("show") or {}).get("en", n["en"]) for n in names]
    by_name = {n: i for i, n in enumerate(en)}
    covered = sum(bool(head.members[:, j].any()) for j in range(len(names)))
    print(f"{covered} of {len(names)} names have ImageNet classes ({IMAGENET_NAMES.name})")
    report: dict = {"agent": args.agent, "slot_flip": agent.config.projector.slot_flip, "names": len(names),
                    "names_with_classes": covered, "splits": {}, "photos": []}
    rows_out = []
    for spec in args.splits.split(","):
        split, images, about = _split_images(args.data, spec)
        key, mass = _read(agent, [Path(args.data) / p for p in images], head, f"{split}: {len(images)} images")
        best, arg = mass.max(-1)
        scored = [i for i, p in enumerate(images) if about[p] in by_name]
        truth = [by_name[about[images[i]]] for i in scored]
        entry = {"images": len(images), "scored": len(scored), "thresholds": {}}
        for t in THRESHOLDS:
            read = torch.where(best >= t, arg, key)
            taken = [i for i in range(len(images)) if best[i] >= t and int(arg[i]) != int(key[i])]
            entry["thresholds"][t] = {
                "taken_over": len(taken), "name_right_keys": _right(key, scored, truth),
                "name_right": _right(read, scored, truth), "category_right_keys": _right(key, scored, truth, category),
                "category_right": _right(read, scored, truth, category),
                "taken_over_images": [f"{images[i]}: {en[int(key[i])]} -> {en[int(arg[i])]} "
                                      f"({float(best[i]):.2f})" for i in taken]}
            e = entry["thresholds"][t]
            rows_out.append([split, str(len(images)), f"{t:g}", str(e["taken_over"]),
                             f"{e['name_right_keys']} → {e['name_right']} of {len(scored)}",
                             f"{e['category_right_keys']} → {e['category_right']}"])
        report["splits"][split] = entry
    table = markdown_table(["split", "images", "threshold", "head takes over", "name right (keys → with head)",
                            "category right"], rows_out)
    photos = _photos()
    key, mass = _read(agent, photos, head)
    best, arg = mass.max(-1)
    photo_rows = []
    for p, k, b, a in zip(photos, key.tolist(), best.tolist(), arg.tolist()):
        report["photos"].append({"photo": p.name, "keys": en[k], "head": en[a], "head_mass": round(b, 3)})
        photo_rows.append([p.name, en[k], f"{en[a]} ({b:.2f})"])
    table += "\n\n" + markdown_table(["photograph", "keys read it as", "head's best name (its probability)"],
                                     photo_rows)
    save_table(args.name, table, report)


if __name__ == "__main__":
    main()
