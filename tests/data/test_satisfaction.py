from moalign.data.satisfaction import record_results, satisfaction_rates


def test_rates_by_hand():
    records = [
        {"id": "a", "constraints": [{"kind": "lowercase"}, {"kind": "no_commas"}]},
        {"id": "b", "constraints": [{"kind": "word_count", "max_words": 2}]},
        {"id": "c", "constraints": []},  # no constraints: left out
    ]
    responses = ["lower, with a comma", "two words", "anything"]
    rates = satisfaction_rates(record_results(records, responses))
    # a: lowercase ok, no_commas fails (score 1/2); b: ok
    assert rates["prompts"] == 2 and rates["constraints"] == 3
    assert rates["prompt_level"] == 0.5
    assert rates["constraint_level"] == round(2 / 3, 4)
    assert rates["partial"] == round((1 + 0.5 + 1) / 3, 4)
    assert rates["per_kind"]["no_commas"] == {"n": 1, "satisfied": 0.0, "partial": 0.5}


def test_rates_of_nothing():
    assert satisfaction_rates([])["prompt_level"] is None
