"""The API contract is checked against its last release (issue 19): ``buf breaking`` runs
in ``make lint`` against the stored image in protos/releases/, and this test shows it
catches a removed field, the change that would break every client built on the release.

It needs buf (``npm install``, as ``make lint`` does); without it the test is skipped,
saying so, unless CHATPRO_REQUIRE_BUF=1 (CI runs it after ``make lint`` with that set).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUF = ROOT / "node_modules" / ".bin" / "buf"
RELEASES = ROOT / "protos" / "releases"


def _latest_release() -> Path:
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.stem))

    return max(RELEASES.glob("*.binpb"), key=version)


def _breaking(workspace: Path) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        if os.environ.get("CHATPRO_REQUIRE_BUF") == "1":
            pytest.fail(f"{BUF} is missing: run npm install")
        pytest.skip(f"needs buf at {BUF} (npm install, as make lint does)")
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(_latest_release())],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _workspace(tmp_path: Path) -> Path:
    """A copy of the protos and buf's configuration, free to be edited."""
    shutil.copytree(ROOT / "protos" / "chatpro", tmp_path / "protos" / "chatpro")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def test_the_protos_keep_the_contract_of_the_last_release(tmp_path: Path) -> None:
    checked = _breaking(_workspace(tmp_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_removed_field_fails_the_check(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    proto = workspace / "protos" / "chatpro" / "privacy" / "v1" / "rights_service.proto"
    text = proto.read_text()
    assert "  string details = 2;\n" in text
    proto.write_text(text.replace("  string details = 2;\n", "", 1))
    checked = _breaking(workspace)
    assert checked.returncode != 0
    assert 'field "2" with name "details"' in checked.stdout
    assert "was deleted" in checked.stdout
