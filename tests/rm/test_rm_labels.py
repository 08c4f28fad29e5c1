import math

import pytest

from moalign.data.ratings import parse_rating
from moalign.errors import UserError
from moalign.rm.labels import DATATYPES, Bins, preset_name, resolve_bins


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        # UltraFeedback 1-5 -> classes; None = left unlabelled (DataType 1 drops the undecided 3)
        ("datatype1", {1: 1, 2: 1, 3: None, 4: 2, 5: 2}),
        ("datatype2", {1: 1, 2: 1, 3: 2, 4: 2, 5: 2}),
        ("datatype3", {1: 1, 2: 1, 3: 2, 4: 3, 5: 3}),
        ("datatype4", {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}),
    ],
)
def test_presets_bin_helpfulness_and_honesty_at_every_boundary(preset, expected):
    for dim in ("helpfulness", "honesty"):
        assert {r: DATATYPES[preset][dim](r) for r in range(1, 6)} == expected


def test_preset_class_counts_multiply_to_table_5_categories():
    counts = {name: [b.classes for b in bins.values()] for name, bins in DATATYPES.items()}
    assert counts == {"datatype1": [2, 2, 2], "datatype2": [2, 2, 2], "datatype3": [3, 3, 2], "datatype4": [5, 5, 2]}
    assert [math.prod(counts[f"datatype{i}"]) for i in (2, 3, 4)] == [8, 18, 50]


@pytest.mark.parametrize("preset", list(DATATYPES))
def test_harmless_is_binary_split_at_one_half(preset):
    harmless = DATATYPES[preset]["harmless"]
    assert [harmless(x) for x in (0, 0.5, 0.51, 1)] == [1, 1, 2, 2]


def test_out_of_range_and_non_numbers_are_errors():
    bins = DATATYPES["datatype3"]["helpfulness"]
    for bad in (0, 5.5, 6, -1):
        with pytest.raises(ValueError, match="outside"):
            bins(bad)
    with pytest.raises(ValueError, match="not a number"):
        bins(True)
    with pytest.raises(ValueError, match="not an integer class"):
        Bins(high=3)(2.5)


def test_custom_bins_edges_are_inclusive_upper_bounds():
    bins = Bins(edges=[0.2, 0.7], low=0, high=1)
    assert bins.classes == 3
    assert [bins(x) for x in (0, 0.2, 0.21, 0.7, 0.71, 1)] == [1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="ascending"):
        Bins(edges=[3, 2])


def test_preset_names_and_resolution():
    assert preset_name("DataType 3") == preset_name("datatype_3") == "datatype3"
    assert preset_name("datatype9") is None
    assert {d: b.classes for d, b in resolve_bins("DataType4").items()} == {
        "helpfulness": 5,
        "honesty": 5,
        "harmless": 2,
    }
    plain = resolve_bins({"constraints": 5})
    assert plain["constraints"](5) == 5 and plain["constraints"].classes == 5
    custom = resolve_bins({"h": 3}, {"h": Bins(edges=[2, 3])})
    assert custom["h"](4) == 3
    with pytest.raises(UserError, match="give 2 classes but dimensions.h is 3"):
        resolve_bins({"h": 3}, {"h": Bins(edges=[3])})
    with pytest.raises(UserError, match="neither a mapping"):
        resolve_bins("datatype7")
    with pytest.raises(UserError, match="not among the dimensions"):
        resolve_bins({"h": 2}, {"x": Bins(edges=[3])})


def test_parse_rating_reads_ultrafeedback_cells():
    assert parse_rating("4") == 4 and parse_rating(" 2.5 ") == 2.5 and parse_rating(3) == 3
    assert parse_rating("N/A") is None and parse_rating(None) is None and parse_rating(float("nan")) is None
    with pytest.raises(ValueError):
        parse_rating("good")
