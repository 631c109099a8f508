"""The effort estimate: what a human must read, not how busy the logs were."""
import pytest

from autoremedy.collection import effort


@pytest.mark.parametrize("inputs,size", [
    (dict(new_error_signatures=0, known_error_signatures=0, services=0, hosts=0, linked_ids=0,
          disagreements=0, nothing=True), "none"),
    (dict(new_error_signatures=1, known_error_signatures=0, services=1, hosts=1, linked_ids=3,
          disagreements=0), "small"),
    (dict(new_error_signatures=0, known_error_signatures=3, services=1, hosts=1, linked_ids=10,
          disagreements=0), "small"),
    (dict(new_error_signatures=5, known_error_signatures=0, services=5, hosts=1, linked_ids=12,
          disagreements=0), "medium"),
    (dict(new_error_signatures=6, known_error_signatures=2, services=5, hosts=3, linked_ids=30,
          disagreements=2), "large"),
])
def test_sizes(inputs, size):
    est = effort.estimate(**inputs)
    assert est["size"] == size
    assert est["formula"] == effort.FORMULA and est["inputs"]["services"] == inputs["services"]
    lo, hi = est["range_minutes"]
    assert lo <= est["minutes"] <= hi


def test_the_figure_follows_the_stated_formula():
    est = effort.estimate(2, 1, 3, 2, 100, 1)
    assert est["minutes"] == 12 * 2 + 4 * 1 + 8 * 2 + 12 * 1 + 0.5 * 40 + 15 * 1
    assert est["why"] == ("2 new error signatures, 1 known error signature, 3 services, 2 hosts, "
                          "100 linked ids, 1 record in disagreement")
