import json

import pytest

from moalign.data import as_dataset, load_records
from moalign.data.constraints import parse_constraints
from moalign.errors import UserError


def test_builtin_specs_splits_sizes_and_limits():
    test = load_records("builtin:ifeval-lite", "test")
    assert len(test) == 500
    assert load_records("builtin:ifeval-lite", "test", limit=10) == test[:10]
    assert load_records("builtin:ifeval-lite?seed=0", "test", limit=10) == test[:10]
    assert load_records("builtin:ifeval-lite?seed=1", "test", limit=10) != test[:10]
    tagged = load_records("builtin:ifeval-lite-tagged", "train", limit=5)
    assert all(r["prompt"].startswith("<") for r in tagged)


@pytest.mark.parametrize(
    ("spec", "split", "message"),
    [
        ("builtin:ifeval-lyte", "train", "unknown built-in dataset 'ifeval-lyte' (did you mean 'ifeval-lite'?)"),
        ("builtin:ifeval-lite?sed=1", "train", "unknown dataset option 'sed' (did you mean 'seed'?)"),
        ("builtin:ifeval-lite?seed=x", "train", "seed must be an integer"),
        ("builtin:ifeval-lite", "tset", "unknown split 'tset' (did you mean 'test'?)"),
        ("no/such/file.jsonl", "train", "dataset not found"),
    ],
)
def test_bad_specs_are_user_errors_naming_the_spec(spec, split, message):
    with pytest.raises(UserError) as info:
        load_records(spec, split)
    assert str(info.value).startswith(spec.split("?")[0]) and message in str(info.value)


def test_local_jsonl_file_and_directory(tmp_path):
    rows = [
        {"prompt": "<brevity 2> Say hi.", "constraints": [{"kind": "lowercase"}]},
        {"prompt": "Plain.", "tags": {"structure": 4}},
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = load_records(str(tmp_path), "train")
    assert records == load_records(str(tmp_path / "train.jsonl"))
    assert records[0]["tag_brevity"] == 2 and records[0]["tag_structure"] is None
    assert records[1]["tag_structure"] == 4 and records[1]["constraints"] == []
    with pytest.raises(UserError, match="no file for split 'test'"):
        load_records(str(tmp_path), "test")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"prompt": ""}', "non-empty 'prompt'"),
        ('{"prompt": "x", "constraints": [{"kind": "bulet_count", "count": 2}]}', "did you mean 'bullet_count'"),
        ('{"prompt": "x", "tags": {"brevity": 9}}', "intensity must be an integer from 1 to 5"),
    ],
)
def test_malformed_records_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(UserError) as info:
        load_records(str(path))
    assert f"{path}:2" in str(info.value) and message in str(info.value)


def test_as_dataset_round_trips_constraints():
    records = load_records("builtin:ifeval-lite", "validation", limit=50)
    ds = as_dataset(records)
    assert len(ds) == 50
    for rec, row in zip(records, ds, strict=True):
        assert parse_constraints(row["constraints"]) == rec["constraints"]
        assert row["tag_brevity"] is None
