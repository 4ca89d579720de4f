"""List commands: blacklist, optout, consent, tz, dead. Each a thin skin over smppguard.store.lists."""

from __future__ import annotations

import codecs
import io
import os
import sys
import time

import click

from ..policy.model import IMPORTED
from ..store import lists
from ..store.changelog import Change
from ..store.db import AlreadyExists, NotFound
from ..values import duration
from .common import (
    CONTEXT,
    EXIT_INPUT_ERROR,
    Ctx,
    emit,
    exit_if_empty,
    fail,
    output_options,
    since_option,
    store_options,
    when,
)


def _numbers(ctx: Ctx, texts) -> list[int]:
    return [ctx.number(t) for t in texts]


class _Counting:
    """A text file whose reads move the progress bar by the bytes read (the import reads blocks, not lines)."""

    def __init__(self, stream, bar):
        self.stream, self.bar = stream, bar

    def read(self, size: int = -1) -> str:
        text = self.stream.read(size)
        self.bar.update(len(text.encode("utf-8")))
        return text


def _rows(n: int, what: str = "") -> str:
    return f"{n} {what}row" + ("" if n == 1 else "s")


#: What --encoding accepts besides "auto": what spreadsheets and legacy systems export.
ENCODINGS = ("auto", "utf-8", "utf-16", "gb18030", "gbk", "big5", "latin-1", "cp1252", "shift_jis")


class LineByLine:
    """An import file read as UTF-8, where a line that is not UTF-8 is read as GB18030 (what Chinese spreadsheet
    exports produce): each line decided on its own, so a UTF-8 file with one GB18030 row (pasted from another
    export) imports every row as it was written, never the whole file garbled by its first 64 KB. Bytes that are
    text in neither become U+FFFD, and the row holding them is a bad row that names both. A block of lines that
    is all UTF-8, the usual case, is decoded at once."""

    name = "UTF-8 or GB18030"
    _MAX_CARRY = 1 << 22  # bytes kept waiting for a line end: a file with none is decoded in pieces this big

    def __init__(self, raw):
        self.raw = raw
        self._rest = b""
        self._first = True

    def read(self, size: int = -1) -> str:
        while True:
            data = self.raw.read(size if size and size > 0 else -1)
            block = self._rest + data
            if not data:  # the end of the file
                self._rest = b""
                return self._decode(block)
            cut = max(block.rfind(b"\n"), block.rfind(b"\r")) + 1  # whole lines, whatever their ends
            if not cut and len(block) < self._MAX_CARRY:
                self._rest = block
                continue
            cut = cut or len(block)
            self._rest = block[cut:]
            text = self._decode(block[:cut])
            if text:
                return text

    def _decode(self, block: bytes) -> str:
        if self._first:
            self._first = False
            block = block.removeprefix(codecs.BOM_UTF8)  # a BOM is not part of the first number
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(_one_line(line) for line in block.splitlines(keepends=True))


