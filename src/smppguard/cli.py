"""The smppguard command line: a thin skin over the library (sqlite-utils' habit).

Every command has a one-line summary and an Example block; exit codes: 0 done, 1 nothing found or a runtime
failure (for example a config error), 2 usage or input error (click's own).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import click

from . import __version__
from .config import ConfigError, SimulatorConfig, address as parse_address, load_config

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _load(path):
    try:
        return load_config(path)
    except ConfigError as e:
        raise click.ClickException(f"bad config: {e}") from None


config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False),
    help="TOML config file (default: $SMPPGUARD_CONFIG, then /etc/smppguard/smppguard.toml, then built-in "
         "defaults).")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="smppguard")
def main() -> None:
    """smppguard: an SMPP compliance proxy between legacy SMS senders and the carrier's SMSC."""


@main.command()
@config_option
@click.option("--listen", help="Override [listen] address, e.g. 0.0.0.0:2775.")
@click.option("--upstream", help='Override [upstream] address: "host:port" or "simulator".')
def run(config_path, listen, upstream) -> None:
    """Run the proxy until SIGTERM or Ctrl-C.

    With no config file it listens on 127.0.0.1:2775 and forwards to the built-in SMSC simulator.

    \b
    Example:
        smppguard run
        smppguard run --config /etc/smppguard/smppguard.toml
    """
    import dataclasses

    from .app import run as run_app
    from .config import upstream_address

    cfg = _load(config_path)
    try:
        if listen:
            cfg = dataclasses.replace(cfg, listen=dataclasses.replace(cfg.listen, address=parse_address(listen)))
        if upstream:
            cfg = dataclasses.replace(cfg, upstream=dataclasses.replace(cfg.upstream,
                                                                        address=upstream_address(upstream)))
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    run_app(cfg)


@main.command("check-config")
@config_option
def check_config(config_path) -> None:
    """Check a config file and print the settings in force.

    \b
    Example:
        smppguard check-config --config config/smppguard.toml
    """
    cfg = _load(config_path)
    click.echo(f"{cfg.source}: ok")
    from .config import TABLES
    import dataclasses
    for table in TABLES:
        section = getattr(cfg, table)
        for f in dataclasses.fields(section):
            click.echo(f"{table}.{f.name} = {getattr(section, f.name)!r}")


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
    from .app import configure_logging, run_simulator

    cfg = _load(config_path)
    try:
        host, port = parse_address(listen)
        ctrl = cfg.simulator.control if control is None else (parse_address(control) if control else None)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    configure_logging(cfg.log.level)
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
    req = urllib.request.Request(f"http://{host}:{port}/mo", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            result = json.loads(resp.read())
    except (urllib.error.URLError, OSError) as e:
        raise click.ClickException(f"cannot reach the simulator's control interface at {host}:{port}: {e}")
    click.echo("delivered" if result.get("delivered") else "queued until a receiver binds")


@main.command()
@click.option("--messages", "-n", default=100_000, show_default=True, help="submit_sm to send per pass.")
@click.option("--binds", "-b", default=4, show_default=True, help="Concurrent transmitter binds.")
@click.option("--window", "-w", default=10, show_default=True, help="Outstanding requests per bind.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench(messages, binds, window, as_json) -> None:
    """Measure the proxy: the same load straight to a sink SMSC and through the proxy.

    Prints both rates, their ratio, the latency the proxy adds (p50, p99) and the proxy's CPU time per
    submit_sm and its response. The sink and the proxy run as separate processes.

    \b
    Example:
        smppguard bench -n 200000 -b 4 -w 10
    """
    from .bench import run_bench

    result = run_bench(messages=messages, binds=binds, window=window)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        from .bench import format_result
        click.echo(format_result(result))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
