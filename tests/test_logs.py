"""logs.py: one record is one line whatever a peer put in it; what a peer can repeat is logged once a while."""

from __future__ import annotations

import logging

from smppguard.logs import SafeFormatter, Throttle, escape


def test_escape_turns_every_control_character_into_an_escape():
    assert escape("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert escape("\x1b[31mred\x00") == "\\x1b[31mred\\x00"
    assert escape("line\u2028sep\x85") == "line\\u2028sep\\x85"
    assert escape("退订 STOP +8613800000000") == "退订 STOP +8613800000000"


def test_the_formatter_escapes_the_message_and_keeps_a_tracebacks_lines():
    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("smppguard", logging.INFO, __file__, 1, "%s: bound", ("x\nCRITICAL forged",), None)
    assert formatter.format(record) == "INFO x\\nCRITICAL forged: bound"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = logging.LogRecord("smppguard", logging.ERROR, __file__, 1, "failed\nagain", (), sys.exc_info())
    lines = formatter.format(record).splitlines()
    assert lines[0] == "ERROR failed\\nagain" and lines[1].startswith("Traceback") and lines[-1] == "ValueError: boom"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_throttle_logs_once_per_interval_per_key_and_then_says_how_many_were_left_out(caplog):
    clock = Clock()
    throttle = Throttle(logging.getLogger("t"), interval=60.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        assert throttle.log(logging.INFO, "a", "refused %s", "a")
        assert not any(throttle.log(logging.INFO, "a", "refused %s", "a") for _ in range(9))
        assert throttle.log(logging.INFO, "b", "refused %s", "b")  # another key: its own line
        clock.now = 60.0
        assert throttle.log(logging.INFO, "a", "refused %s", "a")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a", "refused b", "refused a (9 more like it in the last 60 s not logged)"]


def test_throttle_keeps_at_most_max_keys():
    clock = Clock()
    throttle = Throttle(logging.getLogger("t"), interval=60.0, max_keys=10, clock=clock)
    for i in range(1000):
        throttle.log(logging.DEBUG, i, "x")
    assert len(throttle._seen) <= 11  # ten keys, and "(others)"
