"""The architecture's layers, read from the source: which module imports what, and how
long modules and functions are (issue 13). Every rule holds with no exception."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "chatpro_privacy"
ROOT = Path(__file__).resolve().parents[1] / "server" / PACKAGE

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Models are one class per table and migrations are frozen history: neither is split by size.
SIZE_EXEMPT = ("chatpro_privacy.storage.models", "chatpro_privacy.storage.migrations")


@dataclass(frozen=True)
class Rule:
    """What one layer must not import: names under ``forbidden``, unless under ``allowed``."""

    layer: str
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    why: str = ""

    def breaks(self, imported: str) -> bool:
        return _under(imported, self.forbidden) and not _under(imported, self.allowed)


RULES = (
    Rule("edge", ("chatpro_privacy.storage",), why="edge reaches data through domain/ only"),
    Rule("services", ("chatpro_privacy.storage",), why="servicers hold no SQL: domain/ does"),
    Rule(
        "storage",
        (
            "chatpro_privacy.domain",
            "chatpro_privacy.services",
            "chatpro_privacy.edge",
            "chatpro_privacy.plugin",
        ),
        why="storage is the bottom layer and decides nothing",
    ),
    Rule(
        "plugin",
        ("chatpro_privacy.storage", "chatpro_privacy.domain"),
        allowed=("chatpro_privacy.domain.kernel",),
        why="plugins see no storage, and of domain/ only the kernel's errors and types",
    ),
    Rule(
        "domain",
        # grpc's companion packages (grpc_status, ...) are gRPC too.
        (
            "grpc",
            "grpc_status",
            "grpc_health",
            "grpc_reflection",
            "chatpro_privacy.services",
            "chatpro_privacy.edge",
            "chatpro.privacy.v1",
        ),
        why="domain/ knows nothing of gRPC, the servicers or the generated protos",
    ),
)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(module: str, path: Path, tree: ast.Module) -> Iterator[str]:
    """Every name a module imports, anywhere in it (functions and TYPE_CHECKING blocks too):
    ``from a import b`` gives ``a.b``, since b may be a module, and ``a`` itself only for *."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            for alias in node.names:
                yield base if alias.name == "*" else f"{base}.{alias.name}"


def _parsed() -> Iterator[tuple[str, Path, ast.Module]]:
    for module, path in _modules():
        yield module, path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_checks_look_at_the_package_and_see_its_imports() -> None:
    """Guards the guard: a checker that read nothing would pass every rule."""
    modules = dict(_modules())
    assert {"chatpro_privacy.domain", "chatpro_privacy.storage.models"} <= modules.keys()
    source = "import grpc\nfrom ..storage import models\nfrom .kernel.errors import *\n"
    path = ROOT / "domain" / "accounts" / "example.py"
    imported = set(_imports("chatpro_privacy.domain.accounts.example", path, ast.parse(source)))
    assert imported == {
        "grpc",
        "chatpro_privacy.domain.storage.models",
        "chatpro_privacy.domain.accounts.kernel.errors",
    }
    domain = next(rule for rule in RULES if rule.layer == "domain")
    plugin = next(rule for rule in RULES if rule.layer == "plugin")
    assert domain.breaks("grpc.aio") and not domain.breaks("grpcio_like")
    assert plugin.breaks("chatpro_privacy.domain.rights") and not plugin.breaks(
        "chatpro_privacy.domain.kernel.errors"
    )


def test_no_module_imports_against_the_layers() -> None:
    failures = []
    for module, path, tree in _parsed():
        rules = [rule for rule in RULES if rule.layer == _layer(module)]
        for imported in sorted(set(_imports(module, path, tree))):
            for rule in rules:
                if rule.breaks(imported):
                    failures.append(
                        f"{module} imports {imported}: {rule.layer}/ must not ({rule.why})"
                    )
    assert not failures, "imports against the layers:\n" + "\n".join(failures)


def test_no_module_is_too_long() -> None:
    failures = []
    for module, path in _modules():
        if _under(module, SIZE_EXEMPT):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            failures.append(f"{module} has {lines} lines (at most {MAX_MODULE_LINES})")
    assert not failures, "modules to split:\n" + "\n".join(failures)


def _functions(
    node: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.<locals>.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def test_no_function_is_too_long() -> None:
    failures = []
    for module, _, tree in _parsed():
        if _under(module, SIZE_EXEMPT):
            continue
        for name, function in _functions(tree):
            lines = (function.end_lineno or function.lineno) - function.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                failures.append(f"{module}:{name} has {lines} lines (at most {MAX_FUNCTION_LINES})")
    assert not failures, "functions to split:\n" + "\n".join(failures)
