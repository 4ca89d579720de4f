"""The smppguard command line: a thin skin over the library (sqlite-utils' habit).

Every command has a one-line summary and an Example block. Exit codes: 0 done; 1 nothing found, or a failure
such as an unreadable store; 2 usage or input error (a bad number, a bad CSV row, a bad config file).
"""

from __future__ import annotations

import json
import sys

import click

from .. import __version__
from ..config import SimulatorConfig
from ..values import address as parse_address
from .common import CONTEXT, config_option, fail
from .common import load as _load
from .identity import account, signature
from .lists import blacklist, consent, dead, optout, tz
from .queue import queue
from .reports import audit, report, stats
from .sync import sync


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="smppguard")
def main() -> None:
    """smppguard: an SMPP compliance proxy between legacy SMS senders and the carrier's SMSC.

    \b
    Example:
        smppguard run --config /etc/smppguard/smppguard.toml
        smppguard blacklist add 13800138000 --config /etc/smppguard/smppguard.toml
    """


@main.command()
@config_option
@click.option("--listen", help="Override [listen] address, e.g. 0.0.0.0:2775.")
@click.option("--upstream", help='Override [upstream] address: "host:port" or "simulator".')
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Override [log] level.")
def run(config_path, listen, upstream, log_level) -> None:
    """Run the proxy until SIGTERM or Ctrl-C.

    With no config file it listens on 127.0.0.1:2775 and forwards to the built-in SMSC simulator.

    \b
    Example:
        smppguard run
        smppguard run --config /etc/smppguard/smppguard.toml
    """
    import dataclasses

    from ..app import run as run_app
    from ..values import upstream_address

    cfg = _load(config_path)
    try:
        if listen:
            cfg = dataclasses.replace(cfg, listen=dataclasses.replace(cfg.listen, address=parse_address(listen)))
        if upstream:
            cfg = dataclasses.replace(cfg, upstream=dataclasses.replace(cfg.upstream,
                                                                        address=upstream_address(upstream)))
        if log_level:
            cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, level=log_level))
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    from ..app import StartupError, StoppedError
    try:
        run_app(cfg)
    except (StartupError, StoppedError) as e:
        raise click.ClickException(str(e)) from None


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")
def status(config_path, as_json) -> None:
    """Show the running daemon's binds, windows, store writer, hold queue and sidecars (from [metrics] address).

    Exit 1 when the daemon cannot be reached, 3 when it answers but is unhealthy.

    \b
    Example:
        smppguard status --config /etc/smppguard/smppguard.toml
    """
    cfg = _load(config_path)
    if cfg.metrics.address is None:
        fail("[metrics] address is off in this config: the daemon serves no status", "set [metrics] address")
    host, port = cfg.metrics.address
    url = f"http://{host}:{port}/status"
    import urllib.error  # here: `smppguard run` need not load the HTTP client
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as e:
        fail(f"no daemon answers at {url}: {getattr(e, 'reason', e)}", "is `smppguard run` running with this config?")
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"{'healthy' if data['healthy'] else 'UNHEALTHY'}, up {_age(data['uptime_s'])}")
        for problem in data["problems"]:
            click.echo(f"  problem: {problem}")
        binds = data["binds"]
        click.echo(f"binds: {len(binds)}")
        for b in binds:
            click.echo(f"  {b['account'] or '-':<16} {b['peer']:<22} {b['state']:<10} upstream {b['upstream']:<10} "
                       f"window {b['window_used']}/{b['window_size']}")
        w = data.get("writer")
        if w:
            click.echo(f"store writer: {w['unsaved']} unsaved (oldest {w['unsaved_age_s']:.2f} s), "
                       f"{'BEHIND' if w['behind'] else 'keeping up'}, {w['commits']} commits, {w['failures']} failed")
        h = data.get("hold")
        if h:
            click.echo(f"hold queue: {h['held']} held (oldest {_age(h['oldest_age_s'])}), {h['released']} released, "
                       f"{h['dropped']} dropped, {h['expired']} expired; {h['owed']} deliveries owed to senders")
        for warning in data.get("warnings", []):
            click.echo(f"  warning: {warning}")
        sync = data.get("sync")
        if sync:
            delay = (f"delay p50 {sync['delay_p50_s'] * 1000:.0f} ms, p99 {sync['delay_p99_s'] * 1000:.0f} ms"
                     if sync["delay_p50_s"] is not None else "no delay measured yet")
            click.echo(f"sync: node {sync['node']}, broker {sync['broker']} "
                       f"{'connected' if sync['connected'] else 'NOT CONNECTED'}; {sync['published']} changes "
                       f"published, {sync['unpublished']} waiting; {delay}")
            for n in sync["nodes"]:
                heard = f"{_age(n['last_received_s'])} ago" if n["last_received_s"] is not None else "never"
                click.echo(f"  node {n['node']:<16} changes held {n['changes_held']} of {n['changes_told']} "
                           f"(lag {n['lag_changes']}), last heard from {heard}")
    if not data["healthy"]:
        sys.exit(3)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@main.command("check-config")
