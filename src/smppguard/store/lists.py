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
import itertools
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple

from ..policy.numbers import normalise, number_lines, region_hint
from . import changelog
from .changelog import Change
from .db import AlreadyExists, NotFound, node_id, write_transaction

if TYPE_CHECKING:
    import numpy as np

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
    return normalise(text, 1 if text.startswith("+") else 0, default_region, once=True) if text else None


def _not_valid(text: str, default_region: str | None) -> str:
    return f"not a valid phone number: {text!r}{region_hint(text, default_region)}"


def number_of(text: str, default_region: str | None) -> int:
    """A number in any form -> E.164 int; ValueError with a message for the user."""
    number = maybe_number(text, default_region)
    if number is None:
        raise ValueError(_not_valid(text, default_region))
    return number


def _audit(db: sqlite3.Connection, now: float, rule: str, action: str, number: int, reason: str, actor: str):
    db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
               "VALUES (?, '', '', audit_recipient(?), ?, ?, 0, ?, ?)", (now, number, rule, action, reason, actor))


# --- blacklist ---------------------------------------------------------------------------------------------

def add_blacklist(db: sqlite3.Connection, numbers: Iterable[int], *, source: str = "manual", reason: str = "",
                  actor: str | None = None, now: float | None = None) -> int:
    if source not in BLACKLIST_SOURCES:
        raise ValueError(f"source must be one of {', '.join(BLACKLIST_SOURCES)}")
    changes = [Change("blacklist", "add", n, data={"source": source, "reason": reason}) for n in numbers]
    return changelog.write(db, changes, origin=node_id(db), actor=actor or os_user(), now=now, audited=True)


def list_blacklist(db: sqlite3.Connection, *, source: str | None = None, since: float | None = None,
                   limit: int | None = None, number: int | None = None) -> Iterator[dict]:
    sql = "SELECT number, source, reason, added_at, actor FROM blacklist WHERE 1 = 1"
    args: list = []
    if number is not None:
        sql += " AND number = ?"
        args.append(number)
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
    with write_transaction(db):
        if not db.execute("SELECT 1 FROM blacklist WHERE number = ?", (number,)).fetchone():
            raise NotFound(f"+{number} is not blacklisted")
        if db.execute("SELECT 1 FROM pending_removal WHERE number = ? AND status = 'pending'", (number,)).fetchone():
            raise AlreadyExists(f"+{number} already has a pending removal")
        cur = db.execute("INSERT INTO pending_removal (number, reason, actor, requested_at, effective_at) "
                         "VALUES (?, ?, ?, ?, ?)", (number, reason, actor, now, now + observe_s))
        _audit(db, now, "blacklist-removal", "requested", number,
               f"{reason} (observe {observe_s / 86400:g} days)", actor)
    return PendingRemoval(cur.lastrowid, number, reason, actor, now, now + observe_s, "pending")


def pending_removals(db: sqlite3.Connection, *, include_closed: bool = False) -> list[PendingRemoval]:
    sql = ("SELECT id, number, reason, actor, requested_at, effective_at, status, close_reason "
           "FROM pending_removal")
    if not include_closed:
        sql += " WHERE status = 'pending'"
    return [PendingRemoval(*row) for row in db.execute(sql + " ORDER BY effective_at")]


