"""Dataset adapters on small files written here in each source's exact schema (never downloaded data)."""

import json
import logging

import pytest
from pydantic import ValidationError

from moalign.data.adapters import ADAPTERS, AdapterSpec, adapt_rows, hh_transcript, load_adapted
from moalign.data.specs import load_dataset_spec
from moalign.errors import UserError
from moalign.tags import parse_tags


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def chat(user, assistant):
    return [{"content": user, "role": "user"}, {"content": assistant, "role": "assistant"}]


def ufb_row(i):
    """A row of HuggingFaceH4/ultrafeedback_binarized (train_prefs)."""
    return {
        "prompt": f"Question {i}?",
        "prompt_id": f"{i:064d}",
        "chosen": chat(f"Question {i}?", f"Good answer {i}."),
        "rejected": chat(f"Question {i}?", f"Bad answer {i}."),
        "messages": chat(f"Question {i}?", f"Good answer {i}."),
        "score_chosen": 8.0,
        "score_rejected": 3.5,
    }


def uf_completion(response, helpfulness, honesty, truthfulness="N/A"):
    """One element of openbmb/UltraFeedback's ``completions`` list."""
    return {
        "annotations": {
            "helpfulness": {"Rating": helpfulness, "Rationale": "r", "Rationale For Rating": "r", "Type": ["1"]},
            "honesty": {"Rating": honesty, "Rationale": "r"},
            "instruction_following": {"Rating": "5", "Rationale": "r"},
            "truthfulness": {"Rating": truthfulness, "Rationale": "r", "Rationale For Rating": "r", "Type": ["0"]},
        },
        "critique": "c",
        "custom_system_prompt": "",
        "fine-grained_score": 4.0,
        "model": "m",
        "overall_score": 7.0,
        "principle": "helpfulness",
        "response": response,
    }


def us_row(rating):
    """A row of openbmb/UltraSafety (harmlessness annotations are one-element lists)."""
    return {
        "source": "AdvBench",
        "prompt": "Jailbreak: how do I pick a lock?",
        "instruction": "How do I pick a lock?",
        "models": ["m"],
        "completions": [
            {
                "custom_system_prompt": "",
                "model": "m",
                "principle": "harmlessness",
                "response": "No.",
                "annotations": {"harmlessness": [{"Rating": rating, "Rationale": "r", "Rationale For Rating": "r"}]},
            }
        ],
    }


HH_MULTI = "\n\nHuman: Hi there.\n\nAssistant: Hello!\n\nHuman: Name a fruit.\n\nAssistant: An apple."


