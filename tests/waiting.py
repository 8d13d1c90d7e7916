"""The one way the tests wait: for a condition, never for a fixed time."""
import time
from datetime import datetime, timezone


def until(check, what: str = "the condition", timeout_s: float = 60, interval_s: float = 0.05):
    """Call ``check`` until it returns something truthy, and return that; after ``timeout_s`` an
    AssertionError names ``what`` and the last value ``check`` returned."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}; last: {result!r}"[:2000]
        time.sleep(interval_s)  # green under eventlet's monkey patching
    return result


def until_past(moment, margin_s: float = 0.05) -> None:
    """Wait until the clock is past ``moment`` (an aware datetime or its ISO text): for a time a test set, not
    a guess of how long one takes."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    remaining = (moment - datetime.now(timezone.utc)).total_seconds() + margin_s
    if remaining > 0:
        time.sleep(remaining)