def apply_due_removals(db: sqlite3.Connection, now: float | None = None, *, in_transaction: bool = False) -> list[int]:
    """Remove the numbers whose observation period has ended; returns them. Each removal is its own transaction,
    or, with `in_transaction`, part of the caller's (the daemon's group commit)."""
    now = time.time() if now is None else now
    due = db.execute("SELECT id, number, reason, actor, requested_at FROM pending_removal "
                     "WHERE status = 'pending' AND effective_at <= ?", (now,)).fetchall()
    done = []
    origin = node_id(db)
    own = not in_transaction
    for rid, number, reason, actor, requested_at in due:
        if own:
            db.execute("BEGIN IMMEDIATE")
        try:
            # re-check inside the transaction: a complaint may have cancelled it a moment ago; the status, the
            # audit row and the removal itself commit together, so no complaint can fall between them
            row = db.execute("SELECT status FROM pending_removal WHERE id = ?", (rid,)).fetchone()
            if row is None or row[0] != "pending":
                if own:
                    db.execute("ROLLBACK")
                continue
            db.execute("UPDATE pending_removal SET status = 'done', closed_at = ?, close_reason = ? WHERE id = ?",
                       (now, "observation period ended", rid))
            db.execute("INSERT OR REPLACE INTO watched VALUES (?, ?, ?)", (number, now, reason))
            _audit(db, now, "blacklist-removal", "done", number, reason, actor)
            # when it was asked for travels with it: a complaint made on another sidecar during the observation
            # period cancels it there too (store/peers.py)
            changelog.write(db, [Change("blacklist", "remove", number,
                                        data={"reason": reason, "requested_at": requested_at})],
                            origin=origin, actor=actor, now=now, in_transaction=True)  # audited above
            if own:
                db.execute("COMMIT")
        except BaseException:
            if own:
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
        changes.append(Change("optout", "add", number, scope, key, {"source": source, "keyword": keyword}))
    return changelog.write(db, changes, origin=node_id(db), actor=actor or os_user(),
                           correlation_threshold=correlation_threshold, now=now, audited=True)


def remove_optout(db: sqlite3.Connection, number: int, scope: str, key: str, *, actor: str | None = None,
                  now: float | None = None) -> None:
    key = "" if scope == "global" else key
    if not db.execute("SELECT 1 FROM optout WHERE number = ? AND scope = ? AND scope_key = ?",
                      (number, scope, key)).fetchone():
        raise NotFound(f"+{number} has no {scope} opt-out" + (f" for {key!r}" if key else ""))
    changelog.write(db, [Change("optout", "remove", number, scope, key)], origin=node_id(db),
                    actor=actor or os_user(), now=now, audited=True)


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
                    origin=node_id(db), actor=actor or os_user(), now=now, audited=True)


def revoke_consent(db: sqlite3.Connection, number: int, *, account: str = "", actor: str | None = None,
                   now: float | None = None) -> None:
    if not db.execute("SELECT 1 FROM consent WHERE number = ? AND scope_key = ?", (number, account)).fetchone():
        raise NotFound(f"+{number} has no consent record" + (f" for account {account!r}" if account else ""))
    changelog.write(db, [Change("consent", "remove", number, "account" if account else "", account)],
                    origin=node_id(db), actor=actor or os_user(), now=now, audited=True)


def show_consent(db: sqlite3.Connection, number: int) -> list[dict]:
    rows = db.execute("SELECT scope_key, status, source, wording, granted_at, confirmed_at FROM consent "
                      "WHERE number = ? ORDER BY scope_key", (number,))
    return [{"number": f"+{number}", "account": k or "*", "status": st, "source": src, "wording": w,
             "granted_at": g, "confirmed_at": c} for k, st, src, w, g, c in rows]


def set_zone(db: sqlite3.Connection, number: int, zone: str | None, *, actor: str | None = None,
             now: float | None = None) -> None:
    change = Change("tz", "add", number, data={"zone": zone}) if zone else Change("tz", "remove", number)
    changelog.write(db, [change], origin=node_id(db), actor=actor or os_user(), now=now, audited=True)


def list_zones(db: sqlite3.Connection, *, number: int | None = None) -> list[dict]:
    """Per-number time-zone overrides, oldest first."""
    sql, args = "SELECT number, zone, set_at FROM tz_override", ()
    if number is not None:
        sql, args = sql + " WHERE number = ?", (number,)
    return [{"number": f"+{n}", "zone": z, "set_at": at} for n, z, at in db.execute(sql + " ORDER BY set_at", args)]


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
    return changelog.write(db, changes, origin=node_id(db), actor=actor or os_user(), now=now, audited=True)


def mark_dead(db: sqlite3.Connection, numbers: Iterable[int], *, reason: str, expire_s: float,
              actor: str | None = None, now: float | None = None) -> int:
    now = time.time() if now is None else now
    changes = [Change("dead", "add", n, data={"reason": reason, "expires_at": now + expire_s}) for n in numbers]
    return changelog.write(db, changes, origin=node_id(db), actor=actor or os_user(), now=now, audited=True)


