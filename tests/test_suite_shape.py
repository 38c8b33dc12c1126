"""The suite's own shape (issue 13): test modules share code through helpers.py and orgs.py,
never by importing one another, so that each can be read, run and changed on its own."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported(tree: ast.Module) -> set[str]:
    """The top-level module names a file imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return names


def test_no_test_module_imports_another() -> None:
    test_modules = {path.stem for path in TESTS.glob("test_*.py")}
    offenders = {
        path.name: sorted(_imported(ast.parse(path.read_text(encoding="utf-8"))) & test_modules)
        for path in sorted(TESTS.glob("*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_sees_an_import_of_a_test_module() -> None:
    tree = ast.parse("def f():\n    from test_content import upload\nimport test_rights.x\n")
    assert _imported(tree) == {"test_content", "test_rights"}
