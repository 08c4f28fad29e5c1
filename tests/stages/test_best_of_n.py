import json
import math
from types import SimpleNamespace

import pytest

from moalign.data import dimensions as D
from moalign.data.dimensions import measured_tags
from moalign.pipeline import run_recipe
from moalign.recipe import load_recipe
from moalign.stages import best_of_n as B
from moalign.tags import DEFAULT_TAG_DIMENSIONS, parse_tags


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def recipe_with(objectives):
    recipe = SimpleNamespace(objectives=objectives, aggregator="weighted_sum", tag_dimensions=DEFAULT_TAG_DIMENSIONS)
    return SimpleNamespace(recipe=recipe)


def test_default_reward_sums_the_task_suite_objectives_by_hand():
    reward = B.build_reward(recipe_with([]), B.BestOfNConfig())
    assert reward.names == ["constraints", "brevity", "structure"]
    prompts = ["<brevity 5> Say hi.", "Say hi."]
    completions = ["hi there", "hi, there"]
    columns = {"constraints": [[{"kind": "no_commas"}], [{"kind": "no_commas"}]]}
    matrix = reward.score(prompts, completions, **columns)
    totals = reward.aggregate(matrix).tolist()
    # sample 0: no commas (1.0) + brevity 5 asks for 1-15 words, 2 words match (1.0); structure not asked
    assert matrix.column("constraints").tolist() == [1.0, 0.0]
    assert totals[0] == pytest.approx(1.0 + matrix.column("brevity")[0].item())
    assert math.isnan(matrix.column("structure")[0].item())
    assert totals[1] == 0.0  # only the constraint applies, and it fails