@config_option
def check_config(config_path) -> None:
    """Check a config file, and that its store can be written; print every setting in force as TOML.

    The output is a valid config (defaults and presets filled in) that can be copied back. Every error in the
    file is reported, each with its line. Exit 0 when valid, 2 when the file is not, 1 when the store cannot be
    written.

    \b
    Example:
        smppguard check-config --config config/smppguard.toml
    """
    from ..config import ConfigError, load_config
    from ..config_toml import to_toml

    try:
        cfg = load_config(config_path, all_errors=True)
    except ConfigError as e:
        fail(f"bad config:\n{e}", code=2)
    click.echo(to_toml(cfg), nl=False)
    problem = _store_writable(cfg.store.path)
    if problem:
        fail(problem)
    click.echo(f"{cfg.source}: ok", err=True)


def _store_writable(path: str) -> str | None:
    """Why the store at `path` cannot be written, or None. An existing store is opened and write-locked for a
    moment; a new one's folder must exist and be writable (the service's state directory is made at start)."""
    import os
    from pathlib import Path

    from ..store.db import STATE_DIRECTORY, StoreError, connect

    p = Path(path)
    if p.exists():
        try:
            db = connect(p, create=False)
        except StoreError as e:
            return str(e)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        except Exception as e:
            return f"store {p} cannot be written: {e} ([store] path)"
        finally:
            db.close()
        return None
    folder = p.parent.absolute()
    if folder == Path(STATE_DIRECTORY) and not folder.exists():
        return None
    if not folder.is_dir():
        return f"the store's folder {folder} does not exist ([store] path)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the store's folder {folder} is not writable by this user ([store] path)"
    return None


