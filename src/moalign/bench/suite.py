"""``moalign bench``: every comparison in one process, a table, and ``bench.json``.

The order is fixed (peak, DPO, GRPO, generation, reward phase) and so are the sizes of the full and
the ``quick`` run. ``bench.json`` holds one entry per comparison (``dpo``, ``grpo``, ``generation``,
``reward``), each with the baseline's and the project's absolute figures, the precision each side ran
in (``bf16``) and ``speedup`` (project over baseline), plus the peak and the machine (its CPU features:
AVX2, AVX-512 BF16, AMX), so that a later run can be compared with it. The baseline is TRL's true
defaults on this machine (bf16 where the CPU runs it natively: :mod:`moalign.bench.baseline`); on such a
CPU the project's stages are also measured in float32 (the ``fp32`` rows), which shows per stage
whether bf16 pays.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from moalign.atomic import atomic_write_json
from moalign.bench.dpo import time_dpo
from moalign.bench.generation import time_generation
from moalign.bench.grpo import time_grpo
from moalign.bench.peak import machine_peak
from moalign.bench.reward_phase import time_reward_phase
from moalign.generation import BATCH_SIZE
from moalign.precision import fast_bf16_on_cpu
from moalign.stages.grpo import GRPOStageConfig

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "peak": {"size": 2048, "repeats": 5},
        "dpo": {"batch_size": 4, "steps": 3, "warmup": 1},
        "grpo": {"num_generations": 8, "max_completion_length": 48, "steps": 2, "warmup": 1},
        "generation": {"num_prompts": 16, "max_new_tokens": 48, "batch_size": BATCH_SIZE},
        "reward": {"batch_size": 16, "seq_len": 128, "repeats": 3, "warmup": 1},
    },
    "quick": {
        "peak": {"size": 256, "repeats": 2},
        "dpo": {"batch_size": 1, "steps": 1, "warmup": 0},
        "grpo": {"num_generations": 2, "max_completion_length": 4, "steps": 1, "warmup": 0},
        "generation": {"num_prompts": 2, "max_new_tokens": 4, "batch_size": 2},
        "reward": {"batch_size": 2, "seq_len": 16, "repeats": 1, "warmup": 0},
    },
}
"""Workload sizes of the full run (the README's table) and of ``--quick`` (a smoke run)."""

DPO_VARIANTS: dict[str, dict[str, Any]] = {"lora": {"peft": {}}}
"""DPO stage settings measured beside its defaults (``peft: {}`` is LoRA with the stage's LoRA defaults)."""

GRPO_VARIANTS: dict[str, dict[str, Any]] = {"stage beta": {"beta": GRPOStageConfig.model_fields["beta"].default}}
"""GRPO settings measured beside the equal-settings row: the stage's own KL coefficient (a reference forward)."""

FP32_VARIANT: dict[str, dict[str, Any]] = {"fp32": {"bf16": False}}
"""On a CPU with native bf16, where the project's stages default to bf16, the same stage in float32 too:
the measurement that says whether bf16 pays for that stage."""

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
"""The CPU features the figures depend on: AVX2 (float32 kernels), AVX-512 BF16 and AMX (native bf16)."""


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux), else the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_features(cpuinfo: str) -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` the ``flags`` line of ``/proc/cpuinfo`` text lists."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return {flag: flag in flags for flag in CPU_FLAGS}


def machine() -> dict[str, Any]:
    """What the figures were measured on, including the load the machine carried at the time."""
    cpuinfo = Path("/proc/cpuinfo")
    return {
        "cpu": cpu_name(),
        "cpu_features": cpu_features(cpuinfo.read_text() if cpuinfo.exists() else ""),
        "native_bf16": fast_bf16_on_cpu(),
        "cores": psutil.cpu_count(logical=True),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.is_available(),
        "load_average": list(os.getloadavg()),
    }


def run_bench(
    model: str, *, quick: bool = False, reward_backbone: str = "builtin:minilm-l6", k: int = 3, out: Path
) -> dict[str, Any]:
    """Run every comparison, write ``out`` (JSON) and return what was written."""
    sizes = SIZES["quick" if quick else "full"]
    start = time.perf_counter()
    result: dict[str, Any] = {"model": model, "quick": quick, "machine": machine()}
    result["peak"] = machine_peak(**sizes["peak"])
    fp32 = FP32_VARIANT if result["machine"]["native_bf16"] else {}
    with tempfile.TemporaryDirectory(prefix="moalign-bench-") as tmp:
        workdir = Path(tmp)
        dpo_variants = {**DPO_VARIANTS, **fp32}
        result["dpo"] = time_dpo(model, peak=result["peak"], workdir=workdir, variants=dpo_variants, **sizes["dpo"])
        result["grpo"] = time_grpo(model, workdir=workdir, variants={**GRPO_VARIANTS, **fp32}, **sizes["grpo"])
    result["generation"] = time_generation(model, variants=fp32, **sizes["generation"])
    reward = time_reward_phase(k=k, backbone=reward_backbone, **sizes["reward"])
    result["reward"] = {
        **{key: reward[key] for key in ("k", "batch_size", "seq_len", "backbone")},
        "baseline": {"seconds": reward["separate_s"], "bf16": False},
        "project": {"seconds": reward["multihead_s"], "bf16": False},
        "speedup": reward["ratio"],
        "notes": [],
    }
    result["machine"]["load_average_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - start
    atomic_write_json(out, result)
    return result


def _row(name: str, baseline: str, project: str, speedup: float, extra: str = "") -> str:
    return f"| {name} | {baseline} | {project} | {speedup:.2f}x | {extra} |"


def format_table(result: dict[str, Any]) -> str:
    """The bench's results as a Markdown table (what ``moalign bench`` prints and the README shows)."""
    peak, dpo, grpo, gen, reward = (result[key] for key in ("peak", "dpo", "grpo", "generation", "reward"))
    b, p = dpo["baseline"], dpo["project"]

    def precision(side: dict[str, Any]) -> str:
        return "bf16" if side["bf16"] else "fp32"

    machine = result["machine"]
    features = ", ".join(flag for flag, present in machine.get("cpu_features", {}).items() if present) or "unknown"
    lines = [
        f"machine: {machine['cpu']} ({features}; native bf16: {'yes' if machine.get('native_bf16') else 'no'})",
        f"peak matmul: {peak['fp32_gflops']:.1f} GFLOP/s fp32, {peak['bf16_gflops']:.1f} GFLOP/s bf16",
        "",
        "| comparison | TRL defaults / baseline | moalign | speedup | notes |",
        "|---|---|---|---|---|",
        _row(
            f"DPO, {dpo['batch_pairs']} pairs/step, trained tokens/s",
            f"{b['tokens_per_s']:.1f} ({b['step_s']:.1f} s/step, MFU {b['mfu']:.0%} of {precision(b)} peak, "
            f"{b['peak_rss_mib']:.0f} MiB)",
            f"{p['tokens_per_s']:.1f} ({p['step_s']:.1f} s/step, MFU {p['mfu']:.0%} of {precision(p)} peak, "
            f"{p['peak_rss_mib']:.0f} MiB)",
            dpo["speedup"],
            "; ".join(dpo["notes"]),
        ),
    ]
    for name, v in dpo.get("variants", {}).items():
        lines.append(
            _row(
                f"DPO, {name}",
                "as above",
                f"{v['tokens_per_s']:.1f} ({v['step_s']:.1f} s/step, MFU {v['mfu']:.0%} of {precision(v)} peak, "
                f"{v['peak_rss_mib']:.0f} MiB)",
                v["speedup"],
            )
        )

    def grpo_side(side: dict[str, Any]) -> str:
        return (
            f"{side['completions_per_s']:.2f} (generation {side['generation_s']:.1f} s, update "
            f"{side['update_s']:.1f} s, {side['generated_tokens_per_s']:.1f} gen tok/s, beta {side['beta']:g}, "
            f"{precision(side)})"
        )

    lines.append(
        _row(
            f"GRPO step, {grpo['num_generations']} completions <= {grpo['max_completion_length']} tokens, "
            "completions/s",
            grpo_side(grpo["baseline"]),
            grpo_side(grpo["project"]),
            grpo["speedup"],
            "; ".join(grpo["notes"]),
        )
    )
    for name, v in grpo.get("variants", {}).items():
        lines.append(_row(f"GRPO, {name}", "as above", grpo_side(v), v["speedup"]))
    lines.append(
        _row(
            f"evaluation generation, {gen['prompts']} prompts x <= {gen['max_new_tokens']} tokens, tokens/s",
            f"{gen['baseline']['tokens_per_s']:.1f} (one prompt at a time, {precision(gen['baseline'])})",
            f"{gen['project']['tokens_per_s']:.1f} (batches of {gen['batch_size']}, {precision(gen['project'])})",
            gen["speedup"],
        )
    )
    for name, v in gen.get("variants", {}).items():
        lines.append(_row(f"evaluation generation, {name}", "as above", f"{v['tokens_per_s']:.1f}", v["speedup"]))
    lines.append(
        _row(
            f"reward phase, {reward['k']} objectives, batch {reward['batch_size']} x {reward['seq_len']} tokens, s",
            f"{reward['baseline']['seconds']:.3f} ({reward['k']} models, {precision(reward['baseline'])})",
            f"{reward['project']['seconds']:.3f} (one multi-head model, {precision(reward['project'])})",
            reward["speedup"],
        )
    )
    return "\n".join(lines)
