"""The package's tree is its architecture (issue #24): imports run one way along the pipeline,
every subpackage says what it holds, the public API imports from `holoprot`, and the command line
keeps its commands and options."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest
import typer.main

import holoprot
from holoprot.cli import app

PACKAGE = Path(holoprot.__file__).parent
CLI_SURFACE = Path(__file__).parent / "data" / "cli_surface.json"

#: What each part of the package may import at run time (imports under TYPE_CHECKING are type
#: names only). The order is the pipeline's: files → atoms → coefficients → model → embeddings,
#: then what uses embeddings; `cli` is the only part that may import everything.
ALLOWED = {
    "errors": set(),
    "_util": {"errors"},
    "io": {"_util", "errors"},
    "zernike": {"io", "_util", "errors"},
    "model": {"_util", "errors"},
    "embedding": {"model", "zernike", "io", "_util", "errors"},
    "training": {"embedding", "model", "zernike", "io", "_util", "errors"},
    "search": {"embedding", "zernike", "io", "_util", "errors"},
    "affinity": {"embedding", "zernike", "io", "_util", "errors"},
    "evaluation": {"embedding", "training", "model", "zernike", "io", "_util", "errors"},
    "cli": {
        "affinity",
        "search",
        "training",
        "embedding",
        "model",
        "zernike",
        "io",
        "_util",
        "errors",
    },
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0].removesuffix(".py")


def _runtime_imports(path: Path) -> set[str]:
    """The holoprot subpackages/modules `path` imports outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("holoprot."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("holoprot.")}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _part(p) not in {"__init__", "__main__"})


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path: Path) -> None:
    part = _part(path)
    assert part in ALLOWED, f"{part}: a new top-level part; add it to ALLOWED and the README"
    wrong = _runtime_imports(path) - ALLOWED[part] - {part}
    assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_every_subpackage_says_what_it_holds_and_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc.lower(), f"{init.parent.name}/__init__.py: what it imports"


@pytest.mark.parametrize("name", holoprot.__all__)
def test_public_api_imports_from_holoprot(name: str) -> None:
    assert getattr(holoprot, name) is not None


def test_public_api_names_its_modules_lazily() -> None:
    for name, module in holoprot._LAZY.items():
        assert hasattr(importlib.import_module(module), name), (name, module)


def _surface() -> dict[str, list[str]]:
    """Every command (in `--help` order) with its parameters' names and flags."""
    group = typer.main.get_command(app)
    ctx = group.make_context("holoprot", [], resilient_parsing=True)
    surface = {"": sorted(o for p in group.params for o in p.opts + p.secondary_opts)}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        surface[name] = [
            " ".join([p.name or "", *p.opts, *p.secondary_opts]) for p in command.params
        ]
    return surface


def test_commands_and_options_are_the_recorded_ones() -> None:
    """A changed, added or removed command or option is a decision: update
    tests/data/cli_surface.json with it (and the README)."""
    assert _surface() == json.loads(CLI_SURFACE.read_text(encoding="utf-8"))