@main.group(invoke_without_command=True, context_settings=CONTEXT)
@config_option
@click.option("--listen", default="127.0.0.1:2776", show_default=True, help="Where the simulated SMSC listens.")
@click.option("--control", default=None, help='HTTP control address (default [simulator] control; "" = off).')
@click.option("--sink", is_flag=True, help="Answer submit_sm with no parsing or recording (benchmark sink).")
@click.pass_context
def simulate(ctx, config_path, listen, control, sink) -> None:
    """Run the built-in SMSC simulator, or talk to a running one.

    It accepts binds (any credentials unless [simulator] accounts lists them), answers submits with
    message ids, sends delivery receipts when asked, and injects MO messages on request.

    \b
    Example:
        smppguard simulate --listen 127.0.0.1:2776
        smppguard simulate mo --from +8613800138000 --to 10690000 --text T
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"config_path": config_path, "control": control}
        return
    from ..app import configure_logging, run_simulator

    cfg = _load(config_path)
    try:
        host, port = parse_address(listen)
        ctrl = cfg.simulator.control if control is None else (parse_address(control) if control else None)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    configure_logging(cfg.log.level, cfg.log.format)
    run_simulator(cfg, host, port, ctrl, sink)


@simulate.command("mo")
@click.option("--from", "source", required=True, help="The subscriber's number (source_addr).")
@click.option("--to", "destination", required=True, help="The short code or sender id (destination_addr).")
@click.option("--text", required=True, help="The message text, e.g. T, TD, STOP, 退订.")
@click.option("--system-id", help="Deliver only to receivers bound with this system_id.")
@click.pass_obj
def simulate_mo(obj, source, destination, text, system_id) -> None:
    """Inject a mobile-originated message (deliver_sm) into a running simulator.

    \b
    Example:
        smppguard simulate mo --from +8613800138000 --to 10690000 --text 退订
    """
    cfg = _load(obj["config_path"])
    ctrl = obj["control"]
    host, port = parse_address(ctrl) if ctrl else (cfg.simulator.control or SimulatorConfig().control)
    payload = {"from": source, "to": destination, "text": text}
    if system_id:
        payload["system_id"] = system_id
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://{host}:{port}/mo", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            result = json.loads(resp.read())
    except urllib.error.HTTPError as e:  # the simulator said why (its MO queue is full: 503)
        raise click.ClickException(f"the simulator refused it: {json.loads(e.read() or b'{}').get('error', e)}") \
            from None
    except (urllib.error.URLError, OSError) as e:
        raise click.ClickException(
            f"cannot reach the simulator's control interface at {host}:{port}: {e}") from None
    click.echo("delivered" if result.get("delivered") else "queued until a receiver binds")


def _parse_at(value: str | None) -> float:
    import time as _time
    from datetime import datetime

    if not value or value == "now":
        return _time.time()
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO time such as 2026-11-28T23:00+08:00, got {value!r}",
                                 param_hint="--at") from None
    if dt.tzinfo is None:
        raise click.BadParameter("give the UTC offset, e.g. 2026-11-28T23:00+08:00 or ...Z", param_hint="--at")
    return dt.timestamp()


#: What `check` says of a rule that applies but had no number to judge (the address is not a valid number).
NOT_JUDGED = "no valid number to judge"


@main.command()
@config_option
@click.argument("number")
@click.option("--sender", "-s", default="", help="source_addr the message would carry.")
@click.option("--account", "-a", default="", help="system_id the sender binds with.")
@click.option("--text", "-t", default=None, help="Message text (traffic class and content rules read it).")
@click.option("--service-type", default="", help="service_type the message would carry.")
@click.option("--ton", type=int, default=0, show_default=True, help="dest_addr_ton (1 international, 2 national).")
@click.option("--at", "at", default=None, help="Judge at this time (ISO 8601 with offset); default now.")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Store file (default: [store] path).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def check(config_path, number, sender, account, text, service_type, ton, at, db_path, as_json) -> None:
    """Show the verdict for a message to NUMBER, and every rule's reasoning.

    Uses the same config, store and decision code as the running proxy (messages in flight in a running
    proxy are not visible here). Exit 0 when it would be allowed, 3 refused, 4 held or scheduled (quiet
    hours), 2 for a bad option.

    \b
    Example:
        smppguard check 13800138000 --sender ACME --account acme --text "Sale!" --at 2026-11-28T21:00+08:00
    """
    from ..policy import decide, explain, make_submission
    from ..policy.credit import score
    from ..policy.numbers import candidate_zones, e164, region_of
    from ..store.credit import parts_of
    from ..store.db import StoreError, connect
    from ..store.index import load_index
    from ..store.lists import apply_due_removals

    cfg = _load(config_path)
    now = _parse_at(at)
    try:
        db = connect(db_path or cfg.store.path, audit=(cfg.audit.recipient, cfg.audit.salt))
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    sub = make_submission(cfg.policy, number, ton, sender, account, service_type, text)
    try:
        apply_due_removals(db)  # as every list command does: the daemon would have applied them too
        index = load_index(db, cfg.policy, now, failures_within_s=cfg.inbound.suspended_within)
        parts = parts_of(db, [sub.recipient], now, cfg.inbound.suspended_within)[sub.recipient] \
            if sub.recipient is not None else None
    finally:
        db.close()
    credit = score(parts, cfg.policy.credit_weights) if parts is not None else None
    verdict = decide(sub, index, now, cfg.policy)
    rows = explain(sub, index, now, cfg.policy)
    if sub.recipient is None:  # the rules after `invalid` have nothing to judge: not "pass"
        rows = [(name, NOT_JUDGED if how == "applies" and name != verdict.rule else how, v)
                for name, how, v in rows]
    zones = candidate_zones(sub.recipient, index.tz.get(sub.recipient), cfg.policy.fallback_zone) \
        if sub.recipient is not None else ()
    if as_json:
        click.echo(json.dumps({
            "recipient": e164(sub.recipient) if sub.recipient is not None else None,
            "class": sub.traffic_class, "zones": list(zones),
            "credit": {"score": credit[0], "parts": [{"part": p, "count": c, "points": pts}
                                                     for p, c, pts in credit[1]]} if credit else None,
            "verdict": {"action": verdict.action.value, "rule": verdict.rule, "status": int(verdict.status),
                        "status_hex": f"0x{int(verdict.status):02X}", "reason": verdict.reason,
                        "until": verdict.until},
            "rules": [{"rule": name, "applies": how == "applies", "note": how,
                       "result": (v.action.value if v else "pass") if how == "applies" else "skipped",
                       "reason": v.reason if v else ""} for name, how, v in rows],
        }, ensure_ascii=False, indent=2))
        sys.exit(CHECK_EXIT[verdict.action.value])
    if sub.recipient is None:
        click.echo(f"recipient  {number!r}: not a valid number")
    else:
        more = f" (+{len(zones) - 3} more)" if len(zones) > 3 else ""
        click.echo(f"recipient  {e164(sub.recipient)}  region {region_of(sub.recipient) or '?'}  "
                   f"zones {', '.join(zones[:3])}{more}")
    click.echo(f"class      {sub.traffic_class}")
    if credit is not None:
        shown = ", ".join(f"{p} {c}: {pts:+d}" for p, c, pts in credit[1]) or "nothing on record"
        click.echo(f"credit     {credit[0]}  ({shown})")
    # what the sender is answered, as `audit` and the log say: a held message OK (the hold queue keeps it), a
    # scheduled one is forwarded; the rule's status is for a proxy with no hold queue (--json has it)
    answered = 0 if verdict.action.value in ("hold", "schedule") else int(verdict.status)
    status = f" (status 0x{answered:02X})" if verdict.status else ""
    decided = f" by {verdict.rule}: {verdict.reason}" if verdict.rule else ""
    click.echo(f"verdict    {verdict.action.value.upper()}{decided}{status}")
    click.echo("")
    width = max(len(r[0]) for r in rows)
    for name, how, v in rows:
        if how != "applies":
            result = f"skipped ({how})"
        elif v is None:
            result = "pass"
        else:
            result = f"{v.action.value}: {v.reason}"
        click.echo(f"  {name:<{width}}  {result}")
    sys.exit(CHECK_EXIT[verdict.action.value])


#: `smppguard check`'s exit status by verdict.
CHECK_EXIT = {"allow": 0, "reject": 3, "hold": 4, "schedule": 4}


@main.command()
@click.option("--messages", "-n", default=100_000, show_default=True, help="submit_sm to send per pass.")
@click.option("--binds", "-b", default=4, show_default=True, help="Concurrent transmitter binds.")
@click.option("--window", "-w", default=10, show_default=True, help="Outstanding requests per bind.")
@click.option("--policy", type=click.Choice(["full", "off", "compare"]), default="full", show_default=True,
              help="full: the shipped rules, a new recipient per message; off: every rule disabled; compare: "
                   "off and full, in alternating rounds, and what the rules cost.")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="With --policy compare: a rules-off and a rules-on pass, back to back, this many times; the "
                   "ratio is the median of the rounds'.")
@click.option("--lists", type=int, default=0, show_default=True,
              help="Pre-load this many blacklist entries and as many opt-outs into the proxy's store.")
@click.option("--history", type=int, default=0, show_default=True,
              help="Pre-load this many accepted sends of the last 30 days, to a third as many recipients, into the "
                   "proxy's store (a month of a real sender's history).")
@click.option("--optouts", type=int, default=None,
              help="With --lists: this many opt-outs instead of as many as blacklist entries.")
@click.option("--history-recipients", type=int, default=0,
              help="With --history: the distinct recipients of those sends (default a third as many as sends).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--soak", type=int, metavar="REFUSALS",
              help="Instead: a sender that resends to --recipients numbers past the frequency cap until this many "
                   "are refused; prints the store's growth and checks the audit log's counts.")
@click.option("--recipients", type=int, default=50_000, show_default=True, help="With --soak: how many recipients.")
@click.option("--deliver", type=int, metavar="MESSAGES",
              help="Instead: this many deliver_sm (replies and receipts) from the SMSC to a receiver through the "
                   "proxy, with the deliver path's learning off and on.")
@click.option("--hold", type=int, metavar="MESSAGES",
              help="Instead: hold this many messages (quiet hours), release them all at once, and send live "
                   "traffic beside the release; prints the store's size, memory, release rate and live latency.")
@click.option("--release-rate", type=float, default=1000.0, show_default=True, help="With --hold: [hold] release_rate.")
@click.option("--sync", "sync_ab", is_flag=True,
              help="Instead: the full rules with [mqtt] off and on (a Mosquitto started for the run and a second "
                   "node receiving every send), in alternating rounds (--rounds); prints both rates, their ratio, "
                   "the CPU per message and the propagation delay.")
@click.option("--prune", type=int, metavar="SENDS",
              help="Instead: a send history of this many rows, the oldest --prune-hours past [store] retention, and "
                   "-n submit_sm before, during and after the daemon's retention delete.")
@click.option("--prune-hours", type=float, default=1.0, show_default=True,
              help="With --prune: the hours of sends the delete removes (1: the hourly delete of a running store).")
@click.option("--against", metavar="REV",
              help="Instead: build git revision REV in a scratch virtualenv (kept, by commit hash, under "
                   "~/.cache/smppguard) and run the same scenario on its daemon and on this one, in alternating "
                   "rounds (--rounds): -n submit_sm on an empty store, or with --lists M, M numbers imported from "
                   "a two-column CSV, -n sends to new recipients and a restart; prints each round and the ratios.")
def bench(messages, binds, window, policy, rounds, lists, optouts, history, history_recipients, as_json, soak,
          recipients, deliver, hold, release_rate, sync_ab, prune, prune_hours, against) -> None:
    """Measure the proxy: the same load straight to a sink SMSC and through the proxy.

    Prints both rates, their ratio, the latency the proxy adds (p50, p99) and the proxy's CPU time per
    submit_sm and its response. The sink and the proxy run as separate processes. `--policy compare` runs the
    relay with every rule off and with every rule on, side by side, and passes through each in turn (`--rounds`
    times, back to back), and prints the median ratio of the two rates. `--soak` measures
    what a storm of refusals costs the store instead.

    \b
    Example:
        smppguard bench -n 200000 -b 4 -w 10
        smppguard bench -n 200000 --policy compare --lists 1000000
        smppguard bench -n 1000000 --policy compare --lists 20000000 --optouts 5000000 \\
            --history 30000000 --history-recipients 10000000
        smppguard bench --soak 2500000 --recipients 50000
        smppguard bench --deliver 60000
        smppguard bench --hold 100000
        smppguard bench --prune 30000000 -n 50000
        smppguard bench --sync -n 100000 --rounds 3
        smppguard bench --against 16be1fa -n 200000 --rounds 3
        smppguard bench --against 16be1fa --lists 1000000 -n 500000 --rounds 2
    """
    from ..bench.proxy import run_command

    if against is not None:
        from ..bench import against as bench_against

        sys.exit(bench_against.run_command(against, messages, binds, window, lists, rounds, as_json))
    if sync_ab:
        from ..bench import sync

        sys.exit(sync.run_command(messages, binds, window, rounds, as_json))
    if prune is not None:
        from ..bench import prune as bench_prune

        sys.exit(bench_prune.run_command(prune, prune_hours, messages, as_json))
    if hold is not None:
        from ..bench import hold as bench_hold

        sys.exit(bench_hold.run_command(hold, 20_000, release_rate, as_json))
    if deliver is not None:
        from ..bench import deliver as bench_deliver

        sys.exit(bench_deliver.run_command(deliver, window, as_json))
    sys.exit(run_command(messages, binds, window, policy, lists, as_json, soak, recipients, history,
                         optouts=optouts, history_recipients=history_recipients, rounds=rounds))


for command in (blacklist, optout, consent, tz, dead, signature, account, queue, audit, stats, report, sync):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
