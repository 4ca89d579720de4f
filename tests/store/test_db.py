"""Opening the store: migrations, WAL, two connections to one file, files that are not a store."""

from __future__ import annotations

import sqlite3

import pytest

from smppguard.store import migrations
from smppguard.store.changelog import Change, write
from smppguard.store.db import NotFound, StoreError, connect, node_id
from smppguard.store.migrations import MIGRATIONS, migrate

#: The tables the store cannot work without (later migrations may add more).
TABLES = {"blacklist", "optout", "dead", "tz_override", "consent", "send_history", "audit", "changelog", "meta",
          "schema_migrations"}


@pytest.fixture
def path(tmp_path):
    return tmp_path / "store.db"


@pytest.fixture
def db(path):
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


def tables(conn: sqlite3.Connection) -> set[str]:
    return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name NOT LIKE 'sqlite_%'")}


def test_fresh_file_gets_every_table_and_a_migration_row(path, db):
    assert path.exists()
    assert tables(db) >= TABLES
    rows = db.execute("SELECT version, name, applied_at FROM schema_migrations").fetchall()
    assert [(v, n) for v, n, _ in rows] == [(i, fn.__name__) for i, fn in enumerate(MIGRATIONS, 1)]
    assert rows[0][1] == "m001_initial"
    assert all(at > 0 for _, _, at in rows)
    indexes = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                        "AND name NOT LIKE 'sqlite_%'")}
    assert indexes >= {"send_history_time", "audit_at", "optout_added"}
    assert "send_history_number" not in indexes  # dropped by m004: history writes are appends


def test_connection_settings(db):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.isolation_level is None and not db.in_transaction


def test_connecting_twice_applies_nothing_the_second_time(path, monkeypatch):
    first = connect(path)
    try:
        before = tables(first)
    finally:
        first.close()
    calls = []
    monkeypatch.setattr(migrations, "MIGRATIONS",
                        tuple(lambda db, fn=fn: calls.append(fn.__name__) or fn(db) for fn in MIGRATIONS))
    second = connect(path)
    try:
        assert calls == []
        assert migrate(second) == []
        assert second.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
        assert tables(second) == before
    finally:
        second.close()


def test_migrate_reports_what_it_applied(path):
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn) == [fn.__name__ for fn in MIGRATIONS]
        assert MIGRATIONS[0].__name__ == "m001_initial"
        assert migrate(conn) == []
    finally:
        conn.close()


def test_a_failing_migration_leaves_neither_tables_nor_record(path, monkeypatch):
    def m002_broken(db):
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    reference = connect(path.with_name("reference.db"))
    expected = tables(reference)
    reference.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS + (m002_broken,))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            migrate(conn)
        assert not conn.in_transaction
        assert "half_done" not in tables(conn)
        assert tables(conn) == expected  # the earlier migrations were each committed before this one failed
        assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations")] == list(
            range(1, len(MIGRATIONS) + 1))
    finally:
        conn.close()


def test_two_connections_to_one_file_both_work(path):
    a = connect(path)
    b = connect(path)
    try:
        write(a, [Change("blacklist", "add", 8613800000001)], origin="a")
        assert b.execute("SELECT number FROM blacklist").fetchall() == [(8613800000001,)]
        # a reader in an open transaction (WAL snapshot) does not block the other connection's writes
        b.execute("BEGIN")
        assert b.execute("SELECT COUNT(*) FROM blacklist").fetchone()[0] == 1
        write(a, [Change("blacklist", "add", 8613800000002)], origin="a")
        assert b.execute("SELECT COUNT(*) FROM blacklist").fetchone()[0] == 1  # still its snapshot
        b.execute("COMMIT")
        assert b.execute("SELECT COUNT(*) FROM blacklist").fetchone()[0] == 2
        write(b, [Change("blacklist", "remove", 8613800000001)], origin="b")
        assert a.execute("SELECT number FROM blacklist").fetchall() == [(8613800000002,)]
        assert [o for (o,) in a.execute("SELECT origin FROM changelog ORDER BY id")] == ["a", "a", "b"]
        assert b.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    finally:
        a.close()
        b.close()


def test_a_file_that_is_not_sqlite_is_a_store_error(path):
    path.write_bytes(b"this is not a database, just some text\n" * 200)
    with pytest.raises(StoreError, match="cannot open store"):
        connect(path)


def test_missing_file_without_create_is_not_found(path):
    with pytest.raises(NotFound):
        connect(path, create=False)
    assert not path.exists()
    assert issubclass(NotFound, StoreError)


def test_existing_file_without_create_opens(path):
    connect(path).close()
    conn = connect(path, create=False)
    conn.close()


def test_a_missing_folder_is_an_error_naming_it_unless_asked_for(tmp_path):
    path = tmp_path / "a" / "b" / "store.db"
    with pytest.raises(StoreError) as e:
        connect(path)
    assert str(e.value).startswith(f"cannot open store {path}: its folder {path.parent} does not exist")
    assert not (tmp_path / "a").exists()
    conn = connect(path, make_folders=True)
    try:
        assert path.exists()
        assert tables(conn) >= TABLES
    finally:
        conn.close()


def test_node_id_is_created_once_and_shared(path, db):
    nid = node_id(db)
    assert len(nid) == 12 and int(nid, 16) >= 0
    assert node_id(db) == nid
    other = connect(path)
    try:
        assert node_id(other) == nid
    finally:
        other.close()


def test_m005_keeps_an_older_store_s_change_log_readable(path, monkeypatch):
    """A store made before batches: its log rows read back as one-number changes, and new batches can follow."""
    from smppguard.store.changelog import since

    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:4])
    old = connect(path)
    try:
        old.execute("INSERT INTO changelog (at, origin, kind, op, number) VALUES (1.0, 'o', 'blacklist', 'add', 7)")
    finally:
        old.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
    conn = connect(path)
    try:
        assert "numbers" in {row[1] for row in conn.execute("PRAGMA table_info(changelog)")}
        write(conn, [Change("blacklist", "add", 0, numbers=[8, 9])], origin="o")
        assert [(c.id, c.number, c.numbers) for c in since(conn, 0)] == [(1, 7, ()), (2, 0, (8, 9))]
    finally:
        conn.close()


def test_a_new_store_its_wal_and_shm_and_its_new_folder_are_private_whatever_the_umask(tmp_path):
    import os
    import stat

    from smppguard.store.db import connect

    old = os.umask(0o002)  # a umask that would leave them readable by everyone
    try:
        path = tmp_path / "new" / "deeper" / "guard.db"
        db = connect(path, make_folders=True)
        db.execute("INSERT INTO meta VALUES ('x', 'y')")  # the WAL and SHM files exist once written
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        dirs = [stat.S_IMODE(d.stat().st_mode) for d in (path.parent, path.parent.parent)]
        db.close()
    finally:
        os.umask(old)
    assert modes == {"guard.db": 0o600, "guard.db-wal": 0o600, "guard.db-shm": 0o600}
    assert dirs == [0o700, 0o700]
