"""Several sidecars, one compliance state: two (or three) daemons, each with its own store and its own SMSC, share
list changes and sends through a real Mosquitto broker. smpplib is the sender; the CLI's store functions (as the
`smppguard blacklist add` command calls them) write on one node; the other node's verdicts show what arrived.
"""

from __future__ import annotations

import contextlib
import time

import pytest

import helpers
from e2e.test_learning import Sender, learned, mo_body
from helpers import CN_ANY_HOUR, Stack, make_config, rows
from mosquitto import Broker
from smppguard.smpp.status import Status
from smppguard.store import lists
from smppguard.store.db import connect

POLICY = CN_ANY_HOUR + """
[rules.frequency]
max = 4
period = "30d"
min_interval = "0s"
"""
SENDER = "10690000"
A1, A2, A3 = 8613800000001, 8613800000002, 8613800000003
REFUSED = 0x45  # the policy's default refusal status for the list rules and the cap (SMPP-NOTES)


def wait_for(predicate, timeout: float = 10.0, **kw):
    """helpers.wait_for, never less patient than 10 s: the broker, the writer and the change-log tail take turns on
    a host that two test processes keep busy, and how soon is the benchmark's figure, not this suite's."""
    return helpers.wait_for(predicate, max(timeout, 10.0), **kw)


def node_config(tmp_path, name: str, broker: Broker, policy: str = POLICY, **mqtt):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return make_config(policy, store={"path": str(folder / "guard.db")},
                       session={"response_timeout": 5.0, "enquire_link_interval": 30.0},
                       mqtt={"url": broker.url, "node": name, "hello_interval": 0.5, **mqtt})


@contextlib.contextmanager
def nodes(tmp_path, broker: Broker, *names: str, policy: str = POLICY, **mqtt):
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(Stack(node_config(tmp_path, n, broker, policy, **mqtt), store=True))
               for n in names]


def db_of(node: Stack) -> str:
    return node.config.store.path


def connected(*stacks: Stack) -> None:
    wait_for(lambda: all(s.store.sync.connected for s in stacks), timeout=10, what="nodes connected to the broker")


def blacklist_on(node: Stack, numbers: list[int], source: str = "carrier") -> None:
    """`smppguard blacklist add` on that node's store, as the CLI does it (another process's connection)."""
    db = connect(db_of(node))
    try:
        lists.add_blacklist(db, numbers, source=source, actor="ops")
    finally:
        db.close()


def in_index(node: Stack, check) -> None:
    wait_for(lambda: node.call(lambda: check(node.store.upkeep.index)), timeout=5, what="the change in the Index")


@pytest.fixture
def broker():
    with Broker() as b:
        yield b


@pytest.fixture
def sender_of():
    opened: list[Sender] = []

    def make(stack: Stack) -> Sender:
        s = Sender(stack)
        opened.append(s)
        return s
    yield make
    for s in opened:
        with contextlib.suppress(Exception):
            s.close()


def test_a_blacklist_entry_added_on_a_is_refused_on_b(tmp_path, broker, sender_of):
    """How soon is a figure of the benchmark (`smppguard bench --sync`: the propagation delay, and the change-log
    tail's 0.5 s), not of this test, which a busy host slows."""
    with nodes(tmp_path, broker, "a", "b") as (a, b):
        connected(a, b)
        on_b = sender_of(b)
        assert on_b.submit(SENDER, A1) == Status.ROK  # before: it passes on B
        db = connect(db_of(a))
        try:
            lists.add_blacklist(db, [A1], source="complaint", reason="complained", actor="ops")
        finally:
            db.close()
        wait_for(lambda: b.call(lambda: A1 in b.store.upkeep.index.blacklist), timeout=10.0, every=0.01,
                 what="the number blacklisted on A in B's Index")
        assert on_b.submit(SENDER, A1) == REFUSED
        wait_for(lambda: rows(db_of(b), "SELECT rule FROM audit WHERE rule = 'blacklist'"), what="B's audit row")
        # the row B holds has A's origin and is not B's own: B never publishes it again as its own
        assert rows(db_of(b), "SELECT node, seq, kind, op, number FROM changelog WHERE kind = 'blacklist'") == [
            ("a", 1, "blacklist", "add", A1)]
        assert rows(db_of(b), "SELECT source, reason FROM blacklist WHERE number = ?", A1) == [
            ("complaint", "complained")]
        assert on_b.submit(SENDER, A2) == Status.ROK  # another number still passes


