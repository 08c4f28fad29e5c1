import json

import pytest

from moalign.atomic import append_jsonl, atomic_directory, atomic_write_json, read_jsonl


def test_atomic_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "summary.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temp files left


def test_atomic_directory_is_all_or_nothing(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("crash while writing")
    assert (target / "weights").read_text() == "v1"  # the complete old checkpoint survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_read_jsonl_skips_only_a_torn_final_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with open(path, "a") as fh:
        fh.write('{"step": 3, "lo')  # a crash mid-write
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{broken\n{"step": 3}\n')
    with pytest.raises(json.JSONDecodeError):
        read_jsonl(path)
