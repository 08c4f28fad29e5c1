import math

from moalign.data.pairs import PreferencePair, best_index, best_worst_pair, farthest_index, worst_index

NAN = math.nan


def test_best_and_worst_skip_nan_and_break_ties_deterministically():
    assert best_index([0.2, 0.9, 0.9, NAN]) == 1
    assert worst_index([0.1, 0.9, 0.1, NAN]) == 2
    assert best_index([NAN, NAN]) is None and worst_index([]) is None


def test_pair_needs_margin_and_distinct_texts():
    pair = best_worst_pair(["a", "b", "c"], [0.5, 1.0, 0.25], min_margin=0.5)
    assert (pair.chosen, pair.rejected, pair.margin) == (1, 2, 0.75)
    assert best_worst_pair(["a", "b"], [0.5, 0.55], min_margin=0.1) is None
    assert best_worst_pair(["a", "b"], [0.5, 0.5], min_margin=0.0) is None  # no preference without a margin
    assert best_worst_pair(["same ", "same"], [1.0, 0.0]) is None
    assert best_worst_pair(["a", "b"], [NAN, 1.0]) is None


def test_farthest_index_by_level_distance_then_lower_score():
    levels = [
        {"brevity": 3, "structure": 1},
        {"brevity": 3, "structure": 1},
        {"brevity": 5, "structure": 2},
        {"brevity": 1, "structure": 2},
    ]
    # distances from sample 0: 0, 0, 3, 3 -> the tie goes to the lower score
    assert farthest_index(levels, 0, [1.0, 0.5, 0.2, 0.7]) == 2
    assert farthest_index(levels, 0, [1.0, 0.5, 0.9, 0.7]) == 3
    assert farthest_index(levels[:2], 0, [1.0, 0.5]) is None  # same levels: nothing to contrast


def test_the_chosen_side_comes_from_the_eligible_samples_the_rejected_from_all():
    texts, scores = ["a", "b", "c"], [0.9, 0.5, 0.1]
    # the best sample (0.9) may not be chosen (truncated, say): the next best is, against the worst of all
    assert best_worst_pair(texts, scores, 0.1, [NAN, 0.5, 0.1]) == PreferencePair(chosen=1, rejected=2, margin=0.4)
    assert best_worst_pair(texts, scores, 0.1, [NAN, NAN, NAN]) is None


def test_target_scores_drop_truncated_and_low_scoring_samples():
    from moalign.stages.best_of_n import BestOfNConfig, target_scores

    scores, lengths = [0.9, 0.5, 0.2, 0.7], [96, 40, 10, 95]
    keep_all = target_scores(scores, lengths, BestOfNConfig(max_new_tokens=96))
    assert keep_all == scores
    finished = target_scores(scores, lengths, BestOfNConfig(max_new_tokens=96, finished_only=True))
    assert finished[0] != finished[0] and finished[1:] == [0.5, 0.2, 0.7]  # 96 tokens: cut off by the budget
    both = target_scores(scores, lengths, BestOfNConfig(max_new_tokens=96, finished_only=True, min_score=0.5))
    assert [s == s for s in both] == [False, True, False, True]
