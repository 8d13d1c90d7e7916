"""``services.common.races.retried``: the one retry loop for work that lost a race on a unique key."""
import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.races import retried


def lose(times: int, error: Exception):
    """``run(attempt)`` that raises ``error`` on its first ``times`` attempts, then returns the attempts seen."""
    seen = []

    def run(attempt):
        seen.append(attempt)
        if len(seen) <= times:
            raise error
        return list(seen)

    return run, seen


def test_a_lost_race_is_tried_again_and_told_which_attempt_it_is():
    run, _ = lose(2, DuplicateKeyError("E11000"))
    assert retried(run) == [0, 1, 2]


def test_a_bulk_insert_that_lost_a_race_is_tried_again_too():
    run, _ = lose(1, BulkWriteError({"writeErrors": [{"code": 11000}]}))
    assert retried(run) == [0, 1]


def test_three_attempts_by_default_then_the_last_error_is_raised():
    run, seen = lose(5, DuplicateKeyError("E11000"))
    with pytest.raises(DuplicateKeyError):
        retried(run)
    assert seen == [0, 1, 2]


def test_the_number_of_attempts_can_be_given():
    run, seen = lose(5, DuplicateKeyError("E11000"))
    with pytest.raises(DuplicateKeyError):
        retried(run, attempts=5)
    assert seen == [0, 1, 2, 3, 4]
    run, _ = lose(4, DuplicateKeyError("E11000"))
    assert retried(run, attempts=5) == [0, 1, 2, 3, 4]


def test_any_other_error_is_raised_at_once():
    run, seen = lose(1, ValueError("not a race"))
    with pytest.raises(ValueError):
        retried(run)
    assert seen == [0]


def test_what_counts_as_a_race_can_be_given():
    run, seen = lose(1, TimeoutError())
    assert retried(run, on=(TimeoutError,)) == [0, 1]
    run, seen = lose(1, DuplicateKeyError("E11000"))
    with pytest.raises(DuplicateKeyError):
        retried(run, on=(TimeoutError,))
    assert seen == [0]


def test_work_that_succeeds_runs_once():
    run, seen = lose(0, DuplicateKeyError("E11000"))
    assert retried(run) == [0]


def test_at_least_one_attempt():
    with pytest.raises(ValueError):
        retried(lambda attempt: None, attempts=0)
