"""What every comparison of the benchmark measures with: step timings and peak resident memory."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import psutil
from transformers import TrainerCallback


class PeakRSS:
    """Context manager: the peak resident set size reached inside the block, above the size at entry.

    A thread samples the process's RSS every ``interval`` seconds; ``peak_mib`` is the largest sample
    minus the RSS at entry (garbage collected first), so two runs in one process compare fairly
    as long as the first one's memory was given back.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mib = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self._process = psutil.Process()
        self._start = self._process.memory_info().rss
        self._peak = self._start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        self.peak_mib = (self._peak - self._start) / 2**20


class StepTimes(TrainerCallback):
    """Wall time of each optimizer step of a transformers ``Trainer`` and the tokens it had seen after it."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.tokens_seen: list[int] = []
        self._start = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.tokens_seen.append(int(state.num_input_tokens_seen))
