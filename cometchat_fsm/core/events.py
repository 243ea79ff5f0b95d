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
    """The app calls login(uid): credentials go to the server (L1); one login at a time (D10)."""

    uid: str


@dataclass(frozen=True, slots=True)
class LoginVerified:
    """The server accepted the credentials of the login in flight."""


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """The server refused the login in flight; `error` is its CometChatException (D16)."""

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
    """The app calls logout(): everything ends and the session is forgotten (D9)."""


@dataclass(frozen=True, slots=True)
class Connect:
    """The app calls connect() (M1, D4; E1, D16, P1 say when it is refused)."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The app calls disconnect(): the connection and every plan to reconnect end (D1)."""


@dataclass(frozen=True, slots=True)
class Ping:
    """The app calls ping() (M3; refused by E1, D3)."""


# Platform signals.
@dataclass(frozen=True, slots=True)
class EnterBackground:
    """The platform says the app left the foreground (A2, M2, D8)."""


@dataclass(frozen=True, slots=True)
class EnterForeground:
    """The platform says the app is in the foreground (A1, D6)."""


@dataclass(frozen=True, slots=True)
class NetworkLost:
    """The platform says the network is down (D6, D6a)."""


@dataclass(frozen=True, slots=True)
class NetworkRestored:
    """The platform says the network is back (D6a)."""


# Socket and server outcomes; each names the socket it concerns, so a late outcome of a socket
# the core already closed is recognised and ignored.
@dataclass(frozen=True, slots=True)
class AuthAccepted:
    """The server accepted the authentication on `socket`: connected (D5)."""

    socket: int


@dataclass(frozen=True, slots=True)
class AuthRejected:
    """The server rejected the authentication on `socket` (D5, D16); `error` is its error,
    ERR_AUTH_REJECTED if None."""

    socket: int
    error: CometChatException | None = None


@dataclass(frozen=True, slots=True)
class SocketClosed:
    """The socket failed to open, or closed without the client asking (server or network)."""

    socket: int
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The server answered the last keep-alive on `socket` (D7)."""

    socket: int


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """A frame of any kind (a message, a relay, a replayed batch) arrived from the server on
    `socket`. While connected with a keep-alive answer pending, it counts as that answer (D17):
    a link busy carrying data is alive. A driver feeds it for every frame it reads."""

    socket: int


@dataclass(frozen=True, slots=True)
class ThrottleStarted:
    """The server throttles the features of the live `socket` (D12)."""

    socket: int


@dataclass(frozen=True, slots=True)
class ThrottleLifted:
    """The server lifted the throttling of `socket` (D12)."""

    socket: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The driver's `timer` fired (armed earlier by a StartTimer effect)."""

    timer: Timer


Event = (
    Login | LoginVerified | LoginFailed | SessionRenewed | SessionRestored | Logout | Connect | Disconnect
    | Ping    | EnterBackground | EnterForeground | NetworkLost | NetworkRestored
    | AuthAccepted | AuthRejected | SocketClosed | PongReceived | FrameReceived | ThrottleStarted
    | ThrottleLifted | TimerFired
)
SOCKET_EVENTS = (AuthAccepted, AuthRejected, SocketClosed, PongReceived, FrameReceived, ThrottleStarted,
                 ThrottleLifted)
