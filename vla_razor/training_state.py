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
from torch import nn

from vla_razor.runs import load_tensors, save_tensors_atomic


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
    """Restores what `save_training_state` wrote into `model` and `optimizer`; returns the saved `state`."""
    tensors = load_tensors(path)
    state = read_training_state_meta(path)
    params = trainable_parameters(model)
    missing = [k for k in params if f"model.{k}" not in tensors]
    if missing:
        raise ValueError(f"{path}: training state lacks parameters {missing[:5]} (a different model or config?)")
    with torch.no_grad():
        for name, p in params.items():
            saved = tensors[f"model.{name}"]
            if saved.shape != p.shape:
                raise ValueError(f"{path}: parameter {name} has shape {tuple(saved.shape)}, model has {tuple(p.shape)}")
            p.copy_(saved)
    group = optimizer.param_groups[0]["params"]
    optimizer.state.clear()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            optimizer.state[group[int(i)]][name] = value.to(group[int(i)].device)
    torch.set_rng_state(tensors["rng.torch"])
    return state


def read_training_state_meta(path: Path) -> dict[str, Any]:
    """The `state` metadata of a training-state file, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("state", "{}"))
    except Exception as err:  # safetensors' own error types for truncated or foreign files
        raise ValueError(f"{path}: not a readable training state ({err})") from None
