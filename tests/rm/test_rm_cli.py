import json

from typer.testing import CliRunner

from moalign.errors import UserError
from moalign.rm.cli import rm_app

runner = CliRunner()


def test_train_eval_score_from_the_command_line(tmp_path, tiny_bert_dir):
    rows = [
        {"question": f"q{i}", "answer": f"this is {['bad', 'good'][i % 2]}", "h": str(1 + 4 * (i % 2))}
        for i in range(24)
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = ["--column", "prompt=question", "--column", "response=answer", "--column", "ratings.helpfulness=h"]
    out = tmp_path / "rm"
    result = runner.invoke(
        rm_app,
        ["train", str(data), "-o", str(out), "--backbone", str(tiny_bert_dir), "--dimensions", "helpfulness=5",
         "--max-steps", "4", "--set", "per_device_train_batch_size=8", "--set", "max_length=32", *columns],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == str(out)

    result = runner.invoke(rm_app, ["eval", str(out), str(data), "-o", str(tmp_path / "ev"), *columns])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "rm_eval.json").read_text())
    assert report["heads"]["helpfulness"]["support"] == 24 and (tmp_path / "ev" / "rm_eval.png").exists()

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "this is good", "rejected": "this is bad"}) + "\n")
    result = runner.invoke(rm_app, ["eval", str(out), str(pairs), "--pairs", "-o", str(tmp_path / "pe")])
    assert result.exit_code == 0, result.output
    assert set(json.loads((tmp_path / "pe" / "rm_eval.json").read_text())["pairwise_accuracy"]) == {
        "combined",
        "helpfulness",
    }

    scored = tmp_path / "scores.jsonl"
    result = runner.invoke(rm_app, ["score", str(out), str(data), "-o", str(scored), *columns[:4]])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in scored.read_text().splitlines()]
    assert len(lines) == 24 and 1 <= lines[0]["expected"]["helpfulness"] <= 5
    assert abs(sum(lines[0]["probs"]["helpfulness"]) - 1) < 1e-4


def test_cli_reports_bad_columns_as_user_errors(tmp_path, tiny_bert_dir):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n")
    result = runner.invoke(
        rm_app, ["train", str(data), "-o", str(tmp_path / "m"), "--backbone", str(tiny_bert_dir), "--dimensions", "h=2"]
    )
    assert isinstance(result.exception, UserError)
    assert "d.jsonl:1: missing key 'ratings'" in str(result.exception)
    result = runner.invoke(rm_app, ["train", str(data), "-o", str(tmp_path / "m"), "--set", "bogus=1"])
    assert isinstance(result.exception, UserError) and "bogus" in str(result.exception)
