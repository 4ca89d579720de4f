"""The shipped systemd unit: notify type, reload by SIGHUP, the check before start, and hardening that
`systemd-analyze security` rates 2.5 or better."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[1] / "systemd" / "smppguard.service"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_is_a_notify_service_that_reloads_by_sighup_and_checks_its_config_first():
    s = settings()
    assert s["Type"] == ["notify"] and s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["ExecStartPre"][0].endswith("check-config --config /etc/smppguard/smppguard.toml")
    assert s["Restart"] == ["on-failure"] and s["UMask"] == ["0077"] and s["StateDirectory"] == ["smppguard"]
    assert "WatchdogSec" in s


def test_systemd_analyze_rates_the_unit_2_5_or_better():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("SMPPGUARD_REQUIRE_KANNEL"):  # scripts/run-tests installs it with the rest
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("systemd-analyze is not installed")
    out = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for smppguard\.service: (\d+\.\d+)", out.stdout + out.stderr)
    assert m, out
    assert float(m.group(1)) <= 2.5, out.stdout