def test_an_opt_out_learned_from_a_reply_on_a_refuses_on_b_with_the_same_scope(tmp_path, broker, sender_of):
    with nodes(tmp_path, broker, "a", "b") as (a, b):
        connected(a, b)
        on_a, on_b = sender_of(a), sender_of(b)
        a.call(lambda: a.sim.deliver("acme", mo_body(A1, SENDER, b"TD")))
        on_a.read_deliver()
        assert wait_for(lambda: learned(db_of(b), A1), timeout=3, what="the opt-out on B") == [
            ("sender", SENDER, "reply", "td")]
        in_index(b, lambda index: index.change_id >= rows(db_of(b), "SELECT MAX(id) FROM changelog")[0][0])
        assert on_b.submit(SENDER, A1) == REFUSED
        assert on_b.submit("10690001", A1) == Status.ROK  # the same scope: another sender's message passes


def test_four_sends_on_a_make_b_refuse_the_fifth(tmp_path, broker, sender_of):
    with nodes(tmp_path, broker, "a", "b") as (a, b):
        connected(a, b)
        on_a, on_b = sender_of(a), sender_of(b)
        for _ in range(4):
            assert on_a.submit(SENDER, A1) == Status.ROK
        wait_for(lambda: b.call(lambda: len(b.store.upkeep.index.history.get(A1) or ())) == 4, timeout=3,
                 what="A's four sends counted on B")
        assert on_b.submit(SENDER, A1) == REFUSED
        assert on_b.submit(SENDER, A2) == Status.ROK
        # kept in B's store as A's sends (they count after a restart), and never answered as B's own
        assert wait_for(lambda: rows(db_of(b), "SELECT COUNT(*), MIN(node), MAX(node) FROM send_history "
                                     "WHERE number = ? HAVING COUNT(*) >= 4", A1), what="A's sends in B's store") \
            == [(4, "a", "a")]


def blacklisted(stack: Stack) -> set[int]:
    return {n for (n,) in rows(db_of(stack), "SELECT number FROM blacklist")}


def test_the_broker_killed_and_started_again_empty_under_traffic_loses_no_change(tmp_path, broker, sender_of):
    with nodes(tmp_path, broker, "a", "b") as (a, b):
        connected(a, b)
        on_a = sender_of(a)
        db = connect(db_of(a))
        try:
            added = []
            for i in range(30):
                number = 8613900000000 + i
                lists.add_blacklist(db, [number], source="carrier", actor="ops")
                added.append(number)
                if i == 10:
                    broker.stop(kill=True)  # gone, with every session and queued message
                if i == 20:
                    broker.start()  # back, empty
                # A answers every submit meanwhile, from its own lists: the broker is never on the hot path
                assert on_a.submit(SENDER, 8613700000000 + i) == Status.ROK
                time.sleep(0.05)
        finally:
            db.close()
        wait_for(lambda: set(added) <= blacklisted(b), timeout=15, what="every change on B after the restart")
        in_index(b, lambda index: all(n in index.blacklist for n in added))
        assert rows(db_of(b), "SELECT COUNT(*), COUNT(DISTINCT seq) FROM changelog WHERE node = 'a'") == [(30, 30)]


