"""Side by side: the `octopus eval --json` outputs of several models (one folder each, as `make model` writes to
MODEL_RUN/eval: test, test_trained_objects, test_unseen_style, test_new_wordings) as one table.

    .venv/bin/python bench/eval_compare.py --name recipe_no_lora_dropout \
        shipped=runs/model6/eval "no dropout"=runs/model7/eval

`--splits test` compares folders that hold the test split alone (e.g. an eval of all its 4,444 rows), leaving
out the rows over the other splits. Prints a markdown table and writes bench/results/<name>.json (every eval
output) and .md.
"""

from __future__ import annotations

import argparse
import json

from tables import labelled_files, markdown_table, save_table

SPLITS = ("test", "test_trained_objects", "test_unseen_style", "test_new_wordings")


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _languages(d: dict | None) -> str:
    d = d or {}
    return f"{_pct(d.get('en'))} / {_pct(d.get('zh'))}"


def _swap(e: dict) -> str:
    swap = e["test"].get("image_swap") or {}
    return f"{_pct(swap.get('follow_rate'))} ({swap.get('rows')})" if swap else "–"


def _all_splits(e: dict) -> str:
    rows = sum(e[s]["rows"] for s in SPLITS)
    return _pct(sum(e[s]["function_accuracy"] * e[s]["rows"] for s in SPLITS) / rows)


# (label, the splits it reads, cell of one model's evals): a row is shown when every split it reads is there
ROWS = [
    ("test function EN / ZH", ("test",), lambda e: _languages(e["test"]["function_accuracy_by_language"])),
    ("argument exact EN / ZH", ("test",), lambda e: _languages(e["test"]["argument_exact_match_by_language"])),
    ("argument exact where only the image decides EN / ZH", ("test",),
     lambda e: _languages(e["test"]["argument_exact_match_by_kind"].get("image_decides"))),
    ("argument exact where the image names the object EN / ZH", ("test",),
     lambda e: _languages(e["test"]["argument_exact_match_by_kind"].get("image_names_object"))),
    ("argument exact where the text decides EN / ZH", ("test",),
     lambda e: _languages(e["test"]["argument_exact_match_by_kind"].get("text_decides"))),
    ("only the image decides, held-out objects EN / ZH", ("test",),
     lambda e: _languages(e["test"]["image_rows_by_object_split"].get("image_decides/held_out_objects"))),
    ("image swap follows", ("test",), _swap),
    ("text decides EN / ZH", ("test",),
     lambda e: _languages(e["test"]["function_accuracy_by_kind"].get("text_decides"))),
    ("irrelevant rejected EN / ZH", ("test",), lambda e: _languages(e["test"]["irrelevant_rejection_by_language"])),
    ("trained objects: only the image decides EN / ZH", ("test_trained_objects",),
     lambda e: _languages(e["test_trained_objects"]["function_accuracy_by_kind"].get("image_decides"))),
    ("trained objects: argument exact EN / ZH", ("test_trained_objects",),
     lambda e: _languages(e["test_trained_objects"]["argument_exact_match_by_language"])),
    ("Noto style function EN / ZH", ("test_unseen_style",),
     lambda e: _languages(e["test_unseen_style"]["function_accuracy_by_language"])),
    ("Noto style argument exact EN / ZH", ("test_unseen_style",),
     lambda e: _languages(e["test_unseen_style"]["argument_exact_match_by_language"])),
    ("new wordings: function EN / ZH", ("test_new_wordings",),
     lambda e: _languages(e["test_new_wordings"]["function_accuracy_by_language"])),
    ("new wordings: argument exact EN / ZH", ("test_new_wordings",),
     lambda e: _languages(e["test_new_wordings"]["argument_exact_match_by_language"])),
    ("all four splits, function (1,600 rows)", SPLITS, _all_splits),
    ("int8 eval p50", ("test",), lambda e: str(e["test"]["latency_ms"]["p50"])),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="writes bench/results/<name>.md and .json")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                        help="the splits each folder holds (default: all four); rows over others are left out")
    parser.add_argument("evals", nargs="+", metavar="LABEL=EVAL_DIR")
    args = parser.parse_args()
    folders = labelled_files(args.evals, "eval folder (with test.json)", inside="test.json")
    evals = {}
    for label, folder in folders.items():
        missing = [s for s in args.splits if not (folder / f"{s}.json").is_file()]
        if missing:
            raise SystemExit(f"error: {folder} has no {', '.join(f'{s}.json' for s in missing)}")
        evals[label] = {s: json.loads((folder / f"{s}.json").read_text()) for s in args.splits}
    rows = sorted({e[s]["rows"] for e in evals.values() for s in args.splits})
    table = markdown_table([f"int8, {'/'.join(map(str, rows))} rows a split", *evals],
                           [[label, *(cell(e) for e in evals.values())] for label, reads, cell in ROWS
                            if set(reads) <= set(args.splits)])
    save_table(args.name, table, {"evals": {label: str(f) for label, f in folders.items()}, **evals})


if __name__ == "__main__":
    main()
