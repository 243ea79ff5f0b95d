"""One encoder and one decoder for docs/protocol.md: frames to JSON text and back, no I/O.

`decode(data, Origin.SERVER)` turns one WebSocket message from the server into a typed frame
(frames.py) or raises `ProtocolError`, whose `code` is the close code docs/protocol.md names:
1007 (not UTF-8 JSON), 1008 (any other breach: binary, not an object, unknown `type`, a field
missing or of the wrong type), 1009 (over 64 KiB). Nothing else escapes it, for any input.
`encode(frame)` gives the one JSON text for a frame; `decode(encode(f), origin) == f`.

This module is the only place where the wire's JSON is parsed or built.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

from cometchat_fsm.wire.frames import (
    Auth,
    AuthOk,
    AuthRejected,
    Delivery,
    ErrorAnswer,
    Fetch,
    Frame,
    Gap,
    History,
    KeepAlive,
    Login,
    LoginOk,
    Message,
    Origin,
    Pause,
    Ping,
    Pong,
    Resume,
    Resumed,
    SendMessage,
    Sent,
    Throttle,
    TokenLogin,
)

#: A frame over this many bytes (UTF-8) breaks the protocol: 1009.
MAX_FRAME_BYTES = 64 * 1024
#: `fetch`: at most this many messages per request.
MAX_FETCH = 1000
#: A uid: 1 to 100 ASCII letters, digits, `_`, `-`, `.`.
UID = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
#: A muid (D20): 1 to 100 ASCII letters, digits, `_`, `.`, `:`, `-`.
MUID = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")


class ProtocolError(Exception):
    """A frame docs/protocol.md does not allow. `code` is the close code the receiver answers
    it with (1007: not UTF-8 JSON, 1008: any other breach, 1009: too big); str() the reason."""

    def __init__(self, reason: str, code: int = 1008) -> None:
        super().__init__(reason)
        self.code = code


def shown(value: object) -> str:
    """A peer-chosen value in a log line or close reason: quoted, at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- encoding ------------------------------------------------------------------------------------

def _message_fields(m: Message) -> dict[str, object]:
    return {"id": m.id, "sender": m.sender, "receiver": m.receiver, "text": m.text,
            "sent_at": m.sent_at, "muid": m.muid}


def _fields(frame: Frame) -> dict[str, object]:
    match frame:
        case Login(uid=uid, auth_key=key):
            return {"uid": uid, "auth_key": key}
        case TokenLogin(auth_token=token):
            return {"auth_token": token}
        case Auth(uid=uid, auth_token=token, last_id=last_id):
            return {"uid": uid, "auth_token": token, "last_id": last_id}
        case SendMessage(to=to, text=text, ref=ref, muid=muid):
            return {"to": to, "text": text, "ref": ref, "muid": muid}
        case Resume(after_id=after_id) | Resumed(after_id=after_id):
            return {"after_id": after_id}
        case Fetch(after_id=after_id, limit=limit, ref=ref, sent=sent):
            return {"after_id": after_id, "limit": limit, "ref": ref, **({"sent": True} if sent else {})}
        case LoginOk(uid=uid, auth_token=token, last_id=last_id):
            return {"uid": uid, "auth_token": token, "last_id": last_id}
        case ErrorAnswer(code=code, message=message, ref=ref):
            return {**({"ref": ref} if ref is not None else {}), "code": code, "message": message}
        case AuthOk(uid=uid, server_time=now, last_id=last_id, resumed=resumed, gap=gap):
            return {"uid": uid, "server_time": now, "last_id": last_id, "resumed": resumed,
                    "gap": None if gap is None else {"after": gap.after, "through": gap.through}}
        case AuthRejected(code=code, message=message):
            return {"code": code, "message": message}
        case Delivery(message=m):
            return _message_fields(m)
        case Throttle(active=active):
            return {"active": active}
        case Sent(ref=ref, id=id_, sent_at=sent_at, muid=muid, resent=resent):
            return {"ref": ref, "id": id_, "sent_at": sent_at, "muid": muid, "resent": resent}
        case History(ref=ref, messages=messages, more=more):
            return {"ref": ref, "messages": [_message_fields(m) for m in messages], "more": more}
        case KeepAlive() | Ping() | Pause() | Pong():
            return {}
    raise TypeError(f"not a frame: {type(frame).__name__}")


def encode(frame: Frame) -> str:
    """The JSON text of `frame` (compact, ASCII only, so a lone surrogate in a text travels as
    an escape). Raises ValueError for a time that is not a finite number, TypeError for a
    value that is no frame."""
    return json.dumps({"type": frame.type, **_fields(frame)}, separators=(",", ":"), allow_nan=False)


def message_json_size(message: Message) -> int:
    """The bytes `message` takes as one item of a `history` frame (with its separating comma)."""
    return len(json.dumps(_message_fields(message), separators=(",", ":"), allow_nan=False)) + 1


def text_json_size(text: str) -> int:
    """The bytes `text` takes in a frame: its JSON string form without the quotes, every
    non-ASCII character escaped (\\uXXXX, twice for one above U+FFFF)."""
    return len(json.dumps(text)) - 2


# --- decoding ------------------------------------------------------------------------------------

