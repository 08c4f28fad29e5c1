import json
import math

import pytest
import torch

from moalign.config.yaml_source import YamlSource
from moalign.errors import UserError
from moalign.losses.preference import chosen_nll, dpo_loss
from moalign.models import load_causal_lm, load_tokenizer
from moalign.pipeline import run_recipe
from moalign.recipe import validate_recipe
from moalign.stages.dpo import dpo_kl, preference_records
from moalign.training.logprobs import completion_logps

PAIRS = [{"prompt": "Say hi", "chosen": "Hi!", "rejected": "Go away, I am busy."}] * 2 + [
    {"prompt": "Name a colour", "chosen": "Blue.", "rejected": "No."}
] * 2


def dpo_trainer(model_dir, tmp_path, peft=None, ref=True):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok = load_tokenizer(str(model_dir), padding_side="right")
    args = DPOConfig(
        output_dir=str(tmp_path / "t"),
        per_device_train_batch_size=4,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        report_to="none",
        beta=0.5,
        learning_rate=1e-2,
    )
    ds = preference_records(Dataset.from_list(PAIRS), "test")
    return DPOTrainer(
        model=load_causal_lm(str(model_dir)),
        ref_model=load_causal_lm(str(model_dir)) if ref else None,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft,
    )


def test_trl_dpo_loss_equals_the_formula_from_log_probs(tiny_llama_dir, tmp_path):
    trainer = dpo_trainer(tiny_llama_dir, tmp_path)
    with torch.no_grad():  # move the policy away from the reference so the margin is not zero
        for p in trainer.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        pol_c, pol_r = completion_logps(trainer.model, *args).chunk(2)
        ref_c, ref_r = completion_logps(trainer.ref_model, *args).chunk(2)
    expected, _, _ = dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=0.5)
    assert abs(expected.mean().item() - math.log(2.0)) > 1e-3  # a non-trivial case
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-4, abs=1e-5)


def test_lora_reference_is_the_base_model(tiny_llama_dir, tmp_path):
    from peft import LoraConfig

    trainer = dpo_trainer(
        tiny_llama_dir, tmp_path, peft=LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"), ref=False
    )
    assert trainer.ref_model is None  # no second copy in memory
    trainer.train()  # one step moves the adapters off their zero start
    batch = next(iter(trainer.get_train_dataloader()))
    base = load_causal_lm(str(tiny_llama_dir))
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    with torch.no_grad():
        ref_c, ref_r = trainer.compute_ref_log_probs(trainer.model, batch)
        base_c, base_r = completion_logps(base, *args).chunk(2)
        pol_c, _ = completion_logps(trainer.model, *args).chunk(2)
    assert torch.allclose(ref_c, base_c, atol=1e-4) and torch.allclose(ref_r, base_r, atol=1e-4)
    assert not torch.allclose(pol_c, base_c, atol=1e-4)


def test_preference_records_validate_and_strip_repeated_prompt():
    from datasets import Dataset

    ds = Dataset.from_list(
        [
            {
                "prompt": "q",
                "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
                "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
            }
        ]
    )
    row = preference_records(ds, "x")[0]
    assert row["chosen"] == [{"role": "assistant", "content": "good"}]
    assert row["rejected"] == [{"role": "assistant", "content": "bad"}]
    with pytest.raises(UserError, match=r"pairs.jsonl: preference data needs prompt, chosen and rejected"):
        preference_records(Dataset.from_list([{"prompt": "q", "chosen": "a"}]), "pairs.jsonl")


def test_kl_estimate_from_implicit_rewards():
    assert dpo_kl({"rewards/chosen": 0.2, "rewards/rejected": -0.1}, beta=0.1) == pytest.approx({"kl": 0.5})
    assert dpo_kl({"loss": 1.0}, beta=0.1) == {}


def test_dpo_stage_logs_rewards_margins_accuracy_and_kl(tiny_llama_dir, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS * 2))
    stage = {
        "dataset": str(path),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "warmup_steps": 0,
    }
    data = {
        "name": "dpo",
        "model": str(tiny_llama_dir),
        "output_dir": str(tmp_path / "runs"),
        "stages": [{"dpo": stage}],
    }
    run = run_recipe(validate_recipe(YamlSource(data=data, name="test")))
    logged = [m for m in run.metrics() if "train/loss" in m]
    assert len(logged) == 2
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "kl"):
        assert key in logged[-1]
    model_dir = run.model_spec(json.loads(run.summary_path.read_text())["final_model"])
    assert load_causal_lm(model_dir).config.num_hidden_layers == 2


