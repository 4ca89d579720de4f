"""`smppguard sync`: what concerns several sidecars sharing one compliance state (README, "Several sidecars")."""

from __future__ import annotations

import os

import click

from .common import CONTEXT, Ctx, fail, store_options


@click.group("sync", context_settings=CONTEXT)
def sync() -> None:
    """Several sidecars sharing lists and sends over MQTT ([mqtt] url).

    `smppguard status` shows the other nodes and how far behind each is.

    \b
    Example:
        smppguard sync export --config /etc/smppguard/smppguard.toml /tmp/for-node-c.db
    """


@sync.command("export")
@store_options
@click.argument("file", type=click.Path(dir_okay=False))
def export(ctx: Ctx, file: str) -> None:
    """Write a copy of this node's store for a NEW node to start from.

    The new node (another [mqtt] node name, FILE as its [store] path) then holds every list and change this node
    holds, and the sends of the last month, and asks the others only for what comes after: a start in seconds
    rather than a replay of the whole change log. Its own hold queue, audit log and pending removals are not
    copied. Runs beside a live daemon. Exit 2 when FILE exists.

    \b
    Example:
        smppguard sync export --config /etc/smppguard/smppguard.toml /tmp/for-node-c.db
    """
    from ..store.peers import export_for_new_node

    node = ctx.config.mqtt.node_or_host
    if os.path.exists(file):
        fail(f"{file} exists: name a new file", code=2)
    counts = export_for_new_node(ctx.db, node, file)
    click.echo(f"wrote {file} for a new node, as of node {node}: {counts['changes']} changes, "
               f"{counts['blacklist']} blacklisted, {counts['optouts']} opt-outs, {counts['sends']} sends")
