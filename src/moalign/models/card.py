"""Model cards: the ``README.md`` moalign writes beside every model it saves.

A card says what the model is (a full checkpoint, or a LoRA adapter on the model it names), where it
comes from (the chain of models from its root base, the recipe and stage that trained it and the
settings the recipe gave that stage) and, once a run's ``eval`` stage has evaluated it, its row of the
evaluation. It replaces the template peft writes with every adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from moalign.atomic import atomic_write_text

CARD_FILE = "README.md"
EVALUATION_HEADING = "## Evaluation"


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"peft": {"r": 16}}`` -> ``{"peft.r": 16}``; lists and scalars are kept as values."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_settings(value, f"{name}."))
        else:
            out[name] = value
    return out


def _front_matter(chain: Sequence[str], *, adapter: bool, tags: Sequence[str]) -> str:
    lines = ["---", f"library_name: {'peft' if adapter else 'transformers'}"]
    root = chain[0] if chain else ""
    if root and not root.startswith(("builtin:", "/", ".")) and root.count("/") == 1:
        lines.append(f"base_model: {root}")  # a hub id
    lines += ["tags:", *(f"- {t}" for t in ("moalign", *tags)), "---", ""]
    return "\n".join(lines)


def chain_lines(chain: Sequence[str]) -> list[str]:
    """A chain of models as a numbered markdown list, root first."""
    return [f"{i}. `{model}`" for i, model in enumerate(chain, start=1)]


def _load_instructions(adapter: bool) -> list[str]:
    if adapter:
        return [
            "This directory holds a LoRA adapter on the last model of the chain above. "
            "`moalign.models.load_causal_lm(DIR)` loads the whole chain merged; `moalign merge DIR OUT` writes it "
            "as a plain Hugging Face checkpoint that `transformers.AutoModelForCausalLM.from_pretrained` (and vLLM) "
            "load without moalign.",
        ]
    return ["This directory is a plain Hugging Face checkpoint: `AutoModelForCausalLM.from_pretrained(DIR)` loads it."]


def stage_card(
    *,
    recipe: str,
    stage: str,
    stage_type: str,
    chain: Sequence[str],
    adapter: bool,
    settings: Mapping[str, Any],
) -> str:
    """The card of a model a recipe's stage trained.

    ``chain`` lists the models the stage's input is built from, root base first; ``settings`` are the
    stage's keys as the recipe set them.
    """
    lines = [
        _front_matter(chain, adapter=adapter, tags=[stage_type, *(["lora"] if adapter else [])]),
        f"# {recipe} / {stage}",
        "",
        f"Trained by moalign's `{stage_type}` stage (`{stage}` of the recipe `{recipe}`), "
        f"as {'a LoRA adapter' if adapter else 'full weights'}, starting from:",
        "",
        *chain_lines(chain),
        "",
        *_load_instructions(adapter),
        "",
        "## Settings",
        "",
        "Keys the recipe set for this stage (the others take the stage's defaults):",
        "",
        "| key | value |",
        "| --- | --- |",
        *(f"| `{k}` | `{v}` |" for k, v in flat_settings(settings).items()),
        "",
    ]
    return "\n".join(lines)


def derived_card(title: str, description: str, source_card: str | None) -> str:
    """The card of a model derived from others (``moalign merge``, ``moalign soup``): a title and a
    description, then the source's card (front matter dropped) for its lineage and settings."""
    lines = [_front_matter([], adapter=False, tags=[]), f"# {title}", "", description, ""]
    lines += _load_instructions(adapter=False) + [""]
    if source_card:
        body = source_card.split("\n---\n", 1)[1] if source_card.startswith("---\n") else source_card
        lines += ["## Source model's card", "", body.replace("\n# ", "\n### ").replace("\n## ", "\n### ")]
    return "\n".join(lines)


def read_card(model_dir: Path) -> str | None:
    path = Path(model_dir) / CARD_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else None


def write_card(model_dir: Path, text: str) -> None:
    atomic_write_text(Path(model_dir) / CARD_FILE, text)


def with_evaluation(card: str, evaluation: str) -> str:
    """``card`` with its evaluation section replaced by (or, if it has none, followed by) ``evaluation``."""
    head = card.split(f"\n{EVALUATION_HEADING}\n", 1)[0].rstrip("\n")
    return f"{head}\n\n{EVALUATION_HEADING}\n\n{evaluation.strip()}\n"


def evaluation_section(metrics: Mapping[str, Any], label: str, stage: str) -> str:
    """The evaluation of ``label`` in an eval stage's ``metrics.json``, as the text of a card's section."""
    model = metrics["models"][label]
    reference = metrics["models"][metrics["reference"]]
    rows = [("mean judge reward", model["reward"]["mean"], reference["reward"]["mean"])]
    rows += [
        (f"objective `{o}`", model["objectives"].get(o), reference["objectives"].get(o)) for o in metrics["objectives"]
    ]
    rows.append(("mean response tokens", model["length"]["tokens"]["mean"], reference["length"]["tokens"]["mean"]))
    win = model.get("win_rate") or {}
    lines = [
        f"Evaluated by `{stage}` on {metrics['num_prompts']} prompts of `{metrics['dataset']}` "
        f"({metrics['split']} split, {metrics['decoding']['preset']} decoding), against the reference model "
        f"`{reference['spec']}`.",
        "",
        "| metric | this model | reference |",
        "| --- | --- | --- |",
        *(f"| {name} | {_fmt(mine)} | {_fmt(ref)} |" for name, mine, ref in rows),
    ]
    if win:
        interval = win.get("interval")
        lines += [
            "",
            f"Win rate against the reference: {_fmt(win.get('rate'))}"
            + (f" (95% interval {_fmt(interval[0])}-{_fmt(interval[1])})" if interval else "")
            + f": {win.get('wins')} wins, {win.get('ties')} ties, {win.get('losses')} losses.",
        ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
