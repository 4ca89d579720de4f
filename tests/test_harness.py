"""The test harness's own promises: a check that times out fails, and a machine that must test against Kannel
cannot skip it. Without these, a test could pass by waiting."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import kannel
from helpers import RawPeer
from rawsmsc import RawSmsc


def test_closed_by_peer_is_false_for_a_peer_that_stays_open_and_true_once_it_closes():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = RawPeer(listener.getsockname()[:2], 5)
        server_side, _ = listener.accept()
        try:
            assert peer.closed_by_peer(timeout=0.2) is False  # a timeout is not a close
            server_side.sendall(b"x")
            assert peer.closed_by_peer(timeout=0.2) is False  # nor are more bytes
            server_side.close()
            assert peer.closed_by_peer(timeout=2.0) is True
        finally:
            peer.close()


def test_raw_smsc_wait_fails_at_its_deadline():
    with RawSmsc() as smsc:
        with pytest.raises(AssertionError, match="no bound connection within 0.2 s"):
            smsc.bound(timeout=0.2)


def test_kannel_tests_fail_instead_of_skipping_where_kannel_must_be(monkeypatch):
    monkeypatch.setattr(kannel, "BEARERBOX", Path("/nonexistent/bearerbox"))
    monkeypatch.setenv(kannel.REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="must test against it"):
        kannel.require_kannel()
    monkeypatch.delenv(kannel.REQUIRE)
    with pytest.raises(pytest.skip.Exception):
        kannel.require_kannel()


def _mutation_score():
    import importlib.util

    path = Path(__file__).parent.parent / "scripts" / "mutation_score.py"
    spec = importlib.util.spec_from_file_location("mutation_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _diff(before: str, after: str) -> str:
    return f"--- a\n+++ b\n@@ -1,3 +1,3 @@\n def f(db):\n-{before}\n+{after}\n     return x\n"


@pytest.mark.parametrize("before, after, equivalent", [
    ('    db.execute("SELECT id FROM audit WHERE at < ?", (t,))',
     '    db.execute("select id from audit where at < ?", (t,))', True),
    ('    "SET count = CASE WHEN since > ? THEN count + 1 ELSE 1 END, "',
     '    "set count = case when since > ? then count + 1 else 1 end, "', True),
    # savepoint names are identifiers: any case
    ('    db.execute("SAVEPOINT facts")', '    db.execute("savepoint facts")', True),
    ('    db.execute("RELEASE fact")', '    db.execute("RELEASE FACT")', True),
    # a literal inside the SQL in another case is another value
    ('    db.execute("SELECT 1 FROM optout WHERE source = \'reply\'")',
     '    db.execute("SELECT 1 FROM OPTOUT WHERE SOURCE = \'REPLY\'")', False),
    # English is not SQL, even with "from" in it: the reason text a user reads
    ('    reason = f"opted out from {n} senders"', '    reason = f"OPTED OUT FROM {n} SENDERS"', False),
    # another change beside the case: not equivalent
    ('    db.execute("SELECT id FROM audit", (t,))', '    db.execute("select id from audit", (None,))', False),
    ('    db.execute("SELECT id FROM audit")', '    db.execute("XXSELECT id FROM auditXX")', False),
])
def test_mutation_scoring_counts_only_a_change_of_case_in_sql_as_equivalent(before, after, equivalent):
    """scripts/mutation_score.py: the survivors it calls equivalent leave the score, so it must not call a
    real change equivalent."""
    assert _mutation_score().sql_case_only(_diff(before, after)) is equivalent


@pytest.mark.parametrize("policy", ["full", "off"])
def test_the_instruction_count_screens_and_settles_every_message_on_the_daemons_objects(tmp_path, policy):
    """scripts/instructions counts what this runs under valgrind (not installed for the tests): every message
    must be forwarded, or the count would be of refusals."""
    from instructions import screen_and_settle
    from smppguard.bench.fill import fill_store

    db = tmp_path / "smppguard.db"
    fill_store(db, 100)
    assert screen_and_settle(db, policy, 250) == 250
    if policy == "full":  # a new recipient each: a second run over the same numbers is refused by the cap
        assert screen_and_settle(db, policy, 250) < 250


@pytest.mark.subprocess
def test_a_daemon_a_test_started_ends_when_the_test_process_is_killed(tmp_path):
    """A daemon started by a test outlived its test process when that was killed: the helpers' children
    get PR_SET_PDEATHSIG, as the import workers have."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from helpers import alive, wait_for

    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from pathlib import Path\nfrom helpers import start_daemon\n"
              f"daemon, _ = start_daemon(Path({str(tmp_path)!r}), '[store]\\npath = \"{tmp_path / 'g.db'}\"\\n')\n"
              "print(daemon.pid, flush=True)\nimport time\ntime.sleep(60)\n")
    test = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        daemon_pid = int(test.stdout.readline())
        assert alive(daemon_pid)
        test.send_signal(signal.SIGKILL)
        test.wait()
        wait_for(lambda: not alive(daemon_pid), what="the daemon gone with its test process", timeout=10)
    finally:
        test.kill()
        test.wait()
