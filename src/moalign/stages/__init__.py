"""Recipe stages. Importing this package registers every built-in stage in :data:`STAGES`."""

from moalign.stages.base import STAGES, StageContext, StageDef, StageResult, register_stage

# Each module registers its stage on import.
from moalign.stages import best_of_n, chat_template, dpo, evaluate, grpo, online_dpo, ppo, reward_model, rloo, rwr, sft  # noqa: E402, F401  isort: skip

__all__ = ["STAGES", "StageContext", "StageDef", "StageResult", "register_stage"]
