"""The values a live client hands its app (shared by every front end): who is logged in, what
the server said about a connection, a change of status, and the message type itself."""

from __future__ import annotations

from dataclasses import dataclass

from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.states import ConnectionStatus
from cometchat_fsm.wire.frames import Message

__all__ = ["ConnectedInfo", "Message", "StatusChange", "User"]


@dataclass(frozen=True, slots=True)
class User:
    """The user logged in (`uid`: 1 to 100 letters, digits, '_', '-', '.')."""

    uid: str


@dataclass(frozen=True, slots=True)
class ConnectedInfo:
    """What `on_connected(info)` hears about the connection that just opened (D13).

    `resumed`: the server knew the last message this client delivered and replays what followed
    before live traffic (every connection after a login, and after a session restored from the
    store, which keeps the place where the last run closed). `gap`: the replay leaves out
    messages older than the server's replay window; they have ids above `missed_after` up to
    `missed_through` and can be read with `fetch_messages(missed_after, ...)`.
    """

    resumed: bool = False
    gap: bool = False
    missed_after: int | None = None
    missed_through: int | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One item of `status_changes()`: the notification the listeners heard (`on_connecting`,
    ..., `on_connection_error`, D11's order), the status after it, and the error that
    `on_connection_error` carries (None for the others)."""

    notification: str
    status: ConnectionStatus
    error: CometChatException | None = None