def test_recipe_objectives_replace_the_defaults(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nobjectives:\n  - {name: lvl, scorer: {structure: {output: level}}, weight: 2}\n")
    reward = B.build_reward(SimpleNamespace(recipe=load_recipe(path)), B.BestOfNConfig())
    assert reward.names == ["lvl"]
    assert reward(["p"], ["## a\n\n## b"]) == [8.0]  # level 4, weight 2


def test_sample_ratings_measure_dimensions_and_bin_scores():
    objs = B.build_reward(recipe_with([]), B.BestOfNConfig()).objectives
    ratings = B.sample_ratings(
        "## A\n- a\n- b\n\n## B\nok", {"constraints": 0.5, "brevity": 1.0, "structure": 0.0}, objs, num_classes=5
    )
    assert ratings == {"brevity": 5, "structure": 5, "constraints": 3}
    ratings = B.sample_ratings("plain", {"constraints": math.nan, "brevity": 1.0, "structure": 1.0}, objs, 2)
    assert ratings == {"brevity": 2, "structure": 1, "constraints": None}


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        B.BestOfNConfig(num_generations=1)
    with pytest.raises(ValueError):
        B.BestOfNConfig(temperature=0)


def test_stage_writes_sft_pairs_ratings_and_constraint_results(tmp_path, tiny_llama_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: bon\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\nstages:\n"
        "  - best_of_n: {dataset: builtin:ifeval-lite-tagged, split: validation, num_prompts: 3,\n"
        "                num_generations: 3, max_new_tokens: 6, batch_size: 2, min_margin: 0.0}\n"
    )
    run = run_recipe(load_recipe(recipe))
    out = run.root / "01-best_of_n"
    samples, sft = read_jsonl(out / "samples.jsonl"), read_jsonl(out / "sft.jsonl")
    pairs, ratings = read_jsonl(out / "pairs.jsonl"), read_jsonl(out / "ratings.jsonl")
    assert len(samples) == 9 and len(ratings) == 9 and len(sft) == 3
    assert {s["sample"] for s in samples} == {0, 1, 2}
    for s in sft:
        group = [x for x in samples if x["id"] == s["id"]]
        assert s["score"] == max(x["total"] for x in group)
        assert s["messages"][0] == {"role": "user", "content": s["prompt"]}
        assert s["messages"][1] == {"role": "assistant", "content": s["completion"]}
    for p in pairs:
        assert p["margin"] == pytest.approx(p["chosen_score"] - p["rejected_score"], abs=1e-3) and p["margin"] > 0
        assert p["chosen"] != p["rejected"]
    for r in ratings:
        assert set(r) == {"prompt", "response", "ratings", "id"} and not r["prompt"].startswith("<")
        assert set(r["ratings"]) == {"brevity", "structure", "constraints"}
        assert r["ratings"]["brevity"] in range(1, 6) and r["ratings"]["structure"] in range(1, 6)
    assert all(isinstance(s["constraints"], list) for s in samples)
    rates = json.loads((out / "constraints.json").read_text())
    assert set(rates) == {"samples", "best"}
    summary = json.loads(run.summary_path.read_text())["stages"][0]
    assert summary["output_model"] is None
    assert summary["summary"]["data/samples"] == 9 and summary["summary"]["data/pairs"] == len(pairs)
    logged = [m for m in run.metrics() if "data/samples" in m]
    assert logged and logged[0]["stage"] == "01-best_of_n"


def test_finished_only_never_trains_on_a_cut_off_sample(tmp_path, tiny_llama_dir):
    """A tiny random model rarely ends within 6 tokens: the cut-off samples are counted and never become
    an SFT target or a pair's chosen side."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: bon\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\nstages:\n"
        "  - best_of_n: {dataset: builtin:ifeval-lite-tagged, split: validation, num_prompts: 3,\n"
        "                num_generations: 3, max_new_tokens: 6, batch_size: 2, min_margin: 0.0,\n"
        "                finished_only: true}\n"
    )
    run = run_recipe(load_recipe(recipe))
    out = run.root / "01-best_of_n"
    samples, sft, pairs = (read_jsonl(out / f) for f in ("samples.jsonl", "sft.jsonl", "pairs.jsonl"))
    finished = {s["response"] for s in samples if s["num_tokens"] < 6}
    assert all(s["completion"] in finished for s in sft) and all(p["chosen"] in finished for p in pairs)
    summary = json.loads(run.summary_path.read_text())["stages"][0]["summary"]
    assert summary["data/truncated"] == sum(s["num_tokens"] >= 6 for s in samples) > 0
    assert summary["data/eligible_targets"] == len(samples) - summary["data/truncated"]


def test_relabelled_tags_match_what_each_sample_measures(tmp_path, tiny_llama_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: bon\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\nstages:\n"
        "  - best_of_n: {dataset: [builtin:ifeval-lite, builtin:ifeval-lite-tagged], split: validation,\n"
        "                num_prompts: 4, num_generations: 3, max_new_tokens: 6, relabel_tags: true}\n"
    )
    out = run_recipe(load_recipe(recipe)).root / "01-best_of_n"
    samples, sft, pairs = (read_jsonl(out / f) for f in ("samples.jsonl", "sft.jsonl", "pairs.jsonl"))
    tagged = [s for s in samples if s["prompt"].startswith("<")]
    untagged_ids = {s["id"] for s in samples if not s["prompt"].startswith("<")}
    # every sample of a tagged prompt is an SFT row; each untagged prompt keeps its best one
    assert len(sft) == len(tagged) + len(untagged_ids) and tagged
    for s in tagged:
        row = next(r for r in sft if r["id"] == f"{s['id']}#{s['sample']}")
        assert row["completion"] == s["response"]
        assert parse_tags(row["prompt"])[1] == measured_tags(s["prompt"], s["response"])
    for p in pairs:
        if p["id"] in untagged_ids:
            continue
        tags = parse_tags(p["prompt"])[1]
        assert tags == measured_tags(p["prompt"], p["chosen"]) != measured_tags(p["prompt"], p["rejected"])


def test_extra_level_samples_ask_for_their_level_and_line_up_with_their_prompt(tmp_path, tiny_llama_dir, monkeypatch):
    """Each sample of a prompt is drawn from the request :func:`spread_requests` gives it (the spread, then
    the extra levels of a dimension the prompt is tagged with), and lands under its own prompt."""
    import moalign.generation as G

    asked = []

    def fake_generate(model, tokenizer, prompts, sampling, **kwargs):
        start = len(asked)
        asked.extend(prompts)
        return [[G.Generation(k, f"answer {start + k}.", 2, [])] for k in range(len(prompts))]

    monkeypatch.setattr(G, "generate", fake_generate)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: bon\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\nstages:\n"
        "  - best_of_n: {dataset: [builtin:ifeval-lite, builtin:ifeval-lite-tagged], split: validation,\n"
        "                num_prompts: 6, num_generations: 2, max_new_tokens: 6, batch_size: 4, spell_out_tags: true,\n"
        "                spread_levels: true, extra_level_samples: {brevity: {5: 2}}}\n"
    )
    out = run_recipe(load_recipe(recipe)).root / "01-best_of_n"
    samples = read_jsonl(out / "samples.jsonl")
    by_prompt: dict[str, list[dict]] = {}
    for s in samples:
        by_prompt.setdefault(s["id"], []).append(s)
    extra = 0
    for rows in by_prompt.values():
        prompt = rows[0]["prompt"]
        requests = D.spread_requests(prompt, 2, {"brevity": {5: 2}})
        assert [s["sample"] for s in rows] == list(range(len(requests)))
        for s in rows:
            assert asked[int(s["response"].split()[1][:-1])] == D.spell_out_tags(requests[s["sample"]])
        extra += len(requests) - 2
    assert extra > 0 and len(asked) == len(samples)  # some prompts carry a brevity tag


def test_balance_levels_writes_each_copy_after_the_rows_marked_with_its_number(tmp_path, tiny_llama_dir, monkeypatch):
    """The stage writes ``balanced_copies``' counts (here 3 for each tagged row: a tiny model's samples all
    measure one level, which needs none): the rows as before, then each tagged row's copies."""
    monkeypatch.setattr(B, "balanced_copies", lambda levels, caps: [3 if tags else 1 for tags in levels])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: bon\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\nstages:\n"
        "  - best_of_n: {dataset: [builtin:ifeval-lite, builtin:ifeval-lite-tagged], split: validation,\n"
        "                num_prompts: 4, num_generations: 3, max_new_tokens: 6, relabel_tags: true,\n"
        "                balance_levels: {brevity: 3}}\n"
    )
    run = run_recipe(load_recipe(recipe))
    sft = read_jsonl(run.root / "01-best_of_n" / "sft.jsonl")
    rows = [r for r in sft if "repeat" not in r]
    tagged = [r for r in rows if r["prompt"].startswith("<")]
    assert tagged and sft[: len(rows)] == rows
    copies = sft[len(rows) :]
    assert copies == [r | {"id": f"{r['id']}r{c}", "repeat": c} for r in tagged for c in (1, 2)]
    summary = json.loads(run.summary_path.read_text())["stages"][0]["summary"]
    assert summary["data/sft"] == len(rows) + 2 * len(tagged)