# --- CSV import / export -------------------------------------------------------------------------------

@dataclass
class ImportResult:
    imported: int = 0
    errors: list[tuple[int, str]] = None  # (line, message)

    def __post_init__(self) -> None:
        if self.errors is None:
            self.errors = []


#: Text per chunk a worker parses: about 20,000 rows of a file of bare numbers.
IMPORT_CHUNK_CHARS = 256 * 1024
#: Parsed rows gathered before they are written. Their numbers are written in key order, IMPORT_SLICE at a time
#: (a transaction and a change-log row each): a slice then touches the B-tree pages of its own range of keys
#: only. Written chunk by chunk instead, in 20,000-row transactions of numbers from all over the table, 10M
#: rows took 560 s: each transaction rewrote most of the table's pages. Each run still rewrites the pages of
#: the whole table once (its keys are all over it), so fewer, longer runs write less: 10M rows in runs of 1M
#: took 62 s here, in runs of 2M 51 s (307 MB), of 4M 47 s (476 MB). A run takes 16 bytes a row (int64 arrays).
IMPORT_RUN_ROWS = 2_000_000
IMPORT_SLICE = 100_000
#: Chunks each worker may have parsed or queued ahead of this process, which now and then sorts and writes a run:
#: with one, the workers waited for it, and a 10M-row import used 1.4 of 2 cores.
IMPORT_AHEAD = 8
#: Fewer rows than this making the same change are logged one by one (a batch row would not be cheaper).
BATCH_MIN = 8
#: A line longer than this is a bad row, not a field to read (csv's own field limit is 131,072).
MAX_LINE_CHARS = 65_536
#: What a decoder puts for bytes that are not text in the file's encoding: a row holding it is a bad row.
UNDECODABLE = "\ufffd"
_THE_FILES = "the file's encoding"  # what a bad row says when the caller did not name the encoding


def _blocks_of_lines(lines: Iterable[str]) -> Iterator[str]:
    """Lines as a file yields them (each with its newline), joined into blocks of about IMPORT_CHUNK_CHARS."""
    block: list[str] = []
    size = 0
    for line in lines:
        block.append(line)
        size += len(line)
        if size >= IMPORT_CHUNK_CHARS:
            yield "".join(block)
            block, size = [], 0
    if block:
        yield "".join(block)


def _cut(block: str, quotes_before: int) -> int:
    """Where a chunk may end in `block`: after its last newline that is outside quotes (`quotes_before` is the
    number of '"' before the block); 0 if there is no such newline."""
    total = quotes_before + block.count('"')
    after = 0  # quotes between the newline tried and the end of the block
    end = len(block)
    while (newline := block.rfind("\n", 0, end)) >= 0:
        after += block.count('"', newline + 1, end)
        if (total - after) % 2 == 0:
            return newline + 1
        end = newline
    return 0


def _one_newline(blocks: Iterable[str]) -> Iterator[str]:
    """Blocks of text with every line end made "\n": "\r\n" (Windows) and a lone "\r" (Excel for Mac's "CSV
    (Macintosh)", old Mac files), also a "\r\n" split between two blocks. Without this a CR-only file is one line
    to the chunker and an error to the csv module."""
    carry = ""
    for block in blocks:
        if carry:
            block, carry = carry + block, ""
        if "\r" not in block:
            yield block
            continue
        if block.endswith("\r"):  # its "\n" may start the next block
            block, carry = block[:-1], "\r"
        yield block.replace("\r\n", "\n").replace("\r", "\n")
    if carry:
        yield "\n"


