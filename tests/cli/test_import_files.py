"""Imports take the files people have: UTF-16 and GB18030 spreadsheets, a wrong encoding, a 10 MB line, extra
fields; each bad row is reported by its line and the rest imported; a killed import is visible and leaves no
process behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import sql

from helpers import alive, children

N = [f"+86138000000{i:02d}" for i in range(10)]


def blacklisted(db_path) -> dict[int, str]:
    return dict(sql(db_path, "SELECT number, reason FROM blacklist"))


@pytest.mark.parametrize("encoding, option", [("utf-16", []), ("gb18030", []), ("gb18030", ["--encoding", "gb18030"]),
                                              ("utf-8-sig", []), ("latin-1", ["--encoding", "latin-1"])])
def test_a_file_in_any_common_encoding_is_imported_with_its_text_intact(cli, tmp_path, db_path, encoding, option):
    reason = "投诉 10086" if encoding not in ("latin-1",) else "plainte déposée"
    path = tmp_path / "list.csv"
    path.write_bytes(f"number,source,reason\n{N[0]},complaint,{reason}\n{N[1]},carrier,{reason}\n".encode(encoding))
    r = cli("blacklist", "import", path, *option)
    assert r.exit_code == 0, r.output
    assert blacklisted(db_path) == {int(N[0]): reason, int(N[1]): reason}


def test_bytes_that_are_not_text_in_the_encoding_are_bad_rows_and_the_rest_is_imported(cli, tmp_path, db_path):
    path = tmp_path / "list.csv"
    path.write_bytes(f"{N[0]},complaint,ok\n".encode() + f"{N[1]},complaint,caf".encode() + b"\xe9\n"
                     + f"{N[2]},complaint,ok\n".encode())
    r = cli("blacklist", "import", path, "--encoding", "utf-8")
    assert r.exit_code == 2
    assert "line 2: bytes that are not text in UTF-8 (see --encoding)" in r.stderr
    assert sorted(blacklisted(db_path)) == [int(N[0]), int(N[2])]
    assert "imported 2 rows" in r.stdout and "1 bad row skipped" in r.stdout


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr-only"])
@pytest.mark.parametrize("command", ["blacklist", "optout"])
def test_every_line_ending_convention_imports(cli, tmp_path, db_path, newline, command):
    """Excel for Mac's "CSV (Macintosh)" ends lines with CR alone: the import stopped with a csv error, and
    importing again could never finish."""
    path = tmp_path / "list.csv"
    header = "number,source,reason" if command == "blacklist" else "number,scope,key,keyword"
    row = "{},complaint,\"投诉, by phone\"" if command == "blacklist" else "{},sender,ACME,TD"
    path.write_bytes(newline.join([header] + [row.format(n) for n in N[:3]] + [""]).encode())
    r = cli(command, "import", path)
    assert (r.exit_code, r.stderr) == (0, ""), r.output
    assert "imported 3 rows" in r.stdout
    table = "blacklist" if command == "blacklist" else "optout"
    assert sorted(n for (n,) in sql(db_path, f"SELECT number FROM {table}")) == [int(n) for n in N[:3]]
    if command == "blacklist":
        assert set(blacklisted(db_path).values()) == {"投诉, by phone"}


def test_a_binary_file_is_read_to_its_end_as_bad_rows_without_a_traceback(cli, tmp_path, db_path):
    import random

    noise = random.Random(33)
    path = tmp_path / "photo.jpg"
    path.write_bytes(bytes(noise.randrange(256) for _ in range(200_000)) + f"\n{N[0]},complaint,ok\n".encode())
    for _ in range(2):  # and again: the same answer, not an import that can never finish
        r = cli("blacklist", "import", path)
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and "the import stopped" not in r.output
        assert "bad row" in r.stdout
        assert sorted(blacklisted(db_path)) == [int(N[0])]  # the one readable row


@pytest.mark.parametrize("gb_row", [1, 3000], ids=["gb18030-row-first", "gb18030-row-past-64kb"])
def test_a_utf8_file_with_a_gb18030_row_is_decided_line_by_line(cli, tmp_path, db_path, gb_row):
    """A UTF-8 file with one GB18030 row was read whole as GB18030 (its UTF-8 rows garbled: 投诉 stored as 鎶曡瘔)
    or, with the row past the first 64 KB, the row refused without naming the encoding."""
    numbers = [f"+8613800{i:06d}" for i in range(3001)]
    lines = [f"{n},complaint,投诉 {i}".encode() for i, n in enumerate(numbers)]
    lines[gb_row] = f"{numbers[gb_row]},carrier,运营商 {gb_row}".encode("gb18030")
    path = tmp_path / "list.csv"
    path.write_bytes(b"number,source,reason\n" + b"\n".join(lines) + b"\n")
    r = cli("blacklist", "import", path)
    assert (r.exit_code, r.stderr) == (0, ""), r.output
    got = blacklisted(db_path)
    assert len(got) == 3001
    assert got[int(numbers[0 if gb_row else 1])] == f"投诉 {0 if gb_row else 1}"
    assert got[int(numbers[2])] == "投诉 2" and got[int(numbers[3000 if gb_row == 1 else 1])].startswith("投诉")
    assert got[int(numbers[gb_row])] == f"运营商 {gb_row}"


def test_a_line_in_neither_utf8_nor_gb18030_is_a_bad_row_that_names_both(cli, tmp_path, db_path):
    path = tmp_path / "list.csv"
    path.write_bytes(f"{N[0]},complaint,ok\n".encode() + f"{N[1]},complaint,".encode() + b"\x81\x20\xff\n"
                     + f"{N[2]},complaint,投诉\n".encode())
    r = cli("blacklist", "import", path)
    assert r.exit_code == 2
    assert "line 2: bytes that are not text in UTF-8 or GB18030 (see --encoding)" in r.stderr
    assert blacklisted(db_path) == {int(N[0]): "ok", int(N[2]): "投诉"}


def test_a_10_mb_line_and_a_row_with_extra_fields_are_bad_rows(cli, tmp_path, db_path):
    path = tmp_path / "list.csv"
    with open(path, "w") as f:
        f.write(f"{N[0]},complaint,ok\n")
        f.write("9" * 10_000_000 + "\n")
        f.write(f"{N[1]},complaint,ok,unexpected\n")
        f.write(f"{N[2]},complaint,ok\n")
        f.write("x" * 200_000 + "\n")  # long, but within a chunk
        f.write(f"{N[3]},complaint,ok\n")
    r = cli("blacklist", "import", path)
    assert r.exit_code == 2, r.output
    assert "line 2: line longer than 1,048,576 characters, or a quote never closed" in r.stderr
    assert "line 3: 4 fields, expected at most 3 (number,source,reason)" in r.stderr
    assert "line 5: line longer than 65,536 characters" in r.stderr
    assert sorted(blacklisted(db_path)) == [int(N[0]), int(N[2]), int(N[3])]
    assert "imported 3 rows" in r.stdout


def test_an_import_is_audited_when_it_starts_and_when_it_finishes(cli, tmp_path, db_path):
    path = tmp_path / "list.csv"
    path.write_text(f"{N[0]}\n{N[1]}\nbogus\n")
    cli("blacklist", "import", path)
    rows = sql(db_path, "SELECT action, reason FROM audit WHERE rule = 'import' ORDER BY id")
    assert [action for action, _ in rows] == ["started", "finished"]
    assert rows[0][1] == f"blacklist import {path}"
    assert rows[1][1].endswith("2 rows imported, 1 bad")


@pytest.mark.subprocess
def test_a_killed_import_shows_as_started_never_finished_and_leaves_no_worker_behind(tmp_path, db_path):
    config = tmp_path / "kill.toml"
    config.write_text(f'[store]\npath = "{db_path}"\n[policy]\ndefault_region = "CN"\n')
    from smppguard.store import lists

    # killed as the first run is written: the workers are still busy with (or waiting to hand over) the rest
    total = lists.IMPORT_RUN_ROWS * 9 // 4
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("".join(f"+86139{i:08d}\n" for i in range(total)))
    importer = subprocess.Popen([sys.executable, "-m", "smppguard", "blacklist", "import", str(path), "--source",
                                 "complaint", "--silent", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _written(db_path):  # it has written its first chunk
            assert importer.poll() is None and time.monotonic() < deadline, "the import ended or never wrote"
            time.sleep(0.05)
        workers = children(importer.pid)
        assert workers, "the import runs worker processes"
        importer.send_signal(signal.SIGKILL)
        importer.wait()
    finally:
        if importer.poll() is None:
            importer.kill()
            importer.wait()
    deadline = time.monotonic() + 5
    while [w for w in workers if alive(w)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if alive(w)], "worker processes outlived the import"
    rows = sql(db_path, "SELECT action FROM audit WHERE rule = 'import' ORDER BY id")
    assert rows == [("started",)]
    (count,) = sql(db_path, "SELECT COUNT(*) FROM blacklist")[0]
    assert 0 < count < total


def _written(db_path) -> bool:
    if not db_path.exists():
        return False
    try:
        return bool(sql(db_path, "SELECT 1 FROM blacklist LIMIT 1"))
    except Exception:  # not created yet, or being migrated
        return False




def test_an_import_with_no_daemon_running_leaves_a_snapshot_the_next_start_reads(cli, tmp_path, db_path,
                                                                                 monkeypatch):
    """The first start after a large import reads the snapshot file the import wrote, not the tables; with the
    snapshot's lock held (a daemon runs), the import writes none and says the daemon will."""
    import os

    import smppguard.cli.lists
    from smppguard.policy import load_policy
    from smppguard.store import snapshot
    from smppguard.store.db import connect
    from smppguard.store.index import open_index

    monkeypatch.setattr(smppguard.cli.lists, "SNAPSHOT_AFTER", 5)
    path = tmp_path / "list.csv"
    path.write_text("number,reason\n" + "".join(f"{n},carrier list\n" for n in N[:6]))
    r = cli("blacklist", "import", path)
    assert r.exit_code == 0 and "index snapshot written" in r.output, r.output
    conn = connect(str(db_path))
    try:
        index, current = open_index(conn, load_policy(), time.time())
        assert current and set(index.blacklist) == {int(n) for n in N[:6]}
        assert index.blacklist.overlay_size == 0  # nothing replayed from the change log
    finally:
        conn.close()
    written = snapshot.path_for(db_path).stat().st_mtime_ns
    held = snapshot.take_lock(db_path)
    try:
        path.write_text("".join(f"{n},complaint\n" for n in N[4:]))
        r = cli("blacklist", "import", path)
        assert r.exit_code == 0 and "the daemon is running" in r.output, r.output
        assert snapshot.path_for(db_path).stat().st_mtime_ns == written
    finally:
        os.close(held)
