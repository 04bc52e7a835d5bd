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


def optional_venvs(cwd: Path, suite_gb: int, *specs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts/optional_venvs.sh"), str(suite_gb), *specs],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_optional_venvs_skips_what_does_not_fit_and_keeps_what_is_installed(tmp_path: Path) -> None:
    (tmp_path / ".venv-big").mkdir()
    (tmp_path / ".venv-big" / ".installed").touch()
    result = optional_venvs(
        tmp_path, 0, ".venv-small:0:setup-small", ".venv-huge:1000000:setup-huge", ".venv-big:1000000:setup-big"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["setup-small", "setup-big"]  # the installed one is kept whatever its size
    assert "skipping .venv-huge (setup-huge): it takes about 1000000 GB" in result.stderr
    assert "the tests that need it skip" in result.stderr
    assert "big" not in result.stderr and "small" not in result.stderr


def test_optional_venvs_counts_the_room_each_one_takes(tmp_path: Path) -> None:
    free_gb = int(
        subprocess.run(["df", "-P", "-BG", "."], cwd=tmp_path, capture_output=True, text=True).stdout.split()[-3][:-1]
    )
    half = free_gb // 2 + 1  # one venv of this size fits, two do not
    result = optional_venvs(tmp_path, 0, f".venv-a:{half}:setup-a", f".venv-b:{half}:setup-b")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["setup-a"]
    assert "skipping .venv-b (setup-b)" in result.stderr
    kept_for_the_suite = optional_venvs(tmp_path, free_gb, f".venv-a:{half}:setup-a")
    assert kept_for_the_suite.stdout.split() == []
