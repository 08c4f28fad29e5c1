"""Batched, length-sorted generation gives what one prompt at a time gives."""

import torch

from moalign.bench.generation import naive_generate
from moalign.generation import SamplingConfig, chat_inputs, completion_end, generate
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


def test_completion_end_by_eos_stop_string_or_length():
    decode = "".join  # one character per token
    assert completion_end(list("abc") + [0], {0}, decode) == (3, True)
    assert completion_end(list("abcdef"), {0}, decode, stop=("cd", "zz")) == (4, False)  # ends with the "d"
    assert completion_end(list("ab") + [0] + list("cd"), {0}, decode, stop=("cd",)) == (2, True)
    assert completion_end(list("abc"), {0}, decode, stop=("zz",)) == (3, False)


def test_stop_string_cuts_the_greedy_completion_after_its_first_occurrence(tiny_llama_dir):
    model = load_causal_lm(str(tiny_llama_dir)).eval()
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    full = generate(model, tokenizer, ["Hi"], SamplingConfig(max_new_tokens=12), progress=False)[0][0]
    stop = full.text[len(full.text) // 2 :][:2]
    assert len(stop) == 2
    cut = generate(model, tokenizer, ["Hi"], SamplingConfig(max_new_tokens=12, stop=(stop,)), progress=False)[0][0]
    decode = tokenizer.decode
    # the same greedy tokens, cut at the first token whose prefix contains the stop string
    assert cut.token_ids == full.token_ids[: cut.num_tokens] and cut.num_tokens <= full.num_tokens
    assert stop in cut.text and full.text.startswith(cut.text)
    assert stop not in decode(cut.token_ids[:-1], skip_special_tokens=True)


def test_shared_prefix_generation_equals_plain_generate(tiny_llama_dir):
    from moalign.generation import generate_shared_prefix

    model = load_causal_lm(str(tiny_llama_dir)).eval()
    tokenizer = load_tokenizer(str(tiny_llama_dir), padding_side="left")
    texts = chat_inputs(tokenizer, [PROMPTS[1], PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[3]])  # repeats, apart
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.inference_mode():
        plain = model.generate(**enc, **kwargs)
        widths = []
        forward = model.forward
        model.forward = lambda *a, **kw: widths.append(tuple(kw["input_ids"].shape)) or forward(*a, **kw)
        shared = generate_shared_prefix(model, enc["input_ids"], enc["attention_mask"], **kwargs)
        del model.forward
        # one prefill of the 3 distinct prompts but their last token, then every row from its last prompt token on
        assert widths[:2] == [(3, enc["input_ids"].shape[1] - 1), (5, 1)]
        torch.manual_seed(3)
        sampled = generate_shared_prefix(
            model, enc["input_ids"], enc["attention_mask"], **{**kwargs, "do_sample": True}
        )
        torch.manual_seed(3)
        sampled_plain = model.generate(**enc, **{**kwargs, "do_sample": True})
    assert shared.tolist() == plain.tolist()
    assert sampled.tolist() == sampled_plain.tolist()  # the prefill draws no random numbers


def test_samples_of_one_prompt_share_its_prefill(tiny_llama_dir, monkeypatch):
    import moalign.generation as generation

    model = load_causal_lm(str(tiny_llama_dir)).eval()
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    calls = []
    original = generation.generate_shared_prefix
    monkeypatch.setattr(
        generation,
        "generate_shared_prefix",
        lambda m, ids, mask, **kw: calls.append(ids.shape) or original(m, ids, mask, **kw),
    )
    sampling = SamplingConfig(max_new_tokens=4, temperature=1.0)
    out = generate(model, tokenizer, PROMPTS[:2], sampling, num_return_sequences=3, batch_size=2, progress=False)
    assert [len(gens) for gens in out] == [3, 3]
    assert len(calls) == 1 and calls[0][0] == 6  # 2 prompts x 3 samples, in one call


def test_packed_linear_weights_equal_the_default_matmul_and_are_restored(tiny_llama_dir):
    from moalign.generation import packed_linear_weights

    model = load_causal_lm(str(tiny_llama_dir)).eval()
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    patched = lambda: [m for m in linears if "forward" in vars(m)]  # noqa: E731
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with packed_linear_weights(model, rows=2):
            assert patched() == linears  # the LM head included
            packed = model(input_ids=ids).logits
            with packed_linear_weights(model, rows=2):  # nested: leaves the outer packing in place
                pass
            assert patched() == linears
        assert patched() == []
    assert torch.allclose(packed, plain, atol=1e-5)
    with packed_linear_weights(model, rows=2):  # gradients on: the default matmul (packed weights have no backward)
        assert patched() == []
