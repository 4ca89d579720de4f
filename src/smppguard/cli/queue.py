"""`smppguard queue`: the hold queue, as the store has it (the daemon need not run).

Changes made here reach a running daemon through the store: it looks at the queue every round, so a message
released here goes within a second through a bind of its account (it waits while there is none), and one
dropped here is never sent.
"""

from __future__ import annotations

import time

import click

from ..store import holds
from ..store.db import write_transaction
from ..store.lists import os_user
from ..store.recipients import masker
from .common import CONTEXT, Ctx, emit, exit_if_empty, fail, output_options, store_options, to_json, when

COLUMNS = ("id", "account", "sender", "recipient", "state", "release_at", "expires_at", "held_at", "part")


def _row(r: holds.HeldRow, mask) -> dict:
    return {"id": r.id, "account": r.account, "sender": r.sender, "recipient": mask(r.number, r.recipient),
            "state": r.state + (" (released by hand)" if r.forced and r.state == holds.HELD else ""),
            "release_at": r.release_at, "expires_at": r.expires_at, "held_at": r.held_at,
            "part": f"{r.part}/{r.parts}" if r.parts > 1 else "", "receipt": r.receipt}


def _masker(ctx: Ctx):
    return masker(ctx.config.audit.recipient, ctx.config.audit.salt)


def _due_before(ctx, param, value):
    if value is None:
        return None
    from datetime import datetime, timezone

    from ..values import duration
    try:
        return time.time() + duration(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO date/time or a time from now such as 2h, got {value!r}") \
            from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


@click.group(context_settings=CONTEXT)
def queue() -> None:
    """Messages held by quiet hours, waiting for the recipient's window to open.

    States: held (waiting), sending (submitted, the SMSC's answer not yet in), unknown (it was being sent when
    the daemon stopped, or the SMSC never answered: it may have reached the SMSC, so it is not sent again unless
    you release it).

    \b
    Example:
        smppguard queue list
        smppguard queue list --account acme --due-before 2h
        smppguard queue release 3f9a0c4e5d6b7a81
    """


@queue.command("list")
@store_options
@output_options
@click.option("--account", "-a", help="Only this account's (system_id) messages.")
@click.option("--due-before", callback=_due_before,
              help="Only messages due before this time: ISO date/time, or a time from now such as 2h.")
@click.option("--limit", default=1000, show_default=True, help="Show at most this many.")
def queue_list(ctx: Ctx, fmt, account, due_before, limit) -> None:
    """List held messages, the next due first; recipients as [audit] recipient shows them. Exit 1 when none.

    \b
    Example:
        smppguard queue list --account acme
        smppguard queue list --json
    """
    mask = _masker(ctx)
    rows = [_row(r, mask) for r in holds.listing(ctx.db, account=account, due_before=due_before, limit=limit)]
    exit_if_empty(emit(rows, COLUMNS, fmt, times=("release_at", "expires_at", "held_at"), empty="no held messages"))


@queue.command("show")
@store_options
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def queue_show(ctx: Ctx, message_id, as_json) -> None:
    """Show one held message (every destination or part under its proxy id). Exit 1 if it is not held.

    \b
    Example:
        smppguard queue show 3f9a0c4e5d6b7a81
    """
    mask = _masker(ctx)
    rows = holds.by_id(ctx.db, message_id)
    if not rows:
        fail(f"no held message {message_id}", "smppguard queue list shows the held messages")
    out = [dict(_row(r, mask), command=f"0x{r.command_id:08X}", size=len(r.pdu)) for r in rows]
    if as_json:
        click.echo(to_json(out))
        return
    for r in out:
        for key in (*COLUMNS, "receipt", "command", "size"):
            value = r[key]
            click.echo(f"{key:11} {when(value) if key.endswith('_at') else value}")
        click.echo()


@queue.command("release")
@store_options
@click.argument("message_ids", nargs=-1, required=True)
def queue_release(ctx: Ctx, message_ids) -> None:
    """Send held messages now, whatever the quiet hours say; the other rules still decide (an opted-out or
    blacklisted recipient's message is dropped). Also sends an "unknown" one again: do that only when you know
    it did not reach the SMSC. Exit 1 if none of them is held.

    \b
    Example:
        smppguard queue release 3f9a0c4e5d6b7a81
    """
    now = time.time()
    db = ctx.db
    n = 0
    with write_transaction(db):
        for message_id in message_ids:
            n += holds.release_now(db, message_id, now)
    click.echo(f"released {n} message{'s' if n != 1 else ''}" + (": due now" if n else ""))
    ids = list(message_ids)
    for account, count, expires in db.execute(
            f"SELECT account, COUNT(*), MIN(expires_at) FROM held WHERE state = 'held' AND id IN "
            f"({', '.join('?' * len(ids))}) GROUP BY account ORDER BY account", ids):
        click.echo(_what_happens(ctx, account, count, expires))
    exit_if_empty(n)


def _what_happens(ctx: Ctx, account: str, count: int, expires: float) -> str:
    """What a running daemon does with `count` released messages of `account`: the queue sends a message only
    through a bind of its account (or its own bind, with [hold] accounts), so say which, and until when they
    wait for one."""
    them, they, s = ("it", "it", "s") if count == 1 else ("them", "they", "")
    if account in dict(ctx.config.hold.accounts):
        how = (f"the daemon sends {them} within a second, through a bind of {account} or, with none up, one it "
               "opens itself ([hold] accounts)")
    else:
        how = (f"the daemon sends {them} within a second through a transmitter or transceiver bind of {account}; "
               f"while {account} has none up, {they} wait{s} (its log says so within a minute)")
    return f"  {account}: {how}, until {when(expires)}, when {they} expire{s}"


@queue.command("drop")
@store_options
@click.argument("message_ids", nargs=-1, required=True)
def queue_drop(ctx: Ctx, message_ids) -> None:
    """Remove held messages; they are never sent. Each is written to the audit log, and a sender that asked for
    receipts gets one with stat DELETED (from the daemon, when it binds a receiver). Exit 1 if none is held.

    \b
    Example:
        smppguard queue drop 3f9a0c4e5d6b7a81
    """
    mask, actor, now = _masker(ctx), os_user(), time.time()
    from ..proxy.holds import held_receipt
    n = sum(holds.drop(ctx.db, message_id, actor, now, mask, lambda r: held_receipt(r, "DELETED", now))
            for message_id in message_ids)
    click.echo(f"dropped {n} message{'s' if n != 1 else ''}")
    exit_if_empty(n)
