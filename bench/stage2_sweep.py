"""Stage-2 recipes side by side: each variant trains stage 2 from one shared stage-1 agent and is scored with
the teacher-forced grounding proxy (bench/teacher_forced.py) on the same rows. Prints one table and writes
bench/results/stage2_sweep.json (or --out).

    python bench/stage2_sweep.py --data runs/data --base runs/quick --work runs/sweep \
        --variant base= --variant ep3=epochs=3 --variant 'lr=lr=2e-3;function_token_weight=5'

A variant is NAME=KEY=VALUE[;KEY=VALUE...], keys of stage 2's config (`--set stage2_functional.KEY=VALUE`).
`--base` is an output folder of `octopus train stage1` (its init/ and stage1_alignment/ are shared, not
copied). `--parallel N` runs N variants at once: on a GPU machine, never on a 2-core CPU (two trainings
there run 5-8x slower each). `--table-only` re-prints the table from the proxy JSONs already under --work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COLUMNS = [  # (header, split, key, field)
    ("held-out objects: image decides", "test", "image_decides/objects:test", "function"),
    ("trained objects: image decides", "test_trained_objects", "image_decides/objects:train", "function"),
    ("swap follows (held-out)", "test", "image_swap_follow", "rate"),
    ("swap follows (trained)", "test_trained_objects", "image_swap_follow", "rate"),
    ("function EN", "test", "all/en", "function"),
    ("function ZH", "test", "all/zh", "function"),
    ("exact call EN", "test", "all/en", "exact"),
    ("exact call ZH", "test", "all/zh", "exact"),
    ("exact call, trained objects EN", "test_trained_objects", "all/en", "exact"),
    ("exact call, trained objects ZH", "test_trained_objects", "all/zh", "exact"),
    ("irrelevant rejected EN", "test", "irrelevant/en", "function"),
    ("irrelevant rejected ZH", "test", "irrelevant/zh", "function"),
]


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, assignments = text.partition("=")
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise SystemExit(f"error: variant {text!r}: expected NAME=KEY=VALUE[;KEY=VALUE...] with a plain NAME")
    sets = []
    for item in filter(None, assignments.split(";")):
        if "=" not in item:
            raise SystemExit(f"error: variant {name}: {item!r} is not KEY=VALUE")
        sets += ["--set", f"stage2_functional.{item}"]
    return name, sets


def run_variant(name: str, sets: list[str], args, threads: int) -> dict:
    out = Path(args.work) / name
    out.mkdir(parents=True, exist_ok=True)
    for shared in ("init", "stage1_alignment"):
        link = out / shared
        if not link.exists():
            link.symlink_to((Path(args.base) / shared).resolve(), target_is_directory=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    with (out / "train.log").open("w") as log:
        done = subprocess.run([sys.executable, "-m", "octopus.cli", "train", "stage2", "--profile", args.profile,
                               "--data", args.data, "--out", str(out), *sets], stdout=log, stderr=subprocess.STDOUT,
                              env=env)
    if done.returncode:
        return {"name": name, "sets": sets, "error": f"stage 2 failed, see {out / 'train.log'}"}
    seconds = round(time.time() - start)
    proxy = out / "teacher_forced.json"
    with (out / "eval.log").open("w") as log:
        done = subprocess.run([sys.executable, str(Path(__file__).parent / "teacher_forced.py"), "--model",
                               str(out / "stage2_functional" / "agent"), "--data", args.data, "--rows",
                               str(args.rows), "--cache", str(Path(args.work) / "proxy_cache"), "--out", str(proxy)],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        return {"name": name, "sets": sets, "error": f"proxy failed, see {out / 'eval.log'}"}
    return {"name": name, "sets": sets, "train_seconds": seconds, "proxy": json.loads(proxy.read_text())}


def table(results: list[dict]) -> str:
    lines = ["| variant | " + " | ".join(c[0] for c in COLUMNS) + " |", "| --- " * (len(COLUMNS) + 1) + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} |")
            continue
        cells = []
        for _, split, key, field in COLUMNS:
            value = r["proxy"].get(split, {}).get(key, {}).get(field)
            cells.append("–" if value is None else f"{100 * value:.1f}%")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--base", default="runs/quick", help="output folder of `octopus train stage1`")
    parser.add_argument("--work", default="runs/sweep")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE[;KEY=VALUE...]")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "stage2_sweep.json"))
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    if args.table_only:
        work = Path(args.work)
        results = [{"name": n, "sets": s, "proxy": json.loads((work / n / "teacher_forced.json").read_text())}
                   for n, s in variants]
    else:
        if not (Path(args.base) / "stage1_alignment" / "agent" / "config.json").is_file():
            raise SystemExit(f"error: no stage-1 agent in {args.base}; run `octopus train stage1 --out {args.base}`")
        threads = max(1, (os.cpu_count() or 2) // max(1, args.parallel))
        with ThreadPoolExecutor(args.parallel) as pool:
            results = list(pool.map(lambda v: run_variant(*v, args, threads), variants))
    print(table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"profile": args.profile, "rows": args.rows, "variants": results},
                                         indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
