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
    assert "line 2: bytes that are not text in the file's encoding (see --encoding)" in r.stderr
    assert sorted(blacklisted(db_path)) == [int(N[0]), int(N[2])]
    assert "imported 2 rows" in r.stdout and "1 bad row skipped" in r.stdout


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


