"""How trainer-backed stages checkpoint and resume, without training: the marker callback and the resume call."""

import json
from types import SimpleNamespace

from moalign.run_dir import RunDir
from moalign.training.callbacks import CheckpointMarker
from moalign.training.checkpoint import MARKER, checkpoint_state, latest_complete_checkpoint, train_resuming


class FakeTrainer:
    def __init__(self, output_dir):
        self.args = SimpleNamespace(output_dir=str(output_dir))
        self.calls = []

    def train(self, resume_from_checkpoint=None):
        self.calls.append(resume_from_checkpoint)
        return "output"


def trainer_save(output_dir, step: int) -> None:
    """What transformers' Trainer leaves in a checkpoint before the callbacks run."""
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "optimizer.pt").write_bytes(b"o" * (10 + step))
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def test_marker_callback_records_metrics_size_and_state_then_resume_restores_it(tmp_path):
    run = RunDir(tmp_path / "run")
    run.log_metrics({"train/loss": 1.0}, stage="01-grpo", step=1)
    output = tmp_path / "checkpoints"
    marker = CheckpointMarker(run, state=lambda: {"reward": {"moslim": {"n": 3}}})
    args = SimpleNamespace(output_dir=str(output), should_save=True)

    trainer = FakeTrainer(output)
    assert train_resuming(trainer, restore=lambda s: None) == "output"
    assert trainer.calls == [None]  # nothing to resume from: a fresh start

    trainer_save(output, 1)
    marker.on_save(args, SimpleNamespace(global_step=1), None)
    trainer_save(output, 2)  # killed before the callback ran: no marker
    assert latest_complete_checkpoint(output) == output / "checkpoint-1"
    saved = json.loads((output / "checkpoint-1" / MARKER).read_text())
    assert saved["files"] == {"optimizer.pt": 11, "trainer_state.json": len('{"global_step": 1}')}
    assert checkpoint_state(output / "checkpoint-1") == {
        "metrics_bytes": run.metrics_size(),
        "reward": {"moslim": {"n": 3}},
    }

    restored = []
    train_resuming(trainer, restore=restored.append)
    assert trainer.calls[-1] == str(output / "checkpoint-1")
    assert restored == [{"metrics_bytes": run.metrics_size(), "reward": {"moslim": {"n": 3}}}]


def test_only_the_saving_process_writes_the_marker(tmp_path):
    output = tmp_path / "checkpoints"
    trainer_save(output, 4)
    marker = CheckpointMarker(RunDir(tmp_path / "run"))
    marker.on_save(SimpleNamespace(output_dir=str(output), should_save=False), SimpleNamespace(global_step=4), None)
    assert not (output / "checkpoint-4" / MARKER).exists()