def test_stage_is_deterministic_for_the_recipe_seed(tmp_path, tiny_llama_dir):
    texts = []
    for name in ("one", "two"):
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(
            f"name: {name}\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\nstages:\n"
            "  - best_of_n: {num_prompts: 2, num_generations: 2, max_new_tokens: 4}\n"
        )
        run = run_recipe(load_recipe(recipe))
        texts.append([s["response"] for s in read_jsonl(run.root / "01-best_of_n" / "samples.jsonl")])
    assert texts[0] == texts[1]


def test_stage_objectives_override_the_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: x\nobjectives:\n  - {name: lvl, scorer: {structure: {output: level}}}\n"
        "stages:\n  - best_of_n:\n      objectives: [{name: words, scorer: length, weight: 0.5}]\n"
        "      aggregator: weighted_sum\n"
    )
    recipe = load_recipe(path)
    reward = B.build_reward(SimpleNamespace(recipe=recipe), recipe.stages[0].config)
    assert reward.names == ["words"]


def test_mixed_records_share_the_prompts_evenly_and_interleave():
    records = B.mixed_records(["builtin:ifeval-lite", "builtin:ifeval-lite-tagged"], "train", 5)
    assert [r["id"].split(":")[0] for r in records] == ["0", "1", "0", "1", "0"]
    assert records[1]["prompt"].startswith("<")  # the tagged variant
    assert not records[0]["prompt"].startswith("<")
    single = B.mixed_records("builtin:ifeval-lite", "train", 2)
    assert [r["id"] for r in single] == ["train-00000", "train-00001"]


def test_dataset_weights_share_the_prompts_in_proportion():
    assert B.prompt_shares(5, [1, 1]) == [3, 2]  # even: the first source gets the remainder
    assert B.prompt_shares(60, [2, 1]) == [40, 20]
    assert B.prompt_shares(10, [1, 1, 1]) == [4, 3, 3]
    assert B.prompt_shares(7, [3, 1]) == [5, 2]  # 5.25 and 1.75: the larger remainder rounds up
    records = B.mixed_records(["builtin:ifeval-lite", "builtin:ifeval-lite-tagged"], "train", 6, [2, 1])
    assert [r["id"].split(":")[0] for r in records] == ["0", "1", "0", "1", "0", "0"]
    with pytest.raises(ValueError, match="2 weights for 1 datasets"):
        B.BestOfNConfig(dataset="builtin:ifeval-lite", dataset_weights=[1, 2])
    with pytest.raises(ValueError, match="> 0"):
        B.BestOfNConfig(dataset=["builtin:ifeval-lite", "builtin:ifeval-lite-tagged"], dataset_weights=[1, 0])


