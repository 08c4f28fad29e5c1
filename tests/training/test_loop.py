"""The shared accelerate loop on a linear regression: its schedule of logs, evaluations and checkpoints,
accumulation, an early stop, and a resumed run that ends like an uninterrupted one."""

import pytest
import torch

from moalign.training.args import stage_accelerator
from moalign.training.checkpoint import checkpoint_state, list_checkpoints
from moalign.training.loop import LoopSettings, TrainingLoop

X = torch.linspace(-1, 1, 8).unsqueeze(-1)
Y = 3 * X + 1


def make_loop(tmp_path, accumulation=1, **settings) -> TrainingLoop:
    torch.manual_seed(0)
    accelerator = stage_accelerator(bf16=False, gradient_accumulation_steps=accumulation)
    base = {"max_steps": 5, "learning_rate": 0.1, "checkpoint_dir": tmp_path / "checkpoints"}
    return TrainingLoop(accelerator, torch.nn.Linear(1, 1), LoopSettings(**{**base, **settings}))


def mse(loop: TrainingLoop):
    def loss(rows: slice) -> tuple[torch.Tensor, dict[str, float]]:
        value = torch.nn.functional.mse_loss(loop.model(X[rows]), Y[rows])
        return value, {"rows": float(rows.stop - rows.start)}

    return loss


def test_logs_evaluations_and_checkpoints_follow_their_steps(tmp_path):
    loop = make_loop(tmp_path, logging_steps=2, eval_steps=3, save_steps=2, save_total_limit=1)
    logged, evaluated = [], []
    last = loop.run(
        lambda step: [slice(0, 4), slice(4, 8)],
        mse(loop),
        log=lambda step, loss, metrics: logged.append((step, metrics)),
        evaluate=evaluated.append,
        state=lambda step: {"mine": step},
        write=lambda directory: (directory / "extra.txt").write_text("x"),
    )
    assert last == 5 and logged == [(2, {"rows": 4.0}), (4, {"rows": 4.0}), (5, {"rows": 4.0})]
    assert evaluated == [3, 5]
    (kept,) = list_checkpoints(tmp_path / "checkpoints")  # step 2 rotated out; none at the last step
    assert kept.name == "checkpoint-4" and checkpoint_state(kept) == {"mine": 4}
    assert (kept / "extra.txt").read_text() == "x"


def test_two_micro_batches_accumulated_equal_one_full_batch(tmp_path):
    full = make_loop(tmp_path / "full", max_steps=3)
    full.run(lambda step: [slice(0, 8)], mse(full), log=lambda *a: None, state=dict)
    halves = make_loop(tmp_path / "halves", accumulation=2, max_steps=3)
    halves.run(lambda step: [slice(0, 4), slice(4, 8)], mse(halves), log=lambda *a: None, state=dict)
    assert halves.learning_rate == pytest.approx(full.learning_rate)
    for got, want in zip(halves.model.parameters(), full.model.parameters(), strict=True):
        torch.testing.assert_close(got, want)


def test_stop_ends_training_after_that_step(tmp_path):
    loop = make_loop(tmp_path)
    logged = []
    last = loop.run(
        lambda step: [slice(0, 8)],
        mse(loop),
        log=lambda step, loss, metrics: logged.append(step),
        stop=lambda step: step == 2,
        state=dict,
    )
    assert last == 2 and logged == [1, 2]


def test_a_run_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one(tmp_path):
    def train(directory, die_at=None):
        loop = make_loop(directory, save_steps=2)
        latest = loop.resume()
        start = checkpoint_state(latest)["step"] if latest is not None else 0

        def log(step, loss, metrics):
            if step == die_at:
                raise KeyboardInterrupt
            losses.append((step, loss.item()))

        loop.run(lambda step: [slice(0, 8)], mse(loop), start=start, log=log, state=lambda step: {"step": step})
        return loop

    losses: list = []
    straight = train(tmp_path / "straight")
    expected, losses = losses, []
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed", die_at=3)
    resumed = train(tmp_path / "killed")
    assert losses == expected
    for got, want in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(got, want)
