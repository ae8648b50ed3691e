"""Stage-3 runs' curves on one figure: the held-out probe, KL to the reference, entropy and zero-spread groups.

    .venv/bin/python bench/rl_curves.py --name stage3_rl_ablation_curves \
        "rules=runs/abl_rules/stage3_rl/losses.json" "reward model=runs/abl_rm/stage3_rl/losses.json" ...

Each input is a stage-3 `losses.json` (its history is also accepted as a bare list). Per-step series are
smoothed over 5 steps. Writes bench/results/<name>.png and the series as <name>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tables import RESULTS, labelled_files  # noqa: E402

PANELS = [("probe exact (greedy = teacher-forced)", "probe", "exact"), ("probe function", "probe", "function"),
          ("KL to the reference", None, "kl"), ("entropy", None, "entropy"),
          ("zero-spread groups (dropped)", None, "zero_spread_groups")]


def history(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else data["history"]


def series(entries: list[dict], group: str | None, key: str, smooth: int = 5) -> tuple[list[int], list[float]]:
    if group is not None:
        points = [(e["step"], e[group][key]) for e in entries if group in e]
        return [s for s, _ in points], [v for _, v in points]
    points = [(e["step"], e[key]) for e in entries if key in e]
    steps, values = [s for s, _ in points], [v for _, v in points]
    smoothed = [sum(values[max(0, i - smooth + 1):i + 1]) / len(values[max(0, i - smooth + 1):i + 1])
                for i in range(len(values))]
    return steps, smoothed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="label=path of a stage-3 losses.json")
    parser.add_argument("--name", default="stage3_rl_curves", help="bench/results/<name>.png and .json")
    args = parser.parse_args()
    runs = {label: history(path) for label, path in labelled_files(args.runs, "losses.json").items()}
    figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4))
    report: dict[str, dict] = {}
    for axis, (title, group, key) in zip(axes, PANELS):
        for label, entries in runs.items():
            steps, values = series(entries, group, key)
            axis.plot(steps, values, marker="o" if group else None, markersize=3, label=label)
            report.setdefault(label, {})[title] = {"steps": steps, "values": [round(v, 5) for v in values]}
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    figure.savefig(RESULTS / f"{args.name}.png", dpi=110)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {RESULTS / args.name}.png")


if __name__ == "__main__":
    main()