def fake_batches(calls):
    def generate_batch(indices):
        calls.append(indices)
        if len(calls) == 2 and calls[0] == [0, 1]:
            raise KeyboardInterrupt  # the first attempt dies while drawing its second batch
        return [[B.CachedGeneration(text=f"p{i}s{j}", num_tokens=i + j) for j in range(2)] for i in indices]

    return generate_batch


def test_sample_batches_resume_from_the_batches_on_disk(tmp_path):
    progress = tmp_path / B.SAMPLED_SO_FAR
    calls: list = []
    with pytest.raises(KeyboardInterrupt):
        B.sample_batches(fake_batches(calls), 5, 2, progress)
    with open(progress, "a") as fh:
        fh.write('{"index": 2, "sam')  # torn by the kill
    resumed = B.sample_batches(fake_batches(calls), 5, 2, progress)
    assert calls == [[0, 1], [2, 3], [2, 3], [4]]  # batch [0, 1] is read back, not drawn again
    assert [[g.text for g in gens] for gens in resumed] == [[f"p{i}s0", f"p{i}s1"] for i in range(5)]
    assert resumed[4][1].num_tokens == 5
    assert B.batch_seed(3, 0) != B.batch_seed(3, 1) and B.batch_seed(3, 1) != B.batch_seed(4, 1)


def test_stage_killed_while_sampling_resumes_with_the_same_samples(tmp_path, tiny_llama_dir, monkeypatch):
    def recipe(name):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"name: {name}\nmodel: {tiny_llama_dir}\noutput_dir: {tmp_path / 'runs'}\nstages:\n"
            "  - best_of_n: {num_prompts: 3, num_generations: 2, max_new_tokens: 4, batch_size: 1}\n"
        )
        return load_recipe(path)

    straight = run_recipe(recipe("straight")).root / "01-best_of_n"
    import moalign.generation as G  # the stage imports generate when it runs: patch it where it lives

    original, calls = G.generate, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(G, "generate", dying)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe("killed"))
    monkeypatch.setattr(G, "generate", original)
    killed = tmp_path / "runs" / "killed" / "01-best_of_n"
    assert len(read_jsonl(killed / B.SAMPLED_SO_FAR)) == 1
    resumed = run_recipe(recipe("killed"), resume=True).root / "01-best_of_n"
    assert [s["response"] for s in read_jsonl(resumed / "samples.jsonl")] == [
        s["response"] for s in read_jsonl(straight / "samples.jsonl")
    ]
    assert not (resumed / B.SAMPLED_SO_FAR).exists()


def test_relabelled_pairs_contrast_each_eligible_sample_with_its_farthest_level():
    texts = ["a", "b", "c", "d"]
    levels = [{"brevity": 5}, {"brevity": 4}, {"brevity": 1}, {"brevity": 5}]
    scores = [0.9, 0.8, 0.7, 0.1]
    eligible = [0.9, 0.8, float("nan"), 0.1]  # sample 2 (e.g. cut off) may be rejected, never chosen
    pairs = B.relabelled_pairs(texts, levels, scores, eligible, k=3)
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [(0, 2, 4.0), (1, 2, 3.0), (3, 2, 4.0)]
    assert len(B.relabelled_pairs(texts, levels, scores, eligible, k=1)) == 1
    # one level everywhere: nothing to contrast
    assert B.relabelled_pairs(texts, [{"brevity": 3}] * 4, scores, scores, k=4) == []
    # mirrored: only eligible samples on both sides, each pair followed by its swap
    mirrored = B.relabelled_pairs(texts, levels, scores, eligible, k=4, mirror=True)
    assert [(p.chosen, p.rejected, p.margin) for p in mirrored] == [(0, 1, 1.0), (1, 0, 1.0), (1, 3, 1.0), (3, 1, 1.0)]