def _text_chunks(stream: Iterable[str], oversized: list[int] | None = None) -> Iterator[tuple[int, str]]:
    """(number of the first line, whole lines of text) in chunks of about IMPORT_CHUNK_CHARS that never split a
    quoted field. Reads blocks, not lines: this process only counts newlines and quotes; the workers parse.
    Every line end is made "\n" first (_one_newline), so a line is a line whatever the file's convention.
    Text that goes on for more than 16 MAX_LINE_CHARS with no place to end a chunk (a huge line, an unclosed
    quote) is dropped up to its next newline, and its first line number goes to `oversized`: memory stays
    bounded whatever the file."""
    read = getattr(stream, "read", None)
    blocks = _one_newline(iter(lambda: read(IMPORT_CHUNK_CHARS), "") if read is not None
                          else _blocks_of_lines(stream))
    head: list[str] = []  # text read since the last chunk, with no place to end one yet
    held = 0  # characters in head
    quotes = 0  # '"' in head
    line = 1
    skipping = False  # dropping an oversized stretch up to its next newline
    for block in blocks:
        if skipping:
            newline = block.find("\n")
            if newline < 0:
                continue
            block, skipping = block[newline + 1:], False
            line += 1
            if not block:
                continue
        cut = _cut(block, quotes)
        if not cut:
            head.append(block)
            held += len(block)
            quotes += block.count('"')
            if held > 16 * MAX_LINE_CHARS:
                text = "".join(head)
                whole = text.rfind("\n") + 1  # whole lines before the stretch: kept, parsed as they are
                if whole:
                    yield line, text[:whole]
                    line += text.count("\n", 0, whole)
                if oversized is not None:
                    oversized.append(line)
                head, held, quotes, skipping = [], 0, 0, True
            continue
        head.append(block[:cut])
        chunk = "".join(head)
        yield line, chunk
        line += chunk.count("\n")
        rest = block[cut:]
        head, quotes, held = ([rest], rest.count('"'), len(rest)) if rest else ([], 0, 0)
    if head:
        yield line, "".join(head)


class _Parsed(NamedTuple):
    """A chunk as a worker returns it: its valid rows grouped by the values of the columns a change may depend
    on (rows in one group make the same change), and its rows without a valid number."""

    groups: dict[tuple[str, ...], tuple[list[int], list[int]]]  # other columns' values -> (lines, numbers)
    bad: list[tuple[int, str]]  # (line, message)


def _is_csv(text: str) -> bool:
    return '"' in text or "," in text or "\r" in text


def _lines(text: str) -> list[str] | None:
    """A chunk's lines when it is a file of bare lines (no quote, comma or carriage return), without the newline
    that ends the last; None when it is CSV, for the csv module to read."""
    if _is_csv(text):
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _rows(text: str, first_line: int, lines: list[str] | None) -> Iterator[tuple[int, list[str] | str]]:
    """(line number, fields) of each CSV row of a chunk; a row over several lines (a quoted newline) has the
    number of its first. A chunk of bare `lines` (_lines) is read as its lines, without the csv module, which took
    a sixth of the time of a row. A row the csv module cannot read (a binary file's bytes) comes as the error's
    text instead of its fields, and the rows after it are read on."""
    if lines is None:
        reader = csv.reader(io.StringIO(text, newline="\n"))  # lines end at "\n" only, as the file's lines did
        end = 0  # the chunk's last line read
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield first_line + end, f"not a CSV row ({e})"
            else:
                yield first_line + end, row
            end = reader.line_num
    for i, one in enumerate(lines):
        yield first_line + i, [one] if one else []


