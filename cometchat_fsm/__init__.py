"""cometchat-fsm: the CometChat WebSocket connection lifecycle as one explicit, checked state
machine (`core.lifecycle`), a virtual-time `Simulation` over it, a live trio client
(`open_client`), a reference server, and conformance checks.

The names below are the public API, by layer (the README's "API" section says what to import for
what). They are loaded on first use (PEP 562), so `import cometchat_fsm.core` or the
`Simulation` never imports trio or trio-websocket: only `Client`, `open_client` and the
reference server do. The error codes (`ERR_...`, `ERROR_CODES`) are plain strings from
`core.errors`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from cometchat_fsm.core.errors import (
    ERR_APP_IN_BACKGROUND,
    ERR_AUTH_KEY_INVALID,
    ERR_AUTH_REJECTED,
    ERR_AUTH_TOKEN_INVALID,
    ERR_BAD_COMMAND,
    ERR_BAD_SCRIPT,
    ERR_BAD_SPECS,
    ERR_BAD_TRACE,
    ERR_CHAT_API_FAILURE,
    ERR_CLIENT_CLOSED,
    ERR_CONNECT_TIMEOUT,
    ERR_FETCH_INTERRUPTED,
    ERR_FETCH_TIMEOUT,
    ERR_INVALID_ARGUMENT,
    ERR_INVALID_UID,
    ERR_LOGIN_CANCELLED,
    ERR_LOGIN_FAILED,
    ERR_LOGIN_IN_PROGRESS,
    ERR_MUID_CONFLICT,
    ERR_NETWORK_OFFLINE,
    ERR_NO_WEBSOCKET_CONNECTION,
    ERR_NOT_LOGGED_IN,
    ERR_RECONNECT_ATTEMPTS_EXHAUSTED,
    ERR_SEND_FAILED,
    ERR_SEND_INTERRUPTED,
    ERR_SEND_TIMEOUT,
    ERR_TEXT_INVALID,
    ERR_TEXT_TOO_LONG,
    ERR_TRACE_CLOSED,
    ERR_TRACE_MODE_MISMATCH,
    ERR_UID_NOT_FOUND,
    ERR_UNKNOWN_COMMAND,
    ERR_UNKNOWN_USER,
    ERR_UNSUPPORTED,
    ERR_WEBSOCKET_CONNECTION_CANCELLED,
    ERR_WEBSOCKET_CONNECTION_FAILED,
    ERROR_CODES,
)

if TYPE_CHECKING:  # what mypy and editors see; at run time `__getattr__` loads them on first use
    from cometchat_fsm.core.errors import CometChatException, SendFailed
    from cometchat_fsm.core.events import Timer
    from cometchat_fsm.core.model import ClientModel
    from cometchat_fsm.core.settings import AppSettings, Mode, init
    from cometchat_fsm.core.states import AppState, ConnectionStatus, Network, Phase
    from cometchat_fsm.server.history import Retention
    from cometchat_fsm.server.reference import ReferenceServer, serve_reference
    from cometchat_fsm.session.listeners import ConnectionListener
    from cometchat_fsm.session.values import ConnectedInfo, StatusChange, User
    from cometchat_fsm.sim.simulation import Simulation
    from cometchat_fsm.trio.client import Client, open_client
    from cometchat_fsm.wire.frames import Message

#: Where each lazily loaded name lives (module, by layer).
_LAZY: dict[str, str] = {
    # The pure core: no I/O, no clock, no event loop.
    "AppSettings": "cometchat_fsm.core.settings",
    "Mode": "cometchat_fsm.core.settings",
    "init": "cometchat_fsm.core.settings",
    "AppState": "cometchat_fsm.core.states",
    "ConnectionStatus": "cometchat_fsm.core.states",
    "Network": "cometchat_fsm.core.states",
    "Phase": "cometchat_fsm.core.states",
    "CometChatException": "cometchat_fsm.core.errors",
    "SendFailed": "cometchat_fsm.core.errors",
    "Timer": "cometchat_fsm.core.events",
    "ClientModel": "cometchat_fsm.core.model",
    # The Simulation: the core in virtual time with an ideal server.
    "Simulation": "cometchat_fsm.sim.simulation",
    # What both front ends give: values, listeners (no event loop needed to import them).
    "ConnectedInfo": "cometchat_fsm.session.values",
    "StatusChange": "cometchat_fsm.session.values",
    "User": "cometchat_fsm.session.values",
    "ConnectionListener": "cometchat_fsm.session.listeners",
    "Message": "cometchat_fsm.wire.frames",
    # The live client (trio; the asyncio one is cometchat_fsm.asyncio.open_client).
    "Client": "cometchat_fsm.trio.client",
    "open_client": "cometchat_fsm.trio.client",
    # The reference server (trio).
    "ReferenceServer": "cometchat_fsm.server.reference",
    "serve_reference": "cometchat_fsm.server.reference",
    "Retention": "cometchat_fsm.server.history",
}

__all__ = [
    "ERROR_CODES",
    "ERR_APP_IN_BACKGROUND",
    "ERR_AUTH_KEY_INVALID",
    "ERR_AUTH_REJECTED",
    "ERR_AUTH_TOKEN_INVALID",
    "ERR_BAD_COMMAND",
    "ERR_BAD_SCRIPT",
    "ERR_BAD_SPECS",
    "ERR_BAD_TRACE",
    "ERR_CHAT_API_FAILURE",
    "ERR_CLIENT_CLOSED",
    "ERR_CONNECT_TIMEOUT",
    "ERR_FETCH_INTERRUPTED",
    "ERR_FETCH_TIMEOUT",
    "ERR_INVALID_ARGUMENT",
    "ERR_INVALID_UID",
    "ERR_LOGIN_CANCELLED",
    "ERR_LOGIN_FAILED",
    "ERR_LOGIN_IN_PROGRESS",
    "ERR_MUID_CONFLICT",
    "ERR_NETWORK_OFFLINE",
    "ERR_NOT_LOGGED_IN",
    "ERR_NO_WEBSOCKET_CONNECTION",
    "ERR_RECONNECT_ATTEMPTS_EXHAUSTED",
    "ERR_SEND_FAILED",
    "ERR_SEND_INTERRUPTED",
    "ERR_SEND_TIMEOUT",
    "ERR_TEXT_INVALID",
    "ERR_TEXT_TOO_LONG",
    "ERR_TRACE_CLOSED",
    "ERR_TRACE_MODE_MISMATCH",
    "ERR_UID_NOT_FOUND",
    "ERR_UNKNOWN_COMMAND",
    "ERR_UNKNOWN_USER",
    "ERR_UNSUPPORTED",
    "ERR_WEBSOCKET_CONNECTION_CANCELLED",
    "ERR_WEBSOCKET_CONNECTION_FAILED",
    "AppSettings",
    "AppState",
    "Client",
    "ClientModel",
    "CometChatException",
    "ConnectedInfo",
    "ConnectionListener",
    "ConnectionStatus",
    "Message",
    "Mode",
    "Network",
    "Phase",
    "ReferenceServer",
    "Retention",
    "SendFailed",
    "Simulation",
    "StatusChange",
    "Timer",
    "User",
    "init",
    "open_client",
    "serve_reference",
]
__version__ = "0.1.0"


if not TYPE_CHECKING:  # hidden from mypy, so that a misspelt name is still an error there

    def __getattr__(name: str) -> Any:
        """Load a public name from its module on first use (PEP 562), then keep it here."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names, with the public ones not loaded yet."""
    return sorted({*globals(), *__all__})
