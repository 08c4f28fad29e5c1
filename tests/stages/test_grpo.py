import json
import math

import pytest
import torch
from toy import SEEN, p_first_token, run_toy, toy_prompts, yes_no_model

from moalign.errors import UserError
from moalign.losses.advantages import group_advantages, leave_one_out_advantages
from moalign.rewards import MultiObjectiveReward
from moalign.stages.grpo import GRPOStageConfig
from moalign.training.trl_fence import leave_one_out_rewards_advantages
from moalign.training.trl_online import TRLReward, online_metrics

NAN = float("nan")


def test_leave_one_out_replaces_trl_group_advantage_exactly():
    # one function, two groups of 3; the second group has an unscored completion
    per_func = torch.tensor([[1.0], [2.0], [6.0], [4.0], [NAN], [0.0]])
    got = leave_one_out_rewards_advantages(per_func, torch.ones(1), k=3)
    # group 1: 1 - (2+6)/2 = -3, 2 - (1+6)/2 = -1.5, 6 - (1+2)/2 = 4.5
    # group 2: 4 - 0 = 4, unscored -> 0, 0 - 4 = -4
    assert got.tolist() == pytest.approx([-3.0, -1.5, 4.5, 4.0, 0.0, -4.0])
    # TRL's group-mean advantage (scale_rewards none) differs by k/(k-1)
    r = per_func[:3, 0].view(1, 3)
    assert torch.allclose(leave_one_out_advantages(r), 1.5 * group_advantages(r))


def test_grpo_leave_one_out_refuses_std_scaling():
    with pytest.raises(ValueError, match="scale_rewards: none"):
        GRPOStageConfig(dataset="x", scale_rewards="group")
    with pytest.raises(ValueError, match="multiple of num_generations"):
        GRPOStageConfig(dataset="x", per_device_train_batch_size=6, num_generations=4)
    with pytest.raises(ValueError, match="kl_bound needs beta"):
        GRPOStageConfig(dataset="x", beta=0.0, kl_bound=1.0)


def test_bridge_keeps_tags_for_the_aggregator_and_returns_none_where_nothing_applies():
    logged = []
    reward = MultiObjectiveReward(
        [
            {
                "name": "helpful",
                "scorer": {"python": {"function": "toy:recording_scorer"}},
                "tag_dimension": "helpfulness",
            }
        ],
        tag_dimensions={"helpfulness": (1, 5)},
    )
    bridge = TRLReward(reward, lambda m, step: logged.append((step, m)))
    SEEN.clear()
    prompts = [[{"role": "user", "content": "<helpfulness 4> Explain"}], [{"role": "user", "content": "Explain"}]]
    completions = [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]]

    class State:
        global_step = 6

    out = bridge(
        prompts,
        completions,
        tag_helpfulness=[4, None],
        completion_ids=[[1], [2]],
        trainer_state=State(),
        log_extra=print,
        log_metric=print,
    )
    assert out == [1.0, None]  # the untagged prompt has no applicable objective
    assert SEEN[0] == {"prompts": ["Explain", "Explain"], "tags": [{"helpfulness": 4}, {}]}
    assert logged[0][0] == 7 and logged[0][1]["reward/helpful/mean"] == 1.0


def test_online_metrics_rename_the_safety_rails():
    logs = {"kl": 0.5, "completions/mean_length": 3.0, "completions/clipped_ratio": 0.25, "loss": 1.0}
    assert online_metrics(logs) == {"kl": 0.5, "gen/mean_length": 3.0, "gen/clipped_ratio": 0.25}


GRPO_TOY = {
    "per_device_train_batch_size": 8,
    "num_generations": 8,
    "max_completion_length": 3,
    "learning_rate": 3e-3,
    "warmup_steps": 0,
    "bf16": False,
}


def test_grpo_leave_one_out_raises_the_rewarded_answer(tiny_llama_dir, tmp_path, tmp_path_factory):
    start = yes_no_model(tiny_llama_dir, tmp_path_factory.getbasetemp() / "toy-sft")
    run = run_toy(start, tmp_path, {"grpo": {"dataset": str(toy_prompts(tmp_path)), "max_steps": 8, **GRPO_TOY}})
    before, after = p_first_token(start, "yes"), p_first_token(run.root / "01-grpo" / "model", "yes")
    assert 0.1 < before < 0.9
    assert after > before + 0.1
    metrics = run.metrics()
    steps = [m for m in metrics if "train/loss" in m]
    assert len(steps) == 8
    assert all("kl" in m and "gen/mean_length" in m and "gen/clipped_ratio" in m for m in steps)
    assert any("reward/yes/mean" in m for m in metrics)


def test_grpo_group_advantage_and_kl_bound_stop(tiny_llama_dir, tmp_path, tmp_path_factory):
    start = yes_no_model(tiny_llama_dir, tmp_path_factory.getbasetemp() / "toy-sft")
    stage = {
        "grpo": {
            "dataset": str(toy_prompts(tmp_path)),
            "max_steps": 20,
            "advantage": "group",
            "scale_rewards": "group",
            "kl_bound": 1e-9,
            **GRPO_TOY,
        }
    }
    run = run_toy(start, tmp_path, stage)
    stops = [m for m in run.metrics() if "safety/kl_stop" in m]
    assert len(stops) == 1 and stops[0]["step"] < 20