def test_a_node_stopped_while_another_imports_more_than_the_brokers_queue_holds_all_of_it_again(tmp_path):
    numbers = list(range(8613500000000, 8613500000000 + 10_000))
    with Broker("max_queued_messages 5") as broker:
        with nodes(tmp_path, broker, "a") as (a,):
            b_config = node_config(tmp_path, "b", broker)
            with Stack(b_config, store=True) as b:
                connected(a, b)
            # b is stopped (its session stays on the broker, which keeps 5 messages for it)
            db = connect(db_of(a))
            try:
                for start in range(0, len(numbers), 25):  # 400 changes of 25 numbers: 400 rows, 2+ messages each
                    lists.add_blacklist(db, numbers[start:start + 25], source="carrier", actor="ops")
            finally:
                db.close()
            wait_for(lambda: a.store.sync.published >= 400, timeout=10, what="A publishing its rows")
            with Stack(b_config, store=True) as b:
                wait_for(lambda: len(blacklisted(b)) == len(numbers), timeout=30,
                         what="every imported number on B again")
                in_index(b, lambda index: all(n in index.blacklist for n in numbers[::97]))
                assert b.store.sync.counts["asked_changes"] >= 1  # it had to ask: the broker kept 5 messages


def test_sends_made_while_a_node_was_away_count_there_when_it_is_back(tmp_path, sender_of):
    with Broker("max_queued_messages 1") as broker, nodes(tmp_path, broker, "a") as (a,):
        b_config = node_config(tmp_path, "b", broker)
        with Stack(b_config, store=True) as b:
            connected(a, b)
        on_a = sender_of(a)
        for _ in range(4):  # in batches of their own: the broker keeps one of them for B
            assert on_a.submit(SENDER, A1) == Status.ROK
            time.sleep(0.05)
        with Stack(b_config, store=True) as b:
            connected(b)
            wait_for(lambda: b.call(lambda: len(b.store.upkeep.index.history.get(A1) or ())) == 4, timeout=10,
                     what="A's four sends counted on B, asked for after it came back")
            on_b = sender_of(b)
            assert on_b.submit(SENDER, A1) == REFUSED
        # and once only, whatever B asked and A answered
        assert rows(db_of(b), "SELECT COUNT(*) FROM send_history WHERE number = ? AND node = 'a'", A1) == [(4,)]


def test_a_duplicated_and_a_reordered_delivery_are_applied_once_and_garbage_is_skipped(tmp_path, broker, sender_of):
    from mosquitto import Watcher
    from smppguard.store.changelog import Change
    from smppguard.sync import wire

    with nodes(tmp_path, broker, "b", peers=["b", "c", "a"]) as (b,):
        connected(b)
        w = Watcher(broker)
        try:
            first = Change("blacklist", "add", A1, data={"source": "carrier"}, at=time.time(), origin="c", node="c",
                           seq=1)
            second = Change("optout", "add", A2, "global", at=time.time(), origin="c", node="c", seq=2)
            topic = "smppguard/changes/c"
            w.publish(topic, b"not json at all")
            w.publish(topic, b'{"node": "c", "rows": [{"seq": 3, "kind": "nope"}]}')
            w.publish(topic, wire.encode_changes("c", [second]))  # reordered: 2 before 1
            w.publish(topic, wire.encode_changes("c", [first]))
            w.publish(topic, wire.encode_changes("c", [first, second]))  # duplicated
            forged = Change("blacklist", "add", A3, at=time.time(), origin="x", node="x", seq=1)
            w.publish("smppguard/changes/x", wire.encode_changes("x", [forged]))  # a node not among peers
            wait_for(lambda: rows(db_of(b), "SELECT COUNT(*) FROM changelog WHERE node = 'c'") == [(2,)],
                     what="c's two rows on B")
            time.sleep(0.3)
            assert rows(db_of(b), "SELECT node, seq, kind FROM changelog ORDER BY node, seq") == [
                ("c", 1, "blacklist"), ("c", 2, "optout")]
            assert b.store.sync.counts["malformed"] == 2
            assert b.store.sync.refused_nodes["x"] == 1
            in_index(b, lambda index: A1 in index.blacklist)
            on_b = sender_of(b)  # the daemon goes on
            assert on_b.submit(SENDER, A1) == REFUSED
        finally:
            w.close()


