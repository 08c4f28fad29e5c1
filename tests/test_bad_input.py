"""Bad input answered with one message naming its source, exit code 2, and nothing claimed complete.

Every case goes through the ``moalign`` entry point (:func:`moalign.cli.main`). A failed run leaves no
``summary.json`` and no ``stage.json`` for the stage that failed; a failed evaluation no ``metrics.json``.
Cases that only validate input load no model; the others use the tiny fixtures and 2-token generations.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from moalign.cli import main


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli(*args) -> (exit code, stderr)`` through the real entry point."""

    def invoke(*args: object) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["moalign", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        return exit_info.value.code, capsys.readouterr().err

    return invoke


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "error: " in err and "Traceback" not in err, err  # (progress bars may come first)
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def assert_nothing_complete(root: Path, failed_stage: str | None = None) -> None:
    """No summary for the run, no stage record for the failed stage, no temporary files left behind."""
    assert not (root / "summary.json").exists()
    if failed_stage is not None:
        assert not (root / failed_stage / "stage.json").exists()
        assert not (root / failed_stage / "metrics.json").exists()
    assert not [p for p in root.rglob("*.tmp")] if root.exists() else True


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def jsonl(path: Path, rows: list[object]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


# -- recipes: validated before anything loads ----------------------------------------------------

RECIPE_CASES = {
    "malformed_yaml": ("name: x\nstages:\n  - sft: {dataset: a.jsonl\n", ["r.yaml:4", "invalid YAML"]),
    "duplicate_key": ("name: x\nseed: 1\nseed: 2\n", ["r.yaml:3", "duplicate key 'seed'"]),
    "unknown_key": ("name: x\nseeed: 3\n", ["r.yaml:2: seeed: unknown key (did you mean 'seed'?)"]),
    "unknown_stage_key": (
        "name: x\nstages:\n  - sft:\n      dataset: a.jsonl\n      learnig_rate: 1.0e-5\n",
        ["r.yaml:5: stages[0].sft.learnig_rate: unknown key (did you mean 'learning_rate'?)"],
    ),
    "unknown_stage_type": (
        "name: x\nstages:\n  - sfft: {}\n",
        ["r.yaml:3", "unknown stage 'sfft' (did you mean 'sft'?)"],
    ),
    "wrong_type": ("name: x\nseed: three\n", ["r.yaml:2: seed: Input should be a valid integer", "'three'"]),
    "wrong_type_in_stage": (
        "name: x\nstages:\n  - sft: {dataset: a.jsonl, per_device_train_batch_size: two}\n",
        ["r.yaml:3: stages[0].sft.per_device_train_batch_size: Input should be a valid integer"],
    ),
    "negative_learning_rate": (
        "name: x\nstages:\n  - sft:\n      dataset: a.jsonl\n      learning_rate: -1.0e-5\n",
        ["r.yaml:5: stages[0].sft.learning_rate: Input should be greater than 0 (got -1e-05)"],
    ),
    "negative_learning_rate_online": (
        "name: x\nstages:\n  - rwr: {dataset: a.jsonl, learning_rate: -0.1}\n",
        ["r.yaml:3: stages[0].rwr.learning_rate: Input should be greater than 0"],
    ),
    "grpo_group_of_one": (
        "name: x\nstages:\n  - grpo: {dataset: a.jsonl, num_generations: 1}\n",
        ["r.yaml:3: stages[0].grpo.num_generations: Input should be greater than or equal to 2 (got 1)"],
    ),
    "empty_stop_string": (
        "name: x\nstages:\n  - ppo: {dataset: a.jsonl, stop_strings: ['']}\n",
        ["r.yaml:3: stages[0].ppo.stop_strings[0]: String should have at least 1 character"],
    ),
    "unknown_scorer": (
        "name: x\nobjectives:\n  - {name: a, scorer: lenght}\n",
        ["r.yaml:3: objectives[0].scorer.lenght: unknown scorer 'lenght' (did you mean 'length'?)"],
    ),
    "bad_objective_name": (
        "name: x\nobjectives:\n  - {name: 'two words', scorer: length}\n",
        ["r.yaml:3: objectives[0].name: String should match pattern"],
    ),
    "undeclared_tag_dimension": (
        "name: x\nobjectives:\n  - {name: a, scorer: length, tag_dimension: brevty}\n",
        ["objectives[0].tag_dimension: tag dimension 'brevty' is not declared", "did you mean 'brevity'?"],
    ),
    "empty_tag_range": (
        "name: x\ntag_dimensions: {brevity: [5, 1]}\n",
        ["tag_dimensions", "tag dimension 'brevity': empty intensity range [5, 1]"],
    ),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_invalid_recipe(case, cli, tmp_path):
    text, fragments = RECIPE_CASES[case]
    recipe = write(tmp_path / "r.yaml", text)
    assert_user_error(*cli("run", recipe, "--output-dir", tmp_path / "runs"), str(recipe), *fragments)
    assert not (tmp_path / "runs").exists()  # nothing at all was written


def test_recipe_file_not_found(cli, tmp_path):
    assert_user_error(*cli("check", tmp_path / "nope.yaml"), f"{tmp_path / 'nope.yaml'}: file not found")


def test_recipe_with_non_utf8_bytes(cli, tmp_path):
    recipe = write(tmp_path / "r.yaml", b"name: x\nnote: caf\xe9\n")
    assert_user_error(*cli("check", recipe), f"{recipe}:2: not UTF-8 (byte 0xe9 at column 10)")


def test_override_without_a_value(cli, tmp_path):
    recipe = write(tmp_path / "r.yaml", "name: x\n")
    assert_user_error(*cli("check", recipe, "--set", "seed"), "--set expects KEY=VALUE, got 'seed'")


def test_override_with_the_wrong_type_names_the_override(cli, tmp_path):
    recipe = write(tmp_path / "r.yaml", "name: x\nstages:\n  - test_echo: {}\n")
    code, err = cli("check", recipe, "--set", "stages.0.test_echo.learning_rate=fast")
    assert_user_error(code, err, "--set stages.0.test_echo.learning_rate=fast: stages[0].test_echo.learning_rate")


# -- data files -------------------------------------------------------------------------------


def eval_recipe(tmp_path: Path, model: Path, dataset: Path | str, judge: str = "length") -> Path:
    """A one-stage recipe: evaluate ``model`` on 2 prompts of ``dataset`` with 2-token answers."""
    return write(
        tmp_path / "r.yaml",
        f"""
        name: bad
        model: {model}
        output_dir: {tmp_path / "runs"}
        stages:
          - eval:
              dataset: {dataset}
              num_samples: 2
              max_new_tokens: 2
              cache: false
              perplexity: false
              judge: {judge}
        """,
    )


def run_failing(cli, recipe: Path, failed_stage: str, *fragments: str) -> None:
    code, err = cli("run", recipe)
    assert_user_error(code, err, *fragments)
    assert_nothing_complete(recipe.parent / "runs" / "bad", failed_stage)


def test_missing_dataset_file(cli, tmp_path):
    missing = tmp_path / "missing.jsonl"
    run_failing(
        cli, eval_recipe(tmp_path, tmp_path / "never-loaded", missing), "01-eval", f"{missing}: dataset file not found"
    )


def test_jsonl_with_a_broken_line_reports_the_line(cli, tmp_path):
    data = write(tmp_path / "d.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c",\n{"prompt": "d"}\n')
    run_failing(cli, eval_recipe(tmp_path, tmp_path / "never-loaded", data), "01-eval", f"{data}:3: not valid JSON")


def test_jsonl_with_non_utf8_bytes_reports_the_line(cli, tmp_path):
    data = write(tmp_path / "d.jsonl", b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n')
    run_failing(cli, eval_recipe(tmp_path, tmp_path / "never-loaded", data), "01-eval", f"{data}:2: not UTF-8")


def test_misnamed_prompt_column(cli, tmp_path):
    data = jsonl(tmp_path / "d.jsonl", [{"promt": "a"}, {"promt": "b"}])
    recipe = eval_recipe(tmp_path, tmp_path / "never-loaded", data)
    run_failing(cli, recipe, "01-eval", f"{data}: no 'prompt' column (did you mean 'promt'?); columns: promt")


def test_empty_prompt_names_the_record(cli, tmp_path):
    data = jsonl(tmp_path / "d.jsonl", [{"prompt": "fine"}, {"prompt": "  "}])
    recipe = eval_recipe(tmp_path, tmp_path / "never-loaded", data)
    run_failing(cli, recipe, "01-eval", f"{data}: record 1: empty prompt")


def sft_recipe(tmp_path: Path, model: Path | str, dataset: Path, extra: str = "") -> Path:
    return write(
        tmp_path / "r.yaml",
        f"""
        name: bad
        model: {model}
        output_dir: {tmp_path / "runs"}
        stages:
          - sft: {{dataset: {dataset}, max_steps: 1{extra}}}
        """,
    )


def test_sft_data_without_a_completion_column(cli, tmp_path):
    data = jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "b"}])
    recipe = sft_recipe(tmp_path, tmp_path / "never-loaded", data)
    run_failing(cli, recipe, "01-sft", f"{data}: SFT needs 'messages' or 'prompt' + one of completion/response/chosen")


def test_sft_empty_prompt(cli, tmp_path):
    data = jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "", "completion": "c"}])
    run_failing(cli, sft_recipe(tmp_path, tmp_path / "never-loaded", data), "01-sft", f"{data}: record 1: empty prompt")


