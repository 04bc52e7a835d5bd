"""Resumable training state in one safetensors file: weights, optimizer moments, RNG, step counters.

A trainer calls `save_training_state` every few updates and `load_training_state` when it starts; the file
is written atomically (vla_razor.runs), so a kill -9 leaves either the previous state or the new one. With
the data order a pure function of (seed, epoch), resuming from it gives the same later updates as never
stopping (tests/test_training_state.py, tests/robot/test_sft.py).

Layout: `model.<name>` for every trainable parameter, `optim.<i>.<key>` for the optimizer's per-parameter
tensors (i = the parameter's position in the optimizer's single group), `rng.torch` for torch's CPU
generator; the step counters and anything else small go in the JSON metadata `state`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from vla_razor.runs import CorruptFileError, save_tensors_atomic


TRAINING_STATE = "training_state.safetensors"
"""The file's name in a run's checkpoints/ folder, the same for every trainer."""
_OLD_ROBOT_NAME = "train_state.safetensors"


def training_state_path(run_dir: Path) -> Path:
    """`<run_dir>/checkpoints/training_state.safetensors`. A robot run interrupted while its trainers still wrote
    `train_state.safetensors` has that file renamed here, so that the same command resumes it."""
    path = Path(run_dir) / "checkpoints" / TRAINING_STATE
    old = path.with_name(_OLD_ROBOT_NAME)
    if old.is_file() and not path.exists():
        old.replace(path)
    return path


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    params = trainable_parameters(model)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.detach().contiguous() for k, v in params.items()}
    index = {id(p): i for i, p in enumerate(optimizer.param_groups[0]["params"])}
    for p, s in optimizer.state.items():
        for key, value in s.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index[id(p)]}.{key}"] = value.detach().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    save_tensors_atomic(path, tensors, metadata={"state": json.dumps(state)})


def load_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restores what `save_training_state` wrote into `model` and `optimizer`; returns the saved `state`. Reads
    one tensor at a time into place, so a resume needs the model and optimizer plus one tensor of memory, not
    a second copy of the whole state."""
    state = check_training_state(path, model)
    params = trainable_parameters(model)
    group = optimizer.param_groups[0]["params"]
    optimizer.state.clear()
    try:
        with safe_open(str(path), framework="pt") as f, torch.no_grad():
            for key in f.keys():
                if key.startswith("model.") and key[len("model.") :] in params:
                    params[key[len("model.") :]].copy_(f.get_tensor(key))
                elif key.startswith("optim."):
                    _, i, name = key.split(".", 2)
                    optimizer.state[group[int(i)]][name] = f.get_tensor(key).to(group[int(i)].device)
            torch.set_rng_state(f.get_tensor("rng.torch"))
    except (IndexError, SafetensorError) as err:  # an optimizer of another size, a damaged tensor (not: out of memory)
        raise CorruptFileError(
            f"{path}: cannot restore the training state ({err}); delete the run folder to start it again"
        ) from None
    return state


def check_training_state(path: Path, model: nn.Module) -> dict[str, Any]:
    """The state's metadata, after checking that its weights fit `model` (names and shapes, read from the file's
    header without loading a tensor): a resume refuses a state of another model before it touches any file."""
    meta = read_training_state_meta(path)
    with safe_open(str(path), framework="pt") as f:
        shapes = {k[len("model.") :]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith("model.")}
    for name, p in trainable_parameters(model).items():
        if name not in shapes:
            raise CorruptFileError(
                f"{path}: training state lacks parameter {name} (a different model or config?); "
                "delete the run folder to start it again"
            )
        if shapes[name] != tuple(p.shape):
            raise CorruptFileError(
                f"{path}: parameter {name} has shape {shapes[name]}, the model {tuple(p.shape)} (a "
                "different model or config?); delete the run folder to start it again"
            )
    return meta


def read_training_state_meta(path: Path) -> dict[str, Any]:
    """The `state` metadata of a training-state file, without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("state", "{}"))
    except Exception as err:  # safetensors' own error types for truncated or foreign files
        raise CorruptFileError(f"{path}: not a readable training state ({err})") from None
