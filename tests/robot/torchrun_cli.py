"""Runs several `vla-razor` commands one after another in the same torchrun processes, so that a test pays the
start-up (torchrun, imports) once: `torchrun --nproc-per-node N tests/robot/torchrun_cli.py COMMANDS.json`, where
COMMANDS.json is a list of argument lists. Every command runs whatever the previous one returned; rank r writes
the exit codes to COMMANDS.json.rc<r> (tests/robot/test_distributed.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from vla_razor.cli.main import main


def run_all(path: Path) -> list[int]:
    commands = json.loads(path.read_text())
    codes = [main([str(arg) for arg in args]) for args in commands]
    path.with_name(f"{path.name}.rc{os.environ.get('RANK', '0')}").write_text(json.dumps(codes))
    return codes


if __name__ == "__main__":
    run_all(Path(sys.argv[1]))
