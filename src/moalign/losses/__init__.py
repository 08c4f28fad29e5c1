"""Pure tensor functions: losses and advantages of the papers, each with shapes and equations in its docstring."""

from moalign.losses.advantages import (
    ADVANTAGES,
    centred_rewards,
    gae_advantages,
    group_advantages,
    leave_one_out_advantages,
)
from moalign.losses.length_penalty import length_penalty, length_penalty_surrogate
from moalign.losses.multihead import joint_softmax_cross_entropy, multihead_cross_entropy
from moalign.losses.policy import reward_weighted_nll
from moalign.losses.ppo import (
    clipped_surrogate_loss,
    clipped_value_loss,
    kl_estimate,
    kl_penalised_rewards,
    masked_mean,
    masked_whiten,
    token_entropy,
)
from moalign.losses.preference import best_worst_pairs, dpo_loss

__all__ = [
    "ADVANTAGES",
    "best_worst_pairs",
    "centred_rewards",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "dpo_loss",
    "gae_advantages",
    "group_advantages",
    "joint_softmax_cross_entropy",
    "kl_estimate",
    "kl_penalised_rewards",
    "leave_one_out_advantages",
    "length_penalty",
    "length_penalty_surrogate",
    "masked_mean",
    "masked_whiten",
    "multihead_cross_entropy",
    "reward_weighted_nll",
    "token_entropy",
]
