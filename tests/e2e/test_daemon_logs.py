"""The daemon's log as journald or a log shipper reads it: with [log] format = "json" every line is one JSON
object, refusals are logged with their rule, account and masked recipient, and third-party libraries stay quiet
at debug; with text, a refusal is one line too."""

from __future__ import annotations

import json
import signal

import pytest

from helpers import send_submit, smpplib_client, start_daemon

pytestmark = pytest.mark.subprocess

CONFIG = """[store]
path = "{db}"
[policy]
default_region = "CN"
[rules.quiet_hours]
enabled = false
[rules.content]
forbidden = ["casino"]
[log]
level = "{level}"
format = "{fmt}"
"""


def run_and_stop(tmp_path, fmt: str, level: str = "debug") -> str:
    proc, address = start_daemon(tmp_path, CONFIG.format(db=tmp_path / "guard.db", fmt=fmt, level=level))
    try:
        c = smpplib_client(address)
        c.bind_transmitter(system_id="acme\nFORGED lin", password="pw")
        assert send_submit(c, "13800138000", "Big casino night").status == 0x45
        assert send_submit(c, "13800138001", "Winter sale").status == 0
        c.unbind()
        c.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def test_json_logs_are_one_object_per_line_with_the_refusal_s_fields(tmp_path):
    err = run_and_stop(tmp_path, "json")
    records = [json.loads(line) for line in err.splitlines()]  # every line parses
    assert {r["logger"].split(".")[0] for r in records} == {"smppguard"}  # no library chatter at debug
    [refusal] = [r for r in records if r["logger"] == "smppguard.verdicts"]
    assert refusal["level"] == "info"
    assert (refusal["rule"], refusal["status"], refusal["recipient"], refusal["action"]) == (
        "content", "0x45", "+86138****8000", "reject")
    assert refusal["account"] == "acme\nFORGED lin"  # in a JSON string, a newline cannot start a line
    assert records[0]["time"].endswith("Z") and records[-1]["message"]


def test_text_logs_have_one_line_per_refusal_and_verdicts_can_be_off(tmp_path):
    err = run_and_stop(tmp_path, "text", level="info")
    [line] = [x for x in err.splitlines() if "smppguard.verdicts" in x]
    assert "INFO smppguard.verdicts: acme\\nFORGED lin reject from ACME to +86138****8000: content, status " \
           "0x45" in line
    assert not any(x.startswith("FORGED") for x in err.splitlines())


def test_allowed_messages_are_not_logged_as_verdicts_even_when_another_observer_wants_them(tmp_path):
    """With an observer that wants allowed messages (the sending-pattern review), they are built as events; the
    verdict log still shows only refusals and holds."""
    import logging

    from smppguard.hooks import Decided, Hooks
    from smppguard.logs import VerdictLog
    from smppguard.policy import ALLOW

    class Lines(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    class Allows:
        seen = 0

        def decided(self, e):
            Allows.seen += 1

    lines = Lines()
    logging.getLogger("smppguard.verdicts").addHandler(lines)
    try:
        hooks = Hooks([VerdictLog(logging.WARNING, lambda n, a: a), Allows()])
        assert hooks.wants_allowed
        hooks.decided(Decided(0.0, 4, "acme", "ACME", "8613800138000", None, ALLOW))
    finally:
        logging.getLogger("smppguard.verdicts").removeHandler(lines)
    assert lines.records == [] and Allows.seen == 1
