"""``moalign merge``: a chain of LoRA adapters folded into its root model, saved as a plain checkpoint."""

from __future__ import annotations

from pathlib import Path

from moalign.errors import UserError


def merge_model(spec: str, output: str | Path) -> Path:
    """Write the full model ``spec`` loads (its root base with every adapter of its chain merged, in order)
    to ``output`` as a Hugging Face checkpoint with its tokenizer, chat template and a model card; returns
    ``output``. ``transformers.AutoModelForCausalLM.from_pretrained(output)`` loads it without moalign."""
    from moalign.models.card import chain_lines, derived_card, read_card, write_card
    from moalign.models.loading import ADAPTER_CONFIG, is_adapter, load_causal_lm, load_tokenizer, model_chain
    from moalign.models.saving import save_final_model

    if not is_adapter(spec):
        raise UserError(f"'{spec}' is not a LoRA checkpoint (no {ADAPTER_CONFIG})")
    chain = model_chain(spec)
    out = save_final_model(load_causal_lm(spec), load_tokenizer(spec), Path(output))
    steps = "\n".join(chain_lines(chain))
    description = (
        f"The full weights of `{spec}`: its root model with each LoRA adapter of the chain merged in order:\n\n{steps}"
    )
    write_card(out, derived_card(f"{Path(spec).name} (merged)", description, read_card(Path(spec).expanduser())))
    return out
