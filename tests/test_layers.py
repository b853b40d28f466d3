"""The package's layers: every import points down, and no module imports itself round a circle.

    cli, __main__, __init__      the command table
    commands/                    predict, explain, export, cv, ensemble, data
    training/                    AudioCLI, checkpoints, preflight, run record, tracking
    data/   models/              datasets | the network (neither imports the other)
    audio/                       signal processing on tensors
    errors, files                what every layer may use

Imports inside functions count too: a lazy import that hides a circle is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audiocls"

RANKS = {
    "audiocls.errors": 0,
    "audiocls.files": 0,
    "audiocls.audio": 1,
    "audiocls.data": 2,
    "audiocls.models": 2,
    "audiocls.training": 3,
    "audiocls.commands": 4,
    "audiocls.cli": 5,
    "audiocls.__main__": 6,  # python -m audiocls: runs the command table
    "audiocls": 5,  # the package's __init__: the public API, re-exported from below
}


def layer(module: str) -> str:
    """The layer a module belongs to: the longest key of :data:`RANKS` it starts with."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in RANKS:
            return key
    raise KeyError(module)


def module_imports(path: Path, root: Path = PACKAGE) -> tuple[str, set[str]]:
    """(module name, the audiocls modules it imports anywhere in the file)."""
    rel = path.relative_to(root.parent).with_suffix("")
    name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "audiocls")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "audiocls":
            found.add(node.module)
            # `from audiocls.data import esc50` imports the module audiocls.data.esc50
            found.update(f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}", root))
    return name, found


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return dict(module_imports(p, root) for p in sorted(root.rglob("*.py")))


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a higher layer, or between the two middle layers data and models."""
    bad = []
    for src, targets in edges.items():
        for dst in targets:
            a, b = layer(src), layer(dst)
            if a == b or a == "audiocls":
                continue
            if RANKS[b] > RANKS[a] or (RANKS[b] == RANKS[a] and RANKS[a] > 0):
                bad.append(f"{src} imports {dst} ({a} may not import {b})")
    return sorted(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles among the modules (Tarjan's strongly connected components of size > 1)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_import_points_down():
    assert upward_imports(graph()) == []


def test_no_import_circle():
    assert cycles(graph()) == []


def test_every_module_has_a_layer():
    for name in graph():
        assert layer(name) in RANKS, name


@pytest.mark.parametrize(
    ("edges", "upward", "circular"),
    [
        ({"audiocls.audio.frontend": {"audiocls.data.base"}, "audiocls.data.base": set()}, 1, 0),
        ({"audiocls.models.classifier": {"audiocls.data.base"}, "audiocls.data.base": set()}, 1, 0),
        ({"audiocls.data.base": {"audiocls.data.clips"}, "audiocls.data.clips": {"audiocls.data.base"}}, 0, 1),
        ({"audiocls.commands.cv": {"audiocls.training.cli", "audiocls.files"}, "audiocls.training.cli": set()}, 0, 0),
    ],
)
def test_the_checks_catch_what_they_should(edges, upward, circular):
    """The checks above can fail: an upward import, a data <-> models import and a circle are each found."""
    assert len(upward_imports(edges)) == upward
    assert len(cycles(edges)) == circular
