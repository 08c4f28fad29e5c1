"""PPO (Schulman et al. 2017) on the project's on-policy loop: seed 002's policy optimisation (eq. 12).

TRL 1.x no longer ships PPO; this is the compact form: sample, score, fold ``-beta * log pi/pi_ref`` into the
per-token reward (:func:`moalign.losses.ppo.kl_penalised_rewards`, eq. 12), GAE with a linear value head, then
the clipped surrogate plus the value loss minus an entropy bonus. Defaults: clip range 0.2 and entropy
coefficient 0.01 (seed 002 appendix D), the rest TRL's former PPOConfig defaults. Departure from seed 002:
the value head shares the policy's trunk instead of a critic initialised from the reward model.

Reading notes: docs/papers.md#stagesppopy.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from moalign.losses.advantages import gae_advantages
from moalign.losses.ppo import (
    clipped_surrogate_loss,
    clipped_value_loss,
    kl_penalised_rewards,
    masked_mean,
    masked_whiten,
    token_entropy,
)
from moalign.stages.base import StageContext, StageResult, register_stage, training_reward
from moalign.training.logprobs import token_logps
from moalign.training.online import OnlineStageConfig, ScoredRollout, check_online_data, online_budget, train_online


class PPOStageConfig(OnlineStageConfig):
    """TRL's former PPOConfig names; seed 002 appendix D for the clip range and the entropy coefficient."""

    num_generations: int = Field(1, gt=0)
    """Samples per prompt (PPO needs no group; more than 1 simply samples more per prompt)."""
    beta: float = Field(0.05, ge=0.0)
    """KL coefficient of eq. 12 (TRL's ``kl_coef``)."""
    cliprange: float = Field(0.2, gt=0.0)
    cliprange_value: float = Field(0.2, gt=0.0)
    vf_coef: float = Field(0.1, ge=0.0)
    entropy_coef: float = Field(0.01, ge=0.0)
    gamma: float = Field(1.0, ge=0.0, le=1.0)
    lam: float = Field(0.95, ge=0.0, le=1.0)
    num_ppo_epochs: int = Field(4, gt=0)
    num_mini_batches: int = Field(1, gt=0)
    whiten_advantages: bool = True


class PolicyWithValueHead(torch.nn.Module):
    """The policy LM and a linear value head on its last hidden state (zero-initialised: V = 0 at start)."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = torch.nn.Linear(policy.config.hidden_size, 1)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, T, V], values [N, T])``."""
        out = self.policy(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        return out.logits, self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)


def ppo_prepare(config: PPOStageConfig):
    """Old values, per-token KL-penalised rewards, GAE advantages and returns of a fresh rollout."""

    def prepare(model: Any, samples: ScoredRollout) -> ScoredRollout:
        assert samples.old_logps is not None and samples.ref_logps is not None and samples.rewards is not None
        _, values = model(input_ids=samples.input_ids, attention_mask=samples.attention_mask)
        mask = samples.token_mask
        values = values[:, :-1].float() * mask
        scores = torch.nan_to_num(samples.rewards.float(), nan=0.0)
        rewards = kl_penalised_rewards(scores, samples.old_logps, samples.ref_logps, mask, config.beta)
        advantages, returns = gae_advantages(rewards, values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = masked_whiten(advantages, mask)
        samples.extra.update(values=values, advantages=advantages, returns=returns)
        return samples

    return prepare


def ppo_step_loss(config: PPOStageConfig):
    def step_loss(model: Any, samples: ScoredRollout, rewards: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        assert samples.input_ids is not None and samples.old_logps is not None
        logits, values = model(input_ids=samples.input_ids, attention_mask=samples.attention_mask)
        logits, values = logits[:, :-1], values[:, :-1].float()
        mask = samples.token_mask
        logps = token_logps(logits, samples.input_ids[:, 1:])
        extra = samples.extra
        policy_loss, clip_frac = clipped_surrogate_loss(
            logps, samples.old_logps, extra["advantages"], mask, config.cliprange
        )
        value_loss = clipped_value_loss(values, extra["values"], extra["returns"], mask, config.cliprange_value)
        entropy = masked_mean(token_entropy(logits), mask)
        loss = policy_loss + config.vf_coef * value_loss - config.entropy_coef * entropy
        return loss, {
            "ppo/policy_loss": policy_loss.item(),
            "ppo/value_loss": value_loss.item(),
            "ppo/entropy": entropy.item(),
            "ppo/clip_fraction": clip_frac.item(),
            "ppo/approx_kl": masked_mean(samples.old_logps - logps.detach(), mask).item(),
        }

    return step_loss


@register_stage(
    "ppo",
    PPOStageConfig,
    consumes=("prompts",),
    scores_samples=True,
    budget=online_budget,
    data_check=check_online_data,
)
def run_ppo(ctx: StageContext, config: PPOStageConfig) -> StageResult:
    """Train with PPO against the starting checkpoint; hand on the final checkpoint (the LM, no value head)."""
    path = train_online(
        ctx,
        config,
        ppo_step_loss(config),
        reference=True,
        prepare=ppo_prepare(config),
        wrap_policy=PolicyWithValueHead,
        epochs=config.num_ppo_epochs,
        minibatches=config.num_mini_batches,
        make_reward=training_reward(ctx),
    )
    return StageResult(model=path, summary={"steps": config.max_steps})