def test_dpo_empty_prompt(cli, tmp_path):
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": [], "chosen": "b", "rejected": "c"}]
    data = jsonl(tmp_path / "d.jsonl", rows)
    recipe = write(
        tmp_path / "r.yaml",
        f"name: bad\nmodel: {tmp_path / 'never-loaded'}\noutput_dir: {tmp_path / 'runs'}\n"
        f"stages:\n  - dpo: {{dataset: {data}, max_steps: 1}}\n",
    )
    run_failing(cli, recipe, "01-dpo", f"{data}: record 1: empty prompt")


def test_prompt_longer_than_max_length(cli, tmp_path, tiny_llama_dir, monkeypatch):
    import moalign.models

    monkeypatch.setattr(moalign.models, "load_causal_lm", lambda *a, **k: pytest.fail("model loaded"))
    rows = [{"prompt": "short", "completion": "ok"}, {"prompt": "word " * 80, "completion": "ok"}]
    data = jsonl(tmp_path / "d.jsonl", rows)
    recipe = sft_recipe(tmp_path, tiny_llama_dir, data, ", max_length: 64")
    run_failing(cli, recipe, "01-sft", f"{data}: record 1: prompt is", "tokens, max_length is 64")


def test_dpo_prompt_longer_than_max_length(cli, tmp_path, tiny_llama_dir, monkeypatch):
    import moalign.models

    monkeypatch.setattr(moalign.models, "load_causal_lm", lambda *a, **k: pytest.fail("model loaded"))
    rows = [
        {"prompt": "short", "chosen": "b", "rejected": "c"},
        {"prompt": "word " * 80, "chosen": "b", "rejected": "c"},
    ]
    data = jsonl(tmp_path / "d.jsonl", rows)
    recipe = write(
        tmp_path / "r.yaml",
        f"name: bad\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\n"
        f"stages:\n  - dpo: {{dataset: {data}, max_steps: 1, max_length: 64}}\n",
    )
    run_failing(cli, recipe, "01-dpo", f"{data}: record 1: prompt is", "tokens, max_length is 64")


