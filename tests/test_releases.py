"""Releases: every distribution builds as a wheel a stranger can install, and a plugin built for
another promptgen-core says so in one line instead of breaking.

The wheels are built for real (scripts/build_wheels.sh, a few seconds without build isolation)
and read back; the pyprojects are also checked as text, so a wrong licence or core range shows
even where no wheel can be built.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from typer.testing import CliRunner

import promptgen
from promptgen.cli import app
from promptgen.core.compat import MetadataDistribution, core_requirement_problem, core_specifier
from promptgen.core.registry import build_registry
from promptgen.testing import install_fake_distribution

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest's own dependency on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
PROJECTS = [ROOT, *PLUGINS, *sorted(p.parent for p in (ROOT / "examples").glob("*/pyproject.toml"))]
SUBPACKAGES = ("core", "training", "artifacts", "sampling", "evaluation", "energies", "builtin")


def pyproject(project: Path) -> dict:
    return tomllib.loads((project / "pyproject.toml").read_text())


def core_requirements(requires: list[str]) -> list[Requirement]:
    return [r for r in map(Requirement, requires) if canonicalize_name(r.name) == "promptgen-core"]


# --- compat.py against real METADATA files ------------------------------------------------------


def metadata_dist(tmp_path: Path, *requires: str, name: str = "promptgen-plugin-x") -> md.Distribution:
    info = tmp_path / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.4", f"Name: {name}", "Version: 1.0", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    return md.PathDistribution(info)


@pytest.mark.parametrize(
    ("requires", "core", "expected"),
    [
        ((), "0.2.0", None),  # says nothing: nothing to hold against it
        (("torch>=2.2",), "0.2.0", None),
        (("promptgen-core>=0.2,<0.3",), "0.2.0", None),
        (("promptgen-core>=0.2,<0.3",), "0.2.9", None),
        (("promptgen-core<0.3,>=0.2",), "0.2.1.dev0", None),  # a development core inside the range
        (("promptgen-core>=0.2,<0.3; extra == 'test'",), "9.0", None),  # only with an extra
        (("promptgen-core>=0.2,<0.3",), "not-a-version", None),
        (
            ("torch", "promptgen-core<0.4,>=0.3"),
            "0.2.0",
            (
                "built for promptgen-core >=0.3,<0.4, but 0.2.0 is installed; upgrade promptgen-core "
                "(pip install -U 'promptgen-core>=0.3,<0.4') or install a release of promptgen-plugin-x made for 0.2.0"
            ),
        ),
        (
            ("promptgen-core>=0.1,<0.2",),
            "0.2.0",
            (
                "built for promptgen-core >=0.1,<0.2, but 0.2.0 is installed; upgrade the plugin "
                "(pip install -U promptgen-plugin-x) or install a matching promptgen-core (pip install 'promptgen-core>=0.1,<0.2')"
            ),
        ),
        (
            ("Promptgen_Core ~= 0.1.0",),  # any spelling of the name
            "0.2.0",
            (
                "built for promptgen-core ~=0.1.0, but 0.2.0 is installed; upgrade the plugin "
                "(pip install -U promptgen-plugin-x) or install a matching promptgen-core (pip install 'promptgen-core~=0.1.0')"
            ),
        ),
        (
            # two ranges that both apply are both held to (here: one on Python 3, always true)
            ("promptgen-core>=0.2", "promptgen-core<0.2.5; python_version >= '3'"),
            "0.2.5",
            (
                "built for promptgen-core >=0.2,<0.2.5, but 0.2.5 is installed; upgrade the plugin "
                "(pip install -U promptgen-plugin-x) or install a matching promptgen-core (pip install 'promptgen-core>=0.2,<0.2.5')"
            ),
        ),
    ],
)
def test_core_requirement_problem(tmp_path, requires, core, expected):
    problem = core_requirement_problem(metadata_dist(tmp_path, *requires), core)
    assert problem == expected
    if problem is not None:
        assert len(problem.splitlines()) == 1


def test_damaged_metadata_is_not_called_incompatible(tmp_path):
    dist = metadata_dist(tmp_path, "promptgen-core >=0.3 <0.4 (", "promptgen-core>=0.2,<0.3")
    assert str(core_specifier(dist)) == "<0.3,>=0.2"  # the line that does not parse is skipped
    assert core_requirement_problem(dist, "0.2.0") is None
    assert core_requirement_problem(md.PathDistribution(tmp_path / "missing.dist-info"), "0.2.0") is None


def test_what_pip_writes_for_a_plugin_is_read(tmp_path):
    # The METADATA the build backend writes for our own plugins (setuptools puts the range in its own order).
    dist = MetadataDistribution(
        "Metadata-Version: 2.4\nName: promptgen-plugin-ink\nVersion: 0.2.0\nLicense-Expression: MIT\n"
        "Requires-Dist: promptgen-core<0.3,>=0.2\nRequires-Dist: torch>=2.2\nProvides-Extra: test\n"
        'Requires-Dist: pytest>=8; extra == "test"\n'
    )
    assert core_requirement_problem(dist, promptgen.__version__) is None
    assert "upgrade the plugin (pip install -U promptgen-plugin-ink)" in core_requirement_problem(dist, "0.3.0")


# --- the registry: an incompatible plugin is a failure of its own ------------------------------

FROM_THE_FUTURE = """
import sys
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import GeneratorEntry

