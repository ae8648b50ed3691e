"""Accuracy of the shipped default (or any export): by split, language, request kind and function, the image
swap, a confusion matrix of functions. Writes bench/results/accuracy.{json,md} and accuracy.png,
confusion.png, and rewrites the README's accuracy block from them (no figure there is typed by hand).

    python bench/accuracy.py [--onnx runs/default/onnx] [--data runs/data] [--rows 400]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from octopus.evaluate import evaluate, read_eval_rows, sample_rows, swap_metrics, swap_rows
from octopus.functions import FUNCTIONS

RESULTS = Path(__file__).parent / "results"
README = Path(__file__).parent.parent / "README.md"
SPLITS = (("test", "test (held-out objects)", True), ("test_trained_objects", "trained objects, new scenes", True),
          ("test_unseen_style", "unseen Noto style", False))
NAMES = [f.name for f in FUNCTIONS] + ["none"]


def replace_readme_block(name: str, markdown: str, readme: Path = README) -> None:
    """Put `markdown` between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in the README."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{markdown.strip()}\n{end}{tail}", encoding="utf-8")


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def tables(results: dict) -> str:
    lines = ["| split | rows | overall | EN | ZH | only the image decides EN / ZH | image swap follows | "
             "argument exact EN / ZH | irrelevant rejected EN / ZH |", "| --- " * 9 + "|"]
    for split, title, _ in SPLITS:
        m = results[split]
        amb = m["function_accuracy_by_kind"].get("image_decides", {})
        args, irr = m["argument_exact_match_by_language"], m["irrelevant_rejection_by_language"]
        lines.append(f"| {title} | {m['rows']} | {_pct(m['function_accuracy'])} | "
                     f"{_pct(m['function_accuracy_by_language'].get('en'))} | "
                     f"{_pct(m['function_accuracy_by_language'].get('zh'))} | {_pct(amb.get('en'))} / "
                     f"{_pct(amb.get('zh'))} | {_pct((m.get('image_swap') or {}).get('follow_rate'))} | "
                     f"{_pct(args.get('en'))} / {_pct(args.get('zh'))} | "
                     f"{_pct(irr.get('en'))} / {_pct(irr.get('zh'))} |")
    test = results["test"]
    lines += ["", "| test split, by request kind | all | EN | ZH |", "| --- | --- | --- | --- |"]
    lines += [f"| {kind.replace('_', ' ')} | {_pct(d.get('all'))} | {_pct(d.get('en'))} | {_pct(d.get('zh'))} |"
              for kind, d in test["function_accuracy_by_kind"].items()]
    lines += ["", "| test split, by function | accuracy |", "| --- | --- |"]
    lines += [f"| `{name}` | {_pct(acc)} |" for name, acc in test["function_accuracy_by_function"].items()]
    return "\n".join(lines)


def plots(results: dict, predictions: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    test = results["test"]
    kinds = list(test["function_accuracy_by_kind"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.38
    for i, lang in enumerate(("en", "zh")):
        values = [100 * (test["function_accuracy_by_kind"][k].get(lang) or 0) for k in kinds]
        axes[0].bar(np.arange(len(kinds)) + (i - 0.5) * width, values, width, label=lang.upper())
    axes[0].set_xticks(range(len(kinds)), [k.replace("_", "\n") for k in kinds])
    axes[0].set_ylabel("function accuracy (%)")
    axes[0].set_title("test split (held-out objects) by request kind")
    axes[0].set_ylim(0, 100)
    axes[0].legend()
    functions = list(test["function_accuracy_by_function"])
    axes[1].barh(functions, [100 * (test["function_accuracy_by_function"][f] or 0) for f in functions])
    axes[1].set_xlim(0, 100)
    axes[1].set_title("test split by function")
    fig.tight_layout()
    fig.savefig(RESULTS / "accuracy.png", dpi=110)
    plt.close(fig)

    counts = Counter((p["function"] or "none", p["predicted_function"] or "none") for p in predictions)
    matrix = np.array([[counts[(t, q)] for q in NAMES] for t in NAMES], float)
    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(NAMES)), NAMES, rotation=60, ha="right")
    ax.set_yticks(range(len(NAMES)), NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    for i in range(len(NAMES)):
        for j in range(len(NAMES)):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set_title("test split: functions, row-normalised (counts in cells)")
    fig.tight_layout()
    fig.savefig(RESULTS / "confusion.png", dpi=110)
    plt.close(fig)


def main() -> None:
    from octopus.backends import load_backend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default="runs/default/onnx", help="an exported folder (default: the shipped "
                        "default, assembled and exported first if needed)")
    parser.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--rows", type=int, default=400, help="seeded sample per split")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README block")
    args = parser.parse_args()
    if args.onnx == "runs/default/onnx":
        from octopus.training.demo import ensure_default_export

        ensure_default_export()
    backend = load_backend(args.onnx, args.precision)
    results, test_predictions = {}, []
    for split, _, swap in SPLITS:
        rows = sample_rows(read_eval_rows(Path(args.data) / f"{split}.jsonl"), args.rows)
        result, predictions = evaluate(backend, rows)
        if swap:
            result["image_swap"] = swap_metrics(evaluate(backend, swap_rows(rows))[1])
        results[split] = result
        if split == "test":
            test_predictions = predictions
        print(f"{split}: {result['function_accuracy']:.3f}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"model": args.onnx, "precision": args.precision, "rows_per_split": args.rows, "splits": results}
    (RESULTS / "accuracy.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    markdown = tables(results)
    (RESULTS / "accuracy.md").write_text(markdown + "\n", encoding="utf-8")
    plots(results, test_predictions)
    if not args.no_readme:
        replace_readme_block("accuracy", markdown + "\n\n![accuracy by kind and function](bench/results/accuracy.png)"
                             "\n![confusion matrix](bench/results/confusion.png)")
    print(markdown)


if __name__ == "__main__":
    main()
