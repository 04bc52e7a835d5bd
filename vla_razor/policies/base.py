"""The policy interface: what the robot trainers (robot/sft.py, robot/rl.py), the evaluator (robot/evaluate.py) and
the KL call on a policy, and nothing more. A policy type is registered by name (vla_razor/policies/registry.py) and
chosen by the config's `policy.type`; OpenVLA (vla_razor/policies/openvla/policy.py) is one implementation.

Two levels:
- `Policy`: any policy the evaluator can roll out, save and load, fine-tune with LoRA;
- `TokenPolicy`: a policy whose action is `action_dim` discrete tokens, each over a fixed restricted vocabulary of
  `n_bins` ids (OpenVLA: 7 tokens over 256 bins), decoded one after another (each given the earlier ones) or all
  at once (parallel decoding: each independent given the context; the chain rule below then holds trivially).
  The trainers' losses (core.sft_loss, core.reinforce_loss, core.grpo_loss) and the KL
  (vla_razor/policies/openvla/kl.py) take its restricted logits.

The KL needs a token policy. The forward KL of a whole action is computed exactly over the bins at each dimension and
summed by the chain rule along actions sampled from the base (DESIGN.md section 8), so the evaluator needs the
teacher-forced logits `action_logits(batch, tokens)` of both policies on the same tokens, `bin_index` to find the
sampled bins, and `sample(..., uniform_noise=...)` to draw the base's actions reproducibly.

A policy with continuous actions (a diffusion or flow-matching head, OpenVLA-OFT's regression head) has no logits
over a finite action vocabulary, so no exact KL exists. To be measured it must provide, in place of `action_logits`:
- `action_logprob(batch, actions) -> Tensor [B]`: the density log pi(a | x) of given raw actions (gradients flow),
  so that the forward KL is estimated as the mean over actions a ~ pi0 of log pi0(a | x) - log pi(a | x) (a Monte
  Carlo estimate with its standard error, never exact), and the trainers' losses become -log pi(a | x) terms;
- `sample` drawing from that same density with per-row noise (the reproducibility the evaluation keys on).
A deterministic head (a regression to one action) has no density and no KL at all. Until such a policy and its
divergence exist, `require_token_policy` refuses any policy that is not a `TokenPolicy` at the KL's entry points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from vla_razor.config import ConfigError

if TYPE_CHECKING:  # type hints only: the interface imports no implementation (openvla imports this module)
    from vla_razor.lora import LoraOptions
    from vla_razor.policies.openvla.action_tokenizer import ActionStats


@dataclass
class ActionSample:
    """What `sample` returns for a batch of contexts."""

    actions: np.ndarray
    """[B, D] raw actions (un-normalized with the dataset's statistics), what the simulator steps with."""
    normalized: np.ndarray
    """[B, D] the actions in [-1, 1] (a token policy: its bin centres)."""
    tokens: Tensor | None
    """[B, D] action token ids (a token policy; None for continuous actions)."""
    logprobs: Tensor | None
    """[B, D] log pi(token | context, earlier tokens), untempered, restricted to the bins (a token policy)."""
    logits: Tensor | None
    """[B, D, n_bins] logits over the bins at each generated dimension (a token policy)."""


@runtime_checkable
class Policy(Protocol):
    """A policy as the robot code uses it. `model` is the whole trainable module: its parameters are what the
    optimizer trains, its state dict what the training state saves, `model.train()` / `model.eval()` switch the
    modes, FSDP shards it (vla_razor/distributed.py)."""

    model: nn.Module
    action_dim: int
    """D, the dimensions of one action (7: xyz, rotation, gripper)."""

    @classmethod
    def from_pretrained(
        cls, directory: Path | str, device: str = "cpu", dataset: str | None = None, dtype: str | None = None
    ) -> Policy:
        """The policy saved in `directory` (its own layout), on `device`, its actions un-normalized with the
        statistics of `dataset` (None: the folder's default), its weights converted to `dtype` ("float32",
        "bfloat16"; None: as saved)."""
        ...

    @classmethod
    def from_config_file(cls, path: Path | str, device: str = "cpu", seed: int | None = 0) -> Policy:
        """A fresh, randomly initialized policy from a config file (pretraining from scratch), weights from `seed`."""
        ...

    def save_pretrained(self, directory: Path | str) -> Any:
        """Writes a folder `from_pretrained` loads on its own (callers write it atomically: runs.save_policy)."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def stats(self) -> ActionStats:
        """The action statistics (q01, q99, mask per dimension) that map raw actions to [-1, 1] and back."""
        ...

    @property
    def gripper(self) -> str:
        """The gripper convention of the actions, "absolute" or "relative" (envs/gripper.py converts)."""
        ...

    def set_action_statistics(self, norm_stats: dict[str, Any], dataset: str) -> None:
        """Makes `norm_stats[dataset]` the actions' statistics, saved with the policy (pretraining: the
        demonstrations' own)."""
        ...

    def encode(self, images: list[Any], instructions: list[str]) -> dict[str, Tensor]:
        """Model inputs for a batch of (image, instruction) contexts, on the policy's device."""
        ...

    def sample(
        self,
        batch: dict[str, Tensor],
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        uniform_noise: Tensor | None = None,
    ) -> ActionSample:
        """One action per row: greedy at temperature 0, else sampled with `generator` or each row's own
        `uniform_noise` (so a row's action does not depend on what shares its batch; a token policy takes
        [B, D, n_bins] uniforms, robot/rl.py's PolicyActor.row_noise)."""
        ...

    def add_adapters(self, options: LoraOptions) -> None:
        """Wraps `model` with LoRA adapters (vla_razor/lora.py) so that only they train (in place)."""
        ...

    def merge_adapters(self) -> None:
        """Folds LoRA adapters, if any, into the weights (in place), so the policy saves in its plain layout."""
        ...

    def with_weights(self, state: dict[str, Tensor]) -> Policy:
        """A plain (unsharded, unwrapped) policy of the same kind and settings carrying `state`, a full state dict of
        `model`, to save (FSDP's gathered weights, saved by rank 0); it need not run (buffers outside the state dict
        may be left unmade)."""
        ...


@runtime_checkable
class TokenPolicy(Policy, Protocol):
    """A policy whose actions are `action_dim` tokens over `n_bins` action ids: what the trainers and the exact KL
    need (see the module docstring). Logits it returns are restricted to the bins, column k = bin k."""

    @property
    def vocab_ids(self) -> Tensor:
        """[n_bins] the action token ids in bin order (column k of every restricted logit tensor)."""
        ...

    def bin_index(self, tokens: Tensor) -> Tensor:
        """Action token ids [...] -> their bins [...] in [0, n_bins) (columns of the restricted logits)."""
        ...

    def encode_actions(self, actions: np.ndarray) -> Tensor:
        """Raw actions [B, D] (demonstrations) -> target token ids [B, D] on the policy's device."""
        ...

    def action_logits(self, batch: dict[str, Tensor], action_tokens: Tensor) -> Tensor:
        """Teacher-forced logits [B, D, n_bins] of the D given action tokens, each given the earlier ones
        (gradients flow)."""
        ...

    def token_logprobs(self, batch: dict[str, Tensor], action_tokens: Tensor) -> Tensor:
        """log pi(token d | context, tokens < d), [B, D], over the bins."""
        ...


TOKEN_MEMBERS = ("vocab_ids", "bin_index", "encode_actions", "action_logits", "token_logprobs")
"""What a TokenPolicy adds to a Policy."""


def require_token_policy(policy: Any, where: str) -> None:
    """Refuses, at the KL's entry points, a policy without a distribution over discrete action tokens."""
    if isinstance(policy, TokenPolicy):
        return
    missing = [name for name in TOKEN_MEMBERS if not hasattr(policy, name)]
    if not missing:
        raise ConfigError(
            f"{where}: {type(policy).__name__} does not implement the policy interface (vla_razor/policies/base.py)"
        )
    raise ConfigError(
        f"{where}: the policy {type(policy).__name__} has continuous actions (no {', '.join(missing)}), and the "
        "KL is exact over discrete action bins only. A continuous-action policy needs "
        "action_logprob(batch, actions), a density log pi(a | x), and a Monte Carlo forward KL over the base's "
        "sampled actions, which do not exist yet (vla_razor/policies/base.py); choose a token policy for policy.type"
    )
