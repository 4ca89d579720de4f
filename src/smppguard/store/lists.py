"""The list library the admin CLI (and the daemon) call: sqlite-utils' habit of a CLI as a thin skin.

Rule 1: every list change goes through changelog.write, so a running daemon applies it within a second and
MQTT peers can replay it. Rule 2: the CLI never writes SQL; it calls these functions.
Rule 3: imports report a bad row by its line number and import the rest.
Removal from the blacklist is never immediate (seed section 4): `request_removal` opens an observation period;
`apply_due_removals` (called by the daemon's tail and by every CLI command that opens the store) removes the
number when the period ends, unless a new complaint, carrier listing or opt-out cancelled it meanwhile. Each
step is audited with the OS user and the reason; a removed number stays watched.
"""

from __future__ import annotations

import csv
import getpass
import io
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ..policy.numbers import normalise
from . import changelog
from .changelog import Change
from .db import AlreadyExists, NotFound, node_id

BLACKLIST_SOURCES = ("complaint", "carrier", "regulator", "manual")
OPTOUT_SCOPES = ("sender", "account", "global")
MIN_OBSERVE_S = 3 * 86400
MAX_OBSERVE_S = 7 * 86400


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment or passwd (containers)
        return str(os.getuid())


def maybe_number(text: str, default_region: str | None) -> int | None:
    """A number typed by a person or read from a file, in any form -> E.164 int, or None if not valid.
    A leading "+" is the international form; anything else is read as SMPP TON 0 would be."""
    text = text.strip()
    return normalise(text, 1 if text.startswith("+") else 0, default_region) if text else None


def number_of(text: str, default_region: str | None) -> int:
    """A number in any form -> E.164 int; ValueError with a message for the user."""
    number = maybe_number(text, default_region)
    if number is None:
        raise ValueError(f"not a valid phone number: {text!r}")
    return number


def _audit(db: sqlite3.Connection, now: float, rule: str, action: str, number: int, reason: str, actor: str):
    db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
               "VALUES (?, '', '', ?, ?, ?, 0, ?, ?)", (now, f"+{number}", rule, action, reason, actor))


# --- blacklist ---------------------------------------------------------------------------------------------

def add_blacklist(db: sqlite3.Connection, numbers: Iterable[int], *, source: str = "manual", reason: str = "",
                  actor: str | None = None, now: float | None = None) -> int:
    if source not in BLACKLIST_SOURCES:
        raise ValueError(f"source must be one of {', '.join(BLACKLIST_SOURCES)}")
    changes = [Change("blacklist", "add", n, data={"source": source, "reason": reason}) for n in numbers]
    return changelog.write(db, changes, origin=node_id(db), actor=actor or os_user(), now=now)


def list_blacklist(db: sqlite3.Connection, *, source: str | None = None, since: float | None = None,
                   limit: int | None = None) -> Iterator[dict]:
    sql = "SELECT number, source, reason, added_at, actor FROM blacklist WHERE 1 = 1"
    args: list = []
    if source:
        sql += " AND source = ?"
        args.append(source)
    if since is not None:
        sql += " AND added_at >= ?"
        args.append(since)
    sql += " ORDER BY added_at, number"
    if limit:
        sql += f" LIMIT {int(limit)}"
    for number, src, reason, added_at, actor in db.execute(sql, args):
        yield {"number": f"+{number}", "source": src, "reason": reason, "added_at": added_at, "actor": actor}


def count_blacklist(db: sqlite3.Connection, *, source: str | None = None) -> dict[str, int]:
    if source:
        return {source: db.execute("SELECT COUNT(*) FROM blacklist WHERE source = ?", (source,)).fetchone()[0]}
    return dict(db.execute("SELECT source, COUNT(*) FROM blacklist GROUP BY source ORDER BY source"))


@dataclass
class PendingRemoval:
    id: int
    number: int
    reason: str
    actor: str
    requested_at: float
    effective_at: float
    status: str
    close_reason: str = ""


