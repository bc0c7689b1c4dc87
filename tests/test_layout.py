"""The package's layout: every import points down the layers, and no two modules import each other.

Layers, bottom first (a module may import its own layer and those below):

0. ``promptgen.core``: errors, specs, options, protocols, capabilities, entries, hooks, the registry;
   ``promptgen.datasets``: readers of public datasets' files
1. ``promptgen.plugin``: the plugin author's one import (the core, re-exported)
2. ``promptgen.training``: the flow, the energy-based model, the trainer
3. ``promptgen.artifacts``: prompt folders, loading prompts, chains
4. ``promptgen.sampling``: the baselines that sample without a flow
5. ``promptgen.composing``: ``compose``, from specs to a saved prompt
6. ``promptgen.evaluation``: ``eval`` and ``report``
7. ``promptgen.energies``, ``promptgen.builtin``: the built-in plugins (found through entry points, like any plugin)
8. ``promptgen.api``, ``promptgen.testing``, ``promptgen.app`` (the web app of ``promptgen app``)
9. ``promptgen.cli``, ``promptgen`` itself
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "promptgen"

LAYERS = {
    "core": 0,
    "datasets": 0,
    "plugin": 1,
    "training": 2,
    "artifacts": 3,
    "sampling": 4,
    "composing": 5,
    "evaluation": 6,
    "energies": 7,
    "builtin": 7,
    "api": 8,
    "testing": 8,
    "app": 8,
    "cli": 9,
    "__main__": 9,
    "__init__": 9,
    "_moved": 9,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> int:
    parts = module.split(".")
    if parts == ["promptgen"]:
        return LAYERS["__init__"]
    return LAYERS[parts[1]]


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported promptgen module, line, at module level) for every import in ``path``, function-level ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # for annotations only: never run
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "promptgen" or name.startswith("promptgen."):
                found.append((resolve(name), node.lineno, id(node) in top))
    return found


def resolve(name: str) -> str:
    """The module ``name`` is, or lives in (``promptgen.core.spec.Spec`` -> ``promptgen.core.spec``)."""
    parts = name.split(".")
    while parts:
        candidate = ROOT.parent.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts = parts[:-1]
    return name


MODULES = sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    own = module_name(path)
    if own == "promptgen._moved":
        return  # the stand-ins for the old paths look names up wherever they live now
    upward = [
        f"line {line}: {target} (layer {layer(target)})"
        for target, line, _ in imports(path)
        if target != "promptgen" and layer(target) > layer(own)
    ]
    assert not upward, f"{own} (layer {layer(own)}) imports from above: {upward}"


def test_no_two_modules_import_each_other():
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        own = module_name(path)
        graph[own] = {t for t, _, _ in imports(path) if t != own and t != "promptgen"}
    cycles = sorted(f"{a} <-> {b}" for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, ()))
    assert not cycles, cycles


def test_the_old_paths_are_not_files():
    # promptgen.compose is the function; no module of that name may shadow it.
    import promptgen

    assert callable(promptgen.compose) and not (ROOT / "compose.py").exists()
    for old in ("registry", "hookspecs", "spec", "protocols", "generators", "errors", "samplers", "trainer"):
        assert not (ROOT / f"{old}.py").exists()


def test_the_package_exports_its_python_api_lazily():
    import subprocess
    import sys

    import promptgen

    assert set(promptgen.__all__) == {"__version__", *promptgen._API}
    for name in promptgen._API:
        assert getattr(promptgen, name) is not None
    # The command's help, the version and the old-path stand-ins need neither torch nor the API.
    code = (
        "import sys, promptgen, promptgen.cli; from promptgen import __version__; "
        "assert 'torch' not in sys.modules and 'promptgen.api' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


PLUGIN_SOURCES = sorted(
    p for p in (ROOT.parent / "plugins").glob("*/src/**/*.py") if "__pycache__" not in p.parts
) + sorted(p for p in (ROOT.parent / "examples").glob("*/src/**/*.py") if "__pycache__" not in p.parts)

#: The digit panel reuses the built-in models' architectures and data split, on purpose (its README says why).
PLUGIN_EXCEPTIONS = {"promptgen-plugin-digit-panel": {"promptgen.builtin.mnist.models", "promptgen.builtin.mnist.training",
                                                      "promptgen.datasets.mnist"}}


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_plugins_import_only_the_plugin_surface(path):
    """A plugin needs one import from promptgen: promptgen.plugin (and promptgen.testing in its tests)."""
    distribution = path.relative_to(ROOT.parent).parts[1]
    allowed = {"promptgen", "promptgen.plugin", *PLUGIN_EXCEPTIONS.get(distribution, ())}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("promptgen"):
            used.add(node.module if node.module != "promptgen" else "promptgen." + node.names[0].name)
        elif isinstance(node, ast.Import):
            used |= {a.name for a in node.names if a.name.startswith("promptgen.") or a.name == "promptgen"}
    used = {u for u in used if u == "promptgen" or u.startswith("promptgen.")}
    assert used <= allowed, f"{path.name} imports {sorted(used - allowed)}; use promptgen.plugin"


EXAMPLE_TESTS = sorted(p for p in (ROOT.parent / "examples").glob("*/tests/*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", EXAMPLE_TESTS, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_the_example_plugins_tests_use_what_the_plugin_docs_name(path):
    """docs/writing-plugins.md: a plugin's tests need promptgen.plugin, promptgen.testing and the public API only."""
    import promptgen

    allowed = {"promptgen.plugin", "promptgen.testing", "promptgen.cli"}
    used = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("promptgen"):
            if node.module == "promptgen":
                used |= {"promptgen." + a.name for a in node.names if a.name not in promptgen.__all__}
            elif not node.module.startswith("promptgen_"):
                used.add(node.module)
        elif isinstance(node, ast.Import):
            used |= {a.name for a in node.names if a.name.startswith("promptgen.")}
    assert used <= allowed, f"{path.name} imports {sorted(used - allowed)}; use promptgen.plugin, promptgen.testing or the public API"


def test_import_promptgen_works_from_the_folder_above_the_clone(tmp_path):
    """The clone's folder is named promptgen: from its parent, `import promptgen` must find the package, not the clone.

    scripts/test.sh and scripts/demo.sh install the core editable in compat mode (the clone on sys.path);
    setuptools' default editable finder loses to the clone as an empty namespace package.
    """
    (tmp_path / "promptgen").symlink_to(ROOT.parent, target_is_directory=True)
    code = "import promptgen; assert promptgen.__file__, promptgen.__path__; print(promptgen.compose.__module__)"
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]