def test_online_stage_empty_prompt(cli, tmp_path):
    data = jsonl(tmp_path / "d.jsonl", [{"prompt": "fine"}, {"prompt": "fine too"}, {"prompt": " "}])
    recipe = write(
        tmp_path / "r.yaml",
        f"name: bad\nmodel: {tmp_path / 'never-loaded'}\noutput_dir: {tmp_path / 'runs'}\n"
        "objectives: [{name: short, scorer: length}]\n"
        f"stages:\n  - rwr: {{dataset: {data}, max_steps: 1, per_device_train_batch_size: 2}}\n",
    )
    run_failing(cli, recipe, "01-rwr", f"{data}: record 2: empty prompt")


def tagged_recipe(tmp_path: Path, data: Path) -> Path:
    return write(
        tmp_path / "r.yaml",
        f"""
        name: bad
        model: {tmp_path / "never-loaded"}
        output_dir: {tmp_path / "runs"}
        stages:
          - best_of_n: {{dataset: {data}, num_prompts: 4}}
        """,
    )


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("<brevity 9> Say hi.", "tag <brevity 9>: intensity 9 is outside [1, 5]"),
        ("<brevity 2 Say hi.", "tag '<brevity 2': unclosed bracket"),
        ("<brevty 2> Say hi.", "unknown dimension 'brevty' (did you mean 'brevity'?)"),
        ("<brevity> Say hi.", "expected an intensity in [1, 5] or 'max' after 'brevity'"),
    ],
    ids=["out_of_range", "unclosed", "unknown_dimension", "no_intensity"],
)
def test_malformed_preference_tag(cli, tmp_path, prompt, message):
    data = jsonl(tmp_path / "d.jsonl", [{"prompt": "<brevity 1> fine"}, {"prompt": prompt}])
    run_failing(cli, tagged_recipe(tmp_path, data), "01-best_of_n", f"{data}:2: prompt tags: ", message)


