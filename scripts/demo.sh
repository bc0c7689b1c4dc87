#!/usr/bin/env bash
# Set up .venv, train a prompt that makes the built-in digit generator draw only 3s,
# and write pictures of the generator alone and of the prompt side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# compat: the clone on sys.path, so `import promptgen` from the folder above the clone finds the package,
# not the clone itself as an empty namespace package (issue 26).
python -m pip install -q -e . --config-settings editable_mode=compat
promptgen compose --gen mnist --energy classifier:digit=3 --out runs/digit-3 --overwrite
promptgen sample --gen mnist -n 64 --seed 0 -o runs/base.png
promptgen sample runs/digit-3 -n 64 --seed 0 -o runs/digit-3.png
echo "base generator: runs/base.png    prompt classifier:digit=3: runs/digit-3.png"
