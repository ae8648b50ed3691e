"""The layout's rules, checked: no import cycle among the octopus modules (function-local imports included, so
a lazy import cannot hide one), and `make lint` covers every Python folder and passes (CI runs it here)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"core": "octopus", "model": "octopus.model", "training": "octopus.training", "device": "octopus.device",
            "exporters": "octopus.exporters"}  # as pyproject's package-dir maps them


def import_graph() -> dict[str, set[str]]:
    """module -> the octopus modules it imports anywhere in its file (top level or inside a function)."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path

    def resolve(name: str) -> str | None:  # `octopus.device.outbox.Outbox` -> `octopus.device.outbox`
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{a.name}" for a in node.names}
        graph[module] = {r for t in targets if t.startswith("octopus") and (r := resolve(t)) and r != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_among_the_octopus_modules():
    graph = import_graph()
    assert len(graph) > 50 and "octopus.device.answer" in graph["octopus.cli"]  # the graph is the real one
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_make_lint_covers_every_python_folder_and_passes():
    line = next(x for x in (REPO / "Makefile").read_text().splitlines() if "ruff check" in x)
    folders = line.split("ruff check", 1)[1].split()
    with_python = {p.relative_to(REPO).parts[0] for p in REPO.rglob("*.py")
                   if not re.match(r"\.|build$|runs$|bench/results", str(p.relative_to(REPO).parts[0]))}
    assert with_python <= set(folders), f"make lint misses {sorted(with_python - set(folders))}"
    out = subprocess.run([sys.executable, "-m", "ruff", "check", *folders], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]
