"""`vla-razor robot export` refusals that need no OpenVLA code (the export itself is checked in OpenVLA's venv:
test_openvla_parity.py): each is one line, exit code 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_razor.cli.main import main as cli

REPO = Path(__file__).resolve().parents[2]


def test_export_refuses_what_openvla_code_could_not_load(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = tmp_path / "code"
    code.mkdir()
    for name in ("configuration_prismatic.py", "modeling_prismatic.py", "processing_prismatic.py"):
        (code / name).write_text("# stands in for OpenVLA's file: only its presence is checked before loading\n")
    base = REPO / "assets" / "base_policy_embedded"

    assert cli(["robot", "export", str(base), str(tmp_path / "a"), "--code-from", str(code)]) == 2
    assert "ViTs are resized" in capsys.readouterr().err and not (tmp_path / "a").exists()

    assert cli(["robot", "export", str(base), str(tmp_path / "b"), "--code-from", str(tmp_path)]) == 2
    assert "no configuration_prismatic.py" in capsys.readouterr().err and not (tmp_path / "b").exists()

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("the user's")
    assert cli(["robot", "export", str(base), str(tmp_path / "c"), "--code-from", str(code)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "c" / "keep.txt").read_text() == "the user's"
