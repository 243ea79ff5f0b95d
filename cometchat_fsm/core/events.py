"""Everything that can happen to a client, as typed values: app calls, platform signals,
server and socket outcomes, and timers firing.

The core never waits for anything: a driver (the Simulation or the trio adapter) turns the
world into these values and hands them to `ClientModel.handle`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cometchat_fsm.core.errors import CometChatException


class Timer(enum.Enum):
    """The core's timers. The driver runs them; the core only arms, cancels and hears them fire."""

    WINDOW = "window"  # manual background window (M2, M3, D2)
    RETRY = "retry"  # reconnection backoff (D6)
    KEEPALIVE = "keepalive"  # next keep-alive (D7)
    PONG = "pong"  # answer to the last keep-alive overdue (D7)
    ATTEMPT = "attempt"  # connection attempt unanswered (P2)
    STABLE = "stable"  # the connection has held long enough to reset the retry count (D14)


# App calls.
@dataclass(frozen=True, slots=True)
class Login:
    uid: str


@dataclass(frozen=True, slots=True)
class LoginVerified:
    """The server accepted the credentials of the login in flight."""


@dataclass(frozen=True, slots=True)
class LoginFailed:
    error: CometChatException


@dataclass(frozen=True, slots=True)
class SessionRenewed:
    """The server verified a login of the user already logged in and issued a fresh session
    (D16); the driver has the new credentials at hand, the core only has them stored."""


@dataclass(frozen=True, slots=True)
class SessionRestored:
    """init found a stored session (L2)."""

    uid: str


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Connect:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


@dataclass(frozen=True, slots=True)
class Ping:
    pass


# Platform signals.
@dataclass(frozen=True, slots=True)
class EnterBackground:
    pass


@dataclass(frozen=True, slots=True)
class EnterForeground:
    pass


@dataclass(frozen=True, slots=True)
class NetworkLost:
    pass


@dataclass(frozen=True, slots=True)
class NetworkRestored:
    pass


# Socket and server outcomes; each names the socket it concerns, so a late outcome of a socket
# the core already closed is recognised and ignored.
@dataclass(frozen=True, slots=True)
class AuthAccepted:
    socket: int


@dataclass(frozen=True, slots=True)
class AuthRejected:
    socket: int
    error: CometChatException | None = None


@dataclass(frozen=True, slots=True)
class SocketClosed:
    """The socket failed to open, or closed without the client asking (server or network)."""

    socket: int
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class PongReceived:
    socket: int


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """A frame of any kind (a message, a relay, a replayed batch) arrived from the server on
    `socket`. While connected with a keep-alive answer pending, it counts as that answer (D17):
    a link busy carrying data is alive. A driver feeds it for every frame it reads."""

    socket: int


@dataclass(frozen=True, slots=True)
class ThrottleStarted:
    socket: int


@dataclass(frozen=True, slots=True)
class ThrottleLifted:
    socket: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


Event = (
    Login | LoginVerified | LoginFailed | SessionRenewed | SessionRestored | Logout | Connect | Disconnect
    | Ping    | EnterBackground | EnterForeground | NetworkLost | NetworkRestored
    | AuthAccepted | AuthRejected | SocketClosed | PongReceived | FrameReceived | ThrottleStarted
    | ThrottleLifted | TimerFired
)
SOCKET_EVENTS = (AuthAccepted, AuthRejected, SocketClosed, PongReceived, FrameReceived, ThrottleStarted,
                 ThrottleLifted)
