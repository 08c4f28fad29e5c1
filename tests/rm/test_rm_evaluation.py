import json

import pytest
import torch

from moalign.errors import UserError
from moalign.rm.evaluation import (
    combined_score,
    confusion_matrix,
    head_metrics,
    intensity_accuracy,
    pairwise_accuracy,
    preference_accuracy,
    write_report,
)


def test_confusion_matrix_rows_are_true_classes():
    predicted = torch.tensor([1, 2, 2, 3])
    labels = torch.tensor([1, 1, 2, 3])
    assert confusion_matrix(predicted, labels, 3).tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert intensity_accuracy(predicted, labels) == 0.75


def test_preference_accuracy_uses_sides_of_the_middle_and_skips_middle_labels():
    # 5 classes, middle 3. Labels 1, 2, 3 (skipped), 4, 5; expected 2.9 (low: ok), 3.5 (high: wrong),
    # 3.0 (skipped), 3.0 (exactly middle: wrong), 4.2 (high: ok) -> 2 of 4
    expected = torch.tensor([2.9, 3.5, 3.0, 3.0, 4.2])
    labels = torch.tensor([1, 2, 3, 4, 5])
    assert preference_accuracy(expected, labels, 5) == (0.5, 4)
    # 2 classes, middle 1.5
    assert preference_accuracy(torch.tensor([1.2, 1.6]), torch.tensor([1, 1]), 2) == (0.5, 2)


def test_pairwise_accuracy_counts_ties_half():
    assert pairwise_accuracy(torch.tensor([2.0, 1.0, 3.0, 1.0]), torch.tensor([1.0, 2.0, 3.0, 0.0])) == 0.625


def test_combined_score_normalises_each_head():
    expected = {"a": torch.tensor([5.0, 1.0]), "b": torch.tensor([1.0, 2.0])}
    dims = {"a": 5, "b": 2}
    # (E-1)/(n-1): a -> [1, 0], b -> [0, 1]; weights 3:1 -> [0.75, 0.25]
    assert combined_score(expected, dims, {"a": 3, "b": 1}).tolist() == [0.75, 0.25]
    assert combined_score(expected, dims).tolist() == [0.5, 0.5]
    with pytest.raises(UserError, match="unknown dimension"):
        combined_score(expected, dims, {"c": 1})


def test_head_metrics_ignore_unlabelled_samples_and_report_writes_json_and_png(tmp_path):
    probs = {"a": torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]), "b": torch.tensor([[0.1, 0.9]] * 3)}
    labels = {"a": [1, 1, None], "b": [None, None, None]}
    metrics = head_metrics(probs, labels, {"a": 2, "b": 2})
    a = metrics["heads"]["a"]
    assert (a["support"], a["intensity_accuracy"], a["confusion_matrix"]) == (2, 0.5, [[1, 1], [0, 0]])
    assert metrics["heads"]["b"]["support"] == 0
    assert metrics["mean"]["intensity_accuracy"] == 0.5  # heads without labels do not count
    json_path, png_path = write_report({**metrics, "pairwise_accuracy": {"combined": 0.6}}, tmp_path)
    saved = json.loads(json_path.read_text())
    assert saved["heads"]["b"]["intensity_accuracy"] is None  # NaN -> null
    assert png_path.stat().st_size > 1000


def test_head_spearman_ranks_expected_intensity_against_the_labels():
    # expected intensities 1.2, 2.0, 2.8 against labels 1, 3, 3 (ranks 1, 2.5, 2.5): rho = 0.866
    probs = {"a": torch.tensor([[0.8, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.2, 0.8]])}
    head = head_metrics(probs, {"a": [1, 3, 3]}, {"a": 3})["heads"]["a"]
    assert head["spearman"] == pytest.approx(0.8660254)
    reversed_head = head_metrics(probs, {"a": [3, 2, 1]}, {"a": 3})["heads"]["a"]
    assert reversed_head["spearman"] == pytest.approx(-1.0)
    assert head_metrics(probs, {"a": [2, None, None]}, {"a": 3})["heads"]["a"]["spearman"] is None


def test_unrecognised_levels_are_those_recalled_below_chance_with_enough_samples():
    from moalign.rm.evaluation import unrecognised_levels

    # a brevity head's held-out confusion (rows: true levels 1-5): levels 4 and 5 never read as themselves
    confusion = [[35, 0, 0, 0, 0], [15, 14, 1, 0, 0], [2, 12, 10, 0, 0], [0, 1, 10, 0, 0], [0, 0, 10, 1, 0]]
    assert unrecognised_levels(confusion) == [4, 5]
    assert unrecognised_levels(confusion, min_support=12) == []  # 11 samples each: too few to tell
    # recall 2/10 is chance for 5 classes (not below it); 1/10 is below
    assert unrecognised_levels([[2, 8, 0, 0, 0], [1, 9, 0, 0, 0], *[[0] * 5] * 3]) == []
    assert unrecognised_levels([[1, 9, 0, 0, 0], [1, 9, 0, 0, 0], *[[0] * 5] * 3]) == [1]
