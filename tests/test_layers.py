"""Imports point one way: down the layer table below (STYLE.md section 1), also imports inside
functions, and no two modules import each other through any chain (no import cycle).

Every ``nufm`` import of every module under ``src/nufm`` is read with ``ast`` (``import
nufm.x``, ``from nufm.x import y``, relative imports, at any depth of the file). A module
belongs to the unit named by the first component after ``nufm`` (``nufm.models.vit`` ->
``models``; ``nufm/__init__.py`` is the unit ``nufm``). An import between two units is allowed
only from a higher layer to a lower one; units in the same layer never import each other;
imports inside a unit are free (but must not form a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nufm"

LAYERS: list[tuple[str, ...]] = [  # top first; a unit may import only units of lower rows
    ("nufm",),  # nufm/__init__.py, the front door: may import anything
    ("cli",),  # the nufm command: one subcommand per workflow
    ("workflows", "benchmarks"),  # end-to-end jobs (finetune, study, embed, load, export); bench
    ("train",),  # the loop, builders, checkpoints, run entry point (calls eval's monitor)
    ("eval", "viz"),  # metrics, probes, task evaluation, monitor; event displays
    ("presets",),  # named RunConfig instances (pretraining and fine-tuning)
    ("config",),  # RunConfig, composed of the per-concern configs of ssl and tasks
    ("ssl", "tasks"),  # pretraining objectives; fine-tuning tasks
    ("models", "sim"),  # encoders, tokenizers, heads; the simulators (produce data's Event)
    ("data",),  # the event record, file readers / writers, datasets, transforms, collate
    ("step",),  # StepOutput and the objective contract
    ("batch", "hub"),  # PointBatch; model files (safetensors + config), key matching
    ("geometry",),  # parameter-free tensor ops
    ("_version", "errors", "atomic"),  # version string; user-error types; atomic file output
]

TEMPORARY_ALLOW: set[tuple[str, str]] = set()
"""Edges allowed while code moves between layers; test_temporary_allowlist_is_still_needed
fails once an entry is stale."""


# --------------------------------------------------------------------------------------------
# the checker (also run on synthetic graphs below)
# --------------------------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    """``root/models/vit.py`` -> ``<root.name>.models.vit``; a package's ``__init__.py`` is
    the package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(base: str, name: str, root: Path) -> str:
    """``from base import name``: the submodule ``base.name`` if it exists, else ``base``."""
    rel = Path(*base.split(".")[1:], name)
    if (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file():
        return f"{base}.{name}"
    return base


def imports_of(path: Path, root: Path) -> set[str]:
    """The modules of the package ``root`` that the file ``path`` imports, anywhere in it."""
    package = root.name
    this = module_name(path, root)
    current = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = current.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] == package:
                found |= {_resolve(base, a.name, root) for a in node.names}
    found.discard(this)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> modules of the same package it imports, for every ``.py`` under ``root``."""
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def unit_of(module: str) -> str:
    """``nufm.models.vit`` -> ``models``; ``nufm`` -> ``nufm``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(
    graph: Mapping[str, Iterable[str]],
    layers: list[tuple[str, ...]],
    allow: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """Every import that does not point down ``layers`` (top row first), as readable lines."""
    rank = {unit: len(layers) - i for i, row in enumerate(layers) for unit in row}
    allowed = set(allow)
    out = []
    for module in sorted(graph):
        src = unit_of(module)
        if src not in rank:
            out.append(f"{module}: unit {src!r} is in no layer; add it to LAYERS")
            continue
        for target in sorted(graph[module]):
            dst = unit_of(target)
            if dst == src or (module, target) in allowed:
                continue
            if dst not in rank:
                out.append(f"{module} -> {target}: unit {dst!r} is in no layer; add it to LAYERS")
            elif rank[dst] == rank[src]:
                out.append(f"{module} -> {target}: {src} and {dst} share a layer")
            elif rank[dst] > rank[src]:
                out.append(f"{module} -> {target}: upward ({src} is below {dst})")
    return out


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


# --------------------------------------------------------------------------------------------
# the real tree
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SRC)


def test_every_import_points_down_the_layers(graph: dict[str, set[str]]) -> None:
    assert sum(len(v) for v in graph.values()) > 300  # the walker sees the imports
    assert "nufm.eval.tasks" in graph["nufm.workflows.finetune"]  # an import at the top
    assert "nufm.workflows.load" in graph["nufm.cli"]  # an import inside a function
    assert layer_violations(graph, LAYERS, TEMPORARY_ALLOW) == []


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    assert import_cycles(graph) == []


def test_every_unit_has_one_layer() -> None:
    units = [u for row in LAYERS for u in row]
    assert len(units) == len(set(units))
    modules = {p.stem for p in SRC.glob("*.py")} - {"__init__"}
    packages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    # every unit on disk is placed
    assert (modules | packages | {"nufm"}) - set(units) == set()


def test_temporary_allowlist_is_still_needed(graph: dict[str, set[str]]) -> None:
    stale = {(a, b) for a, b in TEMPORARY_ALLOW if b not in graph.get(a, set())}
    assert stale == set(), f"remove {stale} from TEMPORARY_ALLOW"


# --------------------------------------------------------------------------------------------
# the checker fails on a bad graph
# --------------------------------------------------------------------------------------------


def test_upward_peer_and_unknown_imports_are_reported() -> None:
    bad = {
        "nufm.models.vit": {"nufm.geometry.fps", "nufm.models.layers"},  # fine
        "nufm.geometry.fps": {"nufm.models.vit"},  # upward
        "nufm.ssl.mae": {"nufm.tasks.backbone"},  # peers
        "nufm.magic": {"nufm.batch"},  # a unit in no layer
    }
    assert layer_violations(bad, LAYERS) == [
        "nufm.geometry.fps -> nufm.models.vit: upward (geometry is below models)",
        "nufm.magic: unit 'magic' is in no layer; add it to LAYERS",
        "nufm.ssl.mae -> nufm.tasks.backbone: ssl and tasks share a layer",
    ]
    allow = {("nufm.geometry.fps", "nufm.models.vit"), ("nufm.ssl.mae", "nufm.tasks.backbone")}
    assert layer_violations(bad, LAYERS, allow) == [
        "nufm.magic: unit 'magic' is in no layer; add it to LAYERS"
    ]
    assert import_cycles(bad) == [["nufm.geometry.fps", "nufm.models.vit"]]


def test_imports_inside_functions_and_relative_imports_are_found(tmp_path: Path) -> None:
    """A package on disk: an upward import hidden in a function, written relatively."""
    files = {
        "__init__.py": "",
        "geometry/__init__.py": "",
        "geometry/fps.py": "import torch\n\n\ndef f():\n    from ..models import vit\n",
        "models/__init__.py": "from .vit import Encoder\n",
        "models/vit.py": "import nufm.geometry.fps\nfrom nufm.geometry import fps as g\n",
    }
    root = tmp_path / "nufm"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = import_graph(root)
    assert graph == {
        "nufm": set(),
        "nufm.geometry": set(),
        "nufm.geometry.fps": {"nufm.models.vit"},
        "nufm.models": {"nufm.models.vit"},
        "nufm.models.vit": {"nufm.geometry.fps"},
    }
    assert layer_violations(graph, LAYERS) == [
        "nufm.geometry.fps -> nufm.models.vit: upward (geometry is below models)"
    ]
    assert import_cycles(graph) == [["nufm.geometry.fps", "nufm.models.vit"]]
