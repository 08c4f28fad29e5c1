"""Shared fixtures: tiny random models that load like real ones, and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moalign.config import StrictModel
from moalign.stages import STAGES, StageResult, register_stage

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class EchoConfig(StrictModel):
    """Config of ``test_echo``, a stage that trains nothing: it logs its config and hands the model on."""

    learning_rate: float = 1e-5
    per_device_train_batch_size: int = 2
    note: str = ""
    fail: bool = False


if "test_echo" not in STAGES:

    @register_stage("test_echo", EchoConfig)
    def _run_echo(ctx, config: EchoConfig) -> StageResult:
        if config.fail:
            raise RuntimeError("test_echo asked to fail")
        ctx.log({"train/loss": config.learning_rate}, step=1)
        (ctx.dir / "echo.txt").write_text(ctx.model)
        return StageResult(model=f"{ctx.model}+{ctx.index}", summary={"note": config.note})


SMOLLM2 = "builtin:smollm2-135m-instruct"
MINILM = "builtin:minilm-l6"


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, converted into the user's cache (once)."""
    from moalign.models import resolve_model

    return Path(resolve_model(SMOLLM2))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """A 2-layer Llama (hidden 64) with the real SmolLM2 tokenizer and chat template, saved as a HF dir."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT (hidden 32) with the real all-MiniLM-L6-v2 tokenizer, saved as a HF dir."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from moalign.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model(MINILM))
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    model = BertModel(config)
    out = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty MOALIGN_HOME (nothing converted yet)."""
    home = tmp_path / "moalign-home"
    monkeypatch.setenv("MOALIGN_HOME", str(home))
    return home
