"""Batched, length-sorted generation gives what one prompt at a time gives."""

import torch

from moalign.bench.generation import naive_generate
from moalign.generation import SamplingConfig, chat_inputs, generate
from moalign.models import load_causal_lm, load_tokenizer

PROMPTS = ["Hi", "Write a long list of seven colours, one per line, in upper case", "Name a fruit.", "Why?"]


def test_batched_greedy_generation_equals_one_prompt_at_a_time(tiny_llama_dir):
    model = load_causal_lm(str(tiny_llama_dir)).eval()
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    out = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=6), batch_size=3, progress=False)
    for i, text in enumerate(chat_inputs(tokenizer, PROMPTS)):
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            alone = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert out[i][0].prompt_index == i
        assert out[i][0].token_ids == alone[0, enc["input_ids"].shape[1] :].tolist()[: len(out[i][0].token_ids)]
    assert naive_generate(model, tokenizer, PROMPTS, 6) == sum(g[0].num_tokens for g in out)
