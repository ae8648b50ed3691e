"""Where an export's memory goes on the device: RSS after each part of the load and its peak, then each
request's working memory (the peak above the RSS it started from, with the freed heap handed back before it).
One child process per export, in turn, on the same rows (Linux: reads /proc/self/status and resets the peak
with /proc/self/clear_refs).

    .venv/bin/python bench/request_memory.py --name request_memory --rows 60 \
        default=runs/default/onnx gemma=runs/gemma/onnx

Prints a table and writes bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from tables import labelled_files, markdown_table, save_table, status_mb


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def measure(onnx_dir: str, data: str, rows: int) -> dict:
    """In this process: load the export step by step, then answer `rows` rows of `data`."""
    import onnxruntime as ort

    import octopus.device.runtime as runtime

    load = {"start": status_mb("VmRSS")}
    opened = ort.InferenceSession

    def session(path, *args, **kwargs):  # the RSS after each graph the runtime opens
        s = opened(path, *args, **kwargs)
        load[f"after {Path(path).name}"] = status_mb("VmRSS")
        return s

    ort.InferenceSession = session
    try:
        agent = runtime.OnnxAgent(onnx_dir, precision="int8", threads=2)
    finally:
        ort.InferenceSession = opened
    load.update({"loaded": status_mb("VmRSS"), "load peak": status_mb("VmHWM")})
    base = Path(data).parent
    lines = Path(data).read_text(encoding="utf-8").splitlines()[:rows]
    working, before = [], []
    for line in lines:
        row = json.loads(line)
        runtime.release_freed_memory()
        _reset_peak()
        start = status_mb("VmRSS")
        agent.generate(str(base / row["image"]), row["query"])
        before.append(start)
        working.append(status_mb("VmHWM") - start)
    return {"load_mb": {k: round(v, 1) for k, v in load.items()}, "rows": len(lines),
            "request_base_mb": round(statistics.median(before), 1),
            "request_working_mb": {"median": round(statistics.median(working), 1), "max": round(max(working), 1)},
            "request_peak_mb": round(max(b + w for b, w in zip(before, working)), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="*", metavar="LABEL=ONNX_DIR")
    parser.add_argument("--data", default="runs/data/test.jsonl")
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--name", default="request_memory", help="writes bench/results/<name>.md and .json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one export, measured in this process
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.data, args.rows)))
        return 0
    if not args.exports:
        parser.error("give at least one LABEL=ONNX_DIR")
    if not Path(args.data).is_file():
        raise SystemExit(f"error: no data file {args.data}")
    exports = labelled_files(args.exports, "export folder (with manifest.json)", inside="manifest.json")
    results = {}
    for label, folder in exports.items():
        done = subprocess.run([sys.executable, __file__, "--child", str(folder), "--data", args.data,
                               "--rows", str(args.rows)], capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"error: {label}: {last}")
        results[label] = json.loads(done.stdout.strip().splitlines()[-1])
    mb = lambda x: f"{x:.0f} MB"  # noqa: E731
    table = markdown_table(
        [f"int8, 2 threads, {args.rows} rows", *results],
        [["RSS after loading", *(mb(r["load_mb"]["loaded"]) for r in results.values())],
         ["peak while loading", *(mb(r["load_mb"]["load peak"]) for r in results.values())],
         ["RSS before a request (median, heap trimmed)", *(mb(r["request_base_mb"]) for r in results.values())],
         ["a request's working memory, median / max",
          *(f"{r['request_working_mb']['median']:.0f} / {r['request_working_mb']['max']:.0f} MB"
            for r in results.values())],
         ["peak over the requests", *(mb(r["request_peak_mb"]) for r in results.values())]])
    save_table(args.name, table, {"data": args.data, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