def request_removal(db: sqlite3.Connection, number: int, *, reason: str, observe_s: float = MIN_OBSERVE_S,
                    actor: str | None = None, now: float | None = None) -> PendingRemoval:
    """Open an observation period; the number stays blacklisted until it ends."""
    now = time.time() if now is None else now
    actor = actor or os_user()
    if not reason.strip():
        raise ValueError("a removal needs a reason")
    db.execute("BEGIN IMMEDIATE")
    try:
        if not db.execute("SELECT 1 FROM blacklist WHERE number = ?", (number,)).fetchone():
            raise NotFound(f"+{number} is not blacklisted")
        if db.execute("SELECT 1 FROM pending_removal WHERE number = ? AND status = 'pending'", (number,)).fetchone():
            raise AlreadyExists(f"+{number} already has a pending removal")
        cur = db.execute("INSERT INTO pending_removal (number, reason, actor, requested_at, effective_at) "
                         "VALUES (?, ?, ?, ?, ?)", (number, reason, actor, now, now + observe_s))
        _audit(db, now, "blacklist-removal", "requested", number,
               f"{reason} (observe {observe_s / 86400:g} days)", actor)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return PendingRemoval(cur.lastrowid, number, reason, actor, now, now + observe_s, "pending")


def pending_removals(db: sqlite3.Connection, *, include_closed: bool = False) -> list[PendingRemoval]:
    sql = ("SELECT id, number, reason, actor, requested_at, effective_at, status, close_reason "
           "FROM pending_removal")
    if not include_closed:
        sql += " WHERE status = 'pending'"
    return [PendingRemoval(*row) for row in db.execute(sql + " ORDER BY effective_at")]


def apply_due_removals(db: sqlite3.Connection, now: float | None = None) -> list[int]:
    """Remove the numbers whose observation period has ended; returns them."""
    now = time.time() if now is None else now
    due = db.execute("SELECT id, number, reason, actor FROM pending_removal "
                     "WHERE status = 'pending' AND effective_at <= ?", (now,)).fetchall()
    done = []
    origin = node_id(db)
    for rid, number, reason, actor in due:
        db.execute("BEGIN IMMEDIATE")
        try:
            # re-check inside the transaction: a complaint may have cancelled it a moment ago; the status, the
            # audit row and the removal itself commit together, so no complaint can fall between them
            row = db.execute("SELECT status FROM pending_removal WHERE id = ?", (rid,)).fetchone()
            if row is None or row[0] != "pending":
                db.execute("ROLLBACK")
                continue
            db.execute("UPDATE pending_removal SET status = 'done', closed_at = ?, close_reason = ? WHERE id = ?",
                       (now, "observation period ended", rid))
            db.execute("INSERT OR REPLACE INTO watched VALUES (?, ?, ?)", (number, now, reason))
            _audit(db, now, "blacklist-removal", "done", number, reason, actor)
            changelog.write(db, [Change("blacklist", "remove", number, data={"reason": reason})],
                            origin=origin, actor=actor, now=now, in_transaction=True)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        done.append(number)
    return done


# --- opt-outs, consent, zones, dead numbers ------------------------------------------------------------

def add_optouts(db: sqlite3.Connection, entries: Iterable[tuple[int, str, str]], *, source: str = "manual",
                keyword: str = "", actor: str | None = None, correlation_threshold: int = 3,
                now: float | None = None) -> int:
    changes = []
    for number, scope, key in entries:
        if scope not in OPTOUT_SCOPES:
            raise ValueError(f"scope must be one of {', '.join(OPTOUT_SCOPES)}")
        changes.append(Change("optout", "add", number, scope, "" if scope == "global" else key,
                              {"source": source, "keyword": keyword}))
    return changelog.write(db, changes, origin=node_id(db), actor=actor or os_user(),
                           correlation_threshold=correlation_threshold, now=now)


def remove_optout(db: sqlite3.Connection, number: int, scope: str, key: str, *, actor: str | None = None,
                  now: float | None = None) -> None:
    key = "" if scope == "global" else key
    if not db.execute("SELECT 1 FROM optout WHERE number = ? AND scope = ? AND scope_key = ?",
                      (number, scope, key)).fetchone():
        raise NotFound(f"+{number} has no {scope} opt-out" + (f" for {key!r}" if key else ""))
    changelog.write(db, [Change("optout", "remove", number, scope, key)], origin=node_id(db),
                    actor=actor or os_user(), now=now)


