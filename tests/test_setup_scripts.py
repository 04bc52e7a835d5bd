"""The set-up's shell helpers (Makefile), run as make runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def need_disk(gigabytes: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts/need_disk.sh"), str(gigabytes), "the LeRobot venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_need_disk_refuses_naming_what_needs_the_space() -> None:
    result = need_disk(10**6)  # a million GB: no disk here has that free
    assert result.returncode == 1
    assert "the LeRobot venv needs about 1000000 GB free" in result.stderr
    assert "GB are free" in result.stderr


def test_need_disk_passes_when_the_space_is_there() -> None:
    result = need_disk(0)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
