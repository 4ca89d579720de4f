"""Reports: the audit log and daily statistics."""

from __future__ import annotations

import click

from ..policy import RULE_NAMES
from ..store import audit as audit_store
from .common import Ctx, emit, exit_if_empty, output_options, since_option, store_options


@click.command("audit")
@store_options
@output_options
@click.option("--number", "-n", help="Only this recipient (matched the way [audit] recipient stores it).")
@click.option("--rule", "-r", type=click.Choice([*RULE_NAMES, *audit_store.OTHER_RULES]),
              help="Only this rule (a list's name for list changes; import, hold, inbound, blacklist-removal for "
                   "imports, the hold queue, replies not learned and removals).")
@since_option
@click.option("--limit", default=1000, show_default=True, help="At most this many rows, newest first.")
def audit(ctx: Ctx, fmt, number, rule, since, limit) -> None:
    """Show audited decisions (refusals, holds) and list operations, newest first. Exit 1 when none match.

    A refusal that repeats within [audit] fold is one row: `count` times from `first` to `last`.

    \b
    Example:
        smppguard audit --rule blacklist --since 1d
        smppguard audit --number 13800138000 --json
    """
    recipients: tuple[str, ...] = ()
    if number:
        n = ctx.number(number)
        a = ctx.config.audit
        recipients = (audit_store.mask_recipient(n, number, a.recipient, a.salt), f"+{n}")
    rows = list(audit_store.query(ctx.db, recipients=recipients, rule=rule, since=since, limit=limit))
    rows = [{**r, "status": f"0x{r['status']:02X}"} for r in rows]  # as SMPP writes command_status
    if fmt != "json":  # a table or CSV shows the last time only where a row stands for several
        rows = [r if r["count"] > 1 else {**r, "last": None} for r in rows]
    found = emit(rows, ("first", "last", "count", "rule", "action", "status", "recipient", "account", "sender",
                        "reason", "actor"), fmt, times=("first", "last"))
    if found and number and ctx.config.audit.recipient == "masked":  # the promise in store/audit.py's docstring
        click.echo(f"note: recipients are masked ({recipients[0]}); rows of other numbers with the same visible "
                   "digits match too", err=True)
    exit_if_empty(found)


@click.command("stats")
@store_options
@output_options
@since_option
def stats(ctx: Ctx, fmt, since) -> None:
    """Messages per day (UTC), account and rule: every refusal and hold, and accepted sends. Exit 1 when empty.

    Also says how much of [audit] max_size the audit log takes (on stderr).

    \b
    Example:
        smppguard stats --since 7d
    """
    rows = audit_store.stats(ctx.db, since=since)
    found = emit(rows, ("day", "account", "rule", "action", "count"), fmt)
    used, bound = audit_store.size(ctx.db), ctx.config.audit.max_size
    click.echo(f"audit log: {used / 1e6:,.1f} MB of {bound / 1e6:,.0f} MB ([audit] max_size, "
               f"{100 * used / bound:.0f}%)", err=True)
    exit_if_empty(found)