def _parse_chunk(text: str, first_line: int, columns: tuple[str, ...], names: tuple[str, ...],
                 region: str | None, settle_bare: bool = True, encoding: str = "") -> _Parsed:
    """In a worker: a chunk's CSV rows, their numbers normalised, grouped by the rest of `columns`.

    Blank rows, "#" comments and a header line are skipped; columns not in `columns` are ignored.
    `settle_bare`: take the lines of bare numbers a few regex passes at a time (False: each line
    as any other row; the same result, slower). `encoding`: the file's, as a row that is not text in it says."""
    others = [i for i, name in enumerate(names) if name in columns and i > 0]  # the number is the first
    groups: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
    bad = []
    if len(text) > MAX_LINE_CHARS:  # blank the lines too long to be rows, keeping every line's number
        lines = text.split("\n")
        for i, one in enumerate(lines):
            if len(one) > MAX_LINE_CHARS:
                bad.append((first_line + i, f"line longer than {MAX_LINE_CHARS:,} characters"))
                lines[i] = ""
        text = "\n".join(lines)
    undecodable = UNDECODABLE in text
    if "\r" in text:  # bare lines from Windows: as the csv module reads them, without it
        lf = text.replace("\r\n", "\n")
        if not _is_csv(lf):
            text = lf
    lines = _lines(text)
    # the lines that are nothing but a valid number, a few regex passes at a time (numbers.number_lines)
    known = number_lines(lines, region) if settle_bare and lines is not None else None
    if known and None not in known:  # every line a number: the usual chunk of a big list
        return _Parsed({(): (list(range(first_line, first_line + len(known))), known)}, bad)
    for line, row in _rows(text, first_line, lines):
        if known is not None and (number := known[line - first_line]) is not None:
            group = groups.get(())
            if group is None:
                group = groups[()] = ([], [])
            group[0].append(line)
            group[1].append(number)
            continue
        if type(row) is str:  # the csv module could not read it
            bad.append((line, row))
            continue
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
            continue
        if line == 1 and row[0].strip().lower() == columns[0]:
            continue  # the header (the caller read it already)
        if len(row) > len(names):
            bad.append((line, f"{len(row)} fields, expected at most {len(names)} ({','.join(names)})"))
            continue
        if undecodable and any(UNDECODABLE in field for field in row):
            bad.append((line, f"bytes that are not text in {encoding or _THE_FILES} (see --encoding)"))
            continue
        number_text = row[0].strip()
        number = maybe_number(number_text, region)
        if number is None:
            bad.append((line, _not_valid(number_text, region) if number_text else "no number"))
            continue
        key = () if len(row) == 1 else tuple(row[i].strip() for i in others if i < len(row))
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([], [])
        group[0].append(line)
        group[1].append(number)
    return _Parsed(groups, bad)


def _audit_import(db: sqlite3.Connection, action: str, reason: str, actor: str) -> int:
    """An audit row for an import starting or finishing; returns its id."""
    return db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                      "VALUES (?, '', '', '', 'import', ?, 0, ?, ?)", (time.time(), action, reason, actor)).lastrowid


def _die_with_parent(parent: int) -> None:
    """In each import worker: end when the importing process ends, however it ends (SIGKILL too), instead of
    waiting for work that never comes (Linux; elsewhere the pool's own shutdown is all there is)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the call above
        os._exit(1)


def _header_of(first: str, columns: tuple[str, ...]) -> tuple[str, ...] | None:
    try:
        row = next(csv.reader([first]), [])
    except csv.Error:  # not a header: its row is reported with the others
        return None
    if row and row[0].strip().lower() == columns[0]:
        return tuple(c.strip().lower() for c in row)
    return None


def _by_number(c: Change) -> int:
    return c.number


#: A run's rows as its groups keep them: line numbers and numbers, int64 arrays (numpy), one pair per group.
_Made = list[tuple[Change, "np.ndarray", "np.ndarray"]]


def _last_rows_win(made: _Made) -> list[tuple[Change, np.ndarray]]:
    """Rows of different groups may change the same entry (one number with two reasons): keep each entry's
    last row, as applying the rows in file order would. Returns each group's numbers, sorted, each once."""
    import numpy as np

    entries: dict[tuple, list[int]] = {}  # (kind, scope, scope_key) -> the groups that change it
    for g, (template, _, _) in enumerate(made):
        entries.setdefault((template.kind, template.scope, template.scope_key), []).append(g)
    kept: list[np.ndarray] = [np.empty(0, np.int64)] * len(made)
    for groups in entries.values():
        numbers = np.concatenate([made[g][2] for g in groups])
        lines = np.concatenate([made[g][1] for g in groups])
        owner = np.concatenate([np.full(len(made[g][2]), g) for g in groups])
        order = np.lexsort((lines, numbers))  # by number, then line: a number's last row comes last
        numbers, owner = numbers[order], owner[order]
        last = np.ones(len(numbers), bool)
        last[:-1] = numbers[1:] != numbers[:-1]
        for g in groups:
            kept[g] = numbers[last & (owner == g)]
    return [(template, kept[g]) for g, (template, _, _) in enumerate(made)]