# -- data that cannot train: refused before any model loads, by the stage and by the dry run ---------


@pytest.fixture
def no_model_loads(monkeypatch):
    import moalign.models

    monkeypatch.setattr(moalign.models, "load_causal_lm", lambda *a, **k: pytest.fail("model loaded"))
    monkeypatch.setattr(moalign.models, "load_tokenizer", lambda *a, **k: pytest.fail("tokenizer loaded"))


UNTRAINABLE: dict[str, tuple[str, str, bytes | list[dict], str]] = {
    "empty_file": ("sft", "", b"", "{data}: no records"),
    "whitespace_only_file": ("grpo", "", b" \n\t\n", "{data}: no records"),
    "fewer_prompts_than_one_grpo_step": (
        "grpo",
        "",
        [{"prompt": "Say hi."}],
        "{data}: 1 record(s), but one training step takes 2",
    ),
    "fewer_prompts_than_one_rwr_step": (
        "rwr",
        ", per_device_train_batch_size: 2",
        [{"prompt": "Say hi."}],
        "{data}: 1 record(s), but one training step takes 2",
    ),
    "no_step_from_epochs": (
        "sft",
        ", num_train_epochs: 0",
        [{"prompt": "a", "completion": "b"}] * 2,
        "{data}: 2 record(s), but max_steps -1 and num_train_epochs 0.0 give 0 training steps",
    ),
    "out_of_range_tag_in_grpo_data": (
        "grpo",
        ", per_device_train_batch_size: 4",
        [{"prompt": "<brevity 2> Fine."}, {"prompt": "<brevity 9> Say hi."}],
        "{data}: record 1: prompt tags: tag <brevity 9>: intensity 9 is outside [1, 5]",
    ),
    "wrong_column_type": (
        "dpo",
        "",
        [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": 3, "rejected": "c"}],
        "{data}: record 1: 'chosen' must be a text or a chat",
    ),
}
"""``case -> (stage, its keys besides the dataset, the data file's content, the message)``."""


def untrainable(tmp_path: Path, case: str) -> tuple[str, Path, str]:
    """The case's stage, its recipe and its message."""
    stage, keys, content, message = UNTRAINABLE[case]
    data = write(tmp_path / "d.jsonl", content) if isinstance(content, bytes) else jsonl(tmp_path / "d.jsonl", content)
    recipe = write(
        tmp_path / "r.yaml",
        f"name: bad\nmodel: {tmp_path / 'never-loaded'}\noutput_dir: {tmp_path / 'runs'}\n"
        f"objectives: [{{name: short, scorer: length}}]\nstages:\n  - {stage}: {{dataset: {data}{keys}}}\n",
    )
    return stage, recipe, message.format(data=data)


@pytest.mark.parametrize("case", list(UNTRAINABLE))
def test_untrainable_data_before_any_model_loads(case, cli, tmp_path, no_model_loads):
    stage, recipe, message = untrainable(tmp_path, case)
    run_failing(cli, recipe, f"01-{stage}", message)


@pytest.mark.parametrize("case", list(UNTRAINABLE))
def test_dry_run_reports_untrainable_data(case, cli, tmp_path, no_model_loads):
    stage, recipe, message = untrainable(tmp_path, case)
    assert_user_error(*cli("run", "--dry-run", recipe), f"01-{stage}.dataset: {message}")
    assert not (tmp_path / "runs").exists()


def test_stage_that_trained_nothing_is_not_recorded(cli, tmp_path, tiny_llama_dir, monkeypatch):
    import moalign.training.checkpoint

    monkeypatch.setattr(moalign.training.checkpoint, "train_and_save", lambda *a, **k: (str(tiny_llama_dir), {}))
    data = jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"}])
    recipe = sft_recipe(tmp_path, tiny_llama_dir, data)
    root = tmp_path / "runs" / "bad"
    run_failing(cli, recipe, "01-sft", "01-sft: trained 0 tokens, fewer than the 1 its first step needs")
    assert not (root / "01-sft" / "stage.json").exists()


# -- scorers ----------------------------------------------------------------------------------

SCORER_FILE = """
import math


def nan_second(prompts, completions, **columns):
    return [1.0, math.nan][: len(completions)]


def inf_second(prompts, completions, **columns):
    return [1.0, math.inf][: len(completions)]


def raises(prompts, completions, **columns):
    return [1.0 / 0 for _ in completions]
"""


@pytest.fixture
def scorer_file(tmp_path) -> Path:
    return write(tmp_path / "my_scores.py", SCORER_FILE)


def judged(tmp_path: Path, model: Path, function: str) -> Path:
    data = jsonl(tmp_path / "d.jsonl", [{"prompt": "Say hi."}, {"prompt": "Say bye."}])
    return eval_recipe(tmp_path, model, data, f"{{python: {{function: '{function}'}}}}")


@pytest.mark.parametrize(
    ("function", "fragments"),
    [
        ("nan_second", ["objective 'python'", "sample 1: score nan"]),
        ("inf_second", ["objective 'python'", "sample 1: score inf"]),
        ("raises", ["objective 'python'", "raised ZeroDivisionError: float division by zero"]),
    ],
    ids=["nan", "inf", "raises"],
)
def test_scorer_failures_name_objective_and_sample(cli, tmp_path, tiny_llama_dir, scorer_file, function, fragments):
    recipe = judged(tmp_path, tiny_llama_dir, f"{scorer_file}:{function}")
    run_failing(cli, recipe, "01-eval", *fragments)


def test_python_scorer_file_missing_is_not_looked_up_elsewhere(cli, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write(tmp_path / "elsewhere.py", "def score(p, c, **k):\n    return [1.0] * len(c)\n")
    missing = tmp_path / "sub" / "elsewhere.py"
    recipe = judged(tmp_path, tmp_path / "never-loaded", f"{missing}:score")
    run_failing(cli, recipe, "01-eval", f"python scorer '{missing}:score': file '{missing}' not found")


def test_reward_model_with_the_wrong_number_of_labels(cli, tmp_path, tiny_bert_dir):
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    rm = tmp_path / "rm3"
    BertForSequenceClassification(AutoConfig.from_pretrained(tiny_bert_dir, num_labels=3)).save_pretrained(rm)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(rm)
    recipe = judged(tmp_path, tmp_path / "never-loaded", "x")
    recipe.write_text(recipe.read_text().replace("{python: {function: 'x'}}", f"{{reward_model: {{model: {rm}}}}}"))
    run_failing(cli, recipe, "01-eval", f"reward model '{rm}' has 3 outputs: set 'label' to choose one")


# -- models and checkpoints -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("builtin:smollm3", "unknown built-in model 'builtin:smollm3'; known: builtin:smollm2-135m-instruct"),
        ("./no-such-model", "model './no-such-model': local directory"),
        ("someone/no-such-model", "not in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it"),
    ],
    ids=["builtin", "local", "hub"],
)
def test_model_spec_that_cannot_be_found(cli, spec, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_user_error(*cli("chat", "hi", "--model", spec, "--max-new-tokens", "1"), message)


def test_lora_adapter_whose_base_differs(cli, tmp_path, tiny_llama_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_llama_dir)
    other = tmp_path / "other-base"
    config.hidden_size, config.intermediate_size = 32, 64
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    adapter = tmp_path / "adapter"
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), LoraConfig(r=2, task_type="CAUSAL_LM"))
    peft.save_pretrained(adapter)
    conf = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**conf, "base_model_name_or_path": str(other)}))
    code, err = cli("merge", adapter, tmp_path / "merged")
    assert_user_error(code, err, f"LoRA adapter '{adapter}' does not fit its base model '{other}'")
    assert not (tmp_path / "merged").exists()


