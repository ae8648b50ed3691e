"""Argument values kept to the schema (`octopus.generation.ArgumentConstraint`) against plain greedy: the same
export, the same rows, each row decoded three ways back to back (one run): plain greedy, enumerated values only
(the constraint before copied values), and enumerated + copied values (what the runtimes do).

    .venv/bin/python bench/argument_constraint.py --onnx runs/model/onnx --data runs/data/test.jsonl --rows 400

Reports function accuracy (a call that fails validation counts as no function, as on the device), the share of
functional-token answers that validate, argument exact match (all arguments, and those the schema copies from
the request), irrelevant rejection, decode time per token, and every answer that differs between the modes.
Writes bench/results/argument_constraint.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

from tqdm import tqdm

from octopus.evaluate import evaluate, metrics, read_eval_rows, sample_rows

RESULTS = Path(__file__).parent / "results"
MODES = ("greedy", "enums", "enums + copied")


def copied_exact(predictions: list[dict], registry) -> dict[str, float | None]:
    """Per language, the share of copied argument values (gold call right function) written exactly."""
    hits: dict[str, list[bool]] = {}
    for p in predictions:
        if p["function"] is None or p["predicted_function"] != p["function"]:
            continue
        for arg in registry.get(p["function"]).arguments:
            if arg.copied and arg.name in (p.get("arguments") or {}):
                hits.setdefault(p["language"], []).append(p["predicted_arguments"].get(arg.name) ==
                                                          p["arguments"][arg.name])
    return {lang: round(sum(v) / len(v), 4) if v else None for lang, v in sorted(hits.items())}


def summary(predictions: list[dict], registry) -> dict:
    m = metrics(predictions)
    called = [p for p in predictions if not p["raw"].startswith("<nexa_none>")]
    valid = [p["predicted_function"] is not None for p in called]
    return {"function_accuracy": m["function_accuracy"], "by_language": m["function_accuracy_by_language"],
            "by_kind": {k: v.get("all") for k, v in m["function_accuracy_by_kind"].items()},
            "calls_that_validate": round(sum(valid) / len(valid), 4) if valid else None,
            "argument_exact_match": m["argument_exact_match_by_language"],
            "copied_exact": copied_exact(predictions, registry),
            "irrelevant_rejection": m["irrelevant_rejection_by_language"],
            "decode_ms_per_token_p50": round(statistics.median(p["timings_ms"]["decode_per_token"]
                                                               for p in predictions), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, help="an exported folder")
    parser.add_argument("--data", required=True, help="a JSONL file of rows (image, query, function, arguments)")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from octopus.device.runtime import OnnxAgent

    agent = OnnxAgent(args.onnx, precision=args.precision, threads=args.threads)
    constraints = {"greedy": None, "enums": copy.copy(agent.constraint), "enums + copied": agent.constraint}
    constraints["enums"].copied = {}
    rows = sample_rows(read_eval_rows(Path(args.data)), args.rows)
    predictions: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for row in tqdm(rows, desc="rows, three ways", unit="row", mininterval=2):
        for mode in MODES:
            agent.constraint = constraints[mode]
            predictions[mode].append(evaluate(agent, [row], progress=False)[1][0])  # eval's own record
    results = {mode: summary(p, agent.registry) for mode, p in predictions.items()}
    changed = [answers for answers in zip(*predictions.values()) if len({a["raw"] for a in answers}) > 1]
    results["changed"] = [{"query": answers[0]["query"], "function": answers[0]["function"],
                           "gold": answers[0]["arguments"], **{m: a["raw"] for m, a in zip(MODES, answers)}}
                          for answers in changed]
    results["rows"] = len(rows)

    def pct(v) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"
    lines = [f"| {len(rows)} rows of {Path(args.data).name}, {args.precision} | " + " | ".join(MODES) + " |",
             "| --- |" + " --- |" * len(MODES)]
    for label, get in (("function accuracy", lambda r: pct(r["function_accuracy"])),
                       ("EN / ZH", lambda r: " / ".join(pct(v) for v in r["by_language"].values())),
                       ("function calls that validate", lambda r: pct(r["calls_that_validate"])),
                       ("argument exact EN / ZH", lambda r: " / ".join(pct(v) for v in
                                                                       r["argument_exact_match"].values())),
                       ("copied values exact EN / ZH", lambda r: " / ".join(pct(v) for v in
                                                                            r["copied_exact"].values())),
                       ("irrelevant rejected EN / ZH", lambda r: " / ".join(pct(v) for v in
                                                                            r["irrelevant_rejection"].values())),
                       ("decode per token p50", lambda r: f"{r['decode_ms_per_token_p50']} ms")):
        lines.append(f"| {label} | " + " | ".join(get(results[m]) for m in MODES) + " |")
    lines.append(f"\n{len(changed)} of {len(rows)} answers differ between the modes.")
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "argument_constraint.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "argument_constraint.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