@hookimpl
def promptgen_generators():
    sys.modules[__name__].CALLED = True
    return [GeneratorEntry("future-gen", lambda spec, options, registry: None)]
"""
CURRENT = FROM_THE_FUTURE.replace("future-gen", "current-gen")


@pytest.fixture
def plugins_for_two_cores(tmp_path, monkeypatch):
    """promptgen-plugin-future (built for the next core) and promptgen-plugin-current (for this one)."""
    version = Version(promptgen.__version__)
    this = f">={version.major}.{version.minor},<{version.major}.{version.minor + 1}"
    following = f">={version.major}.{version.minor + 1},<{version.major}.{version.minor + 2}"
    for dist, module, source, wanted in (
        ("promptgen-plugin-future", "futureplug", FROM_THE_FUTURE, following),
        ("promptgen-plugin-current", "currentplug", CURRENT, this),
    ):
        install_fake_distribution(tmp_path, dist, "1.0.0", module, source, module)
        metadata = tmp_path / f"{dist.replace('-', '_')}-1.0.0.dist-info" / "METADATA"
        metadata.write_text(metadata.read_text() + f"Requires-Dist: torch>=2.2\nRequires-Dist: promptgen-core{wanted}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield following
    for module in ("futureplug", "currentplug"):
        sys.modules.pop(module, None)


def test_plugin_for_another_core_is_recorded_not_loaded(plugins_for_two_cores):
    reg = build_registry()
    errors = {p.distribution: p.error for p in reg.plugins}
    assert errors["promptgen-plugin-future"] == (
        f"built for promptgen-core {plugins_for_two_cores}, but {promptgen.__version__} is installed; "
        f"upgrade promptgen-core (pip install -U 'promptgen-core{plugins_for_two_cores}') "
        f"or install a release of promptgen-plugin-future made for {promptgen.__version__}"
    )
    assert "futureplug" not in sys.modules and "future-gen" not in reg.generators  # neither imported nor called
    assert errors["promptgen-plugin-current"] is None and "current-gen" in reg.generators
    assert sys.modules["currentplug"].CALLED
    assert errors["promptgen-core"] is None and "mnist" in reg.generators


def test_list_shows_the_incompatible_plugin_on_one_row(plugins_for_two_cores, monkeypatch):
    from promptgen import cli

    monkeypatch.setattr(cli.out_console, "width", 500)  # so that no cell folds and a row is one line
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "promptgen-plugin-future" in line]
    assert len(rows) == 1 and f"built for promptgen-core {plugins_for_two_cores}, but" in rows[0], rows
    current = [line for line in result.stdout.splitlines() if "promptgen-plugin-current" in line]
    assert len(current) == 1 and "ok" in current[0], current
    listed = {r["distribution"]: r for r in json.loads(CliRunner().invoke(app, ["list", "--json"]).stdout)}
    assert listed["promptgen-plugin-future"]["error"].startswith("built for promptgen-core")
    assert listed["promptgen-plugin-current"]["error"] is None and listed["promptgen-core"]["error"] is None


# --- the pyprojects, as text ----------------------------------------------------------------------


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_pyproject_declares_an_spdx_licence_and_ships_it(project):
    data = pyproject(project)
    assert data["build-system"]["requires"] == ["setuptools>=77"]  # the first release that reads SPDX licences
    meta = data["project"]
    assert meta["license"] == "MIT"
    assert meta["license-files"] == ["LICENSE"]
    assert (project / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert not any(c.startswith("License ::") for c in meta.get("classifiers", []))  # deprecated beside SPDX


def test_core_version_is_one_number():
    assert pyproject(ROOT)["project"]["version"] == promptgen.__version__


@pytest.mark.parametrize("project", PROJECTS[1:], ids=lambda p: p.name)
def test_plugin_declares_a_bounded_core_range_that_admits_this_core(project):
    (requirement,) = core_requirements(pyproject(project)["project"]["dependencies"])
    assert requirement.specifier.contains(promptgen.__version__)
    # an upper bound: a 0.x core may change its plugin API in any minor release
    assert any(s.operator in ("<", "<=", "~=", "==") for s in requirement.specifier), requirement


# --- the wheels, built ----------------------------------------------------------------------------


def _has_new_setuptools() -> bool:
    try:
        return Version(md.version("setuptools")) >= Version("77")
    except md.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheelhouse")
    # With this interpreter's setuptools the build needs no network; otherwise pip fetches setuptools>=77.
    env = {**os.environ, "PYTHON": sys.executable, "NO_BUILD_ISOLATION": "1" if _has_new_setuptools() else "0"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build_wheels.sh"), str(out)], capture_output=True, text=True,
                          env=env, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"checked {len(PROJECTS)} wheels" in proc.stdout
    return out


def read_wheel(wheelhouse: Path, project: Path):
    meta = pyproject(project)["project"]
    (wheel,) = wheelhouse.glob(f"{re.sub(r'[-_.]+', '_', meta['name'])}-{meta['version']}-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        info = f"{re.sub(r'[-_.]+', '_', meta['name'])}-{meta['version']}.dist-info"
        metadata = HeaderParser().parsestr(whl.read(f"{info}/METADATA").decode())
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
        licence = whl.read(f"{info}/licenses/LICENSE").decode()
    return names, metadata, entry_points, licence


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_wheel_carries_licence_and_entry_points(wheelhouse, project):
    names, metadata, entry_points, licence = read_wheel(wheelhouse, project)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert licence == (ROOT / "LICENSE").read_text()
    assert "[promptgen]" in entry_points
    for name, value in pyproject(project)["project"]["entry-points"]["promptgen"].items():
        assert f"{name} = {value}" in entry_points
    if project != ROOT:
        (requirement,) = core_requirements(metadata.get_all("Requires-Dist"))
        assert requirement.specifier.contains(promptgen.__version__)
        assert core_requirement_problem(MetadataDistribution(str(metadata)), promptgen.__version__) is None
    assert not any(n.startswith(("tests/", "build/")) or "__pycache__" in n or n.endswith(".pyc") for n in names)


def test_core_wheel_has_every_subpackage_and_the_weights(wheelhouse):
    names, _, entry_points, _ = read_wheel(wheelhouse, ROOT)
    for package in SUBPACKAGES:
        assert f"promptgen/{package}/__init__.py" in names, package
    shipped = {n for n in names if n.startswith("promptgen/") and n.endswith(".py")}
    source = {str(p.relative_to(ROOT)) for p in (ROOT / "promptgen").rglob("*.py")}
    assert source <= shipped, sorted(source - shipped)[:5]
    weights = {p.name for p in (ROOT / "promptgen/builtin/mnist/weights").glob("*.safetensors")}
    assert weights and {f"promptgen/builtin/mnist/weights/{w}" for w in weights} <= names
    assert "builtin = promptgen.builtin" in entry_points and "prompts = promptgen.artifacts.prompt_plugin" in entry_points
    assert "promptgen = promptgen.cli:main" in entry_points


def test_digit_panel_wheel_has_its_weights(wheelhouse):
    project = ROOT / "plugins" / "promptgen-plugin-digit-panel"
    names, *_ = read_wheel(wheelhouse, project)
    weights = sorted((project / "src/promptgen_plugin_digit_panel/weights").glob("*.safetensors"))
    assert weights and {f"promptgen_plugin_digit_panel/weights/{w.name}" for w in weights} <= names


def test_no_distribution_allows_a_torch_older_than_2_6():
    # torch.load(weights_only=True) can be bypassed before 2.6 (CVE-2025-32434); every file promptgen reads relies on it.
    from packaging.requirements import Requirement
    from packaging.version import Version

    projects = [ROOT / "pyproject.toml", *sorted((ROOT / "plugins").glob("*/pyproject.toml")), *sorted((ROOT / "examples").glob("*/pyproject.toml"))]
    seen = 0
    for project in projects:
        for line in re.findall(r'"(torch[<>=!~ ][^"]*)"', project.read_text()):
            requirement = Requirement(line)
            assert not requirement.specifier.contains(Version("2.5.1"), prereleases=True), f"{project}: {line}"
            seen += 1
    assert seen >= len(projects) - 1  # every distribution that needs torch names a bound
