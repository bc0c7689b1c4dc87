#!/usr/bin/env bash
# Build every distribution of this repository as a wheel into one wheelhouse, then check the wheels.
#
#   scripts/build_wheels.sh [OUT=dist]
#
# promptgen-core (the repository root), each plugin of plugins/ and of examples/. Install
# from the wheelhouse as a stranger would, e.g.
#   pip install --find-links dist promptgen-plugin-stylegan2
# (promptgen-core comes from dist/, torch and the rest from the package index).
#
# Each project is copied to a scratch folder first (the files git tracks or would track), so a
# stale build/ or *.egg-info left by an earlier in-tree build cannot leak deleted files into a
# wheel. The build backend runs in pip's isolated build environment (setuptools>=77 from the
# package index; NO_BUILD_ISOLATION=1 uses the interpreter's own setuptools>=77 instead, offline);
# its output is searched for deprecation warnings, which fail the build.
# $PYTHON picks the interpreter (default: python, else python3); it needs only pip.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-dist}"
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
PIP_WHEEL=(-m pip wheel --no-deps --no-cache-dir -v)
if [ "${NO_BUILD_ISOLATION:-0}" = 1 ]; then PIP_WHEEL+=(--no-build-isolation); fi
# promptgen-core (the root), then every plugin and example: each folder with a pyproject.toml.
PROJECTS=(.)
for pyproject in "$ROOT"/plugins/*/pyproject.toml "$ROOT"/examples/*/pyproject.toml; do
    project="${pyproject#"$ROOT"/}"
    if [ -f "$pyproject" ]; then PROJECTS+=("${project%/pyproject.toml}"); fi
done

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/promptgen-wheels.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

# stage SRC DEST [PATHSPEC...]: copy the project at SRC to DEST without build leftovers.
stage() {
    local src="$1" dest="$2"
    shift 2
    mkdir -p "$dest"
    if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Tracked and untracked-but-not-ignored files that exist (a deleted tracked file is skipped).
        (cd "$src" && git ls-files -z -co --exclude-standard -- . "$@" |
            while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -) | tar -C "$dest" -xf -
    else
        tar -C "$src" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./runs \
            --exclude='*.egg-info' --exclude=__pycache__ --exclude='*.pyc' -cf - . | tar -C "$dest" -xf -
    fi
}

for project in "${PROJECTS[@]}"; do
    name="$(basename "$(cd "$ROOT/$project" && pwd)")"
    dest="$STAGE/src/$name"
    if [ "$project" = . ]; then
        # The core: everything but the other projects, which live in its tree.
        stage "$ROOT" "$dest" ':(exclude)plugins' ':(exclude)examples'
    else
        stage "$ROOT/$project" "$dest"
    fi
    # One wheel per distribution in the wheelhouse, this checkout's: pip would take a leftover of a higher version.
    distribution="$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$dest/pyproject.toml" | head -n 1)"
    rm -f "$OUT/$(echo "$distribution" | tr -- '-.' '__' | tr '[:upper:]' '[:lower:]')"-*.whl
    log="$STAGE/$name.log"
    if ! "$PYTHON" "${PIP_WHEEL[@]}" -w "$OUT" "$dest" >"$log" 2>&1; then
        cat "$log" >&2
        echo "build_wheels.sh: building $project failed (log above)" >&2
        exit 1
    fi
    if grep -i -E 'deprecat' "$log" >&2; then
        echo "build_wheels.sh: building $project printed the deprecation warnings above" >&2
        exit 1
    fi
    echo "built $(grep -o -E '[^/ =]+\.whl' "$log" | tail -1)"
done

# Check what a stranger gets: licence metadata and files, the core's package data, subpackages and entry points.
"$PYTHON" - "$OUT" "${PROJECTS[@]/#/$ROOT/}" <<'EOF'
import re
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

out, projects = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
problems = []
for project in projects:
    # name and version of [project], read without tomllib (Python 3.10 has none)
    text = (project / "pyproject.toml").read_text()
    meta = {k: re.search(rf'^{k}\s*=\s*"([^"]+)"', text, re.M).group(1) for k in ("name", "version")}
    stem = f"{re.sub(r'[-_.]+', '_', meta['name']).lower()}-{meta['version']}-"
    wheels = sorted(out.glob(f"{stem}*.whl"))
    if not wheels:
        problems.append(f"{meta['name']} {meta['version']}: no wheel in {out}")
        continue
    with zipfile.ZipFile(wheels[-1]) as whl:
        names = whl.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(whl.read(f"{info}/METADATA").decode())
        entry_points = whl.read(f"{info}/entry_points.txt").decode() if f"{info}/entry_points.txt" in names else ""
    where = wheels[-1].name
    # Every module of the source tree is shipped (a folder without __init__.py would be left out).
    source = project / "src" if (project / "src").is_dir() else project
    for package in {n.split("/")[0] for n in names if "/" in n and not n.split("/")[0].endswith((".dist-info", ".data"))}:
        missing = sorted(
            str(f.relative_to(source)) for f in (source / package).rglob("*.py") if str(f.relative_to(source)) not in names
        )
        if missing:
            problems.append(f"{where}: {len(missing)} modules of {package}/ missing, e.g. {missing[0]}")
    if metadata.get("License-Expression") != "MIT":
        problems.append(f"{where}: License-Expression is {metadata.get('License-Expression')!r}, not 'MIT'")
    if "LICENSE" not in metadata.get_all("License-File", []) or f"{info}/licenses/LICENSE" not in names:
        problems.append(f"{where}: LICENSE is not shipped ({info}/licenses/LICENSE)")
    if "[promptgen]" not in entry_points:
        problems.append(f"{where}: no entry point in the promptgen group")
    if meta["name"] == "promptgen-core":
        weights = [n for n in names if re.fullmatch(r"promptgen/builtin/mnist/weights/[^/]+\.safetensors", n)]
        if not weights:
            problems.append(f"{where}: no promptgen/builtin/mnist/weights/*.safetensors")
        for package in ("core", "training", "artifacts", "sampling", "evaluation", "energies", "builtin"):
            if f"promptgen/{package}/__init__.py" not in names:
                problems.append(f"{where}: subpackage promptgen.{package} missing")
        for line in ("builtin = promptgen.builtin", "prompts = promptgen.artifacts.prompt_plugin"):
            if line not in entry_points:
                problems.append(f"{where}: entry point {line!r} missing")
    elif not any(r.replace(" ", "").startswith("promptgen-core") for r in metadata.get_all("Requires-Dist", [])):
        problems.append(f"{where}: does not declare the promptgen-core versions it works with")
if problems:
    sys.exit("build_wheels.sh: " + "\n  ".join(["the wheels are not fit to release:", *problems]))
print(f"checked {len(projects)} wheels in {out}")
EOF
