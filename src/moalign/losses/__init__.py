"""Pure tensor functions: losses and advantages of the papers, each with shapes and equations in its docstring."""

from moalign.losses.advantages import leave_one_out_advantages
from moalign.losses.length_penalty import length_penalty, length_penalty_surrogate
from moalign.losses.multihead import joint_softmax_cross_entropy, multihead_cross_entropy
from moalign.losses.policy import centred_rewards, reward_weighted_nll
from moalign.losses.preference import dpo_loss

__all__ = [
    "centred_rewards",
    "dpo_loss",
    "joint_softmax_cross_entropy",
    "leave_one_out_advantages",
    "length_penalty",
    "length_penalty_surrogate",
    "multihead_cross_entropy",
    "reward_weighted_nll",
]
