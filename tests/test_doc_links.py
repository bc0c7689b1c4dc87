"""Every relative link of the README and the docs points at a file that exists, and at a heading it has.

Issue 26 found `benchmarks.md#issue-3-samplers` in docs/evaluation.md, a heading renamed long before.
Anchors are GitHub's: the heading in lower case, punctuation other than hyphens and underscores dropped,
spaces made hyphens, a repeated heading suffixed -1, -2...
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "plugins").glob("*/README.md"),
     *(ROOT / "examples").glob("*/README.md"), *(ROOT / "benchmarks").glob("**/README.md")]
)  # fmt: skip
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text, flags=re.UNICODE)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    inside = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        if inside or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        k = seen.get(base, 0)
        seen[base] = k + 1
        out.add(base if k == 0 else f"{base}-{k}")
    return out


def test_the_slug_rule_matches_githubs():
    assert slug(" Issue 24: held-out generators, the guard and the closing check") == "issue-24-held-out-generators-the-guard-and-the-closing-check"
    assert slug(" `mode=auto`, decided by trying both") == "modeauto-decided-by-trying-both"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:, data:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: {file.name} has no heading with anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
