import math

import pytest

from autoremedy.contract.ranges import Range, RangeError

# spec, values that alert, values that do not (monitoring-plugins guidelines table)
CASES = [
    ("10", [-1, 10.5, 11], [0, 5, 10]),
    ("10:", [9.99, -5], [10, 11, 1e9]),
    ("~:10", [10.1, 100], [-1e9, 0, 10]),
    ("10:20", [9, 21], [10, 15, 20]),
    ("@10:20", [10, 15, 20], [9.9, 20.1]),
    ("@5", [0, 5], [-0.1, 5.1]),
    ("0", [1, -1], [0]),
]


@pytest.mark.parametrize("spec,alert,quiet", CASES)
def test_range_alerts_exactly_where_the_guidelines_say(spec, alert, quiet):
    rng = Range.parse(spec)
    for value in alert:
        assert rng.alerts(value), (spec, value)
    for value in quiet:
        assert not rng.alerts(value), (spec, value)


@pytest.mark.parametrize("spec", ["10", "10:", "~:10", "10:20", "@10:20", "1.5:2.25"])
def test_a_parsed_range_renders_back_to_its_spec_for_perfdata(spec):
    assert str(Range.parse(spec)) == spec


def test_numbers_become_upper_bounds_and_render_without_scientific_notation():
    assert Range.parse(85).alerts(86)
    assert str(Range(0, 1e-7)) == "0.0000001"  # exact, never 1e-07
    assert "e" not in str(Range(0, 123456789012.5))


@pytest.mark.parametrize("bad", ["abc", "10:x", "20:10", "1:2:3", "nan", "~", " ", "\t",
                                 "inf:", "@inf", "1e309:", "~:inf", "-inf:5", "10:1e999"])
def test_invalid_ranges_name_the_problem(bad):
    with pytest.raises(RangeError) as err:
        Range.parse(bad)
    assert repr(bad) in str(err.value)


def test_empty_means_no_threshold():
    assert Range.parse("") is None and Range.parse(None) is None


def test_infinite_start():
    rng = Range.parse("~:5")
    assert rng.start == -math.inf and rng.describe() == ">5"
    assert Range.parse("1:").describe() == "<1"
    assert Range.parse("@1:3").describe() == "in 1..3"
