"""Reports: the audit log and daily statistics."""

from __future__ import annotations

import click

from ..policy import RULE_NAMES
from ..store import audit as audit_store
from .common import Ctx, emit, exit_if_empty, output_options, since_option, store_options, to_json


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


@click.command("report")
@store_options
@click.argument("account")
@since_option
@click.option("--html", "html_file", type=click.File("w", encoding="utf-8"),
              help="Write the report as one HTML page with its charts (nothing to fetch) to this file (- for stdout).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (ISO 8601 times).")
@click.option("--csv", "as_csv", is_flag=True, help="Print the report's days as CSV (day, sent, held, refused).")
def report(ctx: Ctx, account, since, html_file, as_json, as_csv) -> None:
    """An account's compliance for a period: sent, held, refused by rule and by day, opt-outs learned and
    complaints; the console's report (/console/accounts/ACCOUNT), without the daemon.

    --since defaults to 7d. Sent counts the sends the frequency rule keeps (none while it is off).

    \b
    Example:
        smppguard report acme --since 7d
        smppguard report acme --since 30d --html acme-november.html
    """
    import time

    from ..console import data
    from ..console.api import report_json

    if sum(map(bool, (html_file, as_json, as_csv))) > 1:
        raise click.UsageError("choose one of --html, --json and --csv")
    now = time.time()
    r = report_json(data.report(ctx.db, account, since if since is not None else now - 7 * 86400, now))
    if as_json:
        click.echo(to_json(r))
        return
    if as_csv:
        emit(r["days"], ("day", "sent", "held", "refused"), "csv")
        return
    if html_file is not None:
        from ..console.pages import report_sections, standalone
        html_file.write(standalone(f"Account {account}: compliance report", report_sections(r)))
        if getattr(html_file, "name", "-") not in ("<stdout>", "-"):
            click.echo(f"wrote {html_file.name}")
        return
    t = r["totals"]
    rate = f"{100 * r['refusal_rate']:.1f}%" if r["refusal_rate"] is not None else "-"
    click.echo(f"account {account}, {r['since']} to {r['until']}")
    click.echo(f"sent {t['sent']}, held {t['held']}, refused {t['refused']} ({rate}); opt-outs learned "
               f"{r['optouts_learned']}, complaints {r['complaints']}")
    if r["refused_by_rule"]:
        click.echo("refused by rule: " + ", ".join(f"{k} {v}" for k, v in r["refused_by_rule"].items()))
    h = r["held_outcomes"]
    click.echo("held messages: " + ", ".join(f"{v} {k}" for k, v in h.items()))
    click.echo("")
    emit(r["days"], ("day", "sent", "held", "refused"), "table")