@pytest.mark.integration
def test_dpo_on_real_smollm2_writes_loadable_checkpoint(smollm2_dir, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    stage = {"dataset": str(path), "max_steps": 1, "per_device_train_batch_size": 2, "max_length": 64}
    data = {
        "name": "real",
        "model": "builtin:smollm2-135m-instruct",
        "output_dir": str(tmp_path / "runs"),
        "stages": [{"dpo": stage}],
    }
    run = run_recipe(validate_recipe(YamlSource(data=data, name="test")))
    model_dir = run.model_spec(json.loads(run.summary_path.read_text())["final_model"])
    assert load_causal_lm(model_dir).config.num_hidden_layers == 30


def test_precomputed_reference_log_probs_give_the_inline_reference_loss(tiny_llama_dir, tmp_path):
    from datasets import Dataset

    from moalign.stages.dpo import DPOStageConfig, dpo_trainer

    pairs = preference_records(Dataset.from_list(PAIRS), "test")
    losses = {}
    for precompute in (False, True):
        config = DPOStageConfig(
            dataset="x", per_device_train_batch_size=4, max_steps=1, bf16=False, precompute_ref_log_probs=precompute
        )
        trainer = dpo_trainer(config, str(tiny_llama_dir), pairs, None, output_dir=tmp_path / f"{precompute}", seed=0)
        assert (trainer.ref_model is None) == precompute  # no second model copy with precomputed log-probs
        torch.manual_seed(1)
        with torch.no_grad():  # the same move of the policy away from its reference on both sides
            for p in trainer.model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        batch = next(iter(trainer.get_train_dataloader()))  # all 4 pairs: the mean is order-free
        trainer.model.eval()
        with torch.no_grad():
            losses[precompute] = trainer.compute_loss(trainer.model, batch).item()
    assert abs(losses[False] - math.log(2.0)) > 1e-3
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)


@pytest.mark.parametrize(
    ("lora", "bf16", "losses"),
    [(False, False, None), (True, False, None), (False, True, None), (True, False, (["sigmoid", "sft"], [1.0, 0.7]))],
)
def test_shared_prompt_loss_and_gradients_equal_trl_forward(tiny_llama_dir, tmp_path, lora, bf16, losses):
    from datasets import Dataset

    from moalign.stages.dpo import DPOStageConfig, dpo_trainer
    from moalign.training.args import LoraSpec

    pairs = preference_records(Dataset.from_list(PAIRS), "test")
    results = {}
    for shared in (True, False):
        config = DPOStageConfig(
            dataset="x",
            per_device_train_batch_size=4,
            max_steps=1,
            bf16=bf16,
            beta=0.5,
            shared_prompt=shared,
            peft=LoraSpec(r=4, target_modules="all-linear") if lora else None,
            **({"loss_type": losses[0], "loss_weights": losses[1]} if losses else {}),
        )
        trainer = dpo_trainer(config, str(tiny_llama_dir), pairs, None, output_dir=tmp_path / f"{shared}", seed=0)
        assert not shared or trainer._packs(trainer.model)  # the packed path, not TRL's fallback
        torch.manual_seed(1)
        with torch.no_grad():  # the same move of the trained weights away from the reference on both sides
            for p in trainer.model.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn_like(p))
        batch = next(iter(trainer.get_train_dataloader()))
        trainer.model.eval()
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items() if k.startswith(("rewards/", "logps/"))}
        results[shared] = (loss.item(), grads, metrics)
    (loss_shared, grads_shared, metrics_shared), (loss_trl, grads_trl, metrics_trl) = results[True], results[False]
    assert abs(loss_trl - math.log(2.0)) > 1e-3  # a non-trivial case
    atol = 5e-2 if bf16 else 1e-5  # bf16 autocast (forced, on any CPU): 8 significant bits
    assert loss_shared == pytest.approx(loss_trl, abs=atol)
    assert grads_shared.keys() == grads_trl.keys()
    for name, grad in grads_trl.items():
        assert torch.allclose(grads_shared[name], grad, atol=atol), name
    assert metrics_shared == pytest.approx(metrics_trl, abs=10 * atol)


def test_rpo_nll_is_the_mean_negative_log_probability_of_the_chosen_tokens():
    # two chosen responses: 3 tokens summing to -6 nats, 1 token of -2 nats: 8 nats over 4 tokens
    assert chosen_nll(torch.tensor([-6.0, -2.0]), torch.tensor([3, 1])).item() == pytest.approx(2.0)


def test_rpo_adds_the_weighted_chosen_nll_to_the_dpo_loss(tiny_llama_dir, tmp_path):
    from datasets import Dataset

    from moalign.stages.dpo import DPOStageConfig, dpo_trainer

    pairs = preference_records(Dataset.from_list(PAIRS), "test")
    config = DPOStageConfig(
        dataset="x", per_device_train_batch_size=4, max_steps=1, bf16=False, beta=0.5, precompute_ref_log_probs=False,
        loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5],
    )
    trainer = dpo_trainer(config, str(tiny_llama_dir), pairs, None, output_dir=tmp_path / "t", seed=0)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
        args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        chosen, _ = completion_logps(trainer.model, *args).chunk(2)
        tokens = batch["completion_mask"].chunk(2)[0].sum()
    # the policy is its reference: the DPO term is log 2; the NLL is the chosen tokens' mean
    assert loss == pytest.approx(math.log(2.0) + 0.5 * (-chosen.sum() / tokens).item(), rel=1e-4)


def test_loss_weights_need_one_weight_per_loss_type_and_known_losses():
    from pydantic import ValidationError

    from moalign.stages.dpo import DPOStageConfig

    with pytest.raises(ValidationError, match="one weight per loss_type"):
        DPOStageConfig(dataset="x", loss_type=["sigmoid", "sft"], loss_weights=[1.0])
    with pytest.raises(ValidationError, match=r"loss_type: unknown \['nll'\]"):
        DPOStageConfig(dataset="x", loss_type=["sigmoid", "nll"])
    assert DPOStageConfig(dataset="x", loss_type="ipo").loss_types == ["ipo"]
