"""How fast the frozen vision encoder's output is cached (training/datasets.py `FeatureCache`), recipes side by
side in one run: the forward's batch size and the convolutions' memory layout. Each recipe fills a fresh cache
of the same images and is checked against the first one's features. Prints a table and writes
bench/results/feature_cache.json (or --out).

    python bench/feature_cache.py --agent runs/quick/init/agent --data runs/data --images 512

Every stage whose vision tower is frozen fills such a cache once (stage 1: ~6,400 naming scenes, stage 2: ~3,000
scenes in the quick profile), so its speed is a share of the quick build's wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RECIPES = [  # (name, forward batch, channels_last)
    ("previous: batch 64, default layout", 64, False),
    ("batch 16, default layout", 16, False),
    ("batch 64, channels_last", 64, True),
    ("batch 16, channels_last (shipped)", 16, True),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", type=Path, required=True, help="an agent folder (e.g. runs/quick/init/agent)")
    parser.add_argument("--data", type=Path, required=True, help="a data folder built by `octopus data`")
    parser.add_argument("--images", type=int, default=512, help="images each recipe caches")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2)")
    parser.add_argument("--out", type=Path, default=RESULTS / "feature_cache.json")
    args = parser.parse_args(argv)
    for path, what in ((args.agent, "agent folder"), (args.data / "naming.jsonl", "data folder's naming.jsonl")):
        if not path.exists():
            print(f"error: {what} not found: {path}", file=sys.stderr)
            return 2

    import numpy as np
    import torch

    from octopus.model.agent import OctopusAgent
    from octopus.training.datasets import FeatureCache

    torch.set_num_threads(args.threads)
    agent = OctopusAgent.load(args.agent)
    rows = [json.loads(line) for line in (args.data / "naming.jsonl").open()]
    images = sorted({str(args.data / r["image"]) for r in rows})[: args.images]
    results, reference = [], None
    for name, batch, channels_last in RECIPES:
        recipe = type("Recipe", (FeatureCache,), {"FORWARD_BATCH": batch, "CHANNELS_LAST": channels_last})
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            cache = recipe(Path(tmp), agent, images)
            seconds = time.perf_counter() - start
            features = np.asarray(cache.array, dtype=np.float32)
        reference = features if reference is None else reference
        results.append({"recipe": name, "forward_batch": batch, "channels_last": channels_last,
                        "images": len(images), "seconds": round(seconds, 2),
                        "images_per_second": round(len(images) / seconds, 1),
                        "max_abs_diff_vs_first": float(np.abs(features - reference).max())})
    base = results[0]["seconds"]
    print(f"{'recipe':38} {'img/s':>7} {'speed-up':>9} {'max |diff|':>11}")
    for r in results:
        r["speedup_vs_previous"] = round(base / r["seconds"], 2)
        print(f"{r['recipe']:38} {r['images_per_second']:7.1f} {r['speedup_vs_previous']:8.2f}x "
              f"{r['max_abs_diff_vs_first']:11.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "agent": str(args.agent), "results": results},
                                   indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
