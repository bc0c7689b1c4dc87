#!/usr/bin/env bash
# Set up .venv with promptgen-core (editable), its test extras and the example plugin
# (installed as a stranger would, through its entry point), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[test]"
python -m pip install -q --force-reinstall --no-deps ./examples/promptgen-plugin-ink
python -m pytest "$@"
