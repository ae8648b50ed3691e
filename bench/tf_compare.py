"""Side by side: several `bench/teacher_forced.py` reports (same rows, same machine) as one table.

    .venv/bin/python bench/tf_compare.py --name name_slots \
        shipped=/tmp/tf_base.json slots=/tmp/tf_slots.json "slots + swap"=/tmp/tf_swap.json

Prints a markdown table and writes bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json

from tables import labelled_files, markdown_table, save_table

# (label, split, group, metric)
ROWS = [
    ("test function EN / ZH", "test", ("all/en", "all/zh"), "function"),
    ("test whole call exact EN / ZH", "test", ("all/en", "all/zh"), "exact"),
    ("argument named by the image, exact EN / ZH", "test", ("argument named by the image/en",
                                                           "argument named by the image/zh"), "exact"),
    ("only the image decides, held-out objects", "test", ("image_decides/objects:test",), "function"),
    ("only the image decides EN / ZH", "test", ("image_decides/en", "image_decides/zh"), "function"),
    ("image names the object EN / ZH", "test", ("image_names_object/en", "image_names_object/zh"), "function"),
    ("text decides EN / ZH", "test", ("text_decides/en", "text_decides/zh"), "function"),
    ("text decides exact EN / ZH", "test", ("text_decides/en", "text_decides/zh"), "exact"),
    ("irrelevant rejected EN / ZH", "test", ("irrelevant/en", "irrelevant/zh"), "function"),
    ("image swap follows, held-out objects", "test", "swap", "rate"),
    ("new wordings: text decides EN / ZH", "test_new_wordings", ("text_decides/en", "text_decides/zh"), "function"),
    ("new wordings: text decides exact EN / ZH", "test_new_wordings", ("text_decides/en", "text_decides/zh"),
     "exact"),
    ("new wordings: irrelevant rejected EN / ZH", "test_new_wordings", ("irrelevant/en", "irrelevant/zh"),
     "function"),
    ("trained objects: function EN / ZH", "test_trained_objects", ("all/en", "all/zh"), "function"),
    ("trained objects: whole call exact EN / ZH", "test_trained_objects", ("all/en", "all/zh"), "exact"),
    ("trained objects: only the image decides", "test_trained_objects", ("image_decides/objects:train",),
     "function"),
    ("trained objects: image swap follows", "test_trained_objects", "swap", "rate"),
]


def cell(report: dict, split: str, groups, metric: str) -> str:
    part = report.get(split, {})
    if groups == "swap":
        value = part.get("image_swap_follow", {}).get(metric)
        return "–" if value is None else f"{100 * value:.1f}%"
    values = [part.get(g, {}).get(metric) for g in groups]
    if any(v is None for v in values):
        return "–"
    return " / ".join(f"{100 * v:.1f}" for v in values) + "%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", help="label=path of a teacher_forced.py report")
    parser.add_argument("--name", default="tf_compare", help="bench/results/<name>.json and .md")
    args = parser.parse_args()
    reports = {label: json.loads(path.read_text()) for label, path in labelled_files(args.reports, "report").items()}
    rows = [(label, [cell(r, split, groups, metric) for r in reports.values()])
            for label, split, groups, metric in ROWS]
    table = markdown_table(["teacher-forced (equal to greedy)", *reports], [[label, *cells] for label, cells in rows])
    save_table(args.name, table, reports)


if __name__ == "__main__":
    main()
