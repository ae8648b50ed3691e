"""Drafted decoding (`octopus.drafting`) against one token a pass: the same export, the same rows, each row
decoded both ways back to back (one run), on one or more splits.

    .venv/bin/python bench/drafted_decoding.py --onnx runs/model/onnx --data runs/data/test.jsonl \
        --data runs/data/test_trained_objects.jsonl --data runs/data/test_unseen_style.jsonl --rows 400

In exact arithmetic the two give the same answer; int8 graphs quantize each pass's activations with one scale,
so a pass of several tokens rounds a little differently and a near-tie may fall the other way. Reports, per
split and way: function accuracy, argument exact match and irrelevant rejection (as `bench/argument_constraint.py`),
decoder passes per answer, decode and end-to-end time p50, and every answer that differs.
Writes bench/results/drafted_decoding.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from argument_constraint import summary  # bench/argument_constraint.py, beside this script
from tqdm import tqdm

from octopus.evaluate import evaluate, read_eval_rows, sample_rows

RESULTS = Path(__file__).parent / "results"
WAYS = ("one token a pass", "drafted")


def timing(predictions: list[dict]) -> dict[str, float]:
    def p50(key: str) -> float:
        return round(statistics.median(p["timings_ms"][key] for p in predictions), 2)
    return {"decode_passes_mean": round(statistics.fmean(p["timings_ms"]["decode_passes"] for p in predictions), 2),
            "decode_ms_p50": p50("decode"), "total_ms_p50": p50("total")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, help="an exported folder")
    parser.add_argument("--data", required=True, action="append", help="a JSONL split (repeatable)")
    parser.add_argument("--rows", type=int, default=400, help="a seeded sample of this many rows a split")
    parser.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from octopus.device.runtime import OnnxAgent

    agent = OnnxAgent(args.onnx, precision=args.precision, threads=args.threads)
    drafters = {"one token a pass": None, "drafted": agent.drafter}
    results, lines = {"precision": args.precision, "splits": {}}, []
    for data in args.data:
        rows = sample_rows(read_eval_rows(Path(data)), args.rows)
        predictions: dict[str, list[dict]] = {way: [] for way in WAYS}
        for row in tqdm(rows, desc=f"{Path(data).name}, both ways", unit="row", mininterval=2):
            for way in WAYS:
                agent.drafter = drafters[way]
                predictions[way].append(evaluate(agent, [row], progress=False)[1][0])  # eval's own record
        split = {way: {**summary(p, agent.registry), **timing(p)} for way, p in predictions.items()}
        split["rows"] = len(rows)
        split["changed"] = [{"query": a["query"], "gold": a["target"], **{w: x["raw"] for w, x in zip(WAYS, (a, b))}}
                            for a, b in zip(*predictions.values()) if a["raw"] != b["raw"]]
        results["splits"][Path(data).stem] = split
        lines += _table(Path(data).name, split, args.precision)
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "drafted_decoding.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "drafted_decoding.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


def _table(name: str, split: dict, precision: str) -> list[str]:
    def pct(v) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"

    def pair(values: dict) -> str:
        return " / ".join(pct(v) for v in values.values()) or "–"  # a split without such rows
    lines = [f"| {split['rows']} rows of {name}, {precision} | " + " | ".join(WAYS) + " |",
             "| --- |" + " --- |" * len(WAYS)]
    for label, get in (("function EN / ZH", lambda r: pair(r["by_language"])),
                       ("only the image decides", lambda r: pct(r["by_kind"].get("image_decides"))),
                       ("argument exact EN / ZH", lambda r: pair(r["argument_exact_match"])),
                       ("irrelevant rejected EN / ZH", lambda r: pair(r["irrelevant_rejection"])),
                       ("decoder passes per answer", lambda r: f"{r['decode_passes_mean']:.2f}"),
                       ("decode p50", lambda r: f"{r['decode_ms_p50']:.0f} ms"),
                       ("end to end p50", lambda r: f"{r['total_ms_p50']:.0f} ms")):
        lines.append(f"| {label} | " + " | ".join(get(split[w]) for w in WAYS) + " |")
    lines += ["", f"{len(split['changed'])} of {split['rows']} answers differ between the two ways.", ""]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