def _changes(made: _Made) -> tuple[list[Change], list[tuple[Change, np.ndarray]]]:
    """The changes of a run's valid groups, each entry once: plain changes, in key order, for groups of fewer
    than BATCH_MIN numbers, and (template, its numbers sorted) for the others, to be written as batches. In key
    order: inserting in key order touches each B-tree page once."""
    import numpy as np  # here: not every command that imports this module needs it

    groups = (_last_rows_win(made) if len(made) > 1
              else [(template, np.unique(numbers)) for template, _, numbers in made])
    singles: list[Change] = []
    batches: list[tuple[Change, np.ndarray]] = []
    for template, numbers in groups:
        if len(numbers) >= BATCH_MIN:
            batches.append((template, numbers))
        else:
            singles.extend(template._replace(number=n) for n in numbers.tolist())
    singles.sort(key=_by_number)
    return singles, batches


def _slices(made: _Made) -> Iterator[tuple[list[Change], int]]:
    """The changes of a run of rows in transactions of at most IMPORT_SLICE numbers, each in key order, with how
    many of the file's rows each stands for (a share of its group's rows, so the counts add up). A batch's
    numbers become Python ints a slice at a time."""
    singles, batches = _changes(made)
    rows = sum(len(lines) for _, lines, _ in made)
    numbers = len(singles) + sum(len(n) for _, n in batches) or 1
    pieces = itertools.chain(singles, (template._replace(numbers=tuple(n[i:i + IMPORT_SLICE].tolist()))
                                       for template, n in batches for i in range(0, len(n), IMPORT_SLICE)))
    pending: list[Change] = []
    size = 0
    written = 0
    for piece in pieces:
        n = len(piece.targets())
        if pending and size + n > IMPORT_SLICE:
            share = rows * size // numbers
            written += share
            yield pending, share
            pending, size = [], 0
        pending.append(piece)
        size += n
    if pending:
        yield pending, rows - written


def _parse_to_arrays(text: str, first_line: int, columns: tuple[str, ...], names: tuple[str, ...],
                     region: str | None, encoding: str = "") -> _Parsed:
    """_parse_chunk in a worker, each group's lines and numbers as int64 arrays: they cross to this process
    several times faster than lists of ints, and a run of them takes 16 bytes a row, not 70."""
    import numpy as np

    parsed = _parse_chunk(text, first_line, columns, names, region, encoding=encoding)
    return _Parsed({key: (np.array(lines, np.int64), np.array(numbers, np.int64))
                    for key, (lines, numbers) in parsed.groups.items()}, parsed.bad)


