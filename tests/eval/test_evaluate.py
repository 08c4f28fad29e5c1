"""The evaluation run on a tiny random Llama: outputs, generation cache, perplexity, controllability."""

import json
import math

import pytest
import torch

from moalign.atomic import read_jsonl
from moalign.data.sources import load_records
from moalign.errors import UserError
from moalign.eval import ControllabilityConfig, EvalSettings, GenerationCache, evaluate, model_fingerprint
from moalign.eval.controllability import intensity_curve
from moalign.eval.evaluate import labelled_models, reference_perplexity, reference_texts, unique_labels
from moalign.eval.generations import cached_generate, load_for_generation
from moalign.eval.presets import DECODING_PRESETS, decoding_preset
from moalign.generation import SamplingConfig
from moalign.tags import format_tags, parse_tags


@pytest.fixture()
def prompt_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [
        {"prompt": "Name a colour.", "reference": "Blue is a colour."},
        {"prompt": "Say hello in French.", "reference": "Bonjour."},
        {"prompt": "Count to three.", "reference": "One, two, three."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_presets_follow_the_paper():
    assert DECODING_PRESETS["sampled"].temperature == 0.6 and DECODING_PRESETS["sampled"].top_p == 0.95
    beam = decoding_preset("beam", 32)
    assert (beam.num_beams, beam.length_penalty, beam.max_new_tokens) == (4, 0.9, 32)
    assert decoding_preset("greedy", 5).temperature == 0.0


def test_perplexity_of_a_tiny_model_matches_the_nll_by_hand(tiny_llama_dir):
    from moalign.models import load_causal_lm, load_tokenizer

    prompts, refs = ["Name a colour.", "Count to three, please."], ["Blue.", "One, two, three."]
    got = reference_perplexity(str(tiny_llama_dir), prompts, refs, batch_size=2)

    tok, model = load_tokenizer(str(tiny_llama_dir)), load_causal_lm(str(tiny_llama_dir)).eval()
    total_nll, total_tokens = 0.0, 0
    for p, r in zip(prompts, refs, strict=True):
        chat = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        prompt_ids = tok(chat, add_special_tokens=False)["input_ids"]
        target = tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([prompt_ids + target])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        for j, t in enumerate(target):  # token t at position len(prompt)+j is predicted from the one before
            total_nll -= logp[len(prompt_ids) + j - 1, t].item()
        total_tokens += len(target)
    assert got == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-4)


def test_fingerprint_follows_content_not_path(tiny_llama_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, copy)
    assert model_fingerprint(str(copy)) == model_fingerprint(str(tiny_llama_dir))
    config = json.loads((copy / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5 if config.get("rms_norm_eps") != 1e-5 else 1e-6
    (copy / "config.json").write_text(json.dumps(config))
    assert model_fingerprint(str(copy)) != model_fingerprint(str(tiny_llama_dir))


def test_cached_generations_are_never_regenerated(tiny_llama_dir, tmp_path):
    cache = GenerationCache(tmp_path / "cache")
    sampling = SamplingConfig(max_new_tokens=4)
    loads = []

    def counting_load(spec):
        loads.append(spec)
        return load_for_generation(spec)

    first = cached_generate(str(tiny_llama_dir), ["a", "b"], sampling, cache=cache, load=counting_load, progress=False)
    assert first.cached == 0 and len(loads) == 1
    again = cached_generate(str(tiny_llama_dir), ["b", "a"], sampling, cache=cache, load=counting_load, progress=False)
    assert again.cached == 2 and len(loads) == 1  # the model was not even loaded
    assert [g.text for g in again.responses] == [first.responses[1].text, first.responses[0].text]
    # other decoding settings are another cache entry
    other = cached_generate(
        str(tiny_llama_dir), ["a"], SamplingConfig(max_new_tokens=3), cache=cache, load=counting_load, progress=False
    )
    assert other.cached == 0 and len(loads) == 2
    # so is the other precision (bf16 forced: slow without native kernels, but at hidden size 64 it is fast)
    fresh = GenerationCache(tmp_path / "by-precision")
    for bf16, cached in ((False, 0), (True, 0), (False, 2), (True, 2)):
        run = cached_generate(str(tiny_llama_dir), ["a", "b"], sampling, cache=fresh, progress=False, bf16=bf16)
        assert run.cached == cached


def test_reference_texts_read_the_first_reference_column():
    records = [{"prompt": "p", "chosen": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "A"}]}]
    assert reference_texts(records) == ["A"]
    assert reference_texts([{"prompt": "p"}]) == [None]


def test_model_labels():
    assert unique_labels(["runs/a/01-sft", "builtin:x", "other/01-sft"]) == ["01-sft", "x", "01-sft-2"]
    assert labelled_models(["dpo=runs/a/02-dpo", "builtin:x"]) == {"dpo": "runs/a/02-dpo", "x": "builtin:x"}
    with pytest.raises(UserError, match="used twice"):
        labelled_models(["a=x", "a=y"])


def test_intensity_curve_of_a_controllable_model():
    curve = intensity_curve([1, 1, 3, 3, 5, 5], [1.0, 2.0, 3.0, 3.0, 4.0, 5.0])
    assert [p["mean"] for p in curve["points"]] == [1.5, 3.0, 4.5]
    assert curve["points"][0]["std"] == pytest.approx(0.5)
    assert curve["spearman"] > 0.9


def test_evaluate_writes_metrics_and_samples(tiny_llama_dir, prompt_file, tmp_path):
    spec = str(tiny_llama_dir)
    settings = EvalSettings(
        dataset=str(prompt_file),
        num_samples=3,
        max_new_tokens=6,
        judge="length",
        controllability=ControllabilityConfig(num_prompts=1, intensities=[1, 5]),
        bootstrap_resamples=50,
    )
    out = tmp_path / "out"
    metrics = evaluate({"tiny": spec}, spec, settings, out, cache=GenerationCache(tmp_path / "cache"), progress=False)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    tiny, ref = metrics["models"]["tiny"], metrics["models"]["reference"]
    # the same model against itself: every prompt a tie, no reward difference
    assert tiny["win_rate"]["ties"] == tiny["win_rate"]["n"] == 3 and tiny["win_rate"]["rate"] == 0.5
    assert tiny["reward_diff"] == 0.0 and ref["win_rate"] is None
    assert tiny["reward_diff_interval"] == [0.0, 0.0] and ref["reward_diff_interval"] is None
    assert set(tiny["bleu"]) == {"bleu1", "bleu2", "bleu4"} and tiny["perplexity"] > 1
    assert metrics["num_with_reference_response"] == 3 and metrics["objectives"] == ["length"]
    assert set(metrics["controllability"]["tiny"]["sweeps"]) == {"brevity", "structure"}
    assert metrics["controllability"]["tiny"]["pairs"][0]["dimensions"] == ["brevity", "structure"]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and set(samples[0]["responses"]) == {"reference", "tiny"}
    assert samples[0]["reference_response"] == "Blue is a colour."
    assert set(samples[0]["scores"]["tiny"]) == {"total", "length"}
    # the same model is generated once; re-judging with another judge reads every response from the cache
    assert tiny["generation"] == ref["generation"] and tiny["generation"]["cached"] == 0
    rejudged = evaluate(
        {"tiny": spec},
        spec,
        settings.model_copy(update={"judge": None, "controllability": None, "perplexity": False}),
        tmp_path / "rejudged",
        cache=GenerationCache(tmp_path / "cache"),
        progress=False,
    )
    assert rejudged["models"]["tiny"]["generation"]["cached"] == 3
    assert rejudged["objectives"] == ["constraints", "brevity", "structure"]


def test_perplexity_on_a_held_out_set_names_its_source(tiny_llama_dir, prompt_file, tmp_path):
    """Seed 004 sec. 3.5 measures perplexity on the validation set, not on the evaluation prompts."""
    from moalign.eval.evaluate import reference_perplexity

    held_out = tmp_path / "validation.jsonl"
    rows = [{"prompt": "Name a fruit.", "chosen": "An apple."}, {"prompt": "Say hi.", "chosen": ""}]
    held_out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = str(tiny_llama_dir)
    base = {"dataset": str(prompt_file), "num_samples": 3, "max_new_tokens": 2, "judge": "length"}
    own = evaluate({"tiny": spec}, spec, EvalSettings(**base), tmp_path / "own", cache=None, progress=False)
    assert own["perplexity_source"] == {"dataset": str(prompt_file), "split": "test", "responses": 3}
    settings = EvalSettings(**base, perplexity_dataset=str(held_out), perplexity_split="train")
    metrics = evaluate({"tiny": spec}, spec, settings, tmp_path / "held", cache=None, progress=False)
    assert metrics["perplexity_source"] == {"dataset": str(held_out), "split": "train", "responses": 1}
    expected = reference_perplexity(spec, ["Name a fruit."], ["An apple."])
    assert metrics["models"]["tiny"]["perplexity"] == pytest.approx(expected, abs=1e-3)
    assert metrics["models"]["tiny"]["bleu"] == own["models"]["tiny"]["bleu"]  # BLEU stays on the eval set
    off = evaluate(
        {"tiny": spec}, spec, EvalSettings(**base, perplexity=False), tmp_path / "off", cache=None, progress=False
    )
    assert off["perplexity_source"] is None and off["models"]["tiny"]["perplexity"] is None


def test_constraint_satisfaction_per_kind_for_prompts_with_constraints(tiny_llama_dir, prompt_file, tmp_path):
    from moalign.data.constraints import check_constraint
    from moalign.eval.evaluate import flat_metrics

    never = {"kind": "keyword_frequency", "keyword": "zebra", "min_count": 50}  # not in 4 new tokens
    rows = [
        {"prompt": "Name a colour.", "constraints": [{"kind": "word_count", "max_words": 1000}, never]},
        {"prompt": "Say hello in French.", "constraints": [never]},
        {"prompt": "Count to three."},  # no constraints: left out of the rates
    ]
    path = tmp_path / "constrained.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = str(tiny_llama_dir)
    settings = EvalSettings(dataset=str(path), num_samples=3, max_new_tokens=4, judge="length", perplexity=False)
    metrics = evaluate({"tiny": spec}, spec, settings, tmp_path / "out", cache=None, progress=False)
    first = read_jsonl(tmp_path / "out" / "samples.jsonl")[0]["responses"]
    for label in ("tiny", "reference"):
        rates = metrics["models"][label]["constraints"]
        bounded = float(check_constraint(first[label], rows[0]["constraints"][0]).satisfied)  # any words: 1
        assert (rates["prompts"], rates["constraints"], rates["prompt_level"]) == (2, 3, 0.0)
        assert rates["constraint_level"] == round(bounded / 3, 4)
        kinds = rates["per_kind"]
        assert kinds["word_count"] == {"n": 1, "satisfied": bounded, "partial": bounded} and len(kinds) == 2
        assert kinds["keyword_frequency"]["n"] == 2 and kinds["keyword_frequency"]["satisfied"] == 0.0
        assert kinds["keyword_frequency"]["partial"] <= 4 / 50  # four tokens hold at most four "zebra"s
        assert flat_metrics(metrics)[f"eval/{label}/constraints/prompt_level"] == 0.0
    plain_settings = settings.model_copy(update={"dataset": str(prompt_file)})
    plain = evaluate({"tiny": spec}, spec, plain_settings, tmp_path / "p", cache=None, progress=False)
    assert plain["models"]["tiny"]["constraints"] is None  # prompts without constraints
    assert not any("/constraints/" in k for k in flat_metrics(plain))


def test_controllability_sweeps_only_the_models_asked_for(tiny_llama_dir, prompt_file, tmp_path):
    spec = str(tiny_llama_dir)
    control = ControllabilityConfig(num_prompts=1, intensities=[1, 5], pairs=False, models=["tiny"])
    settings = EvalSettings(
        dataset=str(prompt_file),
        num_samples=1,
        max_new_tokens=4,
        judge="length",
        controllability=control,
        perplexity=False,
        bootstrap_resamples=10,
    )
    metrics = evaluate({"tiny": spec}, spec, settings, tmp_path / "out", cache=None, progress=False)
    assert set(metrics["controllability"]) == {"tiny"}
    # every sweep response on disk, with its tags and levels, for the swept model only
    swept_rows = read_jsonl(tmp_path / "out" / "controllability.jsonl")
    assert len(swept_rows) == 4 and {r["model"] for r in swept_rows} == {"tiny"}
    assert [(r["group"], r["tags"]) for r in swept_rows] == [
        ("sweep:brevity", {"brevity": 1}),
        ("sweep:brevity", {"brevity": 5}),
        ("sweep:structure", {"structure": 1}),
        ("sweep:structure", {"structure": 5}),
    ]
    assert all(r["prompt"].startswith("<") and set(r["levels"]) == {"brevity", "structure"} for r in swept_rows)
    # evaluated again into the same directory without sweeps: no sweep file of the earlier run is left
    evaluate({"tiny": spec}, spec, settings.model_copy(update={"controllability": None}), tmp_path / "out", cache=None)
    assert not (tmp_path / "out" / "controllability.jsonl").exists()
    # the sweeps' prompts from their own dataset: the tagged suite's first test prompt, its tags removed
    own = control.model_copy(update={"dataset": "builtin:ifeval-lite-tagged", "split": "test"})
    cache = GenerationCache(tmp_path / "cache")
    evaluate({"tiny": spec}, spec, settings.model_copy(update={"controllability": own}), tmp_path / "own", cache=cache)
    cached = {r["prompt"] for path in (tmp_path / "cache").glob("*.jsonl") for r in read_jsonl(path)}
    first = parse_tags(load_records("builtin:ifeval-lite-tagged", "test", limit=1)[0]["prompt"])[0].strip()
    swept = {format_tags({d: n}, first) for d in ("brevity", "structure") for n in (1, 5)}
    assert swept <= cached and not any(p.startswith("<") for p in cached - swept)
    wrong = settings.model_copy(update={"controllability": control.model_copy(update={"models": ["sft"]})})
    with pytest.raises(UserError, match=r"controllability.models names \['sft'\]"):
        evaluate({"tiny": spec}, spec, wrong, tmp_path / "wrong", cache=None, progress=False)


@pytest.mark.parametrize("preset", ["sampled", "beam"])
def test_presets_generate_and_sampling_is_reproducible_for_a_seed(tiny_llama_dir, preset):
    sampling = decoding_preset(preset, 4)
    runs = [
        cached_generate(str(tiny_llama_dir), ["Hi", "Name a colour."], sampling, cache=None, seed=7, progress=False)
        for _ in range(2)
    ]
    assert [g.text for g in runs[0].responses] == [g.text for g in runs[1].responses]
    assert all(g.num_tokens <= 4 for g in runs[0].responses)
