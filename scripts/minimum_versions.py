"""Print a pip constraints file pinning each dependency of a pyproject.toml to its declared
lower bound (``name>=X`` -> ``name==X``), so an install proves the bounds are true.

Usage: python scripts/minimum_versions.py clients/python/pyproject.toml > minimum.txt
A dependency without a lower bound is an error: its minimum would be a guess.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_LOWER = re.compile(r">=\s*([0-9][0-9A-Za-z.]*)")


def constraints(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    pins = []
    for requirement in project.get("dependencies", []):
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        lower = _LOWER.search(requirement)
        if lower is None:
            raise SystemExit(f"{requirement!r} declares no lower bound")
        pins.append(f"{name}=={lower.group(1)}")
    return pins


if __name__ == "__main__":
    print("\n".join(constraints(Path(sys.argv[1]))))
