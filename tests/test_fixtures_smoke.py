from moalign.generation import SamplingConfig, generate
from moalign.models import load_causal_lm, load_tokenizer


def test_tiny_llama_generates_through_project_loader(tiny_llama_dir):
    tok = load_tokenizer(str(tiny_llama_dir))
    model = load_causal_lm(str(tiny_llama_dir))
    out = generate(
        model,
        tok,
        ["hi", "a longer prompt here"],
        SamplingConfig(max_new_tokens=5, temperature=1.0),
        num_return_sequences=2,
        batch_size=1,
        progress=False,
    )
    assert [len(o) for o in out] == [2, 2]
    assert all(g.num_tokens <= 5 for o in out for g in o)
