"""Training on a synthetic task whose labels are simple functions of the answer text."""

import json
import random

import pytest
import torch

import moalign.rm as rm
from moalign.rm.config import RewardModelConfig
from moalign.rm.data import load_rated
from moalign.rm.evaluation import evaluate_rated
from moalign.rm.labels import resolve_bins
from moalign.rm.training import split_by_prompt, train_reward_model
from moalign.training.args import LoraSpec

FILLER = "the a of to and in it is was for on with as at by this that from or an be".split()
TONE = {1: "awful", 2: "fine", 3: "superb"}  # tone: 3 classes, set by a keyword
QUESTIONS = ["How do I cook rice?", "What is a prime?", "Tell me about owls.", "Why is the sea salty?"]


def synthetic_rows(n: int, seed: int) -> list[dict]:
    """tone (3 classes) = which keyword the answer holds; polite (2 classes) = whether it says 'please'.

    A quarter of the rows have no polite rating, to exercise the masked loss.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tone, polite = rng.randint(1, 3), rng.randint(1, 2)
        words = rng.choices(FILLER, k=rng.randint(4, 9)) + [TONE[tone]] + (["please"] if polite == 2 else [])
        rng.shuffle(words)
        rows.append(
            {
                "prompt": f"q{i % 40}: {rng.choice(QUESTIONS)}",
                "response": " ".join(words),
                "ratings": {"tone": tone, "polite": None if i % 4 == 0 else polite},
            }
        )
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_split_by_prompt_keeps_prompts_on_one_side(tmp_path):
    examples = load_rated(
        write_jsonl(tmp_path / "d.jsonl", synthetic_rows(200, 0)), resolve_bins({"tone": 3, "polite": 2})
    )
    train, val = split_by_prompt(examples, 0.2, seed=0)
    assert len(train) + len(val) == 200 and 30 <= len(val) <= 60
    assert not {e.prompt for e in train} & {e.prompt for e in val}


def test_tiny_model_learns_each_head_well_above_chance(tmp_path, tiny_bert_dir):
    train_path = write_jsonl(tmp_path / "train.jsonl", synthetic_rows(480, seed=1))
    test_path = write_jsonl(tmp_path / "test.jsonl", synthetic_rows(150, seed=2))
    config = RewardModelConfig(
        dataset=train_path,
        backbone=str(tiny_bert_dir),
        dimensions={"tone": 3, "polite": 2},
        max_length=32,
        learning_rate=2e-3,
        per_device_train_batch_size=16,
        max_steps=240,
        eval_steps=60,
        logging_steps=60,
        validation_fraction=0.15,
        metric_for_best_model="intensity_accuracy",
    )
    logged = []
    result = train_reward_model(
        config, tmp_path / "model", seed=0, report_dir=tmp_path, log=lambda m, s: logged.append((s, m))
    )
    assert result.steps == 240 and result.best_step in (60, 120, 180, 240)
    assert [s for s, m in logged if "eval/loss" in m] == [60, 120, 180, 240]
    assert (tmp_path / "rm_eval.json").exists() and (tmp_path / "rm_eval.png").exists()

    model = rm.load(tmp_path / "model")
    held_out = load_rated(test_path, resolve_bins(model.dimensions))
    heads = evaluate_rated(model, held_out)["heads"]
    # chance is 1/3 (tone) and 1/2 (polite); ask for a clear margin over it
    assert heads["tone"]["intensity_accuracy"] >= 1 / 3 + 0.3
    assert heads["polite"]["intensity_accuracy"] >= 1 / 2 + 0.25
    # the saved model is the best validation checkpoint
    val = evaluate_rated(model, split_by_prompt(load_rated(train_path, resolve_bins(model.dimensions)), 0.15, 0)[1])
    assert val["mean"]["intensity_accuracy"] == pytest.approx(result.best["intensity_accuracy"], abs=1e-6)


def test_lora_and_joint_softmax_options_train_and_save_a_plain_model(tmp_path, tiny_bert_dir):
    config = RewardModelConfig(
        dataset=write_jsonl(tmp_path / "d.jsonl", synthetic_rows(40, seed=3)),
        backbone=str(tiny_bert_dir),
        dimensions={"tone": 3, "polite": 2},
        loss="joint_softmax",
        max_length=32,
        max_steps=3,
        per_device_train_batch_size=8,
        validation_fraction=0,
        peft=LoraSpec(r=4, target_modules=["query", "value"]),
    )
    before = {
        n: p.clone()
        for n, p in rm.MultiHeadRewardModel.from_backbone(str(tiny_bert_dir), {"t": 2}).backbone.named_parameters()
    }
    result = train_reward_model(config, tmp_path / "model", seed=0)
    assert result.best_step == 3 and result.validation_samples == 0
    model = rm.load(tmp_path / "model")
    names = dict(model.backbone.named_parameters())
    assert not any("lora" in n for n in names) and set(names) == set(before)
    assert not torch.equal(
        names["encoder.layer.0.attention.self.query.weight"], before["encoder.layer.0.attention.self.query.weight"]
    )
    assert torch.equal(
        names["encoder.layer.0.attention.self.key.weight"], before["encoder.layer.0.attention.self.key.weight"]
    )


def test_training_killed_after_a_checkpoint_resumes_to_the_same_model(tmp_path, tiny_bert_dir):
    """Crash at step 7 (after the checkpoint of step 6, with the best weights of an earlier step and an
    epoch boundary behind it), resume: history, best step and saved weights equal an uninterrupted run's."""
    from safetensors.torch import load_file

    config = RewardModelConfig(
        dataset=write_jsonl(tmp_path / "d.jsonl", synthetic_rows(40, seed=4)),
        backbone=str(tiny_bert_dir),
        dimensions={"tone": 3, "polite": 2},
        max_length=24,
        learning_rate=2e-3,
        per_device_train_batch_size=8,
        max_steps=8,
        eval_steps=2,
        logging_steps=1,
        save_steps=3,
        save_total_limit=1,
        validation_fraction=0.2,
    )

    def train(out, log):
        return train_reward_model(config, out / "model", seed=0, checkpoint_dir=out / "checkpoints", log=log)

    straight_log: list = []
    straight = train(tmp_path / "straight", lambda m, s: straight_log.append((s, m)))

    def dying(metrics, step):
        if step == 7:
            raise KeyboardInterrupt
        killed_log.append((step, metrics))

    killed_log: list = []
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed", dying)
    checkpoints = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert "checkpoint-6" in checkpoints and len(checkpoints) <= 2  # the newest and the best step's
    resumed = train(tmp_path / "killed", lambda m, s: killed_log.append((s, m)))

    assert [s for s, m in killed_log if "train/loss" in m] == list(range(1, 9))  # steps 1-6 were not redone
    assert resumed.steps == 8 and resumed.best_step == straight.best_step
    assert resumed.history == straight.history  # validations before the checkpoint come from it
    assert [(s, m) for s, m in killed_log if s > 6] == [(s, m) for s, m in straight_log if s > 6]
    files = sorted(p.name for p in (tmp_path / "straight" / "model").rglob("*.safetensors"))
    assert files
    for name in files:
        got, want = load_file(tmp_path / "killed" / "model" / name), load_file(tmp_path / "straight" / "model" / name)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got), name