def _one_line(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("gb18030", errors="replace")


def text_of(raw, encoding: str) -> io.TextIOWrapper | LineByLine:
    """The import file as text. "auto": a byte-order mark says UTF-16; otherwise each line is UTF-8, or else
    GB18030 (LineByLine). Bytes that are not text in the encoding become U+FFFD, and the rows holding them are
    reported as bad rows, naming the encoding, never imported garbled."""
    if encoding == "auto":
        head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
        if not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return LineByLine(raw)
        encoding = "utf-16"
    elif encoding == "utf-8":
        encoding = "utf-8-sig"  # a BOM is not part of the first number
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")


def encoding_name(text) -> str:
    """The encoding of a text_of, as a bad row names it."""
    if isinstance(text, LineByLine):
        return text.name
    return {"utf-8-sig": "UTF-8", "utf-16": "UTF-16", "gb18030": "GB18030"}.get(text.encoding, text.encoding)


def _import(ctx: Ctx, file, columns, make_change, silent: bool, correlation_threshold: int = 0,
            encoding: str = "auto", label: str = "") -> None:
    """Shared by the import commands: progress by bytes, bad rows reported by line, the rest imported; the
    summary is printed however the import ends."""
    # A stream with no name (click re-wraps stdin; CliRunner's stdin is a BytesIO) has no size to show either.
    stdin = getattr(file, "name", "-") in ("<stdin>", "-")
    show = not (silent or stdin or not sys.stderr.isatty())
    size = os.fstat(file.fileno()).st_size if not stdin else 0
    started = time.monotonic()
    region = ctx.config.policy.default_region
    text = text_of(file if hasattr(file, "peek") else io.BufferedReader(file), encoding)
    named = encoding_name(text)
    result = lists.ImportResult()
    name = f"{label} {getattr(file, 'name', '-')}".strip()
    try:
        if show:
            with click.progressbar(length=size, label="importing", file=sys.stderr) as bar:
                lists.import_csv(ctx.db, _Counting(text, bar), columns, make_change, default_region=region,
                                 correlation_threshold=correlation_threshold, label=name, result=result,
                                 encoding=named)
        else:
            lists.import_csv(ctx.db, text, columns, make_change, default_region=region,
                             correlation_threshold=correlation_threshold, label=name, result=result,
                             encoding=named)
    except BaseException as e:
        _summary(result, started)
        click.echo(f"the import stopped ({type(e).__name__}{': ' + str(e) if str(e) else ''}); the rows above "
                   "were imported: import the file again to finish (rows already imported change nothing)",
                   err=True)
        raise
    _summary(result, started)
    if result.imported >= SNAPSHOT_AFTER:
        _leave_snapshot(ctx, silent)
    if result.errors:
        sys.exit(EXIT_INPUT_ERROR)


#: Rows imported past which the import writes the snapshot file when no daemon runs: fewer, a start replays them
#: from the change log in a fraction of a second.
SNAPSHOT_AFTER = 100_000


def _leave_snapshot(ctx: Ctx, silent: bool) -> None:
    """The snapshot file (store/snapshot.py) as the import left the store, so the next start reads it instead of
    the tables; a running daemon (it holds the file's lock) folds the import into its own."""
    from ..store.index import write_snapshot

    started = time.monotonic()
    wrote = write_snapshot(ctx.db, ctx.config.policy, time.time())
    if wrote is None:
        if not silent:
            click.echo("the daemon is running: it folds the import into its index snapshot itself", err=True)
        return
    click.echo(f"index snapshot written in {time.monotonic() - started:.1f}s ({wrote['blacklist']} blacklisted, "
               f"{wrote['optouts']} opt-outs, {wrote['sends']} recent sends): the next start reads it")


def _summary(result, started: float) -> None:
    for line, message in result.errors[:50]:
        click.echo(f"line {line}: {message}", err=True)
    if len(result.errors) > 50:
        click.echo(f"... and {len(result.errors) - 50} more bad rows", err=True)
    bad = len(result.errors)
    click.echo(f"imported {_rows(result.imported)} in {time.monotonic() - started:.1f}s"
               + (f"; {_rows(bad, 'bad ')} skipped" if bad else ""))


def _export(file, rows, columns: tuple[str, ...]) -> None:
    """Shared by the export commands: CSV with ISO times; a count unless the CSV itself went to stdout."""
    rows = ({**r, "added_at": when(r["added_at"])} for r in rows)
    n = lists.write_csv(file, rows, columns)
    if getattr(file, "name", "-") not in ("<stdout>", "-"):
        click.echo(f"exported {n} rows")


# --- blacklist ---------------------------------------------------------------------------------------------

@click.group(context_settings=CONTEXT)
def blacklist() -> None:
    """The global blacklist: complaints, carrier and regulator lists.

    \b
    Example:
        smppguard blacklist add 13800138000 --source complaint --reason "10086 complaint"
        smppguard blacklist list --json
    """


@blacklist.command("add")
@store_options
@click.argument("numbers", nargs=-1, required=True)
@click.option("--reason", "-r", default="", help="Why (kept with the entry and in the change log).")
@click.option("--source", type=click.Choice(lists.BLACKLIST_SOURCES), default="manual", show_default=True,
              help="Where the listing came from.")
def blacklist_add(ctx: Ctx, numbers, reason, source) -> None:
    """Blacklist numbers (any form: 13800138000, +8613800138000, 008613800138000).

    \b
    Example:
        smppguard blacklist add 13800138000 +8613900000001 --source complaint --reason "10086 complaint"
    """
    parsed = _numbers(ctx, numbers)
    already = {n for (n,) in ctx.db.execute(
        f"SELECT number FROM blacklist WHERE number IN ({','.join('?' * len(parsed))})", parsed)} if parsed else set()
    lists.add_blacklist(ctx.db, parsed, source=source, reason=reason)
    new = len(parsed) - len(already)
    click.echo(f"blacklisted {new} number{'s' * (new != 1)}" + (
        f"; already listed (source and reason updated): {', '.join(f'+{n}' for n in sorted(already))}"
        if already else ""))


@blacklist.command("list")
@store_options
@output_options
@click.option("--number", help="Only this number (as optout list --number).")
@click.option("--source", type=click.Choice(lists.BLACKLIST_SOURCES), help="Only entries from this source.")
@since_option
@click.option("--limit", type=int, help="At most this many rows.")
def blacklist_list(ctx: Ctx, fmt, number, source, since, limit) -> None:
    """List blacklisted numbers, oldest first. Exit 1 when none match.

    \b
    Example:
        smppguard blacklist list --source complaint --since 7d
        smppguard blacklist list --number 13800138000
    """
    rows = lists.list_blacklist(ctx.db, source=source, since=since, limit=limit,
                                number=ctx.number(number) if number else None)
    exit_if_empty(emit(rows, ("number", "source", "reason", "added_at", "actor"), fmt, times=("added_at",)))


@blacklist.command("count")
@store_options
@output_options
@click.option("--source", type=click.Choice(lists.BLACKLIST_SOURCES), help="Count only this source.")
def blacklist_count(ctx: Ctx, fmt, source) -> None:
    """Count blacklisted numbers per source.

    \b
    Example:
        smppguard blacklist count
    """
    counts = lists.count_blacklist(ctx.db, source=source)
    rows = [{"source": s, "count": n} for s, n in counts.items()]
    rows.append({"source": "total", "count": sum(counts.values())})
    emit(rows, ("source", "count"), fmt)


@blacklist.command("import")
@store_options
@click.argument("file", type=click.File("rb"))
@click.option("--encoding", type=click.Choice(ENCODINGS), default="auto", show_default=True,
              help="The file's encoding; auto: UTF-16 by its byte-order mark, else UTF-8, a line that is not "
                   "UTF-8 read as GB18030.")
@click.option("--source", type=click.Choice(lists.BLACKLIST_SOURCES), default="manual", show_default=True,
              help="Source for rows that do not name one.")
@click.option("--reason", default="", help="Reason for rows that do not give one.")
@click.option("--silent", is_flag=True, help="No progress bar.")
def blacklist_import(ctx: Ctx, file, encoding, source, reason, silent) -> None:
    """Import a CSV of number[,source,reason] (a header row is optional; - reads stdin).

    Bad rows are reported with their line numbers and skipped; the rest is imported (exit 2 if any were bad).

    \b
    Example:
        smppguard blacklist import complaints.csv --source complaint
    """
    def change(row: dict) -> Change:
        src = row.get("source") or source
        if src not in lists.BLACKLIST_SOURCES:
            raise ValueError(f"unknown source {src!r}")
        return Change("blacklist", "add", 0, data={"source": src, "reason": row.get("reason") or reason})

    _import(ctx, file, ("number", "source", "reason"), change, silent, encoding=encoding,
            label="blacklist import")


@blacklist.command("export")
@store_options
@click.argument("file", type=click.File("w", encoding="utf-8"))
@click.option("--source", type=click.Choice(lists.BLACKLIST_SOURCES), help="Only this source.")
def blacklist_export(ctx: Ctx, file, source) -> None:
    """Export the blacklist as CSV (number,source,reason,added_at,actor); - writes stdout.

    \b
    Example:
        smppguard blacklist export blacklist.csv
    """
    _export(file, lists.list_blacklist(ctx.db, source=source), ("number", "source", "reason", "added_at", "actor"))


@blacklist.command("remove")
@store_options
@click.argument("number")
@click.option("--reason", "-r", required=True, help="Why the number may be removed (audited).")
@click.option("--observe", default="3d", show_default=True,
              help="Observation period before the removal takes effect: 3d to 7d.")
def blacklist_remove(ctx: Ctx, number, reason, observe) -> None:
    """Ask to remove a number from the blacklist, after an observation period.

    The number stays blacklisted for the period (3 to 7 days); a new complaint, carrier listing or opt-out
    in that time cancels the removal. Every step is audited with your user name. Exit 1 if the number is
    not blacklisted or already has a pending removal.

    \b
    Example:
        smppguard blacklist remove 13800138000 --reason "customer called, verified consent" --observe 5d
    """
    try:
        observe_s = duration(observe)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--observe") from None
    if not lists.MIN_OBSERVE_S <= observe_s <= lists.MAX_OBSERVE_S:
        raise click.BadParameter("the observation period must be 3d to 7d", param_hint="--observe")
    n = ctx.number(number)
    try:
        p = lists.request_removal(ctx.db, n, reason=reason, observe_s=observe_s)
    except NotFound as e:
        fail(str(e), "see `smppguard blacklist list`")
    except AlreadyExists as e:
        fail(str(e), "see `smppguard blacklist pending`")
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--reason") from None
    click.echo(f"+{n} will be removed at {when(p.effective_at)} unless a new complaint or opt-out comes first")


@blacklist.command("pending")
@store_options
@output_options
@click.option("--all", "include_closed", is_flag=True, help="Also show done and cancelled removals.")
def blacklist_pending(ctx: Ctx, fmt, include_closed) -> None:
    """List removals waiting for their observation period to end. Exit 1 when there are none.

    \b
    Example:
        smppguard blacklist pending --all
    """
    rows = [{"number": f"+{p.number}", "status": p.status, "effective_at": p.effective_at,
             "requested_at": p.requested_at, "actor": p.actor, "reason": p.reason, "note": p.close_reason}
            for p in lists.pending_removals(ctx.db, include_closed=include_closed)]
    exit_if_empty(emit(rows, ("number", "status", "effective_at", "requested_at", "actor", "reason", "note"),
                       fmt, times=("effective_at", "requested_at")))


# --- opt-outs ----------------------------------------------------------------------------------------------

scope_option = click.option("--scope", type=click.Choice(lists.OPTOUT_SCOPES), default="sender",
                            show_default=True, help="sender (source_addr), account (system_id) or global.")
key_option = click.option("--key", "-k", default="",
                          help="The sender (source_addr) or account (system_id) the opt-out is for.")


def _need_key(scope: str, key: str) -> None:
    if scope != "global" and not key:
        what = "source_addr" if scope == "sender" else "system_id"
        raise click.UsageError(f"--scope {scope} needs --key (the {what})")


@click.group(context_settings=CONTEXT)
def optout() -> None:
    """Opt-outs: recipients who replied T, TD, 退订 or STOP.

    \b
    Example:
        smppguard optout add 13800138000 --scope sender --key ACME --keyword TD
        smppguard optout list --number 13800138000
    """


@optout.command("add")
@store_options
@click.argument("numbers", nargs=-1, required=True)
@scope_option
@key_option
@click.option("--keyword", default="", help="What the recipient replied, if known.")
def optout_add(ctx: Ctx, numbers, scope, key, keyword) -> None:
    """Record opt-outs.

    \b
    Example:
        smppguard optout add 13800138000 --scope sender --key ACME --keyword TD
    """
    _need_key(scope, key)
    parsed = _numbers(ctx, numbers)
    threshold = ctx.config.policy.correlation_threshold
    written = lists.add_optouts(ctx.db, [(n, scope, key) for n in parsed], keyword=keyword,
                                correlation_threshold=threshold)
    click.echo(f"opted out {len(parsed)} number{'s' * (len(parsed) != 1)}"
               + (f" ({written - len(parsed)} now opted out globally: {threshold} senders)"
                  if written > len(parsed) else ""))


@optout.command("remove")
@store_options
@click.argument("number")
@scope_option
@key_option
def optout_remove(ctx: Ctx, number, scope, key) -> None:
    """Remove an opt-out (only on the recipient's own request). Exit 1 if there is none.

    \b
    Example:
        smppguard optout remove 13800138000 --scope sender --key ACME
    """
    _need_key(scope, key)
    try:
        lists.remove_optout(ctx.db, ctx.number(number), scope, key)
    except NotFound as e:
        fail(str(e), "see `smppguard optout list --number ...`")
    click.echo("removed")


@optout.command("list")
@store_options
@output_options
@click.option("--number", help="Only this number.")
@click.option("--scope", type=click.Choice(lists.OPTOUT_SCOPES), help="Only this scope.")
@click.option("--key", "-k", help="Only this sender or account.")
def optout_list(ctx: Ctx, fmt, number, scope, key) -> None:
    """List opt-outs. Exit 1 when none match.

    \b
    Example:
        smppguard optout list --scope global
    """
    rows = lists.list_optouts(ctx.db, number=ctx.number(number) if number else None, scope=scope, key=key)
    exit_if_empty(emit(rows, ("number", "scope", "key", "keyword", "source", "added_at"), fmt,
                       times=("added_at",)))


@optout.command("import")
@store_options
@click.argument("file", type=click.File("rb"))
@click.option("--encoding", type=click.Choice(ENCODINGS), default="auto", show_default=True,
              help="The file's encoding; auto: UTF-16 by its byte-order mark, else UTF-8, a line that is not "
                   "UTF-8 read as GB18030.")
@click.option("--scope", type=click.Choice(lists.OPTOUT_SCOPES), default="sender", show_default=True,
              help="Scope for rows that do not name one.")
@click.option("--key", "-k", default="", help="Sender/account for rows that do not name one.")
@click.option("--silent", is_flag=True, help="No progress bar.")
def optout_import(ctx: Ctx, file, encoding, scope, key, silent) -> None:
    """Import a CSV of number[,scope,key,keyword]; bad rows are reported by line and skipped (exit 2).

    \b
    Example:
        smppguard optout import unsubscribed.csv --scope sender --key ACME
    """
    def change(row: dict) -> Change:
        sc = row.get("scope") or scope
        k = row.get("key") or key
        if sc not in lists.OPTOUT_SCOPES:
            raise ValueError(f"unknown scope {sc!r}")
        if sc != "global" and not k:
            raise ValueError(f"scope {sc} needs a key column or --key")
        return Change("optout", "add", 0, sc, "" if sc == "global" else k,
                      {"source": IMPORTED, "keyword": row.get("keyword", "")})

    threshold = ctx.config.policy.correlation_threshold
    _import(ctx, file, ("number", "scope", "key", "keyword"), change, silent, threshold, encoding=encoding,
            label="optout import")


@optout.command("export")
@store_options
@click.argument("file", type=click.File("w", encoding="utf-8"))
def optout_export(ctx: Ctx, file) -> None:
    """Export opt-outs as CSV (number,scope,key,keyword,source,added_at); - writes stdout.

    \b
    Example:
        smppguard optout export optouts.csv
    """
    _export(file, lists.list_optouts(ctx.db), ("number", "scope", "key", "keyword", "source", "added_at"))


# --- consent -----------------------------------------------------------------------------------------------

@click.group(context_settings=CONTEXT)
def consent() -> None:
    """The consent ledger: when, how and with what wording a recipient agreed.

    \b
    Example:
        smppguard consent grant 13800138000 --source "web signup" --confirmed
        smppguard consent show 13800138000
    """


@consent.command("grant")
@store_options
@click.argument("number")
@click.option("--source", "-s", required=True, help="How consent was given (web form, paper, SMS YES, ...).")
@click.option("--wording", "-w", default="", help="The text the recipient agreed to.")
@click.option("--account", "-a", default="", help="Consent given to this system_id only (default: any).")
@click.option("--confirmed", is_flag=True, help="Already confirmed (double opt-in done); else pending.")
def consent_grant(ctx: Ctx, number, source, wording, account, confirmed) -> None:
    """Record consent (pending until confirmed, unless --confirmed).

    \b
    Example:
        smppguard consent grant 13800138000 --source "web signup" --wording "I agree to offers" --confirmed
    """
    n = ctx.number(number)
    lists.grant_consent(ctx.db, n, source=source, wording=wording, account=account, confirmed=confirmed)
    click.echo(f"consent for +{n}: {'confirmed' if confirmed else 'pending'}")


@consent.command("revoke")
@store_options
@click.argument("number")
@click.option("--account", "-a", default="", help="Revoke only the consent given to this system_id.")
def consent_revoke(ctx: Ctx, number, account) -> None:
    """Revoke consent. Exit 1 if there is none.

    \b
    Example:
        smppguard consent revoke 13800138000
    """
    try:
        lists.revoke_consent(ctx.db, ctx.number(number), account=account)
    except NotFound as e:
        fail(str(e), "see `smppguard consent show NUMBER`")
    click.echo("revoked")


@consent.command("show")
@store_options
@output_options
@click.argument("number")
def consent_show(ctx: Ctx, fmt, number) -> None:
    """Show the consent records of a number. Exit 1 if there are none.

    \b
    Example:
        smppguard consent show 13800138000 --json
    """
    rows = lists.show_consent(ctx.db, ctx.number(number))
    exit_if_empty(emit(rows, ("number", "account", "status", "source", "wording", "granted_at", "confirmed_at"),
                       fmt, times=("granted_at", "confirmed_at")))


# --- time zones and dead numbers -----------------------------------------------------------------------

@click.group(context_settings=CONTEXT)
def tz() -> None:
    """Per-number time-zone overrides (where phonenumbers' zone is wrong, e.g. split area codes).

    \b
    Example:
        smppguard tz set +61412345678 Australia/Perth
        smppguard tz list
        smppguard tz remove +61412345678
    """


@tz.command("set")
@store_options
@click.argument("number")
@click.argument("zone")
def tz_set(ctx: Ctx, number, zone) -> None:
    """Set the zone quiet hours use for NUMBER (an IANA name; "-" removes the override).

    \b
    Example:
        smppguard tz set +61412345678 Australia/Perth
    """
    from ..policy.numbers import check_zone
    if zone != "-":
        try:
            check_zone(zone)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="ZONE") from None
    n = ctx.number(number)
    lists.set_zone(ctx.db, n, None if zone == "-" else zone)
    click.echo(f"+{n}: {'override removed' if zone == '-' else zone}")