def test_full_disk_while_saving_a_model(cli, tmp_path, tiny_llama_dir, monkeypatch):
    import transformers.modeling_utils
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = tmp_path / "adapter"
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), LoraConfig(r=2, task_type="CAUSAL_LM"))
    peft.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(adapter)

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    merged = tmp_path / "merged"
    code, err = cli("merge", adapter, merged)
    assert_user_error(code, err, f"{merged}: cannot write model.safetensors: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no partial directory remains


def test_checkpoint_with_another_models_tokenizer(cli, tmp_path, tiny_llama_dir, tiny_bert_dir):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_llama_dir)
    config.vocab_size = 1000
    ckpt = tmp_path / "ckpt"
    AutoModelForCausalLM.from_config(config).save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(ckpt)
    code, err = cli("chat", "hi", "--model", ckpt, "--max-new-tokens", "1")
    assert_user_error(code, err, f"model '{ckpt}': its tokenizer has 49152 tokens but the model's embedding has 1000")


# -- the disk ---------------------------------------------------------------------------------


def echo_recipe(tmp_path: Path) -> Path:
    return write(tmp_path / "r.yaml", f"name: bad\noutput_dir: {tmp_path / 'runs'}\nstages:\n  - test_echo: {{}}\n")


def test_full_disk_names_the_file_and_leaves_no_partial_file(cli, tmp_path, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "stage.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    root = tmp_path / "runs" / "bad"
    code, err = cli("run", echo_recipe(tmp_path))
    assert_user_error(code, err, f"{root / '01-test_echo' / 'stage.json'}: cannot write: No space left on device")
    assert_nothing_complete(root, "01-test_echo")
    assert sorted(p.name for p in (root / "01-test_echo").iterdir()) == ["echo.txt"]


def test_full_disk_while_appending_metrics(cli, tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    root = tmp_path / "runs" / "bad"
    code, err = cli("run", echo_recipe(tmp_path))
    assert_user_error(code, err, f"{root / 'metrics.jsonl'}: cannot write: No space left on device")
    assert_nothing_complete(root, "01-test_echo")
    assert (root / "metrics.jsonl").read_text() == ""  # the line that could not be synced was taken back


def test_second_run_into_a_run_directory_in_use(cli, tmp_path):
    from moalign.run_dir import RunDir

    root = tmp_path / "runs" / "bad"
    with RunDir(root).locked():
        code, err = cli("run", echo_recipe(tmp_path))
        assert_user_error(code, err, f"run directory '{root}' is in use by process {os.getpid()}")
        assert sorted(p.name for p in root.iterdir()) == ["run.lock"]  # nothing written by the refused run