def test_level_histogram_counts_every_level_of_each_tagged_dimension():
    hist = B.level_histogram(["<brevity 2> a", "<brevity 2><structure 5> b", "c"])
    assert hist["data/levels/brevity/2"] == 2 and hist["data/levels/brevity/1"] == 0
    assert hist["data/levels/structure/5"] == 1 and len(hist) == 10
    assert B.level_histogram(["no tags"]) == {}


def test_balanced_copies_repeat_the_rows_of_rare_levels_up_to_the_cap():
    rows = [{"brevity": 1}] * 3 + [{"brevity": 5}, {}]
    assert B.balanced_copies(rows, {"brevity": 4}) == [1, 1, 1, 3, 1]  # level 5: 1 -> 3 rows, untagged once
    assert B.balanced_copies(rows, {"brevity": 2}) == [1, 1, 1, 2, 1]  # capped
    assert B.balanced_copies(rows, {"structure": 4}) == [1] * 5  # only the named dimensions
    # a short level's rows get one more copy each in turn, the first first
    assert B.balanced_copies([{"brevity": 2}] * 4 + [{"brevity": 4}] * 3, {"brevity": 4}) == [1] * 4 + [2, 1, 1]
    # the dimensions in turn, each with its cap: brevity takes row 3 to 2 copies, structure to 3
    both = [{"brevity": 1, "structure": 1}] * 3 + [{"brevity": 5, "structure": 5}]
    assert B.balanced_copies(both, {"brevity": 2}) == [1, 1, 1, 2]
    assert B.balanced_copies(both, {"brevity": 2, "structure": 4}) == [1, 1, 1, 3]
    with pytest.raises(ValueError, match="balance_levels needs relabel_tags: true"):
        B.BestOfNConfig(balance_levels={"brevity": 3})
    with pytest.raises(ValueError, match="unknown dimension 'length'"):
        B.BestOfNConfig(balance_levels={"length": 3}, relabel_tags=True)


def test_with_augmentations_adds_new_texts_marked_by_kind():
    gens = [B.CachedGeneration("One short answer. " + "word " * 20 + "end.", 30), B.CachedGeneration("Two.", 2)]
    count = lambda text: len(text.split())  # noqa: E731
    out, augmented = B.with_augmentations(gens, count, ["sentence_prefix"], {}, max_new_tokens=30)
    assert out[:2] == gens and [c.kind for c in augmented] == [None, None, "sentence_prefix"]  # cut off, finished
    assert augmented[2].source == 0
    assert out[2].text == "One short answer." and out[2].num_tokens == 3
    # cut off mid-sentence: its longest finished prefix at its own level (brevity 4) is a candidate too
    finished = "One short answer. " + "word " * 20 + "end."
    cut = B.CachedGeneration(finished + " And then", 30)
    out, augmented = B.with_augmentations([cut], count, ["sentence_prefix"], {}, max_new_tokens=30)
    assert [g.text for g in out[1:]] == ["One short answer.", finished]
    out, augmented = B.with_augmentations([cut], count, ["sentence_prefix"], {}, max_new_tokens=31)
    assert [g.text for g in out[1:]] == ["One short answer."]  # finished: no prefix at its own level
    prose = B.CachedGeneration("Tides rise. The moon pulls. The sun pulls less. Coasts flood.", 12)
    out, augmented = B.with_augmentations([prose], len, ["sentence_prefix", "layout"], {}, max_new_tokens=160)
    assert [c.kind for c in augmented] == [None] + ["layout"] * 4  # four sentences of level 5: no shorter prefix
    assert [D.structure_level(g.text) for g in out] == [1, 2, 3, 4, 5]
    # no layout or repair of a cut-off sample: its last sentence is unfinished
    assert B.with_augmentations([prose], len, ["layout"], {}, max_new_tokens=12)[1] == [B.Candidate()]
    record = {"constraints": [{"kind": "lowercase"}]}
    out, augmented = B.with_augmentations([prose], len, ["repair"], record, max_new_tokens=160)
    assert augmented == [B.Candidate(), B.Candidate("repair", 0)] and out[1].text == prose.text.lower()
    assert B.with_augmentations([prose], len, ["repair"], record, max_new_tokens=12)[1] == [B.Candidate()]


def test_repair_pairs_contrast_each_repaired_text_with_its_sample():
    nan = float("nan")
    candidates = [
        B.Candidate(),
        B.Candidate(),
        B.Candidate("repair", 1),
        B.Candidate("repair", 0),
        B.Candidate("layout", 0),
    ]
    scores, eligible = [0.5, 0.0, 1.0, 0.5, 1.0], [0.5, 0.0, 1.0, nan, 1.0]
    pairs = B.repair_pairs(candidates, scores, eligible)
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [(2, 1, 1.0)]  # 3: not eligible and no gain


