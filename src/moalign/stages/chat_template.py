"""The ``chat_template`` stage: the input model with preference tags rendered by its own chat template.

It trains nothing. It writes ``<stage dir>/model``: the input model with a tokenizer whose chat template turns
each brevity/structure tag into the plain request it stands for
(:func:`moalign.data.dimensions.spelled_chat_template`), so later stages, the evaluation and any user of
``tokenizer.apply_chat_template`` show the policy the same words for a tag.
The tags stay the prompt's interface (seed 002's ``<brevity 4>``); without this stage the policy must learn what
bare tag tokens mean, which a small model does not pick up in a short CPU budget (see the README).
In a recipe: ``- chat_template: {tags: spelled}``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from moalign.config.base import StrictModel
from moalign.errors import UserError
from moalign.stages.base import StageContext, StageResult, register_stage

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
"""Tokenizer files of the input model that the stage writes anew instead of copying."""


class ChatTemplateConfig(StrictModel):
    """Keys of the ``chat_template`` stage."""

    tags: Literal["spelled"] = "spelled"
    """How the template renders brevity/structure tags: ``spelled``, as the plain requests they stand for."""


@register_stage("chat_template", ChatTemplateConfig)
def run(ctx: StageContext, config: ChatTemplateConfig) -> StageResult:
    """Copy the input model and save its tokenizer with the tag-rendering chat template."""
    from moalign.atomic import atomic_directory
    from moalign.data.dimensions import spelled_chat_template
    from moalign.models import load_tokenizer
    from moalign.models.loading import is_adapter, resolve_model

    if is_adapter(ctx.model):
        raise UserError(
            "chat_template needs a full model as its input, not a LoRA checkpoint: put it before the LoRA stages",
            source=ctx.model,
        )
    tokenizer = load_tokenizer(ctx.model)
    if not tokenizer.chat_template:
        raise UserError("the model's tokenizer has no chat template to render tags with", source=ctx.model)
    try:
        tokenizer.chat_template = spelled_chat_template(tokenizer.chat_template)
    except ValueError as exc:
        raise UserError(str(exc), source=ctx.model) from None
    source = Path(resolve_model(ctx.model))
    if not source.is_dir():
        raise UserError("chat_template copies a local model directory; download the model first", source=ctx.model)
    out = ctx.dir / "model"
    with atomic_directory(out) as tmp:
        for path in source.iterdir():
            if path.is_file() and path.name not in TOKENIZER_FILES:
                shutil.copy2(path, tmp / path.name)
        tokenizer.save_pretrained(tmp)
    return StageResult(model=str(out), summary={"tags": config.tags})
