import json

import pytest

from moalign.errors import UserError
from moalign.rm.config import ColumnMap
from moalign.rm.data import load_pairs, load_rated
from moalign.rm.labels import resolve_bins


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ratings_jsonl_default_columns(tmp_path):
    path = write_jsonl(
        tmp_path / "ratings.jsonl",
        [
            {"prompt": "q", "response": "a", "ratings": {"brevity": 3, "structure": None}},
            {"prompt": "q", "response": "b", "ratings": {"structure": 2}},
            {"prompt": "q", "response": "c", "ratings": {"brevity": None}},
        ],
    )
    examples = load_rated(str(path), resolve_bins({"brevity": 3, "structure": 2}))
    assert [e.labels for e in examples] == [{"brevity": 3, "structure": None}, {"brevity": None, "structure": 2}]
    assert examples[1].where == f"{path}:2"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"response": "a", "ratings": {"h": 1}}, r":2: missing key 'prompt' for the prompt"),
        ({"prompt": "q", "response": "a", "ratings": {"h": 7}}, r":2: key 'ratings.h': rating 7 is outside \[1, 5\]"),
        ({"prompt": "q", "response": "a", "ratings": {"x": 1}}, r":2: key 'ratings.x': unknown dimension 'x'"),
        ({"prompt": "q", "response": 3, "ratings": {"h": 1}}, r":2: key 'response' \(response\) must be a string"),
    ],
)
def test_bad_records_name_file_line_and_key(tmp_path, row, message):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "response": "a", "ratings": {"h": 2}}, row])
    with pytest.raises(UserError, match=message) as info:
        load_rated(str(path), resolve_bins({"h": 5}))
    assert str(path) in str(info.value)


def test_ultrafeedback_shape_with_explode_and_dotted_paths(tmp_path):
    row = {
        "instruction": "Explain tides.",
        "completions": [
            {"response": "The moon.", "annotations": {"helpfulness": {"Rating": "2"}, "honesty": {"Rating": "5"}}},
            {"response": "Gravity...", "annotations": {"helpfulness": {"Rating": "4"}, "honesty": {"Rating": "N/A"}}},
        ],
    }
    path = write_jsonl(tmp_path / "uf.jsonl", [row])
    columns = ColumnMap(
        prompt="instruction",
        response="completions.response",
        ratings={
            "helpfulness": "completions.annotations.helpfulness.Rating",
            "honesty": "completions.annotations.honesty.Rating",
        },
        explode="completions",
    )
    bins = resolve_bins("datatype3")
    bins = {d: bins[d] for d in ("helpfulness", "honesty")}
    examples = load_rated(str(path), bins, columns)
    assert [(e.prompt, e.response, e.labels) for e in examples] == [
        ("Explain tides.", "The moon.", {"helpfulness": 1, "honesty": 3}),
        ("Explain tides.", "Gravity...", {"helpfulness": 3, "honesty": None}),
    ]
    assert examples[1].where.endswith(":1 completions[1]")


def test_csv_through_datasets_with_flat_rating_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,answer,help\nq1,a1,1\nq2,a2,\nq3,a3,9\n")
    columns = ColumnMap(prompt="question", response="answer", ratings={"help": "help"})
    with pytest.raises(UserError, match=r"d.csv\[train\] row 2: key 'help': rating 9"):
        load_rated(str(path), resolve_bins({"help": 5}), columns)
    examples = load_rated(str(path), resolve_bins({"help": 5}), columns, max_samples=1)
    assert examples[0].labels == {"help": 1}


def test_pairs_accept_chat_message_lists(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [{"prompt": "q", "chosen": [{"role": "assistant", "content": "good"}], "rejected": "bad"}],
    )
    (pair,) = load_pairs(str(path))
    assert (pair.chosen, pair.rejected) == ("good", "bad")


def test_missing_file_and_unknown_hub_dataset_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_rated(str(tmp_path / "nope.jsonl"), resolve_bins({"h": 2}))
    with pytest.raises(UserError, match="cannot load dataset"):
        load_rated("no-such-org/no-such-dataset", resolve_bins({"h": 2}))
