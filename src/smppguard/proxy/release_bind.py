"""A transmitter bind the proxy opens itself, with `[hold] accounts` credentials, to release the held messages of
an account none of whose senders is bound (a legacy sender that connects only while it runs a campaign).

It offers the hold queue what a sender's bridge does (`can_release`, `release_room`, `release_load`, `release`),
through the same window and `[upstream] max_tps`, and gives the SMSC's answers to the queue. Nothing else goes
through it: an SMSC request other than enquire_link and unbind is refused (a transmitter bind receives none).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Awaitable, Callable

from ..config import Config
from ..session.session import Session
from ..session.throttle import TokenBucket
from ..session.window import Outstanding
from ..smpp.commands import CommandId
from ..smpp.fields import encode_body
from ..smpp.pdu import Pdu, build
from ..smpp.state import BindState, Role
from ..smpp.status import Status

log = logging.getLogger("smppguard.hold")


class ReleaseBind:
    def __init__(self, config: Config, account: str, password: str, settled: Callable[[Any, Pdu], None],
                 unanswered: Callable[[Any, bool], None]):
        self.account = account
        self.password = password
        self._settled, self._unanswered = settled, unanswered
        up = config.upstream
        self.session = Session(Role.ESME, self, window=up.window, response_timeout=config.session.response_timeout,
                               enquire_link_interval=config.session.enquire_link_interval, name="release")
        self.session.system_id = account
        self._bind_timeout = up.bind_timeout
        self._connect_timeout = up.connect_timeout
        self._bucket = TokenBucket(up.max_tps, 0.0) if up.max_tps > 0 else None
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    async def open(self, connect: Callable[[Session], Awaitable[Any]]) -> bool:
        """Connect and bind as a transmitter; False (logged) when the SMSC cannot be reached or refuses."""
        try:
            await asyncio.wait_for(connect(self.session), self._connect_timeout)
            bind = build(CommandId.BIND_TRANSMITTER, 0, encode_body(
                CommandId.BIND_TRANSMITTER, system_id=self.account, password=self.password, interface_version=0x34))
            resp = await self.session.request(bind, timeout=self._bind_timeout)
        except (OSError, asyncio.TimeoutError, TimeoutError, ConnectionError) as e:
            log.warning("hold queue: cannot open a bind of %s to release its held messages: %s", self.account,
                        str(e) or "timed out")
            self.session.close()
            return False
        if resp.status != Status.ROK:
            log.warning("hold queue: the SMSC refused the release bind of %s with 0x%02X ([hold] accounts)",
                        self.account, resp.status)
            self.session.close()
            return False
        self.session.state = BindState.BOUND_TX
        log.info("hold queue: bound %s as a transmitter to release its held messages", self.account)
        return True

    async def close(self, grace: float = 5.0) -> None:
        s = self.session
        if s.is_open and s.state is BindState.BOUND_TX:
            try:
                await s.request(build(CommandId.UNBIND, 0), timeout=grace)
            except (TimeoutError, ConnectionError):
                pass
        s.close()

    # --- what the hold queue uses ----------------------------------------------------------------------------

    def can_release(self) -> bool:
        return self.session.is_open and self.session.state is BindState.BOUND_TX

    def release_room(self) -> int:
        window = self.session.window
        return max(0, window.size - len(window) - len(self._queue))

    def release_load(self) -> int:
        return len(self.session.window) + len(self._queue)

    def release(self, raw: bytes, context: Any) -> None:
        self._queue.append((raw, context))
        self._drain()

    def _drain(self) -> None:
        self._timer = None
        s = self.session
        while self._queue and s.is_open and not s.window.full:
            if self._bucket is not None:
                wait = self._bucket.take(asyncio.get_running_loop().time())
                if wait > 0:
                    self._timer = asyncio.get_running_loop().call_later(wait, self._drain)
                    return
            raw, context = self._queue.popleft()
            s.send_request(raw, None, 0, context)

    # --- SessionHandler ---------------------------------------------------------------------------------------

    def request_received(self, session: Session, pdu: Pdu) -> None:
        if pdu.command_id == CommandId.UNBIND:
            session.respond(pdu)
            session.close()
        else:
            session.respond(pdu, Status.RINVCMDID)

    def response_received(self, session: Session, pdu: Pdu, entry: Outstanding) -> None:
        if entry.context is not None:
            self._settled(entry.context, pdu)

    def request_failed(self, session: Session, entry: Outstanding, reason: str) -> None:
        if entry.context is not None:
            self._unanswered(entry.context, True)

    def window_opened(self, session: Session) -> None:
        if self._timer is None:
            self._drain()

    def writing_paused(self, session: Session, paused: bool) -> None:
        pass

    def connection_lost(self, session: Session, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            _raw, context = self._queue.popleft()
            self._unanswered(context, False)
