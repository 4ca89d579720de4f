"""`serve`: the daemon's start-up says what the operator must know."""

from __future__ import annotations

import asyncio
import logging

import pytest

from smppguard.app import serve
from smppguard.config import parse_config

NO_REGION_WARNING = "no [policy] default_region"


@pytest.mark.parametrize("policy, warned", [("", True), ('[policy]\ndefault_region = "CN"\n', False)])
async def test_start_up_warns_when_national_numbers_cannot_be_placed(tmp_path, caplog, policy, warned):
    config = parse_config(f'[listen]\naddress = "127.0.0.1:0"\n[simulator]\ncontrol = ""\n'
                          f'[store]\npath = "{tmp_path / "guard.db"}"\n{policy}')
    started = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="smppguard"):
        await asyncio.wait_for(serve(config, started.wait, ready=lambda _proxy: started.set()), 30)
    assert any(NO_REGION_WARNING in r.getMessage() for r in caplog.records) is warned
