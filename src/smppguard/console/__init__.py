"""The operator's console (/console/, server-rendered HTML) and the JSON API (/api/v1/), served by the daemon on
[metrics] address beside /metrics and /healthz.

`Console` is the handler `metrics.MetricsServer` hands every /console and /api request to: the head parsed and
the body read here (http.py, no I/O of its own), who is asking and how often (auth.py), then the route's
handler: the API's (api.py) or a page's (pages.py).

Rule 1: the store is read on a thread, with a connection of its own, never on the daemon's loop; the live
verdict is the only thing computed on the loop, from the Index the proxy screens with (microseconds, no I/O).
Rule 2: writes are the CLI's functions (store/lists.py, store/holds.py) on a connection of their own in a thread,
with the token's name as the actor; a running daemon applies them within a second.
Rule 3: the console and the API are on only where someone can be told apart: on a loopback listener, or with
[http] tokens (`off_reason`).
"""

from .server import Console, off_reason

__all__ = ["Console", "off_reason"]
