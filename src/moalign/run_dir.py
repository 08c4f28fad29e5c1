"""The run directory ``runs/NAME/``: resolved config, metrics, stage outputs and the summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from moalign.atomic import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl


class RunDir:
    """Paths and writers for one run. Every file is written atomically; metrics are JSONL."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()

    @property
    def config_path(self) -> Path:
        return self.root / "config.resolved.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def stage_dir(self, index: int, stage_type: str) -> Path:
        path = self.root / f"{index:02d}-{stage_type}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.config_path, yaml_text)

    def log_metrics(self, metrics: dict[str, Any], *, stage: str, step: int | None = None) -> None:
        record: dict[str, Any] = {"stage": stage, "step": step, "time": round(time.time() - self._t0, 3)}
        record.update(metrics)
        append_jsonl(self.metrics_path, record)

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)
