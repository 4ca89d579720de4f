"""Several sidecars, one compliance state: list changes, sends and events shared through an MQTT broker.

`wire` says what goes over the broker (topics, JSON, checked on the way in, no I/O); `node` is this sidecar's
link (aiomqtt); the store's side (origins, conflicts, catch-up reads) is store/peers.py. Sync is an observer of
the hooks and one more writer of the change log: the bridge and the screening know nothing of it.
"""

from .node import Sync, SyncSettings

__all__ = ["Sync", "SyncSettings"]
