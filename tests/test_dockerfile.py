"""The Dockerfile, read as a reviewer would (no container engine runs in CI): a pinned slim base, a non-root user,
the store in a volume, both ports exposed, a health check on /healthz, and a CMD that leaves the configuration to
the mounted file or $SMPPGUARD_CONFIG. Its sed must match the shipped config's listen and metrics lines."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
TEXT = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", TEXT)
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^([A-Z]+)\s+(.*)$", joined, re.M)]


def test_base_is_pinned_and_slim_and_the_user_is_not_root():
    ins = instructions()
    [base] = [v for k, v in ins if k == "FROM"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    users = [v for k, v in ins if k == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_volume_ports_health_check_and_a_cmd_that_overrides_nothing():
    ins = dict(instructions())
    assert "/var/lib/smppguard" in ins["VOLUME"]
    assert set(ins["EXPOSE"].split()) == {"2775", "9775"}
    assert "/healthz" in ins["HEALTHCHECK"]
    assert ins["CMD"] == '["smppguard", "run"]'  # no --listen, no --config: the mounted file decides


def test_the_container_config_edit_matches_the_shipped_config():
    shipped = (ROOT / "config" / "smppguard.toml").read_text()
    assert re.search(r'^address = "127\.0\.0\.1:2775"$', shipped, re.M)
    assert re.search(r'^address = "127\.0\.0\.1:9775"$', shipped, re.M)
