import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from moalign.training.checkpoint import (
    MARKER,
    checkpoint_problem,
    checkpoint_state,
    checkpoints_to_remove,
    discard_incomplete,
    latest_complete_checkpoint,
    list_checkpoints,
    rotate_checkpoints,
    safetensors_problem,
    save_checkpoint,
)


def write_weights(directory, value: float = 1.0) -> None:
    save_file({"w": torch.full((4, 4), value), "b": torch.zeros(3)}, directory / "model.safetensors")
    (directory / "optimizer.bin").write_bytes(b"x" * 100)


def save(root, step: int, **state):
    return save_checkpoint(root, step, lambda tmp: write_weights(tmp, step), state)


def test_empty_or_missing_directory_has_no_checkpoint(tmp_path):
    assert latest_complete_checkpoint(tmp_path / "absent") is None
    assert latest_complete_checkpoint(tmp_path) is None
    (tmp_path / "checkpoint-3").mkdir()  # an empty checkpoint directory is not complete
    assert latest_complete_checkpoint(tmp_path) is None


def test_saved_checkpoint_is_complete_and_keeps_its_state(tmp_path):
    path = save(tmp_path, 7, position=7, reward={"moslim": {"n": [1, 2]}})
    assert path == tmp_path / "checkpoint-7"
    assert checkpoint_problem(path) is None
    assert checkpoint_state(path) == {"position": 7, "reward": {"moslim": {"n": [1, 2]}}}
    marker = json.loads((path / MARKER).read_text())
    assert marker["step"] == 7 and set(marker["files"]) == {"model.safetensors", "optimizer.bin"}
    assert marker["files"]["optimizer.bin"] == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-7"]  # no temporary directory left


def test_checkpoints_sort_by_step_not_by_name(tmp_path):
    for step in (10, 9, 100):
        save(tmp_path, step)
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]
    assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-100"


def test_missing_marker_falls_back_to_the_previous_checkpoint_with_a_warning(tmp_path, caplog):
    save(tmp_path, 1)
    partial = tmp_path / "checkpoint-2"
    partial.mkdir()
    write_weights(partial)  # every file there, but the marker was never written
    with caplog.at_level(logging.WARNING, logger="moalign.training.checkpoint"):
        assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-1"
    assert f"skipping incomplete checkpoint {partial}: no {MARKER}" in caplog.text


def test_truncated_safetensors_is_detected_even_with_a_marker(tmp_path, caplog):
    save(tmp_path, 1)
    bad = save(tmp_path, 2)
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])
    assert checkpoint_problem(bad) == f"model.safetensors has {len(data) - 10} bytes, {MARKER} records {len(data)}"
    # a truncated file that the marker agrees with (the marker written over a short file) is still caught
    marker = json.loads((bad / MARKER).read_text())
    marker["files"]["model.safetensors"] = len(data) - 10
    (bad / MARKER).write_text(json.dumps(marker))
    assert checkpoint_problem(bad) == f"model.safetensors: {len(data) - 10} bytes, the header declares {len(data)}"
    with caplog.at_level(logging.WARNING):
        assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-1"
    assert str(bad) in caplog.text


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "model.safetensors: 0 bytes, shorter than a safetensors header"),
        ((1000).to_bytes(8, "little") + b"{}", "model.safetensors: header of 1000 bytes runs past the end of the file"),
        ((4).to_bytes(8, "little") + b"\xff\xfe{}", "model.safetensors: unreadable header"),
    ],
)
def test_safetensors_problems(tmp_path, content, problem):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    assert safetensors_problem(path).startswith(problem)


def test_whole_safetensors_file_has_no_problem(tmp_path):
    write_weights(tmp_path)
    assert safetensors_problem(tmp_path / "model.safetensors") is None


def test_missing_file_and_unreadable_marker_are_problems(tmp_path):
    path = save(tmp_path, 1)
    (path / "optimizer.bin").unlink()
    assert checkpoint_problem(path) == "optimizer.bin is missing"
    (path / MARKER).write_text('{"step": 1, "fil')
    assert checkpoint_problem(path) == f"unreadable {MARKER}"


def test_discard_incomplete_removes_newer_partial_and_temporary_directories(tmp_path):
    save(tmp_path, 2)
    (tmp_path / "checkpoint-1").mkdir()  # older and incomplete: left alone (never resumed from)
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / ".checkpoint-4.abc.tmp").mkdir()
    removed = discard_incomplete(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint-4.abc.tmp", "checkpoint-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-2"]


def test_rotation_keeps_the_newest_n_and_the_protected():
    assert checkpoints_to_remove([1, 2, 3, 4, 5], keep_last=2) == [1, 2, 3]
    assert checkpoints_to_remove([1, 2, 3, 4, 5], keep_last=2, protect=[2]) == [1, 3]
    assert checkpoints_to_remove([1, 2], keep_last=0) == [1]  # the newest always stays
    assert checkpoints_to_remove([], keep_last=3) == []


def test_rotate_checkpoints_on_disk(tmp_path):
    for step in (1, 2, 3, 4):
        save(tmp_path, step)
    rotate_checkpoints(tmp_path, None)
    assert len(list_checkpoints(tmp_path)) == 4
    rotate_checkpoints(tmp_path, 2, protect=[1])
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-1", "checkpoint-3", "checkpoint-4"]
