"""What the core asks its driver to do. The driver carries effects out in order."""

from __future__ import annotations

from dataclasses import dataclass

from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.events import Timer


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Open a socket and authenticate `user` on it; report with events naming `socket`."""

    socket: int
    user: str


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Close `socket` (the client asks: D1, D9, A2, D7); no event reports it back."""

    socket: int


@dataclass(frozen=True, slots=True)
class SendKeepAlive:
    """Send a keep-alive on `socket`; the server answers with a pong (D7)."""

    socket: int


@dataclass(frozen=True, slots=True)
class SendPing:
    """The app's own ping (M3), sent to the server."""

    socket: int


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm `timer` to fire after `delay` seconds; an armed timer of that name is replaced."""

    timer: Timer
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm `timer`; a fire already due must not reach the core."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class Notify:
    """Call listener method `name`; `error` is set for on_connection_error (D11)."""

    name: str
    error: CometChatException | None = None


@dataclass(frozen=True, slots=True)
class StoreSession:
    """Keep `user` (uid) in the session store, for init to restore (L1, L2)."""

    user: str


@dataclass(frozen=True, slots=True)
class DeleteSession:
    """Delete the stored session (D9, D16)."""


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """The connection attempt in flight ended; a driver resolves a waiting `connect()` with it."""

    error: CometChatException | None = None


Effect = (
    OpenSocket | CloseSocket | SendKeepAlive | SendPing | StartTimer | CancelTimer | Notify
    | StoreSession | DeleteSession | AttemptEnded
)