def import_csv(db: sqlite3.Connection, stream: Iterable[str], columns: tuple[str, ...],
               make_change: Callable[[dict], Change], *, default_region: str | None,
               actor: str | None = None, correlation_threshold: int = 0,
               progress: Callable[[int], None] | None = None, workers: int | None = None,
               label: str = "", result: ImportResult | None = None, encoding: str = "") -> ImportResult:
    """Import CSV rows as changes, one transaction per chunk of lines.

    Worker processes parse the CSV and normalise numbers (phonenumbers is the costly part, and the machine has
    more than one core) while this process writes the previous chunk. A header naming `columns[0]` may come
    first. `make_change(row)` gets a row's columns other than the number (those of `columns` the row has) and
    returns the change every row like it makes, with number 0 (filled in here), or raises ValueError naming
    what is wrong; such rows, and rows whose number is not valid, are reported by line and skipped. It is
    called once per distinct row (not per number): the rows of a chunk that make the same change are written
    as one batch change. `stream` is a text file, or lines as a file yields them.

    An import is resumable, not all-or-nothing: each chunk commits on its own, and importing the same file
    again changes nothing twice. It is audited (rule "import", `label` naming it): a row "started" when it
    begins and "finished" with its counts when it ends, so an import that was killed shows as started and
    never finished. `result`, if given, is filled as the import goes (what was done before an error).
    `encoding` names the file's encoding in the bad rows that are not text in it.

    Whatever the file holds (any line ends, a binary file, bytes that are not text), it is read to its end: what
    cannot be read is a bad row of its line, never an error that stops the import."""
    result = result if result is not None else ImportResult()
    origin = node_id(db)
    actor = actor or os_user()
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    oversized: list[int] = []
    chunks = _text_chunks(stream, oversized)
    started = _audit_import(db, "started", label, actor)
    try:
        first_no, first_text = next(chunks)
    except StopIteration:
        _audit_import(db, "finished", f"{label} (import {started}): empty", actor)
        return result
    names = _header_of(first_text.partition("\n")[0], columns) or columns
    key_names = [name for i, name in enumerate(names) if name in columns and i > 0]  # as _parse_chunk's keys

    def all_chunks():
        yield first_no, first_text
        yield from chunks

    import numpy as np

    # parsed, not yet written: key -> (arrays of lines, arrays of numbers), a pair per chunk
    run: dict[tuple[str, ...], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    run_rows = 0

    def gather(parsed: _Parsed) -> None:
        nonlocal run_rows
        result.errors.extend(sorted(parsed.bad))
        result.errors.extend((line, f"line longer than {16 * MAX_LINE_CHARS:,} characters, or a quote never "
                                    "closed") for line in oversized)
        oversized.clear()
        for key, (lines, numbers) in parsed.groups.items():
            group = run.get(key)
            if group is None:
                group = run[key] = ([], [])
            group[0].append(np.asarray(lines, np.int64))
            group[1].append(np.asarray(numbers, np.int64))
            run_rows += len(lines)
        if run_rows >= IMPORT_RUN_ROWS:
            write()

    # One run is written on a thread of its own while the next is parsed and gathered (SQLite gives up the GIL
    # while it writes): the workers never wait for the store.
    from concurrent.futures import Future, ThreadPoolExecutor

    writer = ThreadPoolExecutor(1, thread_name_prefix="import-writer")
    writing: list[Future] = []

    def write() -> None:
        nonlocal run_rows
        if writing:
            writing.pop().result()  # the run before: one at a time, in order, and out of memory before this one
        errors = []
        made: _Made = []  # (change with number 0, lines, numbers)
        for key in list(run):  # each group's chunks let go of as it is joined: a run is in memory once, not twice
            lines, numbers = run.pop(key)
            try:
                template = make_change(dict(zip(key_names, key, strict=False)))  # short rows: fewer
            except (ValueError, KeyError) as e:
                message = str(e) if not isinstance(e, KeyError) else f"missing column {e}"
                errors.extend((line, message) for line in np.concatenate(lines).tolist())
                continue
            made.append((template, np.concatenate(lines), np.concatenate(numbers)))
            lines.clear()
            numbers.clear()
        run_rows = 0
        result.errors.extend(sorted(errors))
        writing.append(writer.submit(write_made, made))

    def write_made(made: list[tuple[Change, list[int], list[int]]]) -> None:
        done = 0
        for changes, rows in _slices(made):
            changelog.write(db, changes, origin=origin, actor=actor,
                            correlation_threshold=correlation_threshold, audited=True)
            # count the file's rows: write() also counts the global opt-outs correlation adds
            done += rows
            if progress:
                progress(result.imported + done)
        result.imported += sum(len(lines) for _, lines, _ in made)

    def finish() -> ImportResult:
        if run or oversized:  # what is left; or the file ended inside an oversized stretch
            gather(_Parsed({}, []))
            write()
        if writing:
            writing.pop().result()
        result.errors.sort()
        _audit_import(db, "finished", f"{label} (import {started}): {result.imported} rows imported, "
                                      f"{len(result.errors)} bad", actor)
        return result

    try:
        if workers <= 1:
            for first, text in all_chunks():
                gather(_parse_chunk(text, first, columns, names, default_region, encoding=encoding))
            return finish()
        import collections
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            in_flight: collections.deque = collections.deque()
            for first, text in all_chunks():
                in_flight.append(pool.submit(_parse_to_arrays, text, first, columns, names, default_region,
                                             encoding))
                if len(in_flight) > IMPORT_AHEAD * workers:
                    gather(in_flight.popleft().result())
            while in_flight:
                gather(in_flight.popleft().result())
        return finish()
    finally:
        writer.shutdown(wait=True)  # stopped half-way: the run being written is committed, nothing after it


def write_csv(stream: io.TextIOBase, rows: Iterable[dict], columns: tuple[str, ...]) -> int:
    writer = csv.writer(stream)
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
        count += 1
    return count
