"""The observable status, the two platform facts, and the machine's phases.

A phase is finer than the status the SDK reports: two phases can show the same status (for
example `reconnect_wait` and `idle` are both "disconnected"). The status of a phase is fixed by
`STATUS_OF_PHASE`, so a listener is told about a change exactly when the phase moves to a
phase with another status (D11).
"""

from __future__ import annotations

import enum


class ConnectionStatus(enum.StrEnum):
    """The SDK's connection status (what `get_connection_status()` returns, D11).

    A `StrEnum`: each member *is* the SDK's own string (`CometChat.getConnectionStatus()` in the
    JS SDK), so `status == "connected"`, `str(status)`, f-strings and `json.dumps` all give that
    string, as traces and the driver protocol (specs/driver-protocol.md) write it. Which phase
    shows which status is `STATUS_OF_PHASE`.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FEATURE_THROTTLED = "featureThrottled"


class AppState(enum.StrEnum):
    """Whether the app is in the foreground or the background, as the platform last said
    (`enter_background()` / `enter_foreground()`); it decides the mode's rules (A1, A2, M2, M5).
    A `StrEnum`: the member equals the word traces use ("foreground", "background")."""

    FOREGROUND = "foreground"
    BACKGROUND = "background"


class Network(enum.StrEnum):
    """Whether the platform reports the network up (`network_restored()`) or down
    (`network_lost()`); offline, the client opens no socket and waits (D6, D6a). A `StrEnum`: the
    member equals the word traces use ("online", "offline")."""

    ONLINE = "online"
    OFFLINE = "offline"


class Phase(enum.Enum):
    """Where the client is in its lifecycle: the states of the `transitions` machine
    (core/lifecycle.py), finer than `ConnectionStatus` (`STATUS_OF_PHASE`).

    A plain `Enum`, not a `StrEnum`: the machine keys its states by the member's *name*
    ("CONNECTED"), and as a string `Phase.CONNECTED` would equal `ConnectionStatus.CONNECTED`
    (both "connected") although they are different things. `str(phase)` is its value.
    """

    LOGGED_OUT = "logged_out"  # no user
    LOGGING_IN = "logging_in"  # credentials sent, answer pending (D10)
    IDLE = "idle"  # logged in, no connection wanted (M1, M5, D1)
    OFFLINE = "offline"  # connection wanted, network known offline (D6, D6a)
    CONNECTING = "connecting"  # one attempt in flight: socket opening or auth pending (D4, D5)
    RECONNECT_WAIT = "reconnect_wait"  # lost unintentionally, first retry pending (D6b)
    RETRY_WAIT = "retry_wait"  # an attempt failed, next retry pending (D6b)
    CONNECTED = "connected"  # the server accepted the authentication (D5)
    THROTTLED = "throttled"  # connected, the server throttles features (D12)

    def __str__(self) -> str:
        return self.value


STATUS_OF_PHASE: dict[Phase, ConnectionStatus] = {
    Phase.LOGGED_OUT: ConnectionStatus.DISCONNECTED,
    Phase.LOGGING_IN: ConnectionStatus.DISCONNECTED,
    Phase.IDLE: ConnectionStatus.DISCONNECTED,
    Phase.OFFLINE: ConnectionStatus.DISCONNECTED,
    Phase.CONNECTING: ConnectionStatus.CONNECTING,
    Phase.RECONNECT_WAIT: ConnectionStatus.DISCONNECTED,
    Phase.RETRY_WAIT: ConnectionStatus.CONNECTING,
    Phase.CONNECTED: ConnectionStatus.CONNECTED,
    Phase.THROTTLED: ConnectionStatus.FEATURE_THROTTLED,
}

#: The listener method told about a change to each status (D11).
NOTIFICATION_OF_STATUS: dict[ConnectionStatus, str] = {
    ConnectionStatus.CONNECTING: "on_connecting",
    ConnectionStatus.CONNECTED: "on_connected",
    ConnectionStatus.DISCONNECTED: "on_disconnected",
    ConnectionStatus.FEATURE_THROTTLED: "on_feature_throttled",
}
#: The status string a status notification announces (for traces).
STATUS_OF_NOTIFICATION: dict[str, str] = {
    name: status.value for status, name in NOTIFICATION_OF_STATUS.items()}
ON_CONNECTION_ERROR = "on_connection_error"
ON_CONNECTED = NOTIFICATION_OF_STATUS[ConnectionStatus.CONNECTED]
NOTIFICATION_NAMES = (*NOTIFICATION_OF_STATUS.values(), ON_CONNECTION_ERROR)

LOGGED_IN = frozenset(Phase) - {Phase.LOGGED_OUT, Phase.LOGGING_IN}
#: Phases in which the client wants a connection (all but idle among the logged-in ones).
WANTS_CONNECTION = LOGGED_IN - {Phase.IDLE}
#: Phases with a socket open or being opened (at most one socket: D4).
HAS_SOCKET = frozenset({Phase.CONNECTING, Phase.CONNECTED, Phase.THROTTLED})
#: Phases with an authenticated socket.
LIVE = frozenset({Phase.CONNECTED, Phase.THROTTLED})