@tz.command("remove")
@store_options
@click.argument("number")
def tz_remove(ctx: Ctx, number) -> None:
    """Remove NUMBER's override: quiet hours use phonenumbers' zones again. Exit 1 when it has none.

    \b
    Example:
        smppguard tz remove +61412345678
    """
    n = ctx.number(number)
    if not lists.list_zones(ctx.db, number=n):
        click.echo(f"+{n}: no override", err=True)
        exit_if_empty(0)
    lists.set_zone(ctx.db, n, None)
    click.echo(f"+{n}: override removed")


@tz.command("list")
@store_options
@output_options
@click.option("--number", help="Only this number.")
def tz_list(ctx: Ctx, fmt, number) -> None:
    """List the per-number time-zone overrides, oldest first. Exit 1 when there are none.

    \b
    Example:
        smppguard tz list
        smppguard tz list --number +61412345678 --json
    """
    rows = lists.list_zones(ctx.db, number=ctx.number(number) if number else None)
    exit_if_empty(emit(rows, ("number", "zone", "set_at"), fmt, times=("set_at",)))


@click.group(context_settings=CONTEXT)
def dead() -> None:
    """Dead numbers (empty or suspended), learned from receipts; entries expire.

    \b
    Example:
        smppguard dead list
        smppguard dead clear 13800138000
    """


@dead.command("list")
@store_options
@output_options
@click.option("--all", "include_expired", is_flag=True, help="Include expired entries.")
def dead_list(ctx: Ctx, fmt, include_expired) -> None:
    """List dead numbers. Exit 1 when there are none.

    \b
    Example:
        smppguard dead list
    """
    rows = lists.list_dead(ctx.db, include_expired=include_expired)
    exit_if_empty(emit(rows, ("number", "reason", "marked_at", "expires_at"), fmt,
                       times=("marked_at", "expires_at")))


@dead.command("clear")
@store_options
@click.argument("numbers", nargs=-1)
@click.option("--all", "clear_all", is_flag=True, help="Clear every entry.")
def dead_clear(ctx: Ctx, numbers, clear_all) -> None:
    """Forget dead-number entries (the numbers may be messaged again). Exit 1 if none of them was dead.

    \b
    Example:
        smppguard dead clear 13800138000
        smppguard dead clear --all
    """
    if bool(numbers) == clear_all:
        raise click.UsageError("give NUMBERS or --all")
    n = lists.clear_dead(ctx.db, None if clear_all else _numbers(ctx, numbers))
    click.echo(f"cleared {n} entr{'ies' if n != 1 else 'y'}")
    exit_if_empty(n)