def test_grpo_sends_tagged_prompts_to_the_policy_and_stripped_ones_to_scorers(tiny_llama_dir, tmp_path):
    prompts = tmp_path / "tagged.jsonl"
    prompts.write_text(json.dumps({"prompt": "<helpfulness 2> Say hi", "tag_helpfulness": 2}) + "\n")
    SEEN.clear()
    run_toy(
        tiny_llama_dir,
        tmp_path,
        {
            "grpo": {
                "dataset": str(prompts),
                "max_steps": 1,
                "beta": 0.0,
                **GRPO_TOY,
                "num_generations": 2,
                "per_device_train_batch_size": 2,
            }
        },
        objectives=[
            {
                "name": "helpful",
                "scorer": {"python": {"function": "toy:recording_scorer"}},
                "tag_dimension": "helpfulness",
            },
        ],
    )
    assert SEEN and SEEN[0]["prompts"] == ["Say hi", "Say hi"]
    assert SEEN[0]["tags"] == [{"helpfulness": 2}, {"helpfulness": 2}]


def test_grpo_needs_objectives(tiny_llama_dir, tmp_path):
    with pytest.raises(UserError, match="needs the recipe's 'objectives'"):
        run_toy(tiny_llama_dir, tmp_path, {"grpo": {"dataset": str(toy_prompts(tmp_path)), **GRPO_TOY}}, objectives=[])


@pytest.mark.integration
def test_grpo_two_objectives_on_smollm2(tmp_path):
    stage = {
        "grpo": {
            "dataset": "builtin:ifeval-lite",
            "num_samples": 2,
            "max_steps": 1,
            "num_generations": 2,
            "per_device_train_batch_size": 4,
            "max_completion_length": 16,
        }
    }
    run = run_toy("builtin:smollm2-135m-instruct", tmp_path, stage, objectives=TWO_OBJECTIVES)
    metrics = run.metrics()
    assert any("reward/constraints/mean" in m and "reward/short/mean" in m for m in metrics)
    assert any(math.isfinite(m.get("kl", math.nan)) for m in metrics)


TWO_OBJECTIVES = [
    {"name": "constraints", "scorer": "verifier"},
    {"name": "short", "scorer": {"length": {"unit": "words", "target": 20, "penalty": "over"}}, "weight": 0.05},
]


def online_trainer(stage, model_dir, out, temperature, bf16=False):
    """The GRPO or RLOO stage's trainer class on a tiny model (as the stages build them) and TRL's own class."""
    from datasets import Dataset
    from trl import GRPOTrainer, RLOOConfig, RLOOTrainer

    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.stages.grpo import grpo_args, grpo_trainer_class
    from moalign.stages.rloo import RLOOStageConfig, rloo_trainer_class
    from moalign.training.trl_online import online_trainer_kwargs

    keys = {"dataset": "x", "per_device_train_batch_size": 4, "num_generations": 2, "max_steps": 1, "bf16": bf16}
    if stage == "grpo":
        config = GRPOStageConfig(**keys, temperature=temperature)
        cls, args, trl_cls = grpo_trainer_class(config), grpo_args(config, out, 0), GRPOTrainer
    else:
        config = RLOOStageConfig(**keys, temperature=temperature)
        args = RLOOConfig(**online_trainer_kwargs(config, out, 0))
        cls, trl_cls = rloo_trainer_class(config), RLOOTrainer
    trainer = cls(
        model=load_causal_lm(str(model_dir)),
        reward_funcs=lambda completions, **kw: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_list([{"prompt": "hi"}] * 4),
        processing_class=load_tokenizer(str(model_dir), padding_side="left"),
    )
    return trainer, trl_cls


