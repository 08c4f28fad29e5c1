"""report.html from a run directory alone, the comparison table, and a headless-browser render."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moalign.atomic import append_jsonl
from moalign.cli import app
from moalign.eval import ControllabilityConfig, EvalSettings, GenerationCache, evaluate
from moalign.report import SECTIONS, build_report, compare_rows, html_table, markdown_table

CHROMIUM = Path("/usr/bin/chromium")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class NestingChecker(HTMLParser):
    """Collects ids and fails on unbalanced or mis-nested tags (every non-void tag must be closed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def check_html(text: str) -> NestingChecker:
    assert text.startswith("<!DOCTYPE html>")
    checker = NestingChecker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, f"unclosed: {checker.stack}"
    return checker


@pytest.fixture(scope="module")
def run_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """A run directory with training metrics and an evaluation in a stage directory."""
    root = tmp_path_factory.mktemp("run")
    for step in range(1, 4):
        append_jsonl(root / "metrics.jsonl", {"stage": "01-sft", "step": step, "time": step, "train/loss": 1.0 / step})
    append_jsonl(root / "metrics.jsonl", {"stage": "01-sft", "step": None, "time": 4, "stage/wall_time_s": 4.0})
    prompts = root / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"Question {i} <b>?</b>", "reference": f"Answer {i}."}) + "\n" for i in range(3))
    )
    settings = EvalSettings(
        dataset=str(prompts),
        num_samples=3,
        max_new_tokens=5,
        judge="length",
        controllability=ControllabilityConfig(num_prompts=1, intensities=[1, 5]),
        bootstrap_resamples=20,
    )
    spec = str(tiny_llama_dir)
    evaluate({"tiny": spec}, spec, settings, root / "02-eval", cache=GenerationCache(root / "cache"), progress=False)
    return root


def test_report_is_valid_html_with_every_section(run_dir):
    path = build_report(run_dir)
    text = path.read_text()
    checker = check_html(text)
    assert {sid for sid, _ in SECTIONS} <= checker.ids
    # all plots embedded: win rate, radar/bars, controllability curves, pair chart, lengths, training
    assert len(checker.images) >= 6 and all(src.startswith("data:image/png;base64,") for src in checker.images)
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert "Question 0 &lt;b&gt;?&lt;/b&gt;" in text  # prompts are escaped
    assert "3 ties" in text and "Win rate [95% CI]" in text and "BLEU-4" in text


def test_report_command_rebuilds_from_the_run_directory(run_dir):
    (run_dir / "report.html").unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").exists()


def test_report_of_an_empty_directory_is_a_user_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code != 0 and "nothing to report" in str(result.exception)


def test_report_without_evaluation_still_has_every_section(tmp_path):
    append_jsonl(tmp_path / "metrics.jsonl", {"stage": "01-dpo", "step": 1, "time": 1, "train/loss": 0.7})
    checker = check_html(build_report(tmp_path).read_text())
    assert {sid for sid, _ in SECTIONS} <= checker.ids and len(checker.images) == 1


def test_compare_table_in_the_papers_layout(run_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_dir / "02-eval", other)
    rows, warnings = compare_rows([run_dir, other])
    # the first run's reference row, then one row per candidate of each run
    assert [r["method"] for r in rows] == ["reference (reference)", f"{run_dir.name}/tiny", "other/tiny"]
    assert warnings == []
    md = markdown_table(rows, warnings)
    header = "| Method | Avg reward | Diff to reference | Win rate | Wins / N | BLEU-1 | BLEU-2 | BLEU-4 | Perplexity |"
    assert md.splitlines()[0] == header
    assert "| 50.00% | 0/3 (3 ties) |" in md
    check_html(html_table(rows, warnings))
    result = CliRunner().invoke(app, ["compare", str(run_dir), str(other), "--html", str(tmp_path / "c.html")])
    assert result.exit_code == 0, result.output
    assert "| Method |" in result.output and (tmp_path / "c.html").exists()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no headless browser: /usr/bin/chromium is not installed")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    path = build_report(run_dir)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", path.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 1000
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for sid, _ in SECTIONS:
        assert f'id="{sid}"' in dom


