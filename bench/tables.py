"""What the side-by-side bench scripts share: a markdown table printed and saved with its figures, labelled
inputs, and a process's memory figures."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: the header row, its rule, then one line a row (cells already formatted)."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
                      *("| " + " | ".join(row) + " |" for row in rows)])


def save_table(name: str, table: str, report: dict) -> None:
    """Print `table` and write it to bench/results/<name>.md, `report` to <name>.json."""
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(table + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))


def labelled_files(items: list[str], what: str, inside: str = "") -> dict[str, Path]:
    """`label=path` arguments as {label: path}; a clear error when one is malformed or its file (`inside` the
    path, for a folder such as a saved agent's with "config.json") is missing."""
    out = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not (Path(path) / inside).is_file():
            raise SystemExit(f"error: expected label=path of an existing {what}, got {item!r}")
        out[label] = Path(path)
    return out


def status_mb(key: str, pid: int | str = "self") -> float:
    """A memory figure of /proc/<pid>/status in MB (VmRSS: resident now; VmHWM: the peak since the process
    started or since "5" was written to its clear_refs). Linux only."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"error: /proc/{pid}/status has no {key} (this bench needs Linux)")