@pytest.mark.parametrize(
    ("stage", "temperature", "bf16"),
    [("grpo", 1.0, False), ("grpo", 0.7, False), ("rloo", 0.7, False), ("grpo", 0.7, True), ("rloo", 1.0, True)],
)
def test_shared_prompt_log_probs_and_entropies_equal_trl_forward(tiny_llama_dir, tmp_path, stage, temperature, bf16):
    from moalign.training.trl_fence import SharedPromptMixin

    trainer, trl_cls = online_trainer(stage, tiny_llama_dir, tmp_path / "out", temperature, bf16)
    atol = 5e-2 if bf16 else 1e-5  # bf16 autocast (forced, on any CPU): 8 significant bits
    assert isinstance(trainer, SharedPromptMixin)
    extra = (2,) if stage == "grpo" else ()  # GRPO's generation also takes num_generations
    drawn = trainer._generate_single_turn([[5, 6, 7], [5, 6, 7]], None, {}, *extra)  # one prefill for both
    ids = drawn[0] if stage == "grpo" else drawn  # GRPO returns (ids, logprobs), RLOO the ids, as TRL does
    assert len(ids) == 2 and all(isinstance(t, int) for row in ids for t in row)
    # TRL's layout: left-padded prompts | right-padded completions; rows 0, 2 and 1, 3 share a prompt
    input_ids = torch.tensor([[0, 5, 6, 9, 10, 11], [7, 8, 9, 12, 0, 0], [0, 5, 6, 13, 0, 0], [7, 8, 9, 14, 15, 16]])
    attention_mask = (input_ids != 0).long()
    args = (input_ids, attention_mask, 3)
    ours, ours_entropy, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model,
        *args,
        batch_size=3,
        compute_entropy=True,  # chunks of 3 rows split the second group
    )
    theirs, theirs_entropy, _ = trl_cls._get_per_token_logps_and_entropies(
        trainer, trainer.model, *args, compute_entropy=True
    )
    mask = attention_mask[:, 3:].bool()
    assert torch.allclose(ours[mask], theirs[mask], atol=atol)
    assert torch.allclose(ours_entropy[mask], theirs_entropy[mask], atol=atol)
    assert (ours[~mask] == 0).all()
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    weights = torch.arange(1.0, 13.0).view(4, 3) * mask
    grads_ours = torch.autograd.grad((ours * weights).sum(), params)
    grads_theirs = torch.autograd.grad((theirs * weights).sum(), params)
    for g_ours, g_theirs in zip(grads_ours, grads_theirs, strict=True):
        assert (g_ours - g_theirs).abs().max() <= (5e-2 if bf16 else 1e-4) * (1 + g_theirs.abs().max())


def test_group_temperatures_spread_the_list_over_a_group():
    from moalign.training.trl_fence import group_temperatures

    assert group_temperatures([0.7, 1.0, 1.3], 4) == [0.7, 0.7, 1.0, 1.3]
    assert group_temperatures([0.7, 1.0, 1.3], 3) == [0.7, 1.0, 1.3]
    assert group_temperatures([0.5, 2.0], 8) == [0.5] * 4 + [2.0] * 4
    assert group_temperatures([1.0], 4) == [1.0] * 4
    with pytest.raises(ValueError, match="3 temperatures for groups of num_generations=2"):
        GRPOStageConfig(dataset="x.jsonl", temperature=[0.7, 1.0, 1.3], num_generations=2)
    with pytest.raises(ValueError, match="needs shared_prompt: true"):
        GRPOStageConfig(dataset="x.jsonl", temperature=[0.7, 1.0], shared_prompt=False)


def test_grpo_samples_each_group_at_its_listed_temperatures(tiny_llama_dir, tmp_path, monkeypatch):
    """Seed 004 sec. 3.4: each prompt's completions sampled at the listed temperatures; TRL scores them
    with the policy's own log-probabilities (temperature 1)."""
    import moalign.generation

    calls = []
    original = moalign.generation.generate_shared_prefix

    def recording(model, input_ids, attention_mask, **kwargs):
        calls.append((kwargs["generation_config"].temperature, input_ids.shape[0]))
        return original(model, input_ids, attention_mask, **kwargs)

    monkeypatch.setattr(moalign.generation, "generate_shared_prefix", recording)
    stage = {"grpo": {"dataset": str(toy_prompts(tmp_path, n=2)), "max_steps": 1, **GRPO_TOY}}
    stage["grpo"]["temperature"] = [0.5, 2.0]
    run = run_toy(tiny_llama_dir, tmp_path, stage)
    assert sorted(calls) == [(0.5, 4), (2.0, 4)]  # 8 completions of one prompt: 4 at each temperature
    args = json.loads((run.root / "01-grpo" / "stage.json").read_text())
    assert args["summary"]["steps"] == 1


def test_grpo_evaluates_held_out_prompts_and_restores_the_best_checkpoint(tiny_llama_dir, tmp_path, tmp_path_factory):
    """Seed 004 sec. 4.4: evaluate every N steps on held-out prompts, keep the best."""
    start = yes_no_model(tiny_llama_dir, tmp_path_factory.getbasetemp() / "toy-sft")
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text(json.dumps({"prompt": "Answer"}) + "\n")
    stage = {
        "grpo": {
            "dataset": str(toy_prompts(tmp_path, n=3)),
            "eval_dataset": str(held_out),
            "eval_steps": 1,
            "max_steps": 3,
            **GRPO_TOY,
        }
    }
    run = run_toy(start, tmp_path, stage)
    metrics = run.metrics()
    rewards = {m["step"]: m["eval/reward"] for m in metrics if "eval/reward" in m}
    assert sorted(rewards) == [1, 2, 3]
    # the reward layer logs the held-out batches apart from the training ones
    assert [m["step"] for m in metrics if "eval/reward/yes/mean" in m] == [1, 2, 3]
    assert len([m for m in metrics if "reward/yes/mean" in m]) == 3
    checkpoints = run.root / "01-grpo" / "checkpoints"
    state = json.loads(max(checkpoints.glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["best_metric"] == pytest.approx(max(rewards.values()))
    best = int(state["best_model_checkpoint"].rsplit("-", 1)[1])
    assert rewards[best] == pytest.approx(max(rewards.values()))