class _Reader:
    """Typed access to one frame's fields; every failure names the frame and the field."""

    __slots__ = ("data", "kind")

    def __init__(self, kind: str, data: dict[str, Any]) -> None:
        self.kind, self.data = kind, data

    def fail(self, what: str) -> NoReturn:
        raise ProtocolError(f"{self.kind}: {what}")

    def text(self, name: str) -> str:
        value = self._present(name)
        if not isinstance(value, str):
            self.fail(f"field {name!r} must be a string")
        return value

    def integer(self, name: str) -> int:
        value = self._present(name)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"field {name!r} must be an integer")
        return value

    def flag(self, name: str, default: bool | None = None) -> bool:
        value = self.data.get(name, default) if default is not None else self._present(name)
        if not isinstance(value, bool):
            self.fail(f"field {name!r} must be true or false")
        return value

    def number(self, name: str) -> float:
        value = self._present(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.fail(f"field {name!r} must be a number")
        try:
            number = float(value)
        except OverflowError:  # an integer no float can hold
            self.fail(f"field {name!r} is out of range")
        if not math.isfinite(number):  # 1e999 parses as inf
            self.fail(f"field {name!r} is out of range")
        return number

    def optional_int(self, name: str) -> int | None:
        return None if self.data.get(name) is None else self.integer(name)

    def optional_str(self, name: str) -> str | None:
        return None if self.data.get(name) is None else self.text(name)

    def loose_str(self, name: str) -> str | None:
        """A field a sloppy peer may leave out or get wrong: anything but a string is None."""
        value = self.data.get(name)
        return value if isinstance(value, str) else None

    def loose_int(self, name: str) -> int | None:
        value = self.data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def muid(self, name: str = "muid") -> str | None:
        muid = self.optional_str(name)
        if muid is not None and not MUID.fullmatch(muid):
            self.fail(f"field {name!r} must be 1 to 100 letters, digits, '_', '.', ':', '-'")
        return muid

    def message(self) -> Message:
        return Message(self.integer("id"), self.text("sender"), self.text("receiver"), self.text("text"),
                       self.number("sent_at"), self.optional_str("muid"))

    def _present(self, name: str) -> object:
        if name not in self.data:
            self.fail(f"missing field {name!r}")
        return self.data[name]


def _login(r: _Reader) -> Login | TokenLogin:
    if r.data.get("auth_token") is not None:
        return TokenLogin(r.text("auth_token"))
    return Login(r.text("uid"), r.text("auth_key"))


def _fetch(r: _Reader) -> Fetch:
    fetch = Fetch(r.integer("after_id"), r.integer("limit"), r.integer("ref"), r.flag("sent", default=False))
    if not 1 <= fetch.limit <= MAX_FETCH:
        r.fail(f"limit must be 1 to {MAX_FETCH}")
    return fetch


def _login_ok(r: _Reader) -> LoginOk:
    answer = LoginOk(r.text("uid"), r.text("auth_token"), r.optional_int("last_id"))
    if not UID.fullmatch(answer.uid):
        r.fail(f"uid {shown(answer.uid)} is not a valid uid")
    return answer


def _auth_ok(r: _Reader) -> AuthOk:
    gap = r.data.get("gap")
    if isinstance(gap, dict):
        g = _Reader("auth_ok gap", gap)
        found: Gap | None = Gap(g.integer("after"), g.integer("through"))
    else:
        found = None
    now = r.data.get("server_time")
    return AuthOk(r.loose_str("uid"), r.number("server_time") if isinstance(now, (int, float)) else None,
                  r.loose_int("last_id"), r.data.get("resumed") is True, found)


def _history(r: _Reader) -> History:
    items = r.data.get("messages")
    if not isinstance(items, list):
        r.fail("field 'messages' must be a list")
    if not all(isinstance(item, dict) for item in items):
        r.fail("every item of 'messages' must be an object")
    messages = tuple(_Reader("history item", item).message() for item in items)
    return History(r.loose_int("ref"), messages, r.data.get("more") is True)


_FROM_CLIENT: dict[str, Callable[[_Reader], Frame]] = {
    "login": _login,
    "auth": lambda r: Auth(r.text("uid"), r.text("auth_token"), r.optional_int("last_id")),
    "keepalive": lambda r: KeepAlive(),
    "ping": lambda r: Ping(),
    "message": lambda r: SendMessage(r.text("to"), r.text("text"), r.integer("ref"), r.muid()),
    "pause": lambda r: Pause(),
    "resume": lambda r: Resume(r.integer("after_id")),
    "fetch": _fetch,
}

_FROM_SERVER: dict[str, Callable[[_Reader], Frame]] = {
    "login_ok": _login_ok,
    "error": lambda r: ErrorAnswer(r.loose_str("code"), r.loose_str("message"), r.loose_int("ref")),
    "auth_ok": _auth_ok,
    "auth_rejected": lambda r: AuthRejected(r.loose_str("code"), r.loose_str("message")),
    "pong": lambda r: Pong(),
    "message": lambda r: Delivery(r.message()),
    "throttle": lambda r: Throttle(r.flag("active")),
    "sent": lambda r: Sent(r.loose_int("ref"), r.integer("id"), r.number("sent_at"), r.loose_str("muid"),
                           r.data.get("resent") is True),
    "resumed": lambda r: Resumed(r.integer("after_id")),
    "history": _history,
}


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def decode(data: str | bytes, origin: Origin) -> Frame:
    """The frame in one WebSocket message (`str`: a text message, `bytes`: a binary one) that
    `origin` sent. Raises `ProtocolError` (close code 1007, 1008 or 1009) for anything else."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("binary frames are not allowed; send JSON text")
    if len(data) > MAX_FRAME_BYTES // 4 and len(data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame over {MAX_FRAME_BYTES} bytes", 1009)
    try:
        parsed = json.loads(data, parse_constant=_not_json)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        raise ProtocolError("frame is not valid JSON", 1007) from None
    if not isinstance(parsed, dict):
        raise ProtocolError("frame is not a JSON object")
    kind = parsed.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("frame: field 'type' missing or not a string")
    read = (_FROM_CLIENT if origin is Origin.CLIENT else _FROM_SERVER).get(kind)
    if read is None:
        raise ProtocolError(f"unknown type {shown(kind)}")
    return read(_Reader(kind, parsed))
