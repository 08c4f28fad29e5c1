import pytest

from moalign.data.ratings import bin_score, rating_record, rebin_level


def test_bin_score_equal_width_classes_by_hand():
    assert [bin_score(s, 5) for s in (0.0, 0.19, 0.2, 0.5, 0.99, 1.0)] == [1, 1, 2, 3, 5, 5]
    assert [bin_score(s, 2) for s in (0.0, 0.49, 0.5, 1.0)] == [1, 1, 2, 2]
    assert bin_score(-3.0, 3) == 1 and bin_score(7.0, 3) == 3  # clipped to the range
    assert bin_score(float("nan"), 5) is None and bin_score(None, 5) is None
    assert bin_score(5.0, 4, low=1.0, high=5.0) == 4
    with pytest.raises(ValueError):
        bin_score(0.5, 0)


def test_rebin_level_matches_seed_002_datatypes():
    assert [rebin_level(v, 5, 5) for v in range(1, 6)] == [1, 2, 3, 4, 5]  # DataType 4
    assert [rebin_level(v, 5, 3) for v in range(1, 6)] == [1, 1, 2, 3, 3]  # DataType 3
    assert [rebin_level(v, 5, 2) for v in range(1, 6)] == [1, 1, 2, 2, 2]  # DataType 2
    assert rebin_level(None, 5, 2) is None
    with pytest.raises(ValueError):
        rebin_level(6, 5, 2)


def test_rating_record_format():
    rec = rating_record("Explain tides.", "Tides are...", {"brevity": 4, "constraints": None}, id="t-1")
    assert rec == {
        "prompt": "Explain tides.",
        "response": "Tides are...",
        "ratings": {"brevity": 4, "constraints": None},
        "id": "t-1",
    }
    with pytest.raises(ValueError):
        rating_record("p", "r", {"brevity": 0})
