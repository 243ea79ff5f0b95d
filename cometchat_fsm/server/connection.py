"""One connection the reference server accepted, and the server's bounds and counters.

Each connection has one writer draining an outbox; every other task (relays from other users,
operator faults) only appends to it. So a slow reader never blocks another user's handler,
frames keep their order, and a close is sent after what was queued before it.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

import trio
from trio_websocket import WebSocketConnection

from cometchat_fsm.wire import frames as wire

logger = logging.getLogger("cometchat_fsm.server.reference")

LOGIN_PATH = "/v1/login"
SOCKET_PATH = "/v1/socket"
HANDSHAKE_TIMEOUT = 10.0
FIRST_FRAME_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
#: An authenticated realtime socket from which nothing has arrived for this long is cut (D21):
#: 2 x the client's keep-alive interval + its pong timeout (D7's defaults, 15 s and 3 s), so a
#: client that vanished without a close (a dead NAT entry) is neither counted nor relayed to.
IDLE_TIMEOUT = 33.0
#: Frames queued for one connection beyond which it counts as too slow and is closed (1013).
OUTBOX_LIMIT = 1000

Kind = Literal["login", "socket"]


def _redact(secret: str) -> str:
    """What the log may show of a key or token: its first 4 characters."""
    return secret[:4] + "…"


def _reason(text: str) -> str:
    """A close reason that wsproto can always send: ASCII, at most 123 bytes."""
    return text.encode("ascii", "backslashreplace").decode("ascii")[:123]


@dataclass
class ServerStats:
    """Counters of what the server saw, for tests and the demo to assert on."""

    connections_accepted: int = 0  # handshakes accepted on either path (overloaded ones too)
    handshakes_rejected: int = 0  # HTTP 404 (unknown path) and 503 (refusing)
    logins_ok: int = 0
    logins_failed: int = 0
    auths_ok: int = 0
    auths_rejected: int = 0
    keepalives_answered: int = 0
    pings_received: int = 0
    messages_relayed: int = 0  # messages accepted, stamped and delivered (once per message)
    resends: int = 0  # sends of a (sender, muid) already stored: answered with it, not stored again (D20)
    idle_closed: int = 0  # authenticated sockets cut after IDLE_TIMEOUT with nothing received (D21)
    pauses: int = 0  # `pause` frames: a client whose inbox is full (D21)
    messages_failed: int = 0  # messages to an unknown receiver
    messages_replayed: int = 0  # messages sent again to a reconnecting client (D13)
    gaps: int = 0  # reconnects told that their replay misses messages (D13)
    fetches: int = 0  # history requests answered
    overloaded: int = 0  # sockets closed at once with 1013
    dropped: int = 0  # sockets closed by `drop` (4002)
    restarts: int = 0
    #: Connections closed for a bad frame, by close code (1007, 1008, 1009).
    frames_rejected: Counter[int] = field(default_factory=Counter)


@dataclass(eq=False)
class _Conn:
    """One accepted connection and what the operator or its reader decided about it."""

    kind: Kind
    ws: WebSocketConnection
    ws_reader: trio.CancelScope  # the scope of trio-websocket's reader task (cancelled by silence)
    uid: str | None = None  # named by the auth frame, once read
    authenticated: bool = False
    silenced: bool = False
    peer_closed: bool = False  # closed by the peer or by trio-websocket itself: no close to send
    end: tuple[int, str] | None = None  # close code and reason, sent after the queued frames
    replay_after: int | None = None  # replaying history after this id (D13); None: live traffic
    paused: bool = False  # the client's inbox is full: no message frames until it resumes (D21)
    latency: float = 0.0  # seconds its login or authentication is answered late (`latency`, D5, P2)
    outbox: deque[wire.ServerFrame] = field(default_factory=deque)
    wake: trio.Event = field(default_factory=trio.Event)
    io: trio.CancelScope = field(default_factory=trio.CancelScope)  # reader + writer
    life: trio.CancelScope = field(default_factory=trio.CancelScope)  # everything, for aborts

    @property
    def live(self) -> bool:
        """Still worth sending to: not closing, not silenced."""
        return self.end is None and not self.silenced and not self.peer_closed

    def send(self, frame: wire.ServerFrame) -> None:
        if not self.live:
            return
        if len(self.outbox) >= OUTBOX_LIMIT:
            self.outbox.clear()
            self.close(1013, "retry-after=1.0")  # too slow to keep up: let it come back later
            return
        self.outbox.append(frame)
        self.wake.set()

    def send_first(self, frame: wire.ServerFrame) -> None:
        """Queue `frame` ahead of everything queued (a keep-alive's answer, D17)."""
        if self.live:
            self.outbox.appendleft(frame)
            self.wake.set()

    def close(self, code: int, reason: str) -> None:
        """Close after the queued frames; a silenced connection is aborted (it sends nothing)."""
        if self.silenced:
            self.life.cancel()
            return
        if self.end is None:
            self.end = (code, _reason(reason))
            # A peer that does not read must not hold the close forever.
            self.io.deadline = min(self.io.deadline, trio.current_time() + CLOSE_TIMEOUT)
        self.wake.set()

    def silence(self) -> None:
        self.silenced = True
        self.ws_reader.cancel()  # stop reading: no frames, no automatic pongs
        self.io.cancel()  # stop processing and sending at once


async def _hold_nursery(*, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
    """A nursery in a task of its own, so that its tasks can be cancelled apart from the caller."""
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()
