"""``tests.waiting.until``: the tests' one way to wait for a condition."""
import pytest

from tests.waiting import until


def test_until_returns_the_first_truthy_value():
    answers = iter([None, 0, [], {"items": [1]}])
    assert until(lambda: next(answers), "an answer", timeout_s=5, interval_s=0) == {"items": [1]}


def test_until_fails_naming_what_it_waited_for_and_the_last_value():
    with pytest.raises(AssertionError, match=r"waiting for the welcome; last: \[\]"):
        until(lambda: [], "the welcome", timeout_s=0.05, interval_s=0.01)
