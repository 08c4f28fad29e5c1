"""A stage's saved model loads as exactly the model the stage trained, whatever the chain of full and LoRA
stages before it, after a move of the run directory and after a kill and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from moalign.config.yaml_source import YamlSource
from moalign.errors import UserError
from moalign.models import load_causal_lm, load_tokenizer
from moalign.models.loading import ADAPTER_CONFIG, adapter_base, model_chain, portable_base
from moalign.pipeline import run_recipe
from moalign.recipe import validate_recipe
from moalign.run_dir import RunDir
from moalign.training import checkpoint

TOLERANCE = 1e-5
"""Float32 logits of a merged chain against the unmerged model it was trained as."""

LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}


def probe_ids(model_dir: Path) -> torch.Tensor:
    tok = load_tokenizer(str(model_dir))
    text = tok.apply_chat_template([{"role": "user", "content": "Say yes or no"}], tokenize=False)
    return tok(text, return_tensors="pt").input_ids


@torch.no_grad()
def logits(model, ids: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = model(input_ids=ids).logits.float()
    model.train(was_training)
    return out


@pytest.fixture
def recorded(monkeypatch, tiny_llama_dir):
    """Logits of each trained stage's model on one prompt, as its trainer holds it before and after training."""
    ids = probe_ids(tiny_llama_dir)
    calls: list[dict[str, torch.Tensor]] = []
    original = checkpoint.train_resuming

    def train_resuming(trainer, restore=None):
        before = logits(trainer.model, ids)
        reference = getattr(trainer, "ref_model", None)
        output = original(trainer, restore)
        calls.append({"before": before, "after": logits(trainer.model, ids)})
        if reference is not None:
            calls[-1]["reference"] = logits(reference, ids)
        return output

    monkeypatch.setattr(checkpoint, "train_resuming", train_resuming)
    return ids, calls


def data_files(tmp_path: Path) -> tuple[Path, Path]:
    sft, dpo = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"
    words = ["yes", "no", "maybe", "sure"]
    sft.write_text("".join(json.dumps({"prompt": f"Say {w}", "response": f"{w}!"}) + "\n" for w in words * 2))
    dpo.write_text(
        "".join(json.dumps({"prompt": f"Say {w}", "chosen": f"{w}!", "rejected": "I cannot."}) + "\n" for w in words)
    )
    return sft, dpo


def stage(kind: str, peft: bool, data: Path, **extra) -> dict:
    config = {"dataset": str(data), "max_steps": 2, "learning_rate": 1e-2, "bf16": False, **extra}
    config["per_device_train_batch_size"] = 4
    if peft:
        config["peft"] = LORA
    return {kind: config}


def run_chain(tmp_path: Path, model: Path, stages: list[dict], *, resume: bool = False) -> RunDir:
    data = {"name": "chain", "model": str(model), "output_dir": str(tmp_path / "runs"), "stages": stages}
    return run_recipe(validate_recipe(YamlSource(data=data, name="test")), resume=resume)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


