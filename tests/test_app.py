"""`serve`: the daemon's start-up says what the operator must know."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
import threading

import pytest

from smppguard.app import StoppedError, serve
from smppguard.config import parse_config
from smppguard.store.migrations import MIGRATIONS

NO_REGION_WARNING = "no [policy] default_region"


@pytest.mark.parametrize("policy, warned", [("", True), ('[policy]\ndefault_region = "CN"\n', False)])
async def test_start_up_warns_when_national_numbers_cannot_be_placed(tmp_path, caplog, policy, warned):
    config = parse_config(f'[listen]\naddress = "127.0.0.1:0"\n[simulator]\ncontrol = ""\n'
                          f'[store]\npath = "{tmp_path / "guard.db"}"\n{policy}')
    started = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="smppguard"):
        await asyncio.wait_for(serve(config, started.wait, ready=lambda _proxy: started.set()), 30)
    assert any(NO_REGION_WARNING in r.getMessage() for r in caplog.records) is warned


async def test_daemon_stops_when_a_newer_smppguard_migrates_its_store(tmp_path, caplog):
    """An upgraded CLI migrated the store under the running daemon, which cannot read what the new version
    writes: it stops and says why (systemd's Restart=on-failure then starts the upgraded daemon)."""
    path = tmp_path / "guard.db"
    config = parse_config(f'[listen]\naddress = "127.0.0.1:0"\n[simulator]\ncontrol = ""\n'
                          f'[store]\npath = "{path}"\n[policy]\ndefault_region = "CN"\n')
    addresses = []

    def migrate_under_it(proxy):
        addresses.append(proxy.address)
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO schema_migrations VALUES (?, 'm_from_a_newer_version', 0)",
                       (len(MIGRATIONS) + 1,))

    with pytest.raises(StoppedError, match="migrated by a newer smppguard while this one ran"):
        await asyncio.wait_for(serve(config, asyncio.Event().wait, ready=migrate_under_it), 30)
    host, port = addresses[0]
    with pytest.raises(OSError):  # it no longer accepts binds
        await asyncio.open_connection(host, port)


async def test_the_daemons_store_runs_by_the_configured_retention_and_bound(tmp_path):
    from smppguard.app import open_store

    config = parse_config(f'[store]\npath = "{tmp_path / "guard.db"}"\nretention = "33d"\nmax_unsaved = 500\n'
                          'max_unsaved_age = "750ms"\n[rules.optout]\ngrace = "2m"\n')
    store = await open_store(config)
    try:
        assert (store.upkeep.retention, store.upkeep.policy.grace_s) == (33 * 86400.0, 120.0)
        assert (store.writer.max_unsaved, store.writer.max_unsaved_age) == (500, 0.75)
    finally:
        await store.close()


def _nice_of_threads(prefix: str, not_in: set[threading.Thread]) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, t.native_id) for t in threading.enumerate()
            if t.name.startswith(prefix) and t not in not_in and t.native_id is not None}


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
@pytest.mark.parametrize("setting, raised", [("", 10), ("background_nice = 4\n", 4), ("background_nice = 0\n", 0)])
async def test_the_stores_threads_run_below_the_loops_priority(tmp_path, setting, raised):
    """The group commit, the change-log tail and the snapshot's roll forward yield the core to the relay."""
    from smppguard.app import open_store

    config = parse_config(f'[store]\npath = "{tmp_path / "guard.db"}"\n{setting}')
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    others = set(threading.enumerate())  # a store of an earlier test may still be closing its threads
    store = await open_store(config)
    try:
        await store.upkeep.roll_forward()  # its build thread starts with its first job
        expected = {min(19, loop_nice + raised)}
        for prefix in ("store-writer", "store-upkeep", "index-snapshot"):
            assert _nice_of_threads(prefix, others) == expected, prefix
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice
    finally:
        await store.close()
