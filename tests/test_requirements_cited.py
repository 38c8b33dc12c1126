"""Every requirement of ../shared/design/requirements.md is cited by a test by its own name
(issue 17): a test module (its docstring, a test's docstring, comments or body) carries the
ID written out, e.g. "CON-6". A range ("CON-2..4", "RGT-1 to RGT-9") or a snake-cased test
name ("test_con6_...") does not cite the IDs it spans, and a module without tests cites
nothing.

Where the file is: $CHATPRO_REQUIREMENTS_FILE, else ``shared/design/requirements.md`` in the
nearest parent of the repository that has one (``../shared`` for the main checkout); a clone
on its own checks the IDs kept in ``tests/data/requirement_ids.txt``."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPOSITORY = TESTS.parent
# A row of a requirements table: "| CON-6 | ...".
ROW = re.compile(r"^\|\s*([A-Z]{3}-\d+)\s*\|", re.MULTILINE)
# An ID written out, not the start or end of a range ("CON-2..4", "..4"), nor a longer ID.
CITATION = re.compile(r"(?<![\w.-])([A-Z]{3}-\d+)(?![\w]|\.\.)")
RANGE_WORDS = re.compile(r"([A-Z]{3}-\d+)\s+to\s+([A-Z]{3}-\d+)")


# The IDs as of the last time the requirements were read beside the repository: what a
# clone on its own (CI's) checks against.
KNOWN_IDS = TESTS / "data" / "requirement_ids.txt"


def requirements_file() -> Path | None:
    named = os.environ.get("CHATPRO_REQUIREMENTS_FILE")
    if named:
        return Path(named)
    for parent in REPOSITORY.parents:
        candidate = parent / "shared" / "design" / "requirements.md"
        if candidate.is_file():
            return candidate
    return None


def current_ids() -> list[str]:
    """The requirements' IDs: from requirements.md where it is at hand, and then the copy
    kept in the repository must match it; else from that copy."""
    known = KNOWN_IDS.read_text(encoding="utf-8").split()
    found = requirements_file()
    if found is None:
        return known
    ids = requirement_ids(found.read_text(encoding="utf-8"))
    assert ids == known, f"requirements.md changed: write its IDs to {KNOWN_IDS}"
    return ids


def requirement_ids(text: str) -> list[str]:
    ids = ROW.findall(text)
    assert len(ids) == len(set(ids)), "an ID is defined twice"
    return ids


def has_tests(source: str) -> bool:
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        for node in ast.walk(ast.parse(source))
    )


def cited(source: str) -> set[str]:
    """The IDs a test module cites by name: "A to B" spans are read as ranges."""
    without_ranges = RANGE_WORDS.sub(" ", source)
    return set(CITATION.findall(without_ranges))


def citations(folder: Path = TESTS) -> dict[str, set[str]]:
    """ID -> the test modules citing it."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.glob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        if path.name == Path(__file__).name or not has_tests(source):
            continue  # this file names IDs only as examples
        for requirement in cited(source):
            found.setdefault(requirement, set()).add(path.name)
    return found


def test_every_requirement_is_cited_by_a_test_by_its_own_name() -> None:
    ids = current_ids()
    assert len(ids) >= 40, "the requirements were not read"
    found = citations()
    uncited = [i for i in ids if i not in found]
    assert not uncited, f"no test cites {', '.join(uncited)} by its own name"


def test_the_check_reads_ranges_and_test_names_as_no_citation(tmp_path: Path) -> None:
    """Guards the guard: what counts as a citation, and what does not."""
    assert requirement_ids("| ACC-1 | x |\n| CON-10 | y |\ntext CON-9\n") == ["ACC-1", "CON-10"]
    assert cited("CON-2..4, PLG-1..4; RGT-1 to RGT-9 and (SEC-2)") == {"SEC-2"}
    assert cited("ACC-11, then CON-6 and CON-7.") == {"ACC-11", "CON-6", "CON-7"}
    (tmp_path / "test_x.py").write_text(
        '"""Module: CON-1, and PLG-1..4."""\n\n'
        "def test_con6_served() -> None:\n"
        "    assert True  # ORG-5\n",
        encoding="utf-8",
    )
    (tmp_path / "test_helpers_only.py").write_text('def helper() -> None:\n    """RET-1"""\n')
    assert citations(tmp_path) == {"CON-1": {"test_x.py"}, "ORG-5": {"test_x.py"}}
