"""Issue 26: every ``pip install`` line in the README and the docs works on a fresh machine.

The lines are read from the fenced code blocks of README.md, CONTRIBUTING.md, docs/*.md and the
plugins' and examples' READMEs, and resolved by pip in a fresh virtual environment with
``--dry-run`` from the clone's root (a local folder is built to read its metadata; nothing is
installed). Lines with the same options are resolved together: whatever satisfies the union
satisfies each line. "No matching distribution found" for a name that is not on PyPI yet, a
folder that moved or a wrong extra fails here. The wheelhouse lines (``--find-links dist``)
resolve against the wheelhouse scripts/test.sh builds (built here if it is missing).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "plugins").glob("*/README.md"),
     *(ROOT / "examples").glob("*/README.md")]
)  # fmt: skip
#: Lines that are templates for the reader's own project, not commands for this repository, and why.
TEMPLATES = {
    "promptgen_plugin_blobs": "docs/writing-plugins.md's recipe for a plugin author's own wheel (promptgen-plugin-blobs does not exist)",
}
FENCE = re.compile(r"^(\s*)```")


def install_lines() -> list[tuple[str, int, str]]:
    """(file, line number, the ``pip install ...`` command) for each such command in a fenced block."""
    found = []
    for path in DOCS:
        inside = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FENCE.match(line):
                inside = not inside
                continue
            if not inside:
                continue
            for part in re.split(r"&&|;", line):
                part = part.strip().removeprefix("$ ")
                if re.search(r"(^|[\s/])pip3? install\s", part) or part.startswith("python -m pip install"):
                    found.append((str(path.relative_to(ROOT)), number, part))
    return found


def parse(command: str) -> tuple[tuple[str, ...], list[str]]:
    """(options, requirements) of one ``pip install`` command; ``-q``/``-U`` dropped."""
    words = shlex.split(command, comments=True)
    words = words[words.index("install") + 1 :]
    options, requirements, i = [], [], 0
    while i < len(words):
        w = words[i]
        if w in ("-q", "--quiet", "-U", "--upgrade"):
            pass
        elif w in ("--find-links", "-f", "--index-url", "--extra-index-url"):
            options += [w, words[i + 1]]
            i += 1
        elif w.startswith("-") and w != "-e":
            options.append(w)
        elif w == "-e":
            pass  # editable: resolved like the folder itself
        else:
            requirements.append(w)
        i += 1
    return tuple(options), requirements


def test_the_docs_have_install_lines_and_each_template_is_still_there():
    lines = install_lines()
    texts = "\n".join(c for _, _, c in lines)
    assert len(lines) >= 15, lines  # README, the plugins' READMEs, writing-plugins, text-control...
    for marker in TEMPLATES:
        assert marker in texts, f"TEMPLATES names {marker!r}, which no doc has any more; remove it"
    # None names a distribution that is not on PyPI by name without --find-links (the first "Use" line of old).
    for where, number, command in lines:
        options, requirements = parse(command)
        if "--find-links" in options or any(m in command for m in TEMPLATES):
            continue
        by_name = [r for r in requirements if re.match(r"promptgen(-core|-plugin-[\w-]+)?(\[|$|[=<>])", r)]
        assert not by_name, f"{where}:{number}: {command!r} installs {by_name} by name, and they are not on PyPI yet"


def wheelhouse(tmp_path_factory) -> Path:
    dist = ROOT / "dist"
    wanted = ["promptgen_core", *(p.parent.name.replace("-", "_") for p in ROOT.glob("plugins/*/pyproject.toml"))]
    if all(list(dist.glob(f"{name}-*.whl")) for name in wanted):
        return dist
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(["bash", str(ROOT / "scripts" / "build_wheels.sh"), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return venv / "bin" / "python"


def test_every_install_line_of_the_docs_resolves_in_a_fresh_venv(fresh_venv, tmp_path_factory):
    groups: dict[tuple[str, ...], list[str]] = {}
    sources: dict[tuple[str, ...], list[str]] = {}
    dist = None
    for where, number, command in install_lines():
        if any(m in command for m in TEMPLATES):
            continue
        options, requirements = parse(command)
        if "--find-links" in options:
            dist = dist or wheelhouse(tmp_path_factory)
            at = options.index("--find-links") + 1
            options = (*options[:at], str(dist if options[at] == "dist" else options[at]), *options[at + 1 :])
        groups.setdefault(options, []).extend(r for r in requirements if r not in groups.get(options, []))
        sources.setdefault(options, []).append(f"{where}:{number}")

    def resolve(options: tuple[str, ...]) -> tuple[tuple[str, ...], subprocess.CompletedProcess]:
        cmd = [str(fresh_venv), "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check", *options, *groups[options]]
        return options, subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=1200)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(resolve, groups))
    failures = [
        f"{' '.join(sources[o])}: pip install {' '.join((*o, *groups[o]))}: "
        + next((line for line in r.stderr.splitlines() if line.startswith("ERROR")), r.stderr[-300:])
        for o, r in results
        if r.returncode != 0
    ]
    assert not failures, "\n".join(failures)
    assert any("--find-links" in o for o in groups), "the README's wheelhouse line was not found"
