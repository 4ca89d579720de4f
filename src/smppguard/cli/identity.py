"""Commands on senders' identity and standing: `signature` (registered signatures) and `account` (the sending
pattern review)."""

from __future__ import annotations

import time

import click

from ..store import review, signatures
from .common import CONTEXT, Ctx, emit, exit_if_empty, fail, output_options, store_options, to_json, when


@click.group(context_settings=CONTEXT)
def signature() -> None:
    """The signatures each account is registered to send with, 【公司名】 (the `signature` rule).

    A change is audited with your OS user and written to the change log: a running daemon applies it within a
    second, and other sidecars get it over MQTT.

    \b
    Example:
        smppguard signature add acme-mkt ACME --id 91110000MA01
        smppguard signature add acme-mkt 艾克美 --source-addr 95555
        smppguard signature list acme-mkt
    """


@signature.command("add")
@store_options
@click.argument("account")
@click.argument("signature_text", metavar="SIGNATURE")
@click.option("--source-addr", default="", help="Only for messages from this source address (default: any).")
@click.option("--id", "cert_id", default="", help="The signature's certification or registration id.")
def signature_add(ctx: Ctx, account, signature_text, source_addr, cert_id) -> None:
    """Register SIGNATURE (ACME, or 【ACME】) for ACCOUNT (its system_id).

    \b
    Example:
        smppguard signature add acme-mkt ACME --id 91110000MA01 --source-addr 95555
    """
    try:
        sig = signatures.add(ctx.db, account, signature_text, source_addr=source_addr, cert_id=cert_id)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="SIGNATURE") from None
    click.echo(f"registered 【{sig}】 for account {account}" + (f" from {source_addr}" if source_addr else ""))


@signature.command("list")
@store_options
@output_options
@click.argument("account", required=False)
def signature_list(ctx: Ctx, fmt, account) -> None:
    """The registered signatures, of every account or of ACCOUNT. Exit 1 if there are none.

    \b
    Example:
        smppguard signature list acme-mkt --json
    """
    exit_if_empty(emit(signatures.listed(ctx.db, account),
                       ("account", "signature", "source_addr", "id", "added_at", "actor"), fmt, times=("added_at",),
                       empty="no signature registered" + (f" for account {account}" if account else "")))


@signature.command("remove")
@store_options
@click.argument("account")
@click.argument("signature_text", metavar="SIGNATURE")
@click.option("--source-addr", default="", help="The source address it was registered for (default: any).")
def signature_remove(ctx: Ctx, account, signature_text, source_addr) -> None:
    """Remove SIGNATURE from ACCOUNT's registered signatures. Exit 1 if it was not registered.

    \b
    Example:
        smppguard signature remove acme-mkt ACME
    """
    if not signatures.remove(ctx.db, account, signature_text, source_addr=source_addr):
        fail(f"{signature_text} is not registered for account {account}"
             + (f" from {source_addr}" if source_addr else ""), hint=f"smppguard signature list {account}")
    click.echo(f"removed {signature_text} from account {account}")


@click.group(context_settings=CONTEXT)
def account() -> None:
    """Accounts whose sending pattern tripped the review ([review]): list them, see why, release them.

    With [review] action = "hold" a tripped account's marketing is held (the hold queue keeps it, the sender
    gets OK) until you release it here; with "alert" it is only reported.

    \b
    Example:
        smppguard account list
        smppguard account show acme-mkt
        smppguard account release acme-mkt
    """


@account.command("list")
@store_options
@output_options
def account_list(ctx: Ctx, fmt) -> None:
    """Accounts the review has flagged, newest first, with their state and held messages. Exit 1 if none.

    \b
    Example:
        smppguard account list --json
    """
    rows = review.states(ctx.db)
    exit_if_empty(emit(rows, ("account", "state", "since", "held", "reason"), fmt, times=("since",),
                       empty="no account has tripped the review"))


@account.command("show")
@store_options
@click.argument("name", metavar="ACCOUNT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def account_show(ctx: Ctx, name, as_json) -> None:
    """ACCOUNT's review: its state, why, and the figures that tripped it. Exit 1 if it was never flagged.

    \b
    Example:
        smppguard account show acme-mkt
    """
    rows = review.states(ctx.db, name)
    if not rows:
        fail(f"account {name} has not tripped the review", code=1)
    r = rows[0]
    if as_json:
        click.echo(to_json({**r, "since": when(r["since"]), "released_at": when(r["released_at"])}))
        return
    click.echo(f"account      {r['account']}\nstate        {r['state']}\nsince        {when(r['since'])}\n"
               f"reason       {r['reason']}\nheld         {r['held']} message{'s' * (r['held'] != 1)}")
    if r["released_at"]:
        click.echo(f"released     {when(r['released_at'])} by {r['released_by']}")
    for key, value in r["figures"].items():
        click.echo(f"  {key:24} {value}")


@account.command("release")
@store_options
@click.argument("name", metavar="ACCOUNT")
def account_release(ctx: Ctx, name) -> None:
    """Lift ACCOUNT's review: its marketing goes through again, and the messages held meanwhile are sent now
    (screened again: quiet hours and the other rules still apply). Audited with your OS user. Exit 1 if the
    account is not under review.

    \b
    Example:
        smppguard account release acme-mkt
    """
    due = review.release(ctx.db, name, now=time.time())
    if due < 0:
        fail(f"account {name} is not under review", hint="smppguard account list")
    click.echo(f"released account {name}; {due} held message{'s' * (due != 1)} due now")
