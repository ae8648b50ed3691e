"""Why calls miss their arguments: every argument of `octopus eval --out` predictions put in one cause, by
language, side by side for several prediction files.

`octopus eval` reports argument exact match (the function right and every argument equal), which says how often
but not why. This reads the per-row predictions and files each miss under one cause:

- the function was wrong (the row's arguments are not judged further);
- an argument left out, or one added that the request did not ask for;
- a value copied from the request with the wrong span: it starts early or late, ends long or short, or is
  another part of the request ("修车的邮件" for "修车"; "告诉王阿姨面包没了" for "面包没了");
- a value the request holds, written differently ("cheeburger" for "cheeseburger");
- an enumerated value mapped wrong (`material="paper"` for a jam jar), with the commonest confusions (the ten
  built-in functions' enumerations; a user function's enumerated values fall under the causes below);
- a value the request does not hold (an object the picture names), wrong;
- a number wrong.

    .venv/bin/octopus eval --model runs/default/onnx --data runs/data/test.jsonl --out runs/default/test_pred.jsonl
    .venv/bin/python bench/argument_errors.py --name argument_errors default=runs/default/test_pred.jsonl

Prints a markdown table (argument misses by cause, EN / ZH, as a share of the arguments the rows asked for) and
the arguments that carry the most misses; writes bench/results/<name>.{md,json} with examples of each cause.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from tables import labelled_files, markdown_table, save_table

from octopus.evaluate import jsonl_rows
from octopus.functions import FUNCTIONS

CAUSES = ("function wrong", "left out", "added", "span starts early", "span starts late", "span ends long",
          "span ends short", "span: both ends wrong", "span: another part of the request", "copied, reworded",
          "enumerated value wrong", "value not in the request, wrong", "number wrong")
ENUMS = {(f.name, a.name) for f in FUNCTIONS for a in f.arguments if a.enum}
LANGUAGES = ("en", "zh")
EXAMPLES = 5


def span_cause(query: str, gold: str, predicted: str) -> str:
    """Where a copied value went wrong, both being spans of `query` (their first occurrences)."""
    g0, p0 = query.find(gold), query.find(predicted)
    g1, p1 = g0 + len(gold), p0 + len(predicted)
    if p1 <= g0 or p0 >= g1:
        return "span: another part of the request"
    if p0 == g0:
        return "span ends long" if p1 > g1 else "span ends short"
    if p1 == g1:
        return "span starts early" if p0 < g0 else "span starts late"
    return "span: both ends wrong"


def cause_of(row: dict, name: str, gold, predicted) -> str | None:
    """The cause of one argument's miss, None when it is right."""
    if predicted == gold:
        return None
    if gold is None:
        return "added"
    if predicted is None:
        return "left out"
    if (row["function"], name) in ENUMS:
        return "enumerated value wrong"
    if isinstance(gold, int) and not isinstance(gold, bool):
        return "number wrong"
    query = row["query"]
    if isinstance(gold, str) and gold and gold in query:
        if isinstance(predicted, str) and predicted and predicted in query:
            return span_cause(query, gold, predicted)
        return "copied, reworded"
    return "value not in the request, wrong"