def test_two_nodes_changing_the_same_number_at_once_end_the_same(tmp_path, broker):
    with nodes(tmp_path, broker, "a", "b") as (a, b):
        connected(a, b)
        da, db_ = connect(db_of(a)), connect(db_of(b))
        try:
            lists.add_blacklist(da, [A1, A2], source="carrier", actor="ops")
            wait_for(lambda: {A1, A2} <= blacklisted(b), what="the first entries on B")
            # at once: A removes A1 (by hand, at the end of an observation period) while B lists it again;
            # A adds A2 again while B removes it
            lists.add_blacklist(db_, [A1], source="complaint", actor="ops")
            da.execute("BEGIN IMMEDIATE")
            from smppguard.store.changelog import Change, write
            write(da, [Change("blacklist", "remove", A1), Change("blacklist", "add", A2, data={"source": "manual"})],
                  origin="a", in_transaction=True)
            da.execute("COMMIT")
            write(db_, [Change("blacklist", "remove", A2)], origin="b")
        finally:
            da.close()
            db_.close()

        def held_of(node: Stack, origin: str) -> int:
            return rows(db_of(node), "SELECT MAX(seq) FROM changelog WHERE node = ?", origin)[0][0]

        def same():
            return (rows(db_of(a), "SELECT number FROM blacklist ORDER BY 1")
                    == rows(db_of(b), "SELECT number FROM blacklist ORDER BY 1")
                    and a.store.sync.published == held_of(b, "a") and b.store.sync.published == held_of(a, "b"))
        wait_for(same, timeout=5, what="both nodes with the same lists")
        # the last made wins: B's remove of A2 came after A's add; A's remove of A1 after B's complaint
        assert rows(db_of(a), "SELECT number FROM blacklist") == []


def test_events_reach_other_systems_with_the_recipient_masked(tmp_path, broker, sender_of):
    from mosquitto import Watcher

    w = Watcher(broker, "smppguard/events/#")
    try:
        with nodes(tmp_path, broker, "a") as (a,):
            connected(a)
            blacklist_on(a, [A1], "complaint")
            in_index(a, lambda index: A1 in index.blacklist)
            assert sender_of(a).submit(SENDER, A1) == REFUSED
            got = wait_for(lambda: w.on("smppguard/events/refused"), what="a refused event")
        import json
        event = json.loads(got[0])
        assert event["rule"] == "blacklist" and event["status"] == REFUSED and event["account"] == "acme"
        assert event["node"] == "a" and event["sender"] == SENDER
        assert event["recipient"] == "+86138****0001"
        assert str(A1) not in got[0].decode() and str(A1)[2:] not in got[0].decode()
    finally:
        w.close()


def test_healthz_says_degraded_not_down_while_the_broker_is_away_and_status_names_the_nodes(tmp_path, broker,
                                                                                            sender_of):
    import json

    from smppguard.metrics import Metrics, MetricsServer, State

    with nodes(tmp_path, broker, "a", "b") as (a, b):
        connected(a, b)
        blacklist_on(b, [A1], "carrier")
        wait_for(lambda: A1 in blacklisted(a), what="b's change on a")
        server = MetricsServer(State(Metrics(), a.proxy, a.store))
        code, _, body = a.call(lambda: server.respond("GET", "/healthz"))
        assert (code, json.loads(body)) == (200, {"status": "ok", "problems": []})
        status = wait_for(lambda: (s := a.call(lambda: server.state.status())["sync"])["nodes"]
                          and s["nodes"][0]["changes_held"] == 1 and s, what="b's row held, in a's status")
        assert status["connected"] and status["node"] == "a"
        assert [(n["node"], n["changes_held"], n["lag_changes"]) for n in status["nodes"]] == [("b", 1, 0)]
        a.store.sync.s = a.store.sync.s._replace(behind_after=0.3)
        broker.stop()
        wait_for(lambda: not a.store.sync.connected, what="a seeing the broker gone")
        time.sleep(0.5)
        code, _, body = a.call(lambda: server.respond("GET", "/healthz"))
        answer = json.loads(body)
        assert code == 200 and answer["status"] == "degraded" and answer["problems"] == []
        assert "not connected to the MQTT broker" in answer["warnings"][0]
        assert sender_of(a).submit(SENDER, A1) == REFUSED  # screening goes on with what a knows
        metrics = a.call(lambda: server.respond("GET", "/metrics"))[2].decode()
        assert "smppguard_sync_connected 0.0" in metrics
        assert 'smppguard_sync_lag_changes{node="b"} 0.0' in metrics