def list_optouts(db: sqlite3.Connection, *, number: int | None = None, scope: str | None = None,
                 key: str | None = None) -> Iterator[dict]:
    sql = "SELECT number, scope, scope_key, source, keyword, added_at FROM optout WHERE 1 = 1"
    args: list = []
    for column, value in (("number", number), ("scope", scope), ("scope_key", key)):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    for n, sc, k, src, kw, at in db.execute(sql + " ORDER BY added_at, number", args):
        yield {"number": f"+{n}", "scope": sc, "key": k, "source": src, "keyword": kw, "added_at": at}


def grant_consent(db: sqlite3.Connection, number: int, *, source: str, wording: str = "", account: str = "",
                  confirmed: bool = False, actor: str | None = None, now: float | None = None) -> None:
    status = "confirmed" if confirmed else "pending"
    changelog.write(db, [Change("consent", "add", number, "account" if account else "", account,
                                {"status": status, "source": source, "wording": wording})],
                    origin=node_id(db), actor=actor or os_user(), now=now)


def revoke_consent(db: sqlite3.Connection, number: int, *, account: str = "", actor: str | None = None,
                   now: float | None = None) -> None:
    if not db.execute("SELECT 1 FROM consent WHERE number = ? AND scope_key = ?", (number, account)).fetchone():
        raise NotFound(f"+{number} has no consent record" + (f" for account {account!r}" if account else ""))
    changelog.write(db, [Change("consent", "remove", number, "account" if account else "", account)],
                    origin=node_id(db), actor=actor or os_user(), now=now)


def show_consent(db: sqlite3.Connection, number: int) -> list[dict]:
    rows = db.execute("SELECT scope_key, status, source, wording, granted_at, confirmed_at FROM consent "
                      "WHERE number = ? ORDER BY scope_key", (number,))
    return [{"number": f"+{number}", "account": k or "*", "status": st, "source": src, "wording": w,
             "granted_at": g, "confirmed_at": c} for k, st, src, w, g, c in rows]


def set_zone(db: sqlite3.Connection, number: int, zone: str | None, *, actor: str | None = None,
             now: float | None = None) -> None:
    change = Change("tz", "add", number, data={"zone": zone}) if zone else Change("tz", "remove", number)
    changelog.write(db, [change], origin=node_id(db), actor=actor or os_user(), now=now)


def list_dead(db: sqlite3.Connection, *, include_expired: bool = False, now: float | None = None) -> list[dict]:
    now = time.time() if now is None else now
    sql = "SELECT number, reason, marked_at, expires_at FROM dead"
    args: tuple = ()
    if not include_expired:
        sql += " WHERE expires_at > ?"
        args = (now,)
    return [{"number": f"+{n}", "reason": r, "marked_at": m, "expires_at": e}
            for n, r, m, e in db.execute(sql + " ORDER BY marked_at", args)]


def clear_dead(db: sqlite3.Connection, numbers: Iterable[int] | None = None, *, actor: str | None = None,
               now: float | None = None) -> int:
    """Forget dead-number entries (all when `numbers` is None); returns how many there were."""
    if numbers is None:
        numbers = [n for (n,) in db.execute("SELECT number FROM dead")]
    else:  # count (and log) only entries that exist, so "cleared 1 entry" is never said of a live number
        numbers = [n for n in dict.fromkeys(numbers)
                   if db.execute("SELECT 1 FROM dead WHERE number = ?", (n,)).fetchone()]
    changes = [Change("dead", "remove", n) for n in numbers]
    return changelog.write(db, changes, origin=node_id(db), actor=actor or os_user(), now=now)


def mark_dead(db: sqlite3.Connection, numbers: Iterable[int], *, reason: str, expire_s: float,
              actor: str | None = None, now: float | None = None) -> int:
    now = time.time() if now is None else now
    changes = [Change("dead", "add", n, data={"reason": reason, "expires_at": now + expire_s}) for n in numbers]
    return changelog.write(db, changes, origin=node_id(db), actor=actor or os_user(), now=now)


# --- CSV import / export -------------------------------------------------------------------------------

@dataclass
class ImportResult:
    imported: int = 0
    errors: list[tuple[int, str]] = None  # (line, message)

    def __post_init__(self) -> None:
        if self.errors is None:
            self.errors = []


IMPORT_CHUNK_LINES = 20_000


