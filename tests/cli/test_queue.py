"""`smppguard queue`: what is held, shown and changed in the store (the daemon picks the changes up)."""

from __future__ import annotations

import time

from cli_helpers import TIME, as_json, config_text, invoke, norm, sql, table

from smppguard.cli.common import when
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import encode_body, parse_body
from smppguard.smpp.pdu import build
from smppguard.smpp.receipt import parse_receipt
from smppguard.store import holds
from smppguard.store.db import connect

NOW = time.time()


def held(db_path, proxy_id: str, number: int, account: str = "acme", *, state: str = "held", receipt: bool = True,
         release_in: float = 3600.0, grp: str = "", part: int = 1, parts: int = 1) -> None:
    pdu = build(CommandId.SUBMIT_SM, 0, encode_body(CommandId.SUBMIT_SM, source_addr="ACME",
                                                    destination_addr=str(number), short_message=b"Sale!",
                                                    registered_delivery=1 if receipt else 0))
    db = connect(db_path)
    holds.add(db, [holds.HeldRow(0, proxy_id, account, "ACME", str(number), number, CommandId.SUBMIT_SM, pdu,
                                 grp, part, parts, NOW, NOW + release_in, NOW + 86400, receipt, state)])
    db.close()


def test_queue_list_shows_held_messages_next_due_first_with_masked_recipients(cli, db_path):
    held(db_path, "aaaaaaaaaaaaaaaa", 8613800138000, release_in=7200)
    held(db_path, "bbbbbbbbbbbbbbbb", 8613900000001, "other", release_in=600)
    held(db_path, "cccccccccccccccc", 8613900000002, state="unknown", release_in=60)
    r = cli("queue", "list")
    assert r.exit_code == 0
    assert norm(r.stdout) == table(
        "id                account  sender  recipient       state    release_at            expires_at            "
        "held_at               part",
        "----------------  -------  ------  --------------  -------  --------------------  --------------------  "
        "--------------------  ----",
        f"cccccccccccccccc  acme     ACME    +86139****0002  unknown  {TIME}  {TIME}  {TIME}",
        f"bbbbbbbbbbbbbbbb  other    ACME    +86139****0001  held     {TIME}  {TIME}  {TIME}",
        f"aaaaaaaaaaaaaaaa  acme     ACME    +86138****8000  held     {TIME}  {TIME}  {TIME}")
    r = cli("queue", "list", "--account", "acme", "--due-before", "30m", "--json")
    assert [(m["id"], m["state"]) for m in as_json(r)] == [("cccccccccccccccc", "unknown")]
    assert cli("queue", "list", "--account", "nobody").exit_code == 1


def test_queue_show_prints_every_part_and_fails_for_an_unknown_id(cli, db_path):
    held(db_path, "dddddddddddddddd", 8613800138000, grp="g1", part=1, parts=2)
    held(db_path, "eeeeeeeeeeeeeeee", 8613800138000, grp="g1", part=2, parts=2)
    r = cli("queue", "show", "eeeeeeeeeeeeeeee", "--json")
    [shown] = as_json(r)
    assert (shown["part"], shown["state"], shown["command"]) == ("2/2", "held", "0x00000004")
    r = cli("queue", "show", "0000000000000000")
    assert r.exit_code == 1 and "no held message 0000000000000000" in r.output


def test_queue_release_makes_a_message_due_now_even_an_unknown_one(cli, db_path):
    held(db_path, "aaaaaaaaaaaaaaaa", 8613800138000)
    held(db_path, "bbbbbbbbbbbbbbbb", 8613800138001, state="unknown")
    r = cli("queue", "release", "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "ffffffffffffffff")
    # what happens next, said as it is: sent through a bind of the account, waiting while there is none
    assert (r.exit_code, r.stdout) == (0, (
        "released 2 messages: due now\n"
        "  acme: the daemon sends them within a second through a transmitter or transceiver bind of acme; while "
        f"acme has none up, they wait (its log says so within a minute), until {when(NOW + 86400)}, "
        "when they expire\n"))
    rows = sql(db_path, "SELECT id, state, forced, release_at <= ? FROM held ORDER BY id", (time.time(),))
    assert rows == [("aaaaaaaaaaaaaaaa", "held", 1, 1), ("bbbbbbbbbbbbbbbb", "held", 1, 1)]
    assert cli("queue", "release", "ffffffffffffffff").exit_code == 1


def test_queue_release_says_the_daemon_binds_itself_for_an_account_in_hold_accounts(tmp_path, db_path):
    config = tmp_path / "hold.toml"
    config.write_text(config_text(db_path, '\n[hold]\naccounts = { acme = "pw" }\n'))
    held(db_path, "aaaaaaaaaaaaaaaa", 8613800138000)
    r = invoke("queue", "release", "aaaaaaaaaaaaaaaa", "--config", config)
    assert r.exit_code == 0 and r.stdout.splitlines()[1] == (
        "  acme: the daemon sends it within a second, through a bind of acme or, with none up, one it opens "
        f"itself ([hold] accounts), until {when(NOW + 86400)}, when it expires")


def test_queue_drop_removes_audits_and_owes_a_deleted_receipt(cli, db_path):
    held(db_path, "aaaaaaaaaaaaaaaa", 8613800138000)
    held(db_path, "bbbbbbbbbbbbbbbb", 8613800138001, receipt=False)
    held(db_path, "cccccccccccccccc", 8613800138002, state="sending")  # its fate is the SMSC's answer
    r = cli("queue", "drop", "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc")
    assert (r.exit_code, r.stdout) == (0, "dropped 2 messages\n")
    assert sql(db_path, "SELECT id FROM held") == [("cccccccccccccccc",)]
    audit = sql(db_path, "SELECT account, recipient, rule, action, actor, reason FROM audit ORDER BY id")
    assert [a[:5] for a in audit] == [("acme", "+86138****8000", "hold", "dropped", "alice"),
                                      ("acme", "+86138****8001", "hold", "dropped", "alice")]
    assert "aaaaaaaaaaaaaaaa" in audit[0][5]
    [(account, body)] = sql(db_path, "SELECT account, body FROM owed")
    fields = parse_body(CommandId.DELIVER_SM, body)
    receipt = parse_receipt(fields["short_message"], fields["tlvs"])
    assert (account, receipt.message_id, receipt.stat) == ("acme", "aaaaaaaaaaaaaaaa", "DELETED")
    assert (fields["source_addr"], fields["destination_addr"], fields["esm_class"]) == ("8613800138000", "ACME", 4)
    assert cli("queue", "drop", "aaaaaaaaaaaaaaaa").exit_code == 1