#: The ACL the README shows: each node (its broker user is its node name) publishes only on its own topics.
ACL = """pattern read smppguard/#
pattern write smppguard/changes/%u
pattern write smppguard/sends/%u
pattern write smppguard/hello/%u
pattern write smppguard/replay/%u
pattern write smppguard/replays/#
pattern write smppguard/events/#
"""


def test_over_tls_with_passwords_and_the_readme_acl_a_node_cannot_publish_as_another(tmp_path, sender_of):
    from smppguard.store.changelog import Change
    from smppguard.sync import wire
    from tlsca import make_pki

    pki = make_pki(tmp_path)
    tls = (f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n")
    with Broker(tls, users={"a": "pa", "b": "pb", "mallory": "pm"}, acl=ACL) as broker:
        def url(user, password):
            return f"mqtts://{user}:{password}@localhost:{broker.port}"
        cfg_a = node_config(tmp_path, "a", broker, url=url("a", "pa"), ca=str(pki.ca))
        cfg_b = node_config(tmp_path, "b", broker, url=url("b", "pb"), ca=str(pki.ca))
        cfg_bad = node_config(tmp_path, "c", broker, url=url("c", "wrong"), ca=str(pki.ca))
        cfg_untrusted = node_config(tmp_path, "d", broker, url=url("a", "pa"), ca=str(pki.other_ca))
        with Stack(cfg_a, store=True) as a, Stack(cfg_b, store=True) as b, Stack(cfg_bad, store=True) as c, \
                Stack(cfg_untrusted, store=True) as d:
            connected(a, b)
            blacklist_on(a, [A1], "carrier")
            wait_for(lambda: A1 in blacklisted(b), timeout=3, what="a's change on b, over TLS")
            # mallory may log in but not publish as node a: the broker drops it, b never sees it
            import paho.mqtt.client as mqtt
            m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="mallory")
            m.username_pw_set("mallory", "pm")
            m.tls_set(ca_certs=str(pki.ca))
            m.connect("localhost", broker.port)
            m.loop_start()
            forged = Change("blacklist", "add", A2, data={"source": "carrier"}, at=time.time(), node="a", seq=999)
            m.publish("smppguard/changes/a", wire.encode_changes("a", [forged]), qos=1).wait_for_publish(5)
            m.loop_stop()
            m.disconnect()
            time.sleep(1.0)
            assert A2 not in blacklisted(b)
            # a wrong password, a broker whose CA is not trusted: not connected, and screening goes on
            assert not c.store.sync.connected and not d.store.sync.connected
            assert c.store.sync.counts["connects"] == d.store.sync.counts["connects"] == 0
            assert sender_of(c).submit(SENDER, A3) == Status.ROK


