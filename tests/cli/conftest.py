"""Fixtures for the CLI tests: a config file in tmp_path and `cli(...)`, smppguard run through CliRunner.

Every test gets its own store, no $SMPPGUARD_CONFIG or /etc config, and a known OS user ("alice", through
$LOGNAME, which getpass reads first), so audited actors can be asserted exactly.
"""

from __future__ import annotations

import pytest
from cli_helpers import OPERATOR, config_text, invoke

import smppguard.config


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):  # tmp_path first: pytest names its temp root after the real user
    monkeypatch.delenv("SMPPGUARD_CONFIG", raising=False)
    monkeypatch.setattr(smppguard.config, "DEFAULT_PATHS", ())
    monkeypatch.setenv("LOGNAME", OPERATOR)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "guard.db"


@pytest.fixture
def config_path(tmp_path, db_path):
    path = tmp_path / "smppguard.toml"
    path.write_text(config_text(db_path))
    return path


@pytest.fixture
def cli(config_path):
    """cli("blacklist", "add", "13800138000") runs `smppguard blacklist add 13800138000 --config <tmp>`."""
    def run(*args, input=None, config=True):
        return invoke(*args, *(("--config", config_path) if config else ()), input=input)
    return run