CHAINS = {
    "full-full": [("sft", False), ("sft", False)],
    "full-lora": [("sft", False), ("sft", True)],
    "lora-full": [("sft", True), ("sft", False)],
    "lora-lora": [("sft", True), ("sft", True)],
    "lora-dpo_lora": [("sft", True), ("dpo", True)],
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_each_stage_loads_as_trained_and_hands_on_what_it_trained(chain, recorded, tiny_llama_dir, tmp_path):
    ids, calls = recorded
    sft, dpo = data_files(tmp_path)
    stages = [stage(kind, peft, sft if kind == "sft" else dpo) for kind, peft in CHAINS[chain]]
    run = run_chain(tmp_path, tiny_llama_dir, stages)
    outputs = [run.root / f"0{i}-{kind}" / "model" for i, (kind, _) in enumerate(CHAINS[chain], start=1)]
    assert len(calls) == 2
    for call, output in zip(calls, outputs, strict=True):
        assert max_diff(call["after"], call["before"]) > 1e-2  # the stage changed the model
        assert max_diff(logits(load_causal_lm(str(output)), ids), call["after"]) < TOLERANCE
    assert max_diff(calls[1]["before"], calls[0]["after"]) < TOLERANCE  # stage 2 started from stage 1's output
    card = (outputs[1] / "README.md").read_text()
    assert "chain / 02-" in card and "[More Information Needed]" not in card
    assert "01-sft/model" in card or not CHAINS[chain][0][1] and str(tiny_llama_dir) in card

    # the run directory moves elsewhere and still loads, its records relative to it
    moved = tmp_path / "elsewhere" / "chain"
    shutil.move(str(run.root), moved)
    summary = json.loads((moved / "summary.json").read_text())
    assert summary["final_model"] == f"{outputs[1].parent.name}/model"
    assert max_diff(logits(load_causal_lm(str(moved / summary["final_model"])), ids), calls[1]["after"]) < TOLERANCE


def test_lora_after_lora_names_the_earlier_stage_relative_to_itself(recorded, tiny_llama_dir, tmp_path):
    sft, _ = data_files(tmp_path)
    run = run_chain(tmp_path, tiny_llama_dir, [stage("sft", True, sft), stage("sft", True, sft)])
    first, second = run.root / "01-sft" / "model", run.root / "02-sft" / "model"
    assert json.loads((second / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == "../../01-sft/model"
    assert json.loads((first / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == str(tiny_llama_dir)
    assert model_chain(str(second)) == [str(tiny_llama_dir), str(first.resolve()), str(second)]
    record = json.loads((run.root / "02-sft" / "stage.json").read_text())
    assert (record["input_model"], record["output_model"]) == ("01-sft/model", "02-sft/model")


def test_merge_writes_the_whole_chain_for_transformers_alone(recorded, tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moalign.models.merge import merge_model

    ids, calls = recorded
    sft, _ = data_files(tmp_path)
    run = run_chain(tmp_path, tiny_llama_dir, [stage("sft", True, sft), stage("sft", True, sft)])
    merged = merge_model(str(run.root / "02-sft" / "model"), tmp_path / "merged")
    assert not (merged / ADAPTER_CONFIG).exists()
    plain = AutoModelForCausalLM.from_pretrained(merged)  # transformers only
    assert max_diff(logits(plain, ids), calls[1]["after"]) < TOLERANCE
    assert AutoTokenizer.from_pretrained(merged).chat_template
    card = (merged / "README.md").read_text()
    assert "02-sft" in card and "01-sft" in card


def test_a_killed_and_resumed_lora_stage_loads_as_trained(recorded, monkeypatch, tiny_llama_dir, tmp_path):
    """Stage 2 dies after its first checkpoint; resumed, it hands on what it trained, on top of stage 1."""
    from transformers import TrainerCallback

    from moalign.training import callbacks

    ids, calls = recorded
    sft, _ = data_files(tmp_path)
    stages = [stage("sft", True, sft), stage("sft", True, sft, max_steps=3, save_steps=1)]

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("killed")

    original = callbacks.trainer_callbacks
    kill = {"on": True}
    monkeypatch.setattr(
        callbacks,
        "trainer_callbacks",
        lambda ctx, *a, **k: original(ctx, *a, **k) + ([Kill()] if kill["on"] and ctx.index == 2 else []),
    )
    with pytest.raises(RuntimeError, match="killed"):
        run_chain(tmp_path, tiny_llama_dir, stages)
    kill["on"] = False
    run = run_chain(tmp_path, tiny_llama_dir, stages, resume=True)
    losses = [(m["step"], m["train/loss"]) for m in run.metrics() if m["stage"] == "02-sft" and "train/loss" in m]
    assert [step for step, _ in losses] == [1, 2, 3]  # step 1 kept from before the kill, 2 and 3 resumed
    first, resumed = calls[0], calls[-1]
    assert max_diff(resumed["before"], first["after"]) < TOLERANCE
    assert max_diff(logits(load_causal_lm(str(run.root / "02-sft" / "model")), ids), resumed["after"]) < TOLERANCE


def test_full_grpo_after_lora_keeps_its_own_input_as_reference(recorded, tiny_llama_dir, tmp_path):
    """TRL loads a full fine-tuning GRPO stage's reference by the policy's name: the input with every earlier
    stage, not the root of the chain."""
    ids, calls = recorded
    sft, _ = data_files(tmp_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Answer", "Say", "Reply", "Go"]))
    grpo = {
        "dataset": str(prompts),
        "max_steps": 1,
        "beta": 0.1,
        "bf16": False,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 3,
    }
    data = {
        "name": "chain",
        "model": str(tiny_llama_dir),
        "output_dir": str(tmp_path / "runs"),
        "objectives": [{"name": "short", "scorer": {"length": {"unit": "characters", "target": 3}}}],
        "stages": [stage("sft", True, sft), {"grpo": grpo}],
    }
    run_recipe(validate_recipe(YamlSource(data=data, name="test")))
    assert max_diff(calls[0]["after"], logits(load_causal_lm(str(tiny_llama_dir)), ids)) > 1e-2
    assert max_diff(calls[1]["reference"], calls[0]["after"]) < TOLERANCE


def test_portable_base_and_adapter_base_round_trip(tmp_path):
    run = tmp_path / "run"
    earlier, adapter = run / "01-sft" / "model", run / "02-dpo" / "model"
    outside = tmp_path / "base"
    for d in (earlier, adapter, outside):
        d.mkdir(parents=True)
    assert portable_base("builtin:smollm2-135m-instruct", adapter, run) == "builtin:smollm2-135m-instruct"
    assert portable_base("org/model", adapter, run) == "org/model"
    assert portable_base(str(outside), adapter, run) == str(outside.resolve())
    assert portable_base(str(earlier), adapter, run) == "../../01-sft/model"
    assert portable_base(str(earlier), adapter, None) == str(earlier.resolve())  # no run: absolute
    (adapter / "inner").mkdir()
    assert portable_base(str(adapter / "inner"), adapter, run) == "./inner"
    for base in ("../../01-sft/model", "builtin:x", "org/model", str(outside)):
        (adapter / ADAPTER_CONFIG).write_text(json.dumps({"base_model_name_or_path": base}))
        expected = str(earlier.resolve()) if base.startswith("..") else base
        assert adapter_base(adapter) == expected
    (adapter / ADAPTER_CONFIG).write_text(json.dumps({"base_model_name_or_path": "./"}))
    with pytest.raises(UserError, match="built on the adapter"):
        model_chain(str(adapter))


def test_run_records_are_relative_to_the_run(tmp_path):
    run = RunDir(tmp_path / "runs" / "exp")
    (run.root / "01-sft" / "model").mkdir(parents=True)
    assert run.portable(str(run.root / "01-sft" / "model")) == "01-sft/model"
    assert run.portable("builtin:smollm2-135m-instruct") == "builtin:smollm2-135m-instruct"
    assert run.portable(str(tmp_path)) == str(tmp_path)
    assert run.model_spec("01-sft/model") == str(run.root / "01-sft" / "model")
    assert run.model_spec("org/model") == "org/model"
    assert run.portable(None) is None and run.model_spec(None) is None


def test_an_evaluated_stage_model_carries_its_evaluation_in_its_card(tiny_llama_dir, tmp_path):
    sft, _ = data_files(tmp_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about topic {i}."}) + "\n" for i in range(2)))
    evaluation = {
        "models": ["stage:sft"],
        "dataset": str(prompts),
        "max_new_tokens": 4,
        "judge": {"length": {"unit": "words"}},
        "cache": False,
        "bootstrap_resamples": 20,
    }
    run = run_chain(tmp_path, tiny_llama_dir, [stage("sft", True, sft), {"eval": evaluation}])
    card = (run.root / "01-sft" / "model" / "README.md").read_text()
    metrics = json.loads((run.root / "02-eval" / "metrics.json").read_text())
    assert card.startswith("---\nlibrary_name: peft\n") and "| `peft.r` | `8` |" in card
    assert card.count("## Evaluation") == 1 and "Evaluated by `02-eval` on 2 prompts" in card
    wins = metrics["models"]["sft"]["win_rate"]
    assert f"{wins['wins']} wins, {wins['ties']} ties, {wins['losses']} losses" in card


def test_with_evaluation_replaces_the_section():
    from moalign.models.card import with_evaluation

    once = with_evaluation("# card\n\ntext\n", "first")
    assert once == "# card\n\ntext\n\n## Evaluation\n\nfirst\n"
    assert with_evaluation(once, "second") == "# card\n\ntext\n\n## Evaluation\n\nsecond\n"
