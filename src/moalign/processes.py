"""The processes of one run: a single one, or one per device under ``accelerate launch``.

Under ``accelerate launch`` (torchrun underneath; DDP, FSDP, DeepSpeed) every process runs the whole
recipe, because the trainers need every rank. The run directory is kept by the main process alone: it
holds the lock, writes the config, metrics, stage records and the summary; all processes meet at
accelerate's barrier between stages. Nothing here talks to the process group beyond that barrier.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """How many processes run this recipe (``WORLD_SIZE`` set by the launcher; 1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process keeps the run directory (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def wait_for_everyone() -> None:
    """accelerate's barrier across the launched processes; nothing for a single process."""
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        # without cpu=True on a machine with no GPU, the first PartialState is a single-process one (and
        # stays so for every later Accelerator): the barrier would wait for nobody
        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
