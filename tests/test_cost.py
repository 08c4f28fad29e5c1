import json

from moalign.config.yaml_source import YamlSource
from moalign.cost import COST_KEYS, count_tokens, counting_tokens, gpu_seconds, total_cost, training_stages
from moalign.pipeline import run_recipe
from moalign.recipe import validate_recipe


def test_tokens_go_to_the_innermost_scope_and_nowhere_outside_one():
    count_tokens(generated=5)  # no scope: dropped
    with counting_tokens() as outer:
        count_tokens(generated=3, trained=10)
        with counting_tokens() as inner:
            count_tokens(trained=7)
        count_tokens(generated=1)
    assert (outer.generated, outer.trained) == (4, 10)
    assert (inner.generated, inner.trained) == (0, 7)


def test_gpu_seconds_are_wall_time_times_gpus_and_none_without_one():
    assert gpu_seconds(10.0, 2) == 20.0
    assert gpu_seconds(10.0, 0) is None


def test_total_cost_sums_each_key_and_keeps_none_where_no_record_has_it():
    records = [
        {"wall_time_s": 1.5, "cpu_time_s": 2.0, "gpu_time_s": None, "tokens_generated": 10, "tokens_trained": 0},
        {"wall_time_s": 0.25, "cpu_time_s": 1.0, "tokens_generated": 5, "tokens_trained": 40},
    ]
    assert total_cost(records) == {
        "wall_time_s": 1.75,
        "cpu_time_s": 3.0,
        "gpu_time_s": None,
        "tokens_generated": 15,
        "tokens_trained": 40,
    }


def test_every_stage_records_its_cost(tmp_path):
    data = {
        "name": "cost",
        "model": "m0",
        "output_dir": str(tmp_path),
        "stages": [{"test_echo": {}}, {"test_echo": {"note": "second"}}],
    }
    run = run_recipe(validate_recipe(YamlSource(data=data, name="test")))
    record = json.loads((run.root / "02-test_echo" / "stage.json").read_text())
    assert set(COST_KEYS) <= set(record)
    assert record["tokens_generated"] == 0 and record["tokens_trained"] == 0
    assert [r["stage"] for r in training_stages(run.root)] == ["01-test_echo", "02-test_echo"]
    logged = [m for m in run.metrics() if "stage/wall_time_s" in m]
    assert len(logged) == 2 and "stage/tokens_trained" in logged[0]


def test_sft_counts_the_tokens_of_the_conversations_it_trained_on(tiny_llama_dir, tmp_path):
    from transformers import AutoTokenizer

    rows = [{"prompt": "Say hi", "response": "hi"}, {"prompt": "Name a colour please", "response": "blue, or red"}]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sft = {"dataset": str(data), "max_steps": 1, "per_device_train_batch_size": 2, "bf16": False}
    recipe = {"name": "sft", "model": str(tiny_llama_dir), "output_dir": str(tmp_path), "stages": [{"sft": sft}]}
    run = run_recipe(validate_recipe(YamlSource(data=recipe, name="test")))
    record = json.loads((run.root / "01-sft" / "stage.json").read_text())
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    chats = [[{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}] for r in rows]
    expected = sum(len(tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]) for c in chats)
    assert record["tokens_trained"] == expected and record["tokens_generated"] == 0
