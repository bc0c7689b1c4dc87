#!/usr/bin/env bash
# Set up .venv with promptgen-core (editable), its test extras, the example plugin and the
# plugins of plugins/ (installed as a stranger would, through their entry points), then run every test.
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
python -m pip install -q -e ".[test]"
python -m pip install -q --force-reinstall --no-deps ./examples/promptgen-plugin-ink
# The FairFace plugin needs torchvision; each torchvision release is built for one torch
# release, so ask for the one that matches the torch already installed.
TORCH_VERSION="$(python -c 'import torch; print(torch.__version__.split("+")[0])')"
python -m pip install -q torchvision open_clip_torch "torch==$TORCH_VERSION"
python -m pip install -q --force-reinstall --no-deps ./plugins/promptgen-plugin-fairface
python -m pip install -q --force-reinstall --no-deps ./plugins/promptgen-plugin-stylegan2
python -m pip install -q --force-reinstall --no-deps ./plugins/promptgen-plugin-clip
python -m pip install -q --force-reinstall --no-deps ./plugins/promptgen-plugin-digit-panel
python -m pytest "$@"
