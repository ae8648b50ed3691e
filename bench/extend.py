"""A model extended with a user function against the model it started from, side by side on the same rows.

    python bench/extend.py --extended runs/extend_lamp [--default runs/default/onnx] [--data runs/data]
                           [--rows 400]

Both int8 exports answer (1) the ten on a seeded sample of the held-out test split (as the card measures
them), with the image swap, and (2) the new function's held-out requests (EXTENDED/data/test.jsonl: wordings
and values no training row had). Prints a table and writes bench/results/extend.json, with the card's figures
and `train extend`'s timings beside them. Exports EXTENDED/agent to EXTENDED/onnx first when it is missing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from octopus.device.runtime import OnnxAgent
from octopus.evaluate import evaluate, read_eval_rows, sample_rows, swap_metrics, swap_rows

RESULTS = Path(__file__).parent / "results"
CARD = Path(__file__).parent.parent / "model" / "default" / "card.json"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def measure(onnx: Path, ten: list[dict], new: list[dict]) -> dict:
    agent = OnnxAgent(onnx, precision="int8")
    m_ten, predictions = evaluate(agent, ten)
    swapped = evaluate(agent, swap_rows(ten))[1]
    m_ten["image_swap"] = swap_metrics(swapped)
    m_new, new_predictions = evaluate(agent, new)
    stolen = [p for p in predictions if p["predicted_function"] in {r["function"] for r in new}]
    answered = {}
    for p in new_predictions:
        key = p["predicted_function"] or "none"
        answered[key] = answered.get(key, 0) + 1
    return {"ten": m_ten, "new": m_new, "ten_rows_answered_with_the_new_function": len(stolen),
            "new_rows_answered_as": answered}


def table(results: dict, card: dict) -> str:
    ck = card["figures"]["test"]
    lines = ["| model | ten: overall | EN | ZH | only the image decides | swap follows | irrelevant rejected EN / ZH | "
             "args exact EN / ZH | new function EN | ZH | its args exact EN / ZH |", "| --- " * 11 + "|"]
    lines.append(f"| card (default, recorded) | {_pct(ck['all'])} | {_pct(ck['en'])} | {_pct(ck['zh'])} | "
                 f"{_pct(ck['by_kind']['image_decides']['all'])} | {_pct(ck['image_swap_follow_rate'])} | "
                 f"{_pct(ck['irrelevant_rejection']['en'])} / {_pct(ck['irrelevant_rejection']['zh'])} | "
                 f"{_pct(ck['argument_exact_match']['en'])} / {_pct(ck['argument_exact_match']['zh'])} | – | – | – |")
    for name, r in results.items():
        t, n = r["ten"], r["new"]
        lines.append(
            f"| {name} | {_pct(t['function_accuracy'])} | {_pct(t['function_accuracy_by_language'].get('en'))} | "
            f"{_pct(t['function_accuracy_by_language'].get('zh'))} | "
            f"{_pct(t['function_accuracy_by_kind'].get('image_decides', {}).get('all'))} | "
            f"{_pct(t['image_swap']['follow_rate'])} | {_pct(t['irrelevant_rejection_by_language'].get('en'))} / "
            f"{_pct(t['irrelevant_rejection_by_language'].get('zh'))} | "
            f"{_pct(t['argument_exact_match_by_language'].get('en'))} / "
            f"{_pct(t['argument_exact_match_by_language'].get('zh'))} | "
            f"{_pct(n['function_accuracy_by_language'].get('en'))} | "
            f"{_pct(n['function_accuracy_by_language'].get('zh'))} | "
            f"{_pct(n['argument_exact_match_by_language'].get('en'))} / "
            f"{_pct(n['argument_exact_match_by_language'].get('zh'))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extended", type=Path, required=True, help="a `train extend` output folder")
    parser.add_argument("--default", type=Path, default=Path("runs/default/onnx"), help="the model it started from")
    parser.add_argument("--data", type=Path, default=Path("runs/data"))
    parser.add_argument("--rows", type=int, default=400)
    args = parser.parse_args()
    if not (args.default / "manifest.json").is_file():
        from octopus.training.demo import ensure_default_export

        ensure_default_export()
    onnx = args.extended / "onnx"
    if not (onnx / "manifest.json").is_file():
        from octopus.exporters.onnx_export import export

        export(args.extended / "agent", onnx, int8=True)
    ten = sample_rows(read_eval_rows(args.data / "test.jsonl"), args.rows)
    new = read_eval_rows(args.extended / "data" / "test.jsonl")
    results = {"default": measure(args.default, ten, new), "extended": measure(onnx, ten, new)}
    card = json.loads(CARD.read_text())
    record = json.loads((args.extended / "extend.json").read_text())
    out = {"results": results, "card_test": card["figures"]["test"],
           "extend": {k: record.get(k) for k in ("functions", "rows", "start_seconds", "data_seconds",
                                                   "train_seconds", "delta_bytes", "test")}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "extend.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(table(results, card))
    for name, r in results.items():
        print(f"{name}: ten rows answered with the new function {r['ten_rows_answered_with_the_new_function']}; "
              f"new rows answered as {r['new_rows_answered_as']}")


if __name__ == "__main__":
    main()
