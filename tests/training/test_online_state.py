import json

import torch

from moalign.rewards.moslim import MoslimMapper
from moalign.training.online import loop_state, prompt_batches, restore_loop_state


class MoslimReward:
    """Stands in for MultiObjectiveReward: only its normaliser statistics matter here."""

    def __init__(self) -> None:
        self.moslim = MoslimMapper(["brevity"], momentum=0.1)

    def state_dict(self):
        return {"moslim": self.moslim.state_dict()}

    def load_state_dict(self, state):
        self.moslim.load_state_dict(state["moslim"])


def test_loop_state_survives_json_and_continues_the_shuffle_and_the_statistics():
    reward, shuffle = MoslimReward(), torch.Generator().manual_seed(5)
    p, levels = torch.tensor([[0.2], [0.9]], dtype=torch.float64), torch.tensor([[1], [2]])
    reward.moslim(p, levels)
    torch.randperm(8, generator=shuffle)
    saved = json.loads(json.dumps(loop_state(3, reward, shuffle, metrics_bytes=120)))
    assert saved["step"] == 3 and saved["metrics_bytes"] == 120

    expected_order = torch.randperm(8, generator=shuffle).tolist()
    expected_reward = reward.moslim(p, levels)

    resumed_reward, resumed_shuffle = MoslimReward(), torch.Generator().manual_seed(0)
    assert restore_loop_state(saved, resumed_reward, resumed_shuffle) == 3
    assert torch.randperm(8, generator=resumed_shuffle).tolist() == expected_order
    torch.testing.assert_close(resumed_reward.moslim(p, levels), expected_reward)


def test_prompt_order_is_a_function_of_the_seed_and_the_batches_drawn():
    """The data position a checkpoint needs is the step: replaying that many batches restores the order."""
    records = [{"prompt": str(i)} for i in range(5)]
    straight = prompt_batches(records, 2, seed=7)
    drawn = [next(straight) for _ in range(6)]  # crosses epochs (2 full batches per epoch of 5)
    resumed = prompt_batches(records, 2, seed=7)
    for _ in range(4):
        next(resumed)
    assert [next(resumed), next(resumed)] == drawn[4:]
