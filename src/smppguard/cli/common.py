"""Shared pieces of the CLI: finding the store, numbers from arguments, output as a table, JSON or CSV."""

from __future__ import annotations

import csv
import functools
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import click

from ..config import ConfigError, load_config
from ..store.db import StoreError, connect
from ..values import duration

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

EXIT_NOTHING_FOUND = 1
EXIT_INPUT_ERROR = 2


def load(path):
    """The config, or exit 2 (EXIT_INPUT_ERROR) naming the key and line at fault, as check-config does."""
    try:
        return load_config(path)
    except ConfigError as e:
        fail(f"bad config: {e}", code=EXIT_INPUT_ERROR)


config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False),
    help="TOML config file (default: $SMPPGUARD_CONFIG, then /etc/smppguard/smppguard.toml, then built-in "
         "defaults).")


class Ctx:
    """What a list command needs: the config (for the default region and thresholds) and the store."""

    def __init__(self, config_path: str | None, db_path: str | None):
        self.config = load(config_path)
        self.db_path = db_path or self.config.store.path
        self._db = None

    @property
    def db(self):
        if self._db is None:
            try:
                self._db = connect(self.db_path, audit=(self.config.audit.recipient, self.config.audit.salt))
            except StoreError as e:
                raise click.ClickException(str(e)) from None
            from ..store.lists import apply_due_removals
            apply_due_removals(self._db)  # the CLI keeps removals moving even with no daemon running
        return self._db

    def number(self, text: str) -> int:
        from ..store.lists import number_of
        try:
            return number_of(text, self.config.policy.default_region)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="NUMBER") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def store_options(fn: Callable) -> Callable:
    """--config / --db on a command; passes `ctx: Ctx` and closes the store afterwards."""
    @config_option
    @click.option("--db", "db_path", type=click.Path(dir_okay=False),
                  help="The store file (default: [store] path of the config).")
    @functools.wraps(fn)
    def wrapper(config_path, db_path, **kwargs):
        ctx = Ctx(config_path, db_path)
        try:
            return fn(ctx, **kwargs)
        finally:
            ctx.close()
    return wrapper


def output_options(fn: Callable) -> Callable:
    @click.option("--json", "as_json", is_flag=True, help="Print JSON (one array) instead of a table.")
    @click.option("--csv", "as_csv", is_flag=True, help="Print CSV with a header row instead of a table.")
    @functools.wraps(fn)
    def wrapper(*args, as_json=False, as_csv=False, **kwargs):
        if as_json and as_csv:
            raise click.UsageError("choose one of --json and --csv")
        return fn(*args, fmt="json" if as_json else "csv" if as_csv else "table", **kwargs)
    return wrapper


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(epoch: float | None) -> str | None:
    """ISO 8601 in UTC, to the millisecond: 2026-11-28T13:00:00.000Z."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def since_option(fn: Callable) -> Callable:
    return click.option("--since", callback=_parse_since,
                        help="Only entries from this time on: an ISO date/time (2026-11-01, "
                             "2026-11-28T09:00+08:00) or an age such as 7d or 12h.")(fn)


def _parse_since(ctx, param, value):
    if value is None:
        return None
    try:
        return time.time() - duration(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO date/time or an age such as 7d, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def emit(rows: Iterable[dict], columns: tuple[str, ...], fmt: str, *, times: tuple[str, ...] = (),
         empty: str = "nothing found") -> int:
    """Print rows; returns how many. Times are epoch seconds in the data, ISO text in tables and CSV."""
    rows = list(rows)
    if fmt == "json":  # times as ISO 8601 (UTC), as everywhere a person or a script reads them
        click.echo(json.dumps([{c: (iso(r.get(c)) if c in times else r.get(c)) for c in columns} for r in rows],
                              ensure_ascii=False, indent=2))
        return len(rows)
    shown = [{c: (when(r.get(c)) if c in times else "" if r.get(c) is None else str(r.get(c))) for c in columns}
             for r in rows]
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        for r in shown:
            w.writerow([r[c] for c in columns])
        return len(rows)
    if not rows:
        click.echo(empty, err=True)
        return 0
    widths = {c: max(len(c), *(len(r[c]) for r in shown)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    click.echo("  ".join("-" * widths[c] for c in columns))
    for r in shown:
        click.echo("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
    return len(rows)


def exit_if_empty(count: int) -> None:
    if count == 0:
        sys.exit(EXIT_NOTHING_FOUND)


def fail(message: str, hint: str = "", code: int = 1) -> None:
    err = click.ClickException(message + (f"\nHint: {hint}" if hint else ""))
    err.exit_code = code
    raise err


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