def test_top_targets_are_the_best_eligible_distinct_texts():
    texts, eligible = ["a", "b", "a ", "c"], [0.5, float("nan"), 0.9, 0.9]
    assert B.top_targets(texts, eligible, 1) == [2]
    assert B.top_targets(texts, eligible, 3) == [2, 3]  # "a " repeats "a"; "b" is not eligible


def test_one_dimension_pairs_take_the_dimensions_in_turn_and_mirror_each_pair():
    texts = ["a", "b", "c", "d"]
    levels = [{"brevity": 5, "structure": 1}, {"brevity": 3, "structure": 1}]
    levels += [{"brevity": 5, "structure": 3}, {"brevity": 1, "structure": 3}]
    eligible = [0.9, 0.8, 0.7, 0.6]
    # one dimension apart: (0, 1) brevity gap 2, (2, 3) brevity gap 4, (0, 2) structure gap 2
    pairs = B.one_dimension_pairs(texts, levels, eligible, k=4)
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [(2, 3, 4.0), (3, 2, 4.0), (0, 2, 2.0), (2, 0, 2.0)]
    assert len(B.one_dimension_pairs(texts, levels, eligible, k=6)) == 6
    # an ineligible sample (cut off) is on neither side
    pairs = B.one_dimension_pairs(texts, levels, [0.9, 0.8, 0.7, float("nan")], k=8)
    assert {(p.chosen, p.rejected) for p in pairs} == {(0, 1), (1, 0), (0, 2), (2, 0)}


def test_switches_that_act_on_another_are_refused_without_it():
    with pytest.raises(ValueError, match="one_dimension_pairs needs mirror_pairs: true"):
        B.BestOfNConfig(one_dimension_pairs=True, relabel_tags=True)
    assert B.BestOfNConfig(one_dimension_pairs=True, relabel_tags=True, mirror_pairs=True).one_dimension_pairs
    with pytest.raises(ValueError, match="spread_levels needs spell_out_tags: true"):
        B.BestOfNConfig(spread_levels=True)
    with pytest.raises(ValueError, match="extra_level_samples needs spread_levels: true"):
        B.BestOfNConfig(spell_out_tags=True, extra_level_samples={"brevity": {5: 2}})
    with pytest.raises(ValueError, match="unknown dimension 'length'"):
        B.BestOfNConfig(extra_level_samples={"length": {5: 2}})
    with pytest.raises(ValueError, match="levels are 1-5 and counts >= 1, got 6: 2"):
        B.BestOfNConfig(extra_level_samples={"brevity": {6: 2}})
    for switch in ("sentence_prefixes", "layout_variants", "mirror_pairs"):
        with pytest.raises(ValueError, match=f"{switch} needs relabel_tags: true"):
            B.BestOfNConfig(**{switch: True})
        assert getattr(B.BestOfNConfig(relabel_tags=True, **{switch: True}), switch)


def test_reconstrained_targets_are_the_sample_or_its_repair_meeting_every_new_constraint():
    from moalign.data.constraints import check_constraints
    from moalign.data.prompts import generate_prompts

    record = generate_prompts("train", 1)[0]
    text = "Tides rise twice a day. The moon pulls the sea, and the sun pulls less. Coasts flood at spring tides."
    out = B.reconstrained_targets(record, text, "0/a/1", 30)
    assert 15 <= len(out) < 30  # prompts the text cannot be repaired for (too few sentences, words) left out
    for new, target in out:
        assert {c["kind"] for c in new["constraints"]} <= set(B.REPAIRABLE)
        assert all(r.satisfied for r in check_constraints(target, new["constraints"]))
        met = all(r.satisfied for r in check_constraints(text, new["constraints"]))
        assert (target == text) == met  # the sample itself where it already meets them
    edits = {"lowercase": text.lower(), "uppercase": text.upper(), "no_commas": text.replace(",", "")}
    simple = [(n["constraints"][0]["kind"], t) for n, t in out if len(n["constraints"]) == 1]
    simple = [(kind, t) for kind, t in simple if kind in edits]
    assert simple and all(t == edits[kind] for kind, t in simple)
    assert B.reconstrained_targets({"prompt": "From a file."}, text, "k", 3) == []