def test_a_node_whose_store_was_lost_recovers_its_own_rows_before_it_numbers_new_ones(tmp_path, broker):
    with nodes(tmp_path, broker, "b") as (b,):
        a_config = node_config(tmp_path, "a", broker)
        with Stack(a_config, store=True) as a:
            connected(a, b)
            blacklist_on(a, [A1], "carrier")
            wait_for(lambda: A1 in blacklisted(b), what="a's first change on b")
            wait_for(lambda: a.store.sync.published == 1, what="a's hello naming it")
            time.sleep(1.0)  # a retained hello with it
        for f in (tmp_path / "a").iterdir():  # the disk is gone; a comes back under its own name
            f.unlink()
        db = connect(a_config.store.path)
        try:  # a change made on the new store before a is back: it must not take seq 1, which b holds
            lists.add_blacklist(db, [A2], source="complaint", actor="ops")
        finally:
            db.close()
        with Stack(a_config, store=True) as a:
            wait_for(lambda: A2 in blacklisted(b), timeout=10, what="a's new change on b")
            assert rows(db_of(b), "SELECT seq, number FROM changelog WHERE node = 'a' ORDER BY seq") == [
                (1, A1), (2, A2)]
            assert blacklisted(a) == {A1, A2}


def test_a_new_node_started_from_an_export_asks_only_for_what_came_after(tmp_path, broker, sender_of):
    from click.testing import CliRunner

    from smppguard.cli import main

    numbers = list(range(8613400000000, 8613400000000 + 300))
    with nodes(tmp_path, broker, "a") as (a,):
        connected(a)
        db = connect(db_of(a))
        try:
            for n in numbers:  # 300 changes of one number each
                lists.add_blacklist(db, [n], source="carrier", actor="ops")
        finally:
            db.close()
        on_a = sender_of(a)
        for _ in range(2):
            assert on_a.submit(SENDER, A1) == Status.ROK
        wait_for(lambda: a.store.sync.published == 300, what="a publishing its rows")
        (tmp_path / "c").mkdir()
        export = tmp_path / "c" / "guard.db"
        cfg_path = tmp_path / "a.toml"
        cfg_path.write_text(f'[store]\npath = "{db_of(a)}"\n[mqtt]\nurl = "{broker.url}"\nnode = "a"\n')
        result = CliRunner().invoke(main, ["sync", "export", "--config", str(cfg_path), str(export)])
        assert result.exit_code == 0, result.output
        assert "300 changes, 300 blacklisted" in result.output and "2 sends" in result.output
        assert rows(export, "SELECT COUNT(*) FROM audit") == [(0,)]
        with Stack(node_config(tmp_path, "c", broker), store=True) as c:
            connected(c)
            in_index(c, lambda index: all(n in index.blacklist for n in numbers))
            assert c.call(lambda: len(c.store.upkeep.index.history.get(A1) or ())) == 2  # a's sends count on c
            blacklist_on(a, [A3], "complaint")
            wait_for(lambda: A3 in blacklisted(c), what="a's next change on c")
            assert c.store.sync.counts["asked_changes"] == 0  # it held the 300, and asked for none of them
            assert sender_of(a).submit(SENDER, A2) == Status.ROK  # a live send after the export
            wait_for(lambda: c.call(lambda: len(c.store.upkeep.index.history.get(A2) or ())) == 1,
                     what="a's live send counted on c")
            time.sleep(0.5)
            assert rows(db_of(c), "SELECT number, node, COUNT(*) FROM send_history GROUP BY number, node") == [
                (A1, "a", 2), (A2, "a", 1)]  # each once: the copied ones were not asked for again
            assert c.call(lambda: len(c.store.upkeep.index.history.get(A1) or ())) == 2
        result = CliRunner().invoke(main, ["sync", "export", "--config", str(cfg_path), str(export)])
        assert result.exit_code == 2 and "exists" in result.output


