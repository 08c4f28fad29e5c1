"""The evaluation arithmetic, each expected value worked by hand."""

import math

import pytest

from moalign.correlation import ranks, spearman
from moalign.eval.metrics import (
    bleu_scores,
    bootstrap_interval,
    corpus_perplexity,
    length_stats,
    pair_outcomes,
    quantile,
    win_rate,
)


def test_win_rate_counts_ties_as_half_and_drops_nan_pairs():
    candidate = [3.0, 1.0, 2.0, 2.0, 5.0, math.nan]
    reference = [1.0, 2.0, 2.0, 2.0, 4.0, 0.0]
    # win, loss, tie, tie, win; the NaN pair is not judged
    assert pair_outcomes(candidate, reference) == [1.0, 0.0, 0.5, 0.5, 1.0]
    wr = win_rate(candidate, reference, num_resamples=200)
    assert (wr.wins, wr.ties, wr.losses, wr.n) == (2, 2, 1, 5)
    assert wr.rate == pytest.approx((2 + 0.5 * 2) / 5)  # 0.6
    assert wr.to_dict()["interval"] == list(wr.interval)


def test_win_rate_of_identical_scores_is_one_half_with_every_prompt_tied():
    wr = win_rate([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert (wr.wins, wr.ties, wr.losses, wr.rate, wr.interval) == (0, 3, 0, 0.5, (0.5, 0.5))


def test_win_rate_with_no_judged_pair_has_no_rate():
    wr = win_rate([math.nan], [1.0])
    assert wr.n == 0 and wr.rate is None and wr.interval is None


def test_quantile_interpolates_like_numpy():
    assert quantile([0.0, 10.0], 0.25) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n():
    small = [1.0, 0.0, 1.0, 0.5] * 5  # N = 20, mean 0.625
    large = small * 25  # N = 500, same mean
    lo_s, hi_s = bootstrap_interval(small, num_resamples=2000, seed=1)
    lo_l, hi_l = bootstrap_interval(large, num_resamples=2000, seed=1)
    assert lo_s <= 0.625 <= hi_s and lo_l <= 0.625 <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    # the width scales about like 1/sqrt(N): sqrt(500/20) = 5
    assert 3 < (hi_s - lo_s) / (hi_l - lo_l) < 7.5


def test_bootstrap_interval_is_deterministic_for_a_seed():
    values = [0.0, 1.0, 1.0, 0.5, 0.0]
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)


def test_bleu_matches_sacrebleu_called_directly():
    import sacrebleu

    hyps = ["the cat sat on the mat", "a quick brown fox jumps", "hello world"]
    refs = ["the cat is on the mat", "the quick brown fox jumps over", "hello there world"]
    ours = bleu_scores(hyps, refs)
    for n in (1, 2, 4):
        direct = sacrebleu.metrics.BLEU(max_ngram_order=n).corpus_score(hyps, [refs]).score
        assert ours[f"bleu{n}"] == pytest.approx(direct)
    assert ours["bleu1"] > ours["bleu2"] > ours["bleu4"]


def test_bleu_1_by_hand():
    # one sentence, hyp "a b c d" vs ref "a b c e": 3/4 unigrams match, equal lengths (no brevity penalty)
    assert bleu_scores(["a b c d"], ["a b c e"], orders=(1,))["bleu1"] == pytest.approx(75.0)


def test_corpus_perplexity_weighs_sequences_by_tokens():
    # sequence 1: mean NLL 1.0 over 2 tokens, sequence 2: mean NLL 2.5 over 4 tokens
    assert corpus_perplexity([1.0, 2.5], [2, 4]) == pytest.approx(math.exp((2 * 1.0 + 4 * 2.5) / 6))
    with pytest.raises(ValueError):
        corpus_perplexity([1.0], [0])


def test_ranks_average_ties():
    assert ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]


def test_spearman_on_a_monotone_case_is_one():
    x = [1, 2, 3, 4, 5]
    assert spearman(x, [1.0, 4.0, 9.0, 16.0, 25.0]) == pytest.approx(1.0)
    assert spearman(x, [-v for v in x]) == pytest.approx(-1.0)
    # repeated requests with a monotone response: still 1 with ties averaged
    assert spearman([1, 1, 2, 2, 3, 3], [0.1, 0.1, 0.5, 0.5, 0.9, 0.9]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))


def test_spearman_by_hand_with_one_swap():
    # ranks y = [1, 3, 2, 4]: d^2 = 0 + 1 + 1 + 0 = 2; rho = 1 - 6*2 / (4*(16-1)) = 0.8
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)


def test_length_stats_by_hand():
    stats = length_stats([2, 4, 4, 10])
    assert stats == {"mean": 5.0, "median": 4.0, "std": pytest.approx(3.0), "min": 2.0, "max": 10.0}
    assert length_stats([])["mean"] is None
