"""vla_razor/training_state.py: one file name for every trainer, and a robot run saved under the old name resumes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vla_razor.training_state import load_training_state, save_training_state, training_state_path


def test_every_trainer_uses_one_file_name(tmp_path: Path) -> None:
    assert training_state_path(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "training_state.safetensors"


def test_a_state_saved_under_the_old_robot_name_is_renamed_and_resumes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    old = tmp_path / "checkpoints" / "train_state.safetensors"
    save_training_state(old, model, optimizer, {"step": 7})

    path = training_state_path(tmp_path)
    assert path.is_file() and not old.exists()
    fresh = nn.Linear(3, 2)
    state = load_training_state(path, fresh, torch.optim.AdamW(fresh.parameters(), lr=0.1))
    assert state == {"step": 7} and torch.equal(fresh.weight, model.weight)
