"""Policy types by name: the config's `policy.type` picks the class that loads, saves and builds the policy.

    policy_class("openvla")                       # vla_razor.policies.openvla.OpenVLAPolicy
    load_policy("openvla", "runs/robot/base/policy", device="cpu", dataset="vla_razor_embedded")
    register_policy("my_vla", lambda: MyVLAPolicy)   # a new VLA: its folder under vla_razor/policies/, then this

An entry is a function returning the class, so that a type's heavy imports (timm, transformers) happen only when it
is used. The class implements vla_razor.policies.base.Policy (the trainers and the KL need a TokenPolicy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vla_razor.config import ConfigError, option
from vla_razor.policies.base import Policy

DEFAULT_POLICY = "openvla"


def _openvla() -> type:
    from vla_razor.policies.openvla.policy import OpenVLAPolicy  # here: see the docstring

    return OpenVLAPolicy


POLICY_TYPES: dict[str, Callable[[], type]] = {"openvla": _openvla}
"""policy.type -> a function returning the policy's class."""


@dataclass
class PolicyConfig:
    """Which policy implementation the stages load, train and save (its weights come from `base` and the runs)."""

    type: str = option(DEFAULT_POLICY, "policy implementation, a name in vla_razor.policies.registry (openvla)")
    dtype: Literal["saved", "float32", "bfloat16"] = option(
        "saved",
        "the dtype the stages load the base and every run's policy in (saved: each folder's own); bfloat16 samples "
        "and trains faster on CPUs with AMX or avx512_bf16 (docs/results/perf/rollout.json): train it with "
        "optim.master_weights float32",
    )

    @property
    def load_dtype(self) -> str | None:
        """The dtype to convert to on loading, None to keep the saved one."""
        return None if self.dtype == "saved" else self.dtype


def register_policy(name: str, policy_class: Callable[[], type]) -> None:
    """Makes `name` a `policy.type`; `policy_class()` returns a class implementing the Policy interface."""
    if name in POLICY_TYPES:
        raise ValueError(f"policy type {name!r} is registered already")
    POLICY_TYPES[name] = policy_class


def policy_class(name: str) -> type:
    """The class of policy type `name`; an unknown name is refused naming the field and the known types."""
    if name not in POLICY_TYPES:
        raise ConfigError(f"policy.type: unknown policy type {name!r}; known types: {', '.join(sorted(POLICY_TYPES))}")
    return POLICY_TYPES[name]()


def load_policy(
    name: str, directory: Path | str, device: str = "cpu", dataset: str | None = None, dtype: str | None = None
) -> Policy:
    """The saved policy in `directory`, loaded by the class of type `name` (converted to `dtype` if given)."""
    return policy_class(name).from_pretrained(directory, device=device, dataset=dataset, dtype=dtype)


def new_policy(name: str, config_path: Path | str, device: str = "cpu", seed: int | None = 0) -> Policy:
    """A fresh policy of type `name` from its config file (pretraining from scratch)."""
    return policy_class(name).from_config_file(config_path, device=device, seed=seed)
