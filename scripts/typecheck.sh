#!/usr/bin/env bash
# Static checks: ruff over everything, mypy over the public surface ([tool.mypy] in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m ruff check promptgen tests plugins scripts benchmarks examples
python -m mypy