def test_a_large_import_travels_in_messages_of_bounded_size_and_arrives_whole(tmp_path, broker):
    from click.testing import CliRunner

    from mosquitto import Watcher
    from smppguard.cli import main

    numbers = range(8613300000000, 8613300000000 + 250_000)
    csv = tmp_path / "carrier.csv"
    csv.write_text("number\n" + "".join(f"+{n}\n" for n in numbers))
    w = Watcher(broker, "smppguard/changes/a")
    try:
        with nodes(tmp_path, broker, "a", "b") as (a, b):
            connected(a, b)
            cfg_path = tmp_path / "a.toml"
            cfg_path.write_text(f'[store]\npath = "{db_of(a)}"\n[policy]\ndefault_region = "CN"\n')
            result = CliRunner().invoke(main, ["blacklist", "import", "--config", str(cfg_path), "--source",
                                               "carrier", str(csv)])
            assert result.exit_code == 0, result.output
            wait_for(lambda: rows(db_of(b), "SELECT COUNT(*) FROM blacklist")[0][0] == 250_000, timeout=30,
                     what="the whole import on b")
            in_index(b, lambda index: all(n in index.blacklist for n in numbers[::4999]))
        sizes = [len(p) for p in w.on("smppguard/changes/a")]
        assert len(sizes) >= 3 and max(sizes) < 2_500_000, sizes  # an import's row is at most 100,000 numbers
    finally:
        w.close()


def test_a_reload_names_a_changed_mqtt_table_as_needing_a_restart(tmp_path, broker):
    import dataclasses

    from smppguard.app import Reloader

    with nodes(tmp_path, broker, "a") as (a,):
        reloader = Reloader(a.config, a.store, a.proxy)
        same = a.call(lambda: reloader.apply(a.config))
        assert "[mqtt]" not in same
        moved = dataclasses.replace(a.config, mqtt=dataclasses.replace(a.config.mqtt, node="renamed"))
        assert "[mqtt]" in a.call(lambda: reloader.apply(moved))


HOLDING = POLICY.replace('[rules.quiet_hours]\nenabled = false', '[rules.quiet_hours]\naction = "hold"').replace(
    "max = 4", "max = 2")