def _line_chunks(stream: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) in chunks that never split a quoted field across chunks."""
    chunk: list[str] = []
    first = 1
    quotes = 0
    line_no = 0
    for line in stream:
        line_no += 1
        chunk.append(line)
        quotes += line.count('"')
        if len(chunk) >= IMPORT_CHUNK_LINES and quotes % 2 == 0:
            yield first, chunk
            first, chunk, quotes = line_no + 1, [], 0
    if chunk:
        yield first, chunk


def _parse_chunk(lines: list[str], first_line: int, columns: tuple[str, ...], header: tuple[str, ...] | None,
                 region: str | None) -> list[tuple[int, tuple[str, ...], int | None]]:
    """In a worker: CSV rows of a chunk with their line numbers and normalised numbers (None = invalid).

    Blank rows, "#" comments and a header line are skipped."""
    out = []
    names = header or columns
    at = names.index("number") if "number" in names else 0
    reader = csv.reader(lines)
    for row in reader:
        line = first_line + reader.line_num - 1
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
            continue
        if line == 1 and row[0].strip().lower() == columns[0]:
            continue  # the header (the caller read it already)
        values = tuple(v.strip() for v in row)
        text = values[at] if at < len(values) else ""
        number = maybe_number(text, region)
        out.append((line, values, number))
    return out


def _header_of(first: str, columns: tuple[str, ...]) -> tuple[str, ...] | None:
    row = next(csv.reader([first]), [])
    if row and row[0].strip().lower() == columns[0]:
        return tuple(c.strip().lower() for c in row)
    return None


def _by_number(c: Change) -> int:
    return c.number


def import_csv(db: sqlite3.Connection, stream: Iterable[str], columns: tuple[str, ...],
               make_change: Callable[[dict, int], Change], *, default_region: str | None,
               actor: str | None = None, correlation_threshold: int = 0,
               progress: Callable[[int], None] | None = None, workers: int | None = None) -> ImportResult:
    """Import CSV rows as changes, one transaction per chunk of lines.

    Worker processes parse the CSV and normalise numbers (phonenumbers is the costly part, and the machine has
    more than one core) while this process writes the previous chunk. A header naming `columns[0]` may come
    first. `make_change(row, number)` builds the change or raises ValueError naming what is wrong; such rows,
    and rows whose number is not valid, are reported by line and skipped."""
    result = ImportResult()
    origin = node_id(db)
    actor = actor or os_user()
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    chunks = _line_chunks(stream)
    header = None
    try:
        first_no, first_chunk = next(chunks)
    except StopIteration:
        return result
    header = _header_of(first_chunk[0], columns)
    names = header or columns

    def all_chunks():
        yield first_no, first_chunk
        yield from chunks

    def write(parsed: list[tuple[int, tuple[str, ...], int | None]]) -> None:
        changes = []
        for line, values, number in parsed:
            row = dict(zip(names, values, strict=False))  # extra columns: ignored
            if number is None:
                text = row.get("number", "")
                result.errors.append((line, f"not a valid phone number: {text!r}" if text else "no number"))
                continue
            try:
                changes.append(make_change(row, number))
            except (ValueError, KeyError) as e:
                result.errors.append((line, str(e) if not isinstance(e, KeyError) else f"missing column {e}"))
        if changes:
            # B-tree locality: inserting in key order touches each page once. The sort is stable, so for a
            # number that appears twice the later row still wins.
            changes.sort(key=_by_number)
            # count the file's rows: write() also counts the global opt-outs correlation adds
            changelog.write(db, changes, origin=origin, actor=actor, correlation_threshold=correlation_threshold)
            result.imported += len(changes)
        if progress:
            progress(result.imported)

    if workers <= 1:
        for first, lines in all_chunks():
            write(_parse_chunk(lines, first, columns, header, default_region))
        return result
    import collections
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        in_flight: collections.deque = collections.deque()
        for first, lines in all_chunks():
            in_flight.append(pool.submit(_parse_chunk, lines, first, columns, header, default_region))
            if len(in_flight) > workers:
                write(in_flight.popleft().result())
        while in_flight:
            write(in_flight.popleft().result())
    return result


def write_csv(stream: io.TextIOBase, rows: Iterable[dict], columns: tuple[str, ...]) -> int:
    writer = csv.writer(stream)
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
        count += 1
    return count
