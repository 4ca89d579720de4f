"""The short version of tests/holdkill.py: kill -9 while messages are held and as they are released; nothing
acknowledged is lost or sent twice. (The full run, 100 kills: `.venv/bin/python tests/holdkill.py`.)"""

from __future__ import annotations

import pytest

import holdkill


@pytest.mark.waits  # for the quiet minute to end
def test_kill_9_while_holding_and_releasing_loses_and_duplicates_nothing(tmp_path):
    result = holdkill.run(4, 7, tmp_path, short=True)
    assert result["held"] > 0 and result["released"] + result["unknown"] == result["held"], result
    assert (result["lost"], result["sent_twice"], result["still_held"]) == (0, 0, 0), result
    assert result["at_smsc_once"] + result["unknown"] >= result["acknowledged"], result