def test_a_message_held_on_one_node_counts_on_the_others_and_still_after_a_restart(tmp_path, broker, sender_of):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    night = datetime(2026, 11, 27, 23, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    assert 'action = "hold"' in HOLDING and "max = 2" in HOLDING

    def held_on(node: Stack) -> int:
        return node.call(lambda: len(node.store.upkeep.index.held.get(A1) or ()))

    class Clock:
        now = night

    clock = Clock()
    a_config, b_config = (node_config(tmp_path, n, broker, HOLDING) for n in ("a", "b"))
    with Stack(a_config, store=True, clock=lambda: clock.now) as a:
        with Stack(b_config, store=True, clock=lambda: clock.now) as b:
            connected(a, b)
            on_a = sender_of(a)
            assert on_a.submit(SENDER, A1) == Status.ROK and on_a.submit(SENDER, A1) == Status.ROK  # both held
            assert held_on(a) == 2
            wait_for(lambda: held_on(b) == 2, timeout=3, what="a's two held messages counted on b")
            on_b = sender_of(b)
            assert on_b.submit(SENDER, A1) == REFUSED  # the cap of 2, reached by a's held messages
            assert on_b.submit(SENDER, A2) == Status.ROK  # held, for another number
        with Stack(b_config, store=True, clock=lambda: night) as b:  # b again: it asks a what is held there
            wait_for(lambda: held_on(b) == 2, timeout=5, what="a's held messages counted on b after its restart")
            assert sender_of(b).submit(SENDER, A1) == REFUSED
            assert b.store.sync.counts["asked_held"] >= 1
            clock.now = night + 10.5 * 3600  # 09:30: a releases them; on b they count as sends, not twice
            wait_for(lambda: a.store.holds.released == 2, timeout=10, what="a releasing its held messages")
            wait_for(lambda: held_on(b) == 0 and b.call(
                lambda: len(b.store.upkeep.index.history.get(A1) or ())) == 2, timeout=5,
                what="b counting a's two released messages as sends, and no longer as held")


def test_two_sidecars_with_one_node_name_are_told_apart_and_reported(tmp_path, broker, caplog):
    import logging

    (tmp_path / "elsewhere").mkdir()
    first, second = node_config(tmp_path, "a", broker), node_config(tmp_path / "elsewhere", "a", broker)
    with caplog.at_level(logging.ERROR, logger="smppguard.sync"):
        with Stack(first, store=True) as a1:
            connected(a1)
            with Stack(second, store=True) as a2:  # the broker hands the name's session from one to the other
                wait_for(lambda: a1.store.sync.twin_seen or a2.store.sync.twin_seen, timeout=10,
                         what="one seeing the other's hello under its name")
                twin = a1 if a1.store.sync.twin_seen else a2
                assert any("another sidecar uses this node's name 'a'" in w for w in twin.store.sync.behind())
    assert "another sidecar calls itself 'a' too" in caplog.text
    assert "another sidecar calls itself 'a' too" in caplog.text


def test_sends_asked_for_while_their_node_is_away_arrive_once_it_is_back(tmp_path):
    """b comes back while a is away: what a's retained hello names, nobody answers; b asks again until a, back
    under a new run, answers, and counts each send once."""
    def history(stack: Stack) -> int:
        return stack.call(lambda: len(stack.store.upkeep.index.history.get(A1) or ()))

    with Broker("max_queued_messages 1") as broker:
        a_cfg, b_cfg = node_config(tmp_path, "a", broker), node_config(tmp_path, "b", broker)
        with Stack(b_cfg, store=True) as b, Stack(a_cfg, store=True) as a:
            connected(a, b)
        with Stack(a_cfg, store=True) as a:  # b away (the broker keeps one message for it)
            connected(a)
            s = Sender(a)
            for _ in range(4):
                assert s.submit(SENDER, A1) == Status.ROK
                time.sleep(0.05)
            time.sleep(1.5)  # a's retained hello names them
            s.close()
        with Stack(b_cfg, store=True) as b:  # a away
            connected(b)
            time.sleep(1.0)
            with Stack(a_cfg, store=True) as a:
                connected(a)
                wait_for(lambda: history(b) == 4, what="a's four sends counted on b")
                time.sleep(1.0)
                assert history(b) == 4
                assert rows(db_of(b), "SELECT COUNT(*) FROM send_history WHERE node = 'a'") == [(4,)]


def test_a_signature_registered_and_an_account_held_on_a_take_effect_on_b(tmp_path, broker, sender_of):
    from smppguard.store import review, signatures

    policy = POLICY + '\n[rules.signature]\nenabled = true\nwhere = "start"\nstatus = "0x45"\n'
    signed, unsigned = "【ACME】新品上市, 回T退订", "新品上市, 回T退订"
    with nodes(tmp_path, broker, "a", "b", policy=policy) as (a, b):
        connected(a, b)
        on_b = sender_of(b)
        assert on_b.submit(SENDER, A1, signed) == REFUSED  # acme has no signature anywhere yet
        db = connect(db_of(a))
        try:
            signatures.add(db, "acme", "ACME", cert_id="91110000MA01", actor="ops")
        finally:
            db.close()
        in_index(b, lambda index: index.signed("acme", SENDER) == {"ACME"})
        assert on_b.submit(SENDER, A1, signed) == Status.ROK
        assert on_b.submit(SENDER, A2, unsigned) == REFUSED
        assert rows(db_of(b), "SELECT account, signature, cert_id, removed FROM signature") == [
            ("acme", "ACME", "91110000MA01", 0)]
        # the review's mark made on A holds acme's marketing on B too, and a release on B lifts it on A
        db = connect(db_of(a))
        try:
            review.mark(db, "acme", "held", "new recipients 95% of 300 sent (threshold 90%)", {"sent": 300})
        finally:
            db.close()
        in_index(b, lambda index: index.reviews.get("acme", (0, ""))[1] == "held")
        assert on_b.submit(SENDER, A3, signed) == Status.ROK  # held: OK to the sender ...
        wait_for(lambda: rows(db_of(b), "SELECT COUNT(*) FROM held WHERE account = 'acme'")[0][0] == 1,
                 what="held on B")
        db = connect(db_of(b))
        try:
            assert review.release(db, "acme", actor="ops") == 1
        finally:
            db.close()
        in_index(a, lambda index: index.reviews.get("acme", (0, ""))[1] == "released")
