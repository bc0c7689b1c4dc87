"""The adversarial suite's counts, by class of case, gathered from every test that tries bad input.

Issue 25 asks the suite to report, in CI, the cases of each class and that none ended in a traceback, a
damaged file, a payload that ran, a foreign exception from the Python API, or a hostile configuration that
took more than 5 s or 1 GB. Each adversarial test calls :func:`record` once per case; the test session's
summary (``tests/conftest.py``) prints :func:`summary` as one JSON line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The problems :func:`summary` counts, by the word each starts with.
KINDS = {
    "traceback": "tracebacks",
    "changed files": "damaged_files",
    "a payload ran": "code_executions",
    "foreign exception": "foreign_exceptions",
    "over budget": "over_budget",
}


@dataclass
class Entry:
    klass: str
    case: str
    problems: list[str] = field(default_factory=list)


#: Every case recorded in this process.
ENTRIES: list[Entry] = []


def record(klass: str, case: str, problems: list[str] | None = None) -> None:
    """One adversarial case of class ``klass`` and what went wrong with it (nothing: an empty list)."""
    ENTRIES.append(Entry(klass, case, list(problems or [])))


def summary(entries: list[Entry] | None = None) -> dict[str, object]:
    """Counts over ``entries`` (default: all recorded): cases, each kind of problem, and cases a class."""
    entries = ENTRIES if entries is None else entries
    counts: dict[str, object] = {"cases": len(entries)}
    for word, name in KINDS.items():
        counts[name] = sum(any(p.startswith(word) for p in e.problems) for e in entries)
    counts["clean"] = sum(not e.problems for e in entries)
    classes: dict[str, int] = {}
    for e in entries:
        classes[e.klass] = classes.get(e.klass, 0) + 1
    counts["classes"] = dict(sorted(classes.items()))
    counts["failing"] = [f"{e.klass}: {e.case}" for e in entries if e.problems][:20]
    return counts


__all__ = ["ENTRIES", "KINDS", "record", "summary"]