def analyse(predictions: list[dict]) -> dict:
    """Counts by cause and language, the arguments asked for, row exact rates, the worst arguments, examples."""
    rows = [p for p in predictions if p.get("function") is not None and "arguments" in p]
    asked: Counter = Counter()
    exact: dict[str, list[bool]] = defaultdict(list)
    causes: dict[str, Counter] = defaultdict(Counter)
    where: dict[str, Counter] = defaultdict(Counter)
    per_argument: Counter = Counter()
    confusions: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list] = defaultdict(list)
    for p in rows:
        language = p.get("language") or "unknown"
        gold, predicted = p["arguments"], p.get("predicted_arguments") or {}
        asked[language] += len(gold)
        for name in gold:
            per_argument[(language, f"{p['function']}.{name}")] += 1
        exact[language].append(p["predicted_function"] == p["function"] and predicted == gold)
        if p["predicted_function"] != p["function"]:
            causes[language]["function wrong"] += len(gold)
            continue
        for name in sorted(set(gold) | set(predicted)):
            cause = cause_of(p, name, gold.get(name), predicted.get(name))
            if cause is None:
                continue
            causes[language][cause] += 1
            where[language][f"{p['function']}.{name}"] += 1
            if cause == "enumerated value wrong":
                confusions[language][f"{p['function']}.{name}: {gold[name]} -> {predicted[name]}"] += 1
            if len(examples[cause]) < EXAMPLES:
                examples[cause].append({"query": p["query"], "argument": name, "gold": gold.get(name),
                                        "predicted": predicted.get(name)})
    return {
        "rows": {lang: len(v) for lang, v in sorted(exact.items())},
        "row_exact": {lang: round(sum(v) / len(v), 4) for lang, v in sorted(exact.items()) if v},
        "arguments_asked": dict(sorted(asked.items())),
        "misses": {lang: dict(c.most_common()) for lang, c in sorted(causes.items())},
        "by_argument": {lang: {k: {"misses": n, "asked": per_argument[(lang, k)]} for k, n in c.most_common()}
                        for lang, c in sorted(where.items())},
        "enum_confusions": {lang: dict(c.most_common(8)) for lang, c in sorted(confusions.items())},
        "examples": dict(examples),
    }


def _cell(report: dict, cause: str) -> str:
    cells = []
    for lang in LANGUAGES:
        n, asked = report["misses"].get(lang, {}).get(cause, 0), report["arguments_asked"].get(lang, 0)
        cells.append(f"{n} ({100 * n / asked:.1f}%)" if asked else "–")
    return " / ".join(cells)


def tables(reports: dict[str, dict], worst: int) -> str:
    labels = list(reports)

    def by_language(values: dict) -> str:
        return " / ".join(f"{100 * values[lang]:.1f}" if lang in values else "–" for lang in LANGUAGES)

    rows = [["rows with arguments EN / ZH", *(" / ".join(str(r["rows"].get(lang, 0)) for lang in LANGUAGES)
                                             for r in reports.values())],
            ["argument exact (rows) EN / ZH", *(by_language(r["row_exact"]) for r in reports.values())],
            ["arguments asked EN / ZH", *(" / ".join(str(r["arguments_asked"].get(lang, 0)) for lang in LANGUAGES)
                                          for r in reports.values())]]
    rows += [[f"{cause} EN / ZH", *(_cell(r, cause) for r in reports.values())] for cause in CAUSES
             if any(r["misses"].get(lang, {}).get(cause) for r in reports.values() for lang in LANGUAGES)]
    out = [markdown_table(["argument misses by cause", *labels], rows)]
    for label, report in reports.items():
        for lang in LANGUAGES:
            items = list(report["by_argument"].get(lang, {}).items())[:worst]
            if items:
                out.append(f"\n{label}, {lang}: the arguments with the most misses\n")
                out.append(markdown_table(["argument", "misses (added ones too) / asked"],
                                          [[k, f"{v['misses']} / {v['asked']}"] for k, v in items]))
            confusions = report["enum_confusions"].get(lang)
            if confusions:
                out.append(f"\n{label}, {lang}: enumerated values mapped wrong (gold -> written)\n")
                out.append(markdown_table(["confusion", "rows"], [[k, str(v)] for k, v in confusions.items()]))
    return "\n".join(out)


def read_predictions(path: Path) -> list[dict]:
    rows = []
    try:
        for number, row in jsonl_rows(path):
            if not isinstance(row, dict) or "predicted_function" not in row or "query" not in row:
                raise SystemExit(f"error: {path}:{number} is not an `octopus eval --out` prediction "
                                 "(no predicted_function or query)")
            rows.append(row)
    except ValueError as error:  # a line that is not JSON
        raise SystemExit(f"error: {error}") from None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", nargs="+", metavar="LABEL=FILE", help="an `octopus eval --out` JSONL file")
    parser.add_argument("--name", default="argument_errors", help="results name (or a path without suffix)")
    parser.add_argument("--worst", type=int, default=8, help="arguments listed per language")
    args = parser.parse_args()
    files = labelled_files(args.predictions, "a predictions file")
    reports = {label: analyse(read_predictions(path)) for label, path in files.items()}
    reports = {label: {"predictions": str(files[label]), **r} for label, r in reports.items()}
    save_table(args.name, tables(reports, args.worst), reports)


if __name__ == "__main__":
    main()
