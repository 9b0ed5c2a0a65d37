"""The layout ARCHITECTURE.md draws: no import circles, each folder importing only what its line allows,
and readers of Parquet that never load encoder code."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import extract

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("grepq_core", "transforms", "pipelines")

# folder -> the grepq folders it may import (ARCHITECTURE.md, "What lives where"); top-level modules of
# grepq_core are named by themselves.
ALLOWED = {
    "grepq_core.errors": set(),
    "grepq_core.metrics": set(),
    "grepq_core.files": {"grepq_core.errors"},
    "grepq_core.images": {"grepq_core.errors", "grepq_core.files"},
    "grepq_core.model": {"grepq_core.errors", "grepq_core.files", "grepq_core.images"},
    "grepq_core.training": {"grepq_core.errors", "grepq_core.files", "grepq_core.images", "grepq_core.model"},
    "grepq_core.fitting": {"grepq_core.errors", "grepq_core.files", "grepq_core.metrics", "grepq_core.images",
                           "grepq_core.model"},
    "grepq_core.evaluation": {"grepq_core.errors", "grepq_core.files", "grepq_core.metrics", "grepq_core.images",
                              "grepq_core.model", "grepq_core.fitting", "grepq_core.training"},
    "grepq_core.api": {"grepq_core.errors", "grepq_core.images", "grepq_core.model", "grepq_core.fitting"},
    "grepq_core.report": {"grepq_core.model", "grepq_core.fitting"},
    "grepq_core": {"grepq_core.api"},
    "transforms": {"grepq_core"},
    "pipelines": {"grepq_core", "transforms"},
}
_OUTSIDE_BEAM = ("apache_beam",)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports at run time (at the top or inside functions; not for type checking only)."""
    found: set[str] = set()

    def visit(node):
        if isinstance(node, ast.If) and _type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in the module itself
                found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {m for m in _imports(path, known) if m in known and m != name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            connect(v)
    return out


def _folder(module: str) -> str:
    """The ALLOWED key a module belongs to: the longest one that is a prefix of it."""
    return max((k for k in ALLOWED if module == k or module.startswith(k + ".")), key=len)


def test_no_module_imports_itself_through_others():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_folder_imports_only_what_its_line_in_the_architecture_allows():
    wrong = []
    for module, imported in _graph().items():
        own = _folder(module)
        for target in imported:
            other = _folder(target)
            if other != own and other not in ALLOWED[own] and not any(
                    other.startswith(a + ".") for a in ALLOWED[own]):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_grepq_core_never_imports_beam_transforms_or_pipelines():
    modules = _modules()
    known = set(modules)
    for name, path in modules.items():
        if name.startswith("grepq_core"):
            imported = _imports(path, known)
            assert not [m for m in imported if m.split(".")[0] in ("transforms", "pipelines", *_OUTSIDE_BEAM)], name


def test_every_folder_of_the_package_has_its_line():
    folders = {p.parent for p in (ROOT / "grepq_core").rglob("__init__.py")}
    assert {_module_name(f / "__init__.py") for f in folders} <= set(ALLOWED)


_IMPORTED = """
import json, sys
{body}
print(json.dumps([m for m in ("torch", "open_clip", "torchvision", "sklearn", "apache_beam") if m in sys.modules]))
"""


def _imported_by(body: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _IMPORTED.format(body=body)], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_registry_and_the_settings_load_no_encoder_code():
    assert _imported_by("from grepq_core.model import registry, profiles\nprofiles.spec_for()") == []


@pytest.mark.parametrize("pathways", ["ll"])
def test_grepq_score_over_a_feature_folder_loads_no_clip_code(photos_dir, model_flags, tmp_path, pathways):
    out = tmp_path / "out"
    extract.run(["--input", str(photos_dir / "*.jpg"), "--output", str(out), *model_flags, "--pathways", pathways])
    body = ("from pipelines.cli import main\n"
            f"assert main(['score', '--features', {str(out)!r}, '--output', {str(tmp_path / 'scored')!r}]) == 0")
    imported = _imported_by(body)
    assert "open_clip" not in imported and "torchvision" not in imported and "torch" not in imported
    assert (tmp_path / "scored" / "keep.txt").exists()
