"""Domain-free core: token log-probs, fine-tuning objectives, divergences and forgetting predictors.

Everything works on tensors (logits [B, T, V], tokens [B, T], mask [B, T]) and never imports the
robot, LLM or toy domains.
"""

from vla_razor.core.divergences import (
    DIVERGENCES,
    forward_kl,
    l2_distance,
    reverse_kl,
    total_variation,
)
from vla_razor.core.logprobs import (
    restrict_logits,
    sequence_logprobs,
    token_logprobs,
    tokens_to_restricted,
)
from vla_razor.core.objectives import (
    grpo_loss,
    kl_penalty,
    normalized_advantages,
    one_zero_advantages,
    one_zero_reinforce_loss,
    reinforce_loss,
    sft_loss,
    simpo_loss,
)
from vla_razor.core.predictors import (
    PREDICTORS_DOC,
    activation_change,
    activation_change_per_model,
    cka,
    cknna,
    fisher_diagonal,
    fisher_weighted_l2,
    fisher_weighted_l2_per_model,
    module_weight_change_l1,
    spectral_norm_change,
    spectral_norm_change_per_model,
    update_rank,
    update_sparsity,
    weight_change_l1,
    weight_change_l1_per_model,
)

__all__ = [
    "DIVERGENCES",
    "PREDICTORS_DOC",
    "activation_change",
    "activation_change_per_model",
    "fisher_weighted_l2_per_model",
    "spectral_norm_change_per_model",
    "weight_change_l1_per_model",
    "cka",
    "cknna",
    "fisher_diagonal",
    "fisher_weighted_l2",
    "forward_kl",
    "grpo_loss",
    "kl_penalty",
    "module_weight_change_l1",
    "l2_distance",
    "normalized_advantages",
    "one_zero_advantages",
    "one_zero_reinforce_loss",
    "reinforce_loss",
    "restrict_logits",
    "reverse_kl",
    "sequence_logprobs",
    "sft_loss",
    "simpo_loss",
    "spectral_norm_change",
    "token_logprobs",
    "tokens_to_restricted",
    "total_variation",
    "update_rank",
    "update_sparsity",
    "weight_change_l1",
]
