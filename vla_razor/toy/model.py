"""The ParityMNIST MLP (785-512-256-10, ReLU), alone or as a stack of M independent copies.

A sweep trains dozens of fine-tunes of the same base at once: their parameters are stacked on a leading
model axis and every layer is one batched matmul, which keeps 2 CPU cores busy where one small model
would not. Stacked parameters use ``nn.Linear``'s layout ([M, out, in]), so model m's slice is a plain
state dict for :class:`MLP` (checkpoints, Fisher information, the core's weight-change predictors).
"""

from __future__ import annotations

import torch
from torch import nn

LAYERS = ("fc1", "fc2", "fc3")


class MLP(nn.Module):
    """One model: the reference implementation the stacked one must match."""

    def __init__(self, in_dim: int = 785, hidden: tuple[int, ...] = (512, 256), out_dim: int = 10) -> None:
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        if len(dims) != len(LAYERS) + 1:
            raise ValueError(f"the ParityMNIST MLP has {len(LAYERS)} layers; hidden must list 2 sizes, got {hidden}")
        self.fc1 = nn.Linear(dims[0], dims[1])
        self.fc2 = nn.Linear(dims[1], dims[2])
        self.fc3 = nn.Linear(dims[2], dims[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(x)[0]

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h1 = torch.relu(self.fc1(x))
        h2 = torch.relu(self.fc2(h1))
        return self.fc3(h2), [h1, h2]


def stack_state(state: dict[str, torch.Tensor], copies: int) -> dict[str, torch.Tensor]:
    """M copies of one model's parameters, as leaf tensors that require grad."""
    return {k: v.detach().unsqueeze(0).repeat(copies, *([1] * v.dim())).requires_grad_(True) for k, v in state.items()}


def unstack_state(stacked: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    return {k: v[index].detach().clone() for k, v in stacked.items()}


def stacked_forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits [M, B, 10] and hidden activations for inputs shared by all models ([B, D]) or per model ([M, B, D])."""
    h = x
    hidden = []
    for i, name in enumerate(LAYERS):
        weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
        h = torch.matmul(h, weight.transpose(-1, -2)) + bias.unsqueeze(-2)
        if i < len(LAYERS) - 1:
            h = torch.relu(h)
            hidden.append(h)
    return h, hidden


@torch.no_grad()
def stacked_forward_chunked(
    params: dict[str, torch.Tensor], x: torch.Tensor, chunk: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation pass over a large input set: logits [M, N, 10] and concatenated hidden units [M, N, 768]."""
    logits, hidden = [], []
    for start in range(0, len(x), chunk):
        out, hs = stacked_forward(params, x[start : start + chunk])
        logits.append(out)
        hidden.append(torch.cat(hs, dim=-1))
    return torch.cat(logits, dim=1), torch.cat(hidden, dim=1)