def test_smoltalk_gives_sft_messages_and_a_held_out_fraction(tmp_path):
    rows = [{"messages": chat(f"q{i}", f"a{i}"), "source": "smol-magpie-ultra"} for i in range(10)]
    spec = AdapterSpec(adapter="smoltalk", path=write_jsonl(tmp_path / "smoltalk.jsonl", rows))
    data = load_dataset_spec(spec)
    assert data.to_list()[3] == {
        "messages": [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"}]
    }
    parts = data.train_test_split(test_size=0.1, seed=0)  # what validation_fraction: 0.1 does (seed 000)
    assert (len(parts["train"]), len(parts["test"])) == (9, 1)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_ultrafeedback_binarized_preferences_with_seed_004_split(tmp_path, suffix):
    rows = [ufb_row(i) for i in range(5)]
    path = tmp_path / f"ufb.{suffix}"
    if suffix == "parquet":
        from datasets import Dataset

        Dataset.from_list(rows).to_parquet(str(path))
    else:
        write_jsonl(path, rows)
    train = load_adapted(AdapterSpec(adapter="ultrafeedback_binarized", path=str(path), split="train_prefs[2:]"))
    validation = load_adapted(AdapterSpec(adapter="ultrafeedback_binarized", path=str(path), split="train_prefs[:2]"))
    assert [r["prompt"] for r in validation.to_list()] == ["Question 0?", "Question 1?"]
    assert train.to_list()[0] == {"prompt": "Question 2?", "chosen": "Good answer 2.", "rejected": "Bad answer 2."}
    assert len(train) == 3


def test_ultrafeedback_binarized_prompts_and_sft_records(tmp_path):
    path = write_jsonl(tmp_path / "ufb.jsonl", [ufb_row(0)])
    prompts = load_adapted(AdapterSpec(adapter="ultrafeedback_binarized", path=path, records="prompts"))
    assert prompts.to_list() == [{"prompt": "Question 0?"}]
    sft = load_adapted(AdapterSpec(adapter="ultrafeedback_binarized", path=path, records="sft"))
    assert sft.to_list()[0]["messages"][-1] == {"role": "assistant", "content": "Good answer 0."}


def test_ultrafeedback_ratings_one_record_per_completion_and_na_unrated(tmp_path):
    row = {
        "source": "evol_instruct",
        "instruction": "Explain rain.",
        "models": ["a", "b"],
        "completions": [uf_completion("Water falls.", "4", "5"), uf_completion("Dunno.", "1", "N/A", "2")],
        "correct_answers": [],
        "incorrect_answers": [],
    }
    path = write_jsonl(tmp_path / "uf.jsonl", [row])
    all_dims = load_adapted(AdapterSpec(adapter="ultrafeedback", path=path)).to_list()
    assert all_dims[0] == {
        "prompt": "Explain rain.",
        "response": "Water falls.",
        "ratings": {"helpfulness": 4, "honesty": 5, "instruction_following": 5, "truthfulness": None},
    }
    assert all_dims[1]["ratings"]["truthfulness"] == 2 and all_dims[1]["ratings"]["honesty"] is None
    two = AdapterSpec(adapter="ultrafeedback", path=path, dimensions=["helpfulness", "honesty"])
    assert [r["ratings"] for r in load_adapted(two).to_list()] == [
        {"helpfulness": 4, "honesty": 5},
        {"helpfulness": 1, "honesty": None},
    ]


def test_ultrasafety_harmless_ratings_and_a_mixed_list_shares_one_schema(tmp_path):
    us = write_jsonl(tmp_path / "us.jsonl", [us_row("1"), us_row("0"), us_row("Harmful")])
    uf_row = {"instruction": "Q?", "completions": [uf_completion("A.", "3", "2")]}
    uf = write_jsonl(tmp_path / "uf.jsonl", [uf_row])
    safety = load_adapted(AdapterSpec(adapter="ultrasafety", path=us)).to_list()
    assert [r["ratings"] for r in safety] == [{"harmless": 1}, {"harmless": 0}, {"harmless": 0}]
    assert safety[0]["prompt"] == "Jailbreak: how do I pick a lock?"
    mixed = load_adapted(
        [
            AdapterSpec(adapter="ultrafeedback", path=uf, dimensions=["helpfulness", "honesty"]),
            AdapterSpec(adapter="ultrasafety", path=us, columns={"prompt": "instruction"}),
        ]
    ).to_list()
    assert mixed[0]["ratings"] == {"helpfulness": 3, "honesty": 2, "harmless": None}
    assert mixed[1] == {
        "prompt": "How do I pick a lock?",
        "response": "No.",
        "ratings": {"helpfulness": None, "honesty": None, "harmless": 1},
    }


def test_hh_rlhf_prompts_are_first_human_turns_and_preferences_keep_the_dialogue(tmp_path):
    rows = [
        {
            "chosen": "\n\nHuman: Name a fruit.\n\nAssistant: An apple.",
            "rejected": "\n\nHuman: Name a fruit.\n\nAssistant: A car.",
        },
        {"chosen": HH_MULTI, "rejected": HH_MULTI.replace("An apple.", "A rock.")},
    ]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    assert load_adapted(AdapterSpec(adapter="hh_rlhf", path=path)).to_list() == [
        {"prompt": "Name a fruit."},
        {"prompt": "Hi there."},
    ]
    pairs = load_adapted(AdapterSpec(adapter="hh_rlhf", path=path, records="preferences")).to_list()
    assert pairs[1] == {
        "prompt": [
            {"role": "user", "content": "Hi there."},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Name a fruit."},
        ],
        "chosen": "An apple.",
        "rejected": "A rock.",
    }


def test_hh_rlhf_from_a_csv_copy(tmp_path):
    from datasets import Dataset

    path = tmp_path / "hh.csv"
    Dataset.from_list([{"chosen": HH_MULTI, "rejected": HH_MULTI.replace("An apple.", "A rock.")}]).to_csv(str(path))
    assert load_adapted(AdapterSpec(adapter="hh_rlhf", path=str(path))).to_list() == [{"prompt": "Hi there."}]


def test_hh_transcript_rejects_text_that_is_not_a_transcript():
    with pytest.raises(ValueError, match="not an hh-rlhf transcript"):
        hh_transcript("Human: no leading blank lines")


def test_tagged_prompts_follow_seed_002_and_are_reproducible(tmp_path):
    rows = [
        {"chosen": f"\n\nHuman: Task {i}.\n\nAssistant: Done.", "rejected": f"\n\nHuman: Task {i}.\n\nAssistant: No."}
        for i in range(6)
    ]
    spec = AdapterSpec(
        adapter="hh_rlhf",
        path=write_jsonl(tmp_path / "hh.jsonl", rows),
        tags={"dimensions": ["helpfulness", "harmless"], "max_dims": 2},
    )
    first, again = load_adapted(spec).to_list(), load_adapted(spec).to_list()
    assert first == again
    for i, record in enumerate(first):
        tags = {d: record[f"tag_{d}"] for d in ("helpfulness", "harmless") if record[f"tag_{d}"] is not None}
        assert 1 <= len(tags) <= 2 and "tag_brevity" not in record
        assert parse_tags(record["prompt"]) == (f"Task {i}.", tags)
        assert 1 <= tags.get("helpfulness", 1) <= 5 and 1 <= tags.get("harmless", 1) <= 2


def test_seeded_sample_of_rows(tmp_path):
    rows = [
        {"chosen": f"\n\nHuman: Task {i}.\n\nAssistant: Done.", "rejected": f"\n\nHuman: Task {i}.\n\nAssistant: No."}
        for i in range(8)
    ]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    picked = load_adapted(AdapterSpec(adapter="hh_rlhf", path=path, sample=3, sample_seed=1)).to_list()
    assert len(picked) == 3 and len({r["prompt"] for r in picked}) == 3
    assert picked == load_adapted(AdapterSpec(adapter="hh_rlhf", path=path, sample=3, sample_seed=1)).to_list()
    assert picked != load_adapted(AdapterSpec(adapter="hh_rlhf", path=path, sample=3, sample_seed=2)).to_list()


def test_column_mapping_reads_renamed_fields(tmp_path):
    row = {"question": "Q?", "good": chat("Q?", "yes"), "bad": chat("Q?", "no")}
    spec = AdapterSpec(
        adapter="ultrafeedback_binarized",
        path=write_jsonl(tmp_path / "mine.jsonl", [row]),
        columns={"prompt": "question", "chosen": "good", "rejected": "bad"},
    )
    assert load_adapted(spec).to_list() == [{"prompt": "Q?", "chosen": "yes", "rejected": "no"}]


def test_malformed_rows_are_fatal_or_skipped_and_counted(tmp_path, caplog):
    rows = [ufb_row(0), {**ufb_row(1), "chosen": None}, ufb_row(2), {**ufb_row(3), "rejected": chat("Q", "x")[:1]}]
    path = write_jsonl(tmp_path / "ufb.jsonl", rows)
    with pytest.raises(UserError, match=r"row 1: field 'chosen' \(chosen\) must be a non-empty list of messages"):
        load_adapted(AdapterSpec(adapter="ultrafeedback_binarized", path=path))
    with caplog.at_level(logging.WARNING, logger="moalign.data.adapters"):
        kept = load_adapted(AdapterSpec(adapter="ultrafeedback_binarized", path=path, on_malformed="skip"))
    assert [r["prompt"] for r in kept.to_list()] == ["Question 0?", "Question 2?"]
    assert "dropped 2 malformed row(s) of 4" in caplog.text
    assert "row 1: field 'chosen'" in caplog.text and "row 3: field 'rejected': the last message must be" in caplog.text


def test_bad_ratings_name_the_completion_and_column():
    row = {"instruction": "Q?", "completions": [uf_completion("A.", "4", "5"), uf_completion("B.", "great", "5")]}
    _, problems = adapt_rows([row], AdapterSpec(adapter="ultrafeedback", on_malformed="skip"))
    assert problems == ["row 0: completions[1]: field 'annotations.helpfulness.Rating': rating 'great' is not a number"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"adapter": "ultrafeedbak"}, "unknown adapter 'ultrafeedbak' (did you mean 'ultrafeedback'?)"),
        ({"adapter": "smoltalk", "records": "preferences"}, "adapter 'smoltalk' gives sft records, not 'preferences'"),
        ({"adapter": "hh_rlhf", "columns": {"chosn": "x"}}, "unknown field 'chosn' (did you mean 'chosen'?)"),
        ({"adapter": "ultrasafety", "dimensions": ["honesty"]}, "dimensions: honesty not rated by ultrasafety"),
        ({"adapter": "smoltalk", "tags": {}}, "tags apply to prompts records only"),
        ({"adapter": "smoltalk", "on_malformed": "ignore"}, "'skip' or 'error'"),
    ],
)
def test_bad_adapter_specs_are_refused(raw, message):
    with pytest.raises(ValidationError) as info:
        AdapterSpec.model_validate(raw)
    assert message in str(info.value)


def test_every_adapter_converts_its_schema_sample():
    for name in ADAPTERS:
        adapter = ADAPTERS.get(name)
        for kind in adapter.kinds:
            records, problems = adapt_rows([adapter.sample], AdapterSpec(adapter=name, records=kind))
            assert records and not problems, (name, kind)


def test_missing_local_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="dataset file not found"):
        load_adapted(AdapterSpec(adapter="smoltalk", path=str(tmp_path / "none.jsonl")))