def test_report_shows_constraint_satisfaction_per_kind_and_both_sets_of_wordings(run_dir, tmp_path):
    from html import escape

    from moalign.data.constraints import CONSTRAINTS
    from moalign.report.page import wording_rows

    # the run's own evaluation has no constraints in its prompts: a note, and no wordings (not the task suite)
    text = build_report(run_dir).read_text()
    assert "No constraint results in this evaluation" in text and "<h3>Wordings</h3>" not in text
    # an evaluation of the task suite's test split with constraint results per model
    shutil.copytree(run_dir / "02-eval", tmp_path / "03-eval")
    metrics = json.loads((tmp_path / "03-eval" / "metrics.json").read_text())
    metrics |= {"dataset": "builtin:ifeval-lite", "split": "test"}
    for label, rate in (("reference", 0.25), ("tiny", 0.75)):
        per_kind = {"lowercase": {"n": 4, "satisfied": rate, "partial": rate}, "no_commas": {"n": 2, "satisfied": 0.5}}
        metrics["models"][label]["constraints"] = {
            "prompts": 5,
            "constraints": 6,
            "prompt_level": rate / 2,
            "constraint_level": (4 * rate + 1) / 6,
            "per_kind": per_kind,
        }
    (tmp_path / "03-eval" / "metrics.json").write_text(json.dumps(metrics))
    text = build_report(tmp_path).read_text()
    checker = check_html(text)
    assert "constraints" in checker.ids and "its prompts ask in the held-out wordings" in text
    row = '<tr><td>lowercase</td><td class="num">4</td><td class="num">25.0%</td><td class="num">75.0%</td></tr>'
    assert row in text
    assert '<td class="num">6</td><td class="num">33.3%</td><td class="num">66.7%</td>' in text  # all constraints
    assert '<td class="num">5</td><td class="num">12.5%</td><td class="num">37.5%</td>' in text  # whole prompts
    # every kind's every wording, both sides, rendered with its example parameters
    rows = wording_rows()
    assert [name for name, *_ in rows] == CONSTRAINTS.names()
    for name, params, train, held_out in rows:
        assert len(train) >= 3 and len(held_out) >= 2 and not set(train) & set(held_out)
        cells = ["<br>".join(f"{i + 1}. {escape(t)}" for i, t in enumerate(texts)) for texts in (train, held_out)]
        assert f"<td>{name}</td><td>{escape(json.dumps(params))}</td><td>{cells[0]}</td><td>{cells[1]}</td>" in text
    word_count = next(r for r in rows if r[0] == "word_count")
    low, high = word_count[1]["min_words"], word_count[1]["max_words"]
    assert word_count[2][0] == f"Your answer must be between {low} and {high} words long."
    assert word_count[3][1] == f"The response should run to {low}-{high} words."


def test_report_shows_data_levels_reward_heads_and_learning_curves(tmp_path):
    for step in (1, 2):
        append_jsonl(
            tmp_path / "metrics.jsonl",
            {"stage": "05-grpo", "step": step, "time": step, "train/loss": 0.5, "eval/reward": 0.2 * step},
        )
    summary = {"data/samples": 40, "data/augmented": 12, "data/levels/brevity/1": 3, "data/levels/brevity/5": 7}
    summary |= {f"data/levels/brevity/{n}": 0 for n in (2, 3, 4)}
    (tmp_path / "01-best_of_n").mkdir()
    (tmp_path / "01-best_of_n" / "stage.json").write_text(
        json.dumps({"stage": "01-best_of_n", "type": "best_of_n", "summary": summary})
    )
    (tmp_path / "04-reward_model").mkdir()
    blind_5 = [[5, 0, 0, 0, 0], [0, 5, 0, 0, 0], [0, 0, 5, 0, 0], [0, 0, 0, 5, 0], [0, 0, 0, 5, 0]]
    heads = {
        "brevity": {"support": 9, "intensity_accuracy": 0.8, "spearman": 0.9, "confusion_matrix": blind_5},
        "structure": {"spearman": 0.1},
    }
    (tmp_path / "04-reward_model" / "rm_eval.json").write_text(json.dumps({"heads": heads}))
    text = build_report(tmp_path).read_text()
    checker = check_html(text)
    assert len(checker.images) == 2  # learning curves (eval/reward) and training curves (train/loss)
    assert '<td>brevity</td><td class="num">3</td><td class="num">0</td>' in text  # SFT rows per level 1, 2
    assert '<td>brevity</td><td class="num">9</td>' in text and "usable" in text
    assert text.count("too weak to steer") == 1  # structure's Spearman 0.1
    assert "usable; level 5 recalled below chance (no reward for steering to it)" in text  # level 5 read as 4


def test_learning_curves_average_each_evaluation_and_keep_rewards_and_accuracies():
    from moalign.report.plots import training_series

    records = [
        {"stage": "05-grpo", "step": 2, "eval/reward/brevity/mean": 0.2, "eval/clip_ratio/low_min": 0.0},
        {"stage": "05-grpo", "step": 2, "eval/reward/brevity/mean": 0.4, "eval/reward/brevity/std": 0.1},
        {"stage": "05-grpo", "step": 4, "eval/reward/brevity/mean": 0.9, "train/loss": 1.0},
        {"stage": "04-reward_model", "step": 10, "eval/structure/intensity_accuracy": 0.5},
    ]
    series = training_series(records, held_out=True)
    assert series == {
        "eval/reward/brevity/mean": {"05-grpo": [(2.0, pytest.approx(0.3)), (4.0, 0.9)]},
        "eval/structure/intensity_accuracy": {"04-reward_model": [(10.0, 0.5)]},
    }
    assert training_series(records) == {"train/loss": {"05-grpo": [(4.0, 1.0)]}}
