"""OpenVLA (Prismatic) policy: architecture, openvla-7b checkpoint layout, action tokenizer, exact action KL.

LeRobot-style folder: configuration_openvla (the dataclass), modeling_openvla (the nn.Module),
processor_openvla (images and prompt), action_tokenizer, loading (from_pretrained / save_pretrained),
generation (batched KV-cached action decoding), kl (the KL and TV of whole actions, by the chain rule over sampled prefixes), policy (OpenVLAPolicy, its implementation of vla_razor.policies.base.TokenPolicy).
Needs the ``robot`` extra (timm, transformers, peft) for the model; the action tokenizer needs only numpy.
"""

from vla_razor.policies.openvla.action_tokenizer import (
    EMBEDDED,
    FRACTAL,
    ActionStats,
    ActionTokenizer,
    action_stats,
)
from vla_razor.policies.openvla.configuration_openvla import LoraOptions, OpenVLAConfig
from vla_razor.policies.openvla.kl import action_tv_terms, chain_rule_kl_terms, mean_and_se

__all__ = [
    "EMBEDDED",
    "FRACTAL",
    "ActionStats",
    "ActionTokenizer",
    "LoraOptions",
    "OpenVLAConfig",
    "OpenVLAPolicy",
    "action_stats",
    "action_tv_terms",
    "chain_rule_kl_terms",
    "mean_and_se",
]


def __getattr__(name: str):
    if name == "OpenVLAPolicy":  # imports timm/transformers only when asked
        from vla_razor.policies.openvla.policy import OpenVLAPolicy

        return OpenVLAPolicy
    raise AttributeError(name)
