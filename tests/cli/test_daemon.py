"""The CLI against a running daemon: changes apply live through the change log, removals when their period ends.

The daemon is `helpers.Stack(config, store=True)` (simulator + proxy + store writer with its change-log tail) in
a background loop; the CLI runs in this thread through CliRunner on the same config file, as an operator would.
"""

from __future__ import annotations

import time

import pytest
from cli_helpers import OPERATOR, as_json, config_text, sql

from helpers import Stack, make_config, smpplib_client
from helpers import send_submit as send
from smppguard.smpp.status import Status

BLACKLIST_STATUS = 0x401  # distinct from the frequency cap's 0x45, so a refusal names its rule
EXTRA = f"""
[rules.quiet_hours]
enabled = false

[rules.frequency]
min_interval = "0s"

[rules.blacklist]
status = {BLACKLIST_STATUS:#x}
"""
NUMBER = 8613700000001
DEST = "13700000001"


@pytest.fixture
def config_path(tmp_path, db_path):
    path = tmp_path / "smppguard.toml"
    path.write_text(config_text(db_path, EXTRA))
    return path


@pytest.fixture
def daemon(config_path):
    cfg = make_config(config_path.read_text(), session={"response_timeout": 5.0, "enquire_link_interval": 30.0})
    with Stack(cfg, store=True) as stack:
        client = smpplib_client(stack.address)
        try:
            client.bind_transmitter(system_id="acme", password="pw")
            yield stack, client
        finally:
            client.disconnect()




def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_daemon_blacklist_add_refuses_the_next_marketing_message(cli, daemon):
    """The CLI's change reaches the running daemon's Index. How soon (within a second: the tail's period) is
    tested at the tail itself, in tests/store/test_upkeep.py."""
    stack, client = daemon
    assert send(client, DEST, "Sale today!").status == Status.ROK
    r = cli("blacklist", "add", DEST, "--source", "complaint", "--reason", "10086 complaint")
    assert (r.exit_code, r.stdout) == (0, "blacklisted 1 number\n")
    assert wait_for(lambda: NUMBER in stack.store.screening.index.blacklist, timeout=6.0)
    assert send(client, DEST, "Sale again!").status == BLACKLIST_STATUS
    assert [m.fields["short_message"] for m in stack.sim.received] == [b"Sale today!"]


def test_daemon_applies_a_pending_removal_when_its_period_ends(cli, daemon, db_path):
    stack, client = daemon
    index = stack.store.screening.index
    cli("blacklist", "add", DEST, "--source", "complaint")
    assert wait_for(lambda: NUMBER in index.blacklist, timeout=1.0)
    r = cli("blacklist", "remove", DEST, "--reason", "customer verified", "--observe", "3d")
    assert r.exit_code == 0
    # shorten the observation period to one second; from here on no CLI command runs until the check below
    sql(db_path, "UPDATE pending_removal SET effective_at = ? WHERE status = 'pending'", (time.time() + 1.0,))
    shortened = time.monotonic()
    assert send(client, DEST, "Sale!").status == BLACKLIST_STATUS  # still observed
    # the daemon looks every second: removed once the period is over, not before (and not never: a generous
    # bound, as the host may be busy; the look's period is the upkeep's, tested in tests/store/test_upkeep.py)
    assert wait_for(lambda: NUMBER not in index.blacklist, timeout=6.0)
    took = time.monotonic() - shortened
    assert send(client, DEST, "Sale!").status == Status.ROK
    assert took > 0.9, f"removed {took:.2f}s after the period was set to end in 1s"
    assert sql(db_path, "SELECT status FROM pending_removal") == [("done",)]
    assert sql(db_path, "SELECT number FROM watched") == [(NUMBER,)]
    stack.run(stack.store.writer.flush())  # the proxy's audit rows are group-committed: flush before reading
    rows = as_json(cli("audit", "--number", DEST, "--json"))
    assert [(x["rule"], x["action"], x["actor"], x["account"]) for x in rows] == [
        ("blacklist-removal", "done", OPERATOR, ""),
        ("blacklist", "reject", "", "acme"),
        ("blacklist-removal", "requested", OPERATOR, ""),
        ("blacklist", "add", OPERATOR, "")]  # the list operations are audited too


def test_daemon_ends_with_exactly_the_numbers_an_import_wrote(cli, daemon, db_path, tmp_path, monkeypatch):
    """An import commits chunk by chunk, each chunk's rows as batch change-log rows, while the daemon tails
    the log: soon after the import's end its Index holds exactly the imported numbers."""
    from smppguard.store import lists

    monkeypatch.setattr(lists, "IMPORT_CHUNK_CHARS", 4096)  # ~300 rows a chunk
    monkeypatch.setattr(lists, "IMPORT_RUN_ROWS", 2000)  # many commits during the import
    monkeypatch.setattr(lists, "IMPORT_SLICE", 500)
    stack, client = daemon
    index = stack.store.screening.index
    imported = {NUMBER + i for i in range(20_000)}
    path = tmp_path / "complaints.csv"
    path.write_text("number,source,reason\n" + "".join(f"+{n},complaint,10086\n" for n in sorted(imported))
                    + "12345\n" + "".join(f"+{n},carrier\n" for n in sorted(imported)[:500]))
    r = cli("blacklist", "import", path)
    assert r.exit_code == 2 and r.stderr == "line 20002: not a valid phone number: '12345'\n"
    assert r.stdout.startswith("imported 20500 rows")
    assert wait_for(lambda: index.blacklist == imported, timeout=6.0), len(index.blacklist ^ imported)
    assert sql(db_path, "SELECT COUNT(*) FROM changelog WHERE numbers IS NOT NULL")[0][0] > 10
    assert send(client, DEST, "Sale!").status == BLACKLIST_STATUS

