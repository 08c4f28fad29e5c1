import json

import pytest
import torch

from moalign.config.yaml_source import YamlSource
from moalign.models import load_causal_lm, load_tokenizer
from moalign.pipeline import run_recipe
from moalign.recipe import validate_recipe
from moalign.stages.sft import LengthPenaltyConfig, sft_records


def sft_file(tmp_path, n=8):
    path = tmp_path / "sft.jsonl"
    words = ["hi", "yes", "ok", "no"]
    rows = [{"prompt": f"Say {words[i % 4]}", "response": f"{words[i % 4]}!"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_stage(tmp_path, model, stage_config, name="sft-run"):
    data = {"name": name, "model": str(model), "output_dir": str(tmp_path / "runs"), "stages": [{"sft": stage_config}]}
    return run_recipe(validate_recipe(YamlSource(data=data, name="test")))


def trainer_for(model_dir, tmp_path, dataset, model=None, **kwargs):
    from datasets import Dataset
    from trl import SFTConfig

    from moalign.training.trl_fence import LengthPenaltySFTTrainer

    tok = load_tokenizer(str(model_dir), padding_side="right")
    args = SFTConfig(
        output_dir=str(tmp_path / "t"),
        per_device_train_batch_size=2,
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_steps=1,
    )
    ds = sft_records(Dataset.from_list(dataset), "test")
    model = model if model is not None else load_causal_lm(str(model_dir))
    return LengthPenaltySFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, **kwargs), tok


def test_completion_only_mask_excludes_prompt_and_its_special_tokens(tiny_llama_dir, tmp_path):
    trainer, tok = trainer_for(tiny_llama_dir, tmp_path, [{"prompt": "Say hi", "response": "Hi there!"}] * 2)
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"][0]
    trained = tok.decode([t for t in labels.tolist() if t != -100])
    assert trained.startswith("Hi there!<|im_end|>")
    full = tok.decode(batch["input_ids"][0])
    assert "<|im_start|>user\nSay hi<|im_end|>" in full
    first = int((labels != -100).nonzero()[0])
    assert tok.decode(batch["input_ids"][0, :first]).endswith("<|im_start|>assistant\n")  # template masked


def test_sft_records_accepts_messages_and_rejects_bad_rows():
    from datasets import Dataset

    from moalign.errors import UserError

    ds = Dataset.from_list([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    row = sft_records(ds, "x")[0]
    assert row["prompt"] == [{"role": "user", "content": "q"}]
    assert row["completion"] == [{"role": "assistant", "content": "a"}]
    with pytest.raises(UserError, match="SFT needs 'messages' or 'prompt'"):
        sft_records(Dataset.from_list([{"text": "x"}]), "file.jsonl")
    bad = Dataset.from_list([{"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(UserError, match="record 0: the last message must be the assistant's"):
        sft_records(bad, "file.jsonl")


def test_length_penalty_lowers_sampled_length(tiny_llama_dir, tmp_path):
    """A model that stops after 1 to 6 words learns, from the penalty alone, to stop earlier."""
    torch.manual_seed(0)
    words = "one two three four five six".split()
    varied = [{"prompt": "Count", "response": " ".join(words[: 1 + i % 6])} for i in range(12)]
    trainer, tok = trainer_for(tiny_llama_dir, tmp_path, varied)
    trainer.args.max_steps = 60
    trainer.args.learning_rate = 1e-2
    trainer.train()  # plain SFT: the model now ends its reply after a varying number of words
    cfg = LengthPenaltyConfig(coef=1.0, num_samples=4, max_new_tokens=10)
    short = [{"prompt": "Count", "response": "one"}] * 4  # the reference: one word
    trainer, tok = trainer_for(tiny_llama_dir, tmp_path, short, model=trainer.model, length_penalty=cfg)
    model = trainer.model
    model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    lengths = []
    for _ in range(20):
        opt.zero_grad()
        trainer._length_penalty_term(model, batch, cfg).backward()
        opt.step()
        lengths.append(trainer._metrics["train"]["length_penalty/sampled_length"][-1])
    before, after = sum(lengths[:4]) / 4, sum(lengths[-4:]) / 4
    assert after < 0.7 * before, lengths


def test_sft_stage_trains_validates_and_writes_a_loadable_checkpoint(tiny_llama_dir, tmp_path):
    cfg = {
        "dataset": str(sft_file(tmp_path)),
        "max_steps": 4,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "validation_fraction": 0.25,
        "eval_steps": 2,
        "length_penalty": {"coef": 0.01, "max_new_tokens": 4, "every_n_steps": 2},
    }
    run = run_stage(tmp_path, tiny_llama_dir, cfg)
    metrics = run.metrics()
    assert any("eval/loss" in m for m in metrics)
    assert any("length_penalty/sampled_length" in m for m in metrics)
    train_losses = [m["train/loss"] for m in metrics if "train/loss" in m]
    assert len(train_losses) == 4 and all(v > 0 for v in train_losses)
    summary = json.loads(run.summary_path.read_text())
    model_dir = run.model_spec(summary["final_model"])
    assert model_dir.endswith("01-sft/model")
    assert load_causal_lm(model_dir).config.num_hidden_layers == 2


def test_sft_stage_with_lora_hands_on_an_adapter_that_loads_merged(tiny_llama_dir, tmp_path):
    cfg = {
        "dataset": str(sft_file(tmp_path)),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-2,
        "peft": {"r": 4, "lora_alpha": 8},
    }
    run = run_stage(tmp_path, tiny_llama_dir, cfg, name="lora")
    model_dir = run.model_spec(json.loads(run.summary_path.read_text())["final_model"])
    from pathlib import Path

    assert (Path(model_dir) / "adapter_config.json").exists()
    merged = load_causal_lm(model_dir)
    base = load_causal_lm(str(tiny_llama_dir))
    assert type(merged).__name__ == "LlamaForCausalLM"
    diff = sum((a - b).abs().sum().item() for a, b in zip(merged.parameters(), base.parameters(), strict=True))
    assert diff > 0  # the trained adapter was folded in


@pytest.mark.integration
def test_sft_on_real_smollm2_writes_loadable_checkpoint(smollm2_dir, tmp_path):
    cfg = {"dataset": str(sft_file(tmp_path, 4)), "max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64}
    run = run_stage(tmp_path, "builtin:smollm2-135m-instruct", cfg, name="real")
    model_dir = run.model_spec(json.loads(run.summary_path.read_text())["final_model"])
    assert load_causal_lm(model_dir).config.num_hidden_layers == 30


def test_sequence_normalisation_sums_each_response_s_token_losses(tiny_llama_dir, tmp_path):
    """Seed 004 eq. 2: E_(x,y)[sum_t -log p(y_t | x, y_<t)], by hand from the per-token losses."""
    rows = [{"prompt": "Say hi", "response": "Hi there, friend!"}, {"prompt": "Say no", "response": "No."}]
    token, _ = trainer_for(tiny_llama_dir, tmp_path, rows)
    sequence, _ = trainer_for(tiny_llama_dir, tmp_path, rows, model=token.model, loss_normalization="sequence")
    batch = next(iter(token.get_train_dataloader()))
    token.model.eval()
    with torch.no_grad():
        logits = token.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=-100, reduction="none"
        )
        per_response = nll.sum(dim=1)  # eq. 2's inner sum, one value per response
        expected = per_response.mean()
        tokens = int((targets != -100).sum())
        assert token.compute_loss(token.model, batch) == pytest.approx(nll.sum().item() / tokens, rel=1e-4)
        assert sequence.compute_loss(sequence.model, batch) == pytest.approx(expected.item(), rel=1e-4)
        # with transformers' token count over the whole step (2 micro-batches of 2 responses here)
        sequence.args.gradient_accumulation_steps = 2
        got = sequence.compute_loss(sequence.model, batch, num_items_in_batch=torch.tensor(2 * tokens))
        assert got == pytest.approx(per_response.sum().item() / 4, rel=1e-4)


def test_group_by_length_batches_rows_of_similar_length(tiny_llama_dir, tmp_path, monkeypatch):
    from moalign.training.trl_fence import LengthPenaltySFTTrainer

    path = tmp_path / "mixed.jsonl"
    rows = [{"prompt": "Say hi", "response": "hi " * (1 if i % 2 else 40)} for i in range(64)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[list[int]] = []
    original = LengthPenaltySFTTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        seen.append(inputs["attention_mask"].sum(dim=1).tolist())
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(LengthPenaltySFTTrainer, "compute_loss", recording)
    padding = {}
    for grouped in (False, True):
        seen.clear()
        cfg = {"dataset": str(path), "max_steps": 6, "per_device_train_batch_size": 4, "group_by_length": grouped}
        run_stage(tmp_path / str(grouped), tiny_llama_dir, cfg)
        assert len(seen) == 6
        padding[grouped] = sum(max(lengths) * len(lengths) - sum(lengths) for lengths in seen)
    # transformers' length-grouped sampler sorts each mega-batch of random rows: short rows batch together
    assert padding[True] < padding[False] / 2
