"""Every frame of docs/protocol.md as a typed, immutable value (no I/O, no JSON here).

A frame is one WebSocket text message holding one JSON object whose `type` names it. The
same `type` can mean two things: `message` from a client asks the server to send a message
(`SendMessage`); `message` from the server delivers one (`Delivery`). So a frame's class, not
its `type` string, says what it is, and `codec.decode` is told who sent the bytes.

Fields a receiver must tolerate being absent or sloppy (an `error` frame's `code`, a `sent`
frame's `ref`) are `None` here; the codec decides which breaches close the connection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar


class Origin(enum.Enum):
    """Who sent a frame: the same `type` string is another frame from the other side."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class Message:
    """A message as the server stored it: `id` (server-assigned, increasing), `sender` and
    `receiver` uids, `text`, `sent_at` (seconds since the epoch, server clock), and `muid`, the
    sender's own id of it (D20; None for a message sent without one)."""

    id: int
    sender: str
    receiver: str
    text: str
    sent_at: float
    muid: str | None = None


# --- client to server: /v1/login -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Login:
    """Log in as `uid` with the app's auth key (L1)."""

    type: ClassVar[str] = "login"
    uid: str
    auth_key: str


@dataclass(frozen=True, slots=True)
class TokenLogin:
    """Log in with a token an earlier login gave (L1, D16)."""

    type: ClassVar[str] = "login"
    auth_token: str


# --- client to server: /v1/socket ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Auth:
    """The realtime socket's first frame; `last_id` is the client's place (D13), None if it has none."""

    type: ClassVar[str] = "auth"
    uid: str
    auth_token: str
    last_id: int | None


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """The client's dead-link probe (D7); answered with `Pong`."""

    type: ClassVar[str] = "keepalive"


@dataclass(frozen=True, slots=True)
class Ping:
    """The app's `ping()` (M3); no answer."""

    type: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send `text` to `to`; `ref` is the client's number for this request, `muid` its id of the
    message (D20; None: stored every time)."""

    type: ClassVar[str] = "message"
    to: str
    text: str
    ref: int
    muid: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """The client's inbox is full (D21): no `Delivery` until `Resume`."""

    type: ClassVar[str] = "pause"


@dataclass(frozen=True, slots=True)
class Resume:
    """Room again (D21): replay this user's messages after `after_id`, then live traffic."""

    type: ClassVar[str] = "resume"
    after_id: int


@dataclass(frozen=True, slots=True)
class Fetch:
    """Read kept history after `after_id`: at most `limit` (1 to 1000) messages; with `sent`
    the user's own sent ones too (D13, D20)."""

    type: ClassVar[str] = "fetch"
    after_id: int
    limit: int
    ref: int
    sent: bool = False


# --- server to client ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoginOk:
    """A login succeeded: the user, a fresh token, and the newest message id at login (D13)."""

    type: ClassVar[str] = "login_ok"
    uid: str
    auth_token: str
    last_id: int | None


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """A refusal: of a login (no `ref`) or of a `SendMessage` (its `ref`). Every field may be
    missing from a sloppy server; the client then says ERR_LOGIN_FAILED or ERR_SEND_FAILED."""

    type: ClassVar[str] = "error"
    code: str | None
    message: str | None
    ref: int | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages with `after < id <= through` are left out of a replay (D13)."""

    after: int
    through: int


@dataclass(frozen=True, slots=True)
class AuthOk:
    """The socket is authenticated. `last_id` is the server's newest id; `resumed`: it replays
    what followed the client's place, except `gap` (D13). `server_time` in seconds since the epoch."""

    type: ClassVar[str] = "auth_ok"
    uid: str | None
    server_time: float | None
    last_id: int | None
    resumed: bool
    gap: Gap | None


@dataclass(frozen=True, slots=True)
class AuthRejected:
    """The credentials are refused (D5, D16); the server closes with 4001."""

    type: ClassVar[str] = "auth_rejected"
    code: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a `KeepAlive` (D7)."""

    type: ClassVar[str] = "pong"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message for the authenticated user (live, or replayed: D13)."""

    type: ClassVar[str] = "message"
    message: Message


@dataclass(frozen=True, slots=True)
class Throttle:
    """The server throttles this user's features (`active`, D12) or lifts it."""

    type: ClassVar[str] = "throttle"
    active: bool


@dataclass(frozen=True, slots=True)
class Sent:
    """The message of request `ref` is stored as `id` at `sent_at`; `resent`: it was stored
    before under `muid` and is not stored again (D20). `ref` is None if the server sent no int."""

    type: ClassVar[str] = "sent"
    ref: int | None
    id: int
    sent_at: float
    muid: str | None = None
    resent: bool = False


@dataclass(frozen=True, slots=True)
class Resumed:
    """The answer to `Resume` (D21): the replay after `after_id` follows."""

    type: ClassVar[str] = "resumed"
    after_id: int


@dataclass(frozen=True, slots=True)
class History:
    """The answer to `Fetch` number `ref`: messages in id order; `more`: ask again after the last."""

    type: ClassVar[str] = "history"
    ref: int | None
    messages: tuple[Message, ...]
    more: bool = False


ClientFrame = Login | TokenLogin | Auth | KeepAlive | Ping | SendMessage | Pause | Resume | Fetch
ServerFrame = (LoginOk | ErrorAnswer | AuthOk | AuthRejected | Pong | Delivery | Throttle | Sent | Resumed
               | History)
Frame = ClientFrame | ServerFrame
