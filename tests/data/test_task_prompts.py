from moalign.data import prompts as P
from moalign.data.constraints import CONSTRAINTS, parse_constraints
from moalign.data.topics import TOPICS


def test_topic_partition_covers_every_topic_once_and_no_split_is_empty():
    parts = {s: set(P.split_topics(s)) for s in P.SPLITS}
    assert parts["train"].isdisjoint(parts["validation"]) and parts["train"].isdisjoint(parts["test"])
    assert parts["validation"].isdisjoint(parts["test"])
    assert set().union(*parts.values()) == set(TOPICS)
    assert all(len(p) >= 15 for p in parts.values())


def test_splits_are_topic_disjoint_in_generated_records():
    topics = {s: {r["topic"] for r in P.generate_prompts(s, 300)} for s in P.SPLITS}
    assert topics["train"].isdisjoint(topics["test"]) and topics["train"].isdisjoint(topics["validation"])
    assert topics["validation"].isdisjoint(topics["test"])
    for split, found in topics.items():
        assert found <= set(P.split_topics(split))


def test_splits_ask_for_constraints_in_disjoint_wordings_and_draw_every_wording():
    from moalign.data.constraints import constraint_instruction

    for variant in ("constraints", "tagged"):
        drawn: dict[bool, set[tuple[str, int]]] = {False: set(), True: set()}
        for split in P.SPLITS:
            held_out = split != "train"
            for record in P.generate_prompts(split, 300, variant=variant):
                for c in record["constraints"]:
                    n_own, n_other = (len(CONSTRAINTS.get(c["kind"]).wordings(h)) for h in (held_out, not held_out))
                    own = [i for i in range(n_own) if constraint_instruction(c, held_out, i) in record["prompt"]]
                    assert len(own) == 1, (record["prompt"], c)  # asked for once, in one of its split's wordings
                    for i in range(n_other):  # never in a wording of the other side, rendered with its parameters
                        assert constraint_instruction(c, not held_out, i) not in record["prompt"]
                    drawn[held_out].add((c["kind"], own[0]))
        kinds = {k for k, _ in drawn[True]}
        for held_out, pairs in drawn.items():
            assert pairs == {(k, i) for k in kinds for i in range(len(CONSTRAINTS.get(k).wordings(held_out)))}
    assert kinds == {k for k in CONSTRAINTS.names() if not CONSTRAINTS.get(k).shapes_response}  # tagged: no shapes


def test_the_wording_draw_leaves_topics_and_constraints_as_one_wording_gave_them():
    """The wordings come from a stream of their own: with every kind reduced to its first wording, the records
    are the same topics, tasks and constraints, in the same order."""
    import dataclasses
    from unittest import mock

    from moalign.data.constraints import CONSTRAINTS as REGISTRY

    records = P.generate_prompts("test", 200)
    single = {
        n: dataclasses.replace(k, instructions=k.instructions[:1], held_out_instructions=k.held_out_instructions[:1])
        for n, k in REGISTRY._items.items()
    }
    with mock.patch.dict(REGISTRY._items, single):
        one_wording = P.generate_prompts("test", 200)
    assert [{**r, "prompt": None} for r in records] == [{**r, "prompt": None} for r in one_wording]
    assert [r["prompt"] for r in records] != [r["prompt"] for r in one_wording]


def test_deterministic_for_a_seed_prefix_stable_and_seed_dependent():
    a = P.generate_prompts("train", 200, seed=3)
    assert a == P.generate_prompts("train", 200, seed=3)
    assert P.generate_prompts("train", 50, seed=3) == a[:50]
    assert [r["prompt"] for r in P.generate_prompts("train", 200, seed=4)] != [r["prompt"] for r in a]
    assert a[0]["id"] == "train-00000" and a[-1]["id"] == "train-00199"


def test_several_thousand_distinct_train_prompts_with_valid_compatible_constraints():
    records = P.generate_prompts("train", 5000)
    assert len({r["prompt"] for r in records}) == 5000
    kinds_used = set()
    for r in records:
        constraints = parse_constraints(r["constraints"])
        assert 1 <= len(constraints) <= 3
        kinds = [c["kind"] for c in constraints]
        kinds_used |= set(kinds)
        for i, k in enumerate(kinds):
            assert not CONSTRAINTS.get(k).conflicts & set(kinds[:i] + kinds[i + 1 :])
        assert r["tag_brevity"] is None and r["tag_structure"] is None
    assert kinds_used == set(CONSTRAINTS.names())


def test_tagged_variant_has_tag_prefix_matching_columns_and_no_shape_constraints():
    records = P.generate_prompts("validation", 300, variant="tagged")
    seen_levels = set()
    for r in records:
        tags = {k: r[f"tag_{k}"] for k in ("brevity", "structure")}
        assert any(v is not None for v in tags.values())
        prefix = " ".join(f"<{k} {v}>" for k, v in tags.items() if v is not None)
        assert r["prompt"].startswith(prefix + " ")
        seen_levels |= {v for v in tags.values() if v is not None}
        assert len(r["constraints"]) <= 1
        assert not any(CONSTRAINTS.get(c["kind"]).shapes_response for c in r["constraints"])
    assert seen_levels == {1, 2, 3, 4, 5}


def test_reconstrained_keeps_topic_and_task_and_asks_other_constraints_in_training_wordings():
    from moalign.data.constraints import constraint_instruction
    from moalign.data.topics import TASK_TEMPLATES

    record = P.generate_prompts("train", 1)[0]
    among = ("lowercase", "no_commas", "word_count")
    news = [P.reconstrained(record, f"k/{i}", among) for i in range(40)]
    assert all(n["topic"] == record["topic"] and n["task"] == record["task"] for n in news)
    assert {c["kind"] for n in news for c in n["constraints"]} == set(among)
    assert {len(n["constraints"]) for n in news} <= {1, 2, 3}
    for n in news:
        asked = n["prompt"].removeprefix(TASK_TEMPLATES[record["task"]].format(topic=record["topic"]) + " ")
        training = [
            {constraint_instruction(c, False, v) for v in range(len(CONSTRAINTS.get(c["kind"]).wordings()))}
            for c in n["constraints"]
        ]
        assert any(asked.startswith(w) for w in training[0])  # each request in one of its training wordings
        assert all(any(w in asked for w in ws) for ws in training)
    assert P.reconstrained(record, "k/0", among) == news[0]  # deterministic for a key
    assert P.reconstrained({"prompt": "From a file."}, "k/0") is None
