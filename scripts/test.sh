#!/usr/bin/env bash
# Set up .venv with promptgen-core (editable), its test extras, the example plugin and the
# plugins of plugins/, then run every test. The plugins are installed as a stranger would: every
# distribution is built as a wheel into dist/ (scripts/build_wheels.sh) and the plugins are
# installed from there by name, `pip install --find-links dist NAME`, torch and the rest from the
# package index. The core stays editable: the tests run from this checkout (--import-mode=importlib)
# and would otherwise meet two copies of promptgen. .ci/run then tries the wheels alone, in a fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
# The HTML report is checked in a real headless browser: Chromium from Debian's packages.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; })
    else
        echo "scripts/test.sh: install Chromium first (sudo apt-get install chromium); the report test needs it" >&2
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# compat: the clone on sys.path, so `import promptgen` from the folder above the clone finds the package,
# not the clone itself as an empty namespace package (issue 26; tests/test_layout.py checks).
python -m pip install -q -e ".[test]" --config-settings editable_mode=compat
bash scripts/build_wheels.sh dist
# Every plugin of plugins/ and examples/, by distribution name.
PLUGINS=($(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' plugins/*/pyproject.toml examples/*/pyproject.toml))
# Each torchvision release (the FairFace plugin's) is built for one torch release: pinning the
# torch already installed makes pip pick the torchvision that matches it.
TORCH_VERSION="$(python -c 'import torch; print(torch.__version__.split("+")[0])')"
# Uninstalled first: pip would keep an installed plugin of the same version, which may be stale.
for plugin in "${PLUGINS[@]}"; do
    if python -m pip show -q "$plugin" >/dev/null 2>&1; then python -m pip uninstall -q -y "$plugin"; fi
done
REPORT="$(mktemp)"
trap 'rm -f "$REPORT"' EXIT
python -m pip install -q --find-links dist --report "$REPORT" "torch==$TORCH_VERSION" "${PLUGINS[@]}"
# The BigGAN plugin's tests compare it with the reference implementation (whose utils import scipy).
python -m pip install -q "pytorch-pretrained-biggan==0.1.1" scipy "torch==$TORCH_VERSION"
# Each plugin came from the wheelhouse, not from a namesake on the package index.
python - "$REPORT" "$PWD/dist" "${PLUGINS[@]}" <<'EOF'
import json
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

report, wheelhouse, wanted = sys.argv[1], Path(sys.argv[2]).resolve(), set(sys.argv[3:])
with open(report) as f:
    origin = {i["metadata"]["name"]: Path(unquote(urlparse(i["download_info"]["url"]).path)).resolve() for i in json.load(f)["install"]}
wrong = sorted(n for n, o in origin.items() if n.startswith("promptgen") and o.parent != wheelhouse)
if wrong or not wanted <= set(origin):
    sys.exit(f"not installed from {wheelhouse}: {', '.join(wrong or sorted(wanted - set(origin)))}")
EOF
python -m pytest --durations=25 "$@"
