"""The checks of a live client's arguments and of a few server answers (shared by every front
end). Bad input raises a typed CometChatException (ERR_INVALID_ARGUMENT and friends), a value
of the wrong type TypeError: before anything reaches the core or the wire."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from cometchat_fsm.core import errors
from cometchat_fsm.core.settings import AppSettings, init
from cometchat_fsm.wire.codec import MAX_FRAME_BYTES, UID, shown, text_json_size

#: A message text: at most this many characters ...
MAX_TEXT = 16_384
#: ... and this many bytes as JSON (`json.dumps(text)` without its quotes, every non-ASCII
#: character escaped), so that any frame carrying it stays under MAX_FRAME: 16,384 emoji would
#: take 196,608 (docs/protocol.md, the message frame; the server's MAX_TEXT_JSON_BYTES).
MAX_TEXT_JSON = 61_440
MAX_FRAME = MAX_FRAME_BYTES
LOGIN_PATH = "/v1/login"
SOCKET_PATH = "/v1/socket"

#: What to do about a message the server refused (its `error` frame's code).
SEND_ERROR_DETAILS = {
    "ERR_UID_NOT_FOUND": "Check the receiver's uid.",
    "ERR_TEXT_TOO_LONG": "Shorten the text: at most 16,384 characters and 61,440 bytes as JSON.",
    "ERR_TEXT_INVALID": "The text must be valid Unicode: remove lone surrogates.",
    "ERR_MUID_CONFLICT": "This muid names another message you sent: leave muid out or use a new one (D20).",
}

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def retry_after(reason: str | None) -> float | None:
    """The `retry-after=<seconds>` hint of a 1013 close reason (D6), None without one."""
    match = re.fullmatch(r"\s*retry-after=([0-9]+(?:\.[0-9]+)?)\s*", reason or "")
    return float(match.group(1)) if match else None


def takes_an_argument(method: Callable[..., object]) -> bool:
    """Whether `method` can be called with one argument (`on_connected(info)`, D13)."""
    try:
        inspect.signature(method).bind(None)
    except (TypeError, ValueError):  # ValueError: no signature to read (a builtin): the old way
        return False
    return True


def require_str(name: str, value: object, empty: errors.ErrorSpec) -> str:
    """`value`, which must be a str (else TypeError) and not empty (else `empty`'s error)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise empty.exception(f"{name} is empty")
    return value


def require_uid(name: str, value: object) -> str:
    """A uid docs/protocol.md allows (ERR_INVALID_UID otherwise)."""
    uid = require_str(name, value, errors.INVALID_UID)
    if not UID.fullmatch(uid):
        raise errors.INVALID_UID.exception(f"{name} {shown(uid)}")
    return uid


def check_text(text: object) -> None:
    """A message text the protocol can carry (docs/protocol.md, the message frame):
    ERR_INVALID_ARGUMENT (errors.INVALID_TEXT) for an empty, too long or not Unicode text."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    if not text:
        raise errors.INVALID_TEXT.exception("text is empty")
    if len(text) > MAX_TEXT:
        raise errors.INVALID_TEXT.exception(f"text has {len(text):,} characters, over {MAX_TEXT:,}")
    lone = _LONE_SURROGATE.search(text)
    if lone is not None:
        raise errors.INVALID_TEXT.exception(f"text has a lone surrogate at index {lone.start()}")
    size = text_json_size(text)
    if size > MAX_TEXT_JSON:
        raise errors.INVALID_TEXT.exception(f"text takes {size:,} bytes as JSON, over {MAX_TEXT_JSON:,}")


def check_url(url: object) -> None:
    """A ws:// or wss:// URL with a host (ERR_INVALID_ARGUMENT otherwise)."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError as exc:
        raise errors.INVALID_URL.exception(str(exc)) from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise errors.INVALID_URL.exception(f"got {shown(url)}")


def check_client_arguments(app_id: str, settings: AppSettings, url: object, store: object, random: object,
                           listeners: object) -> None:
    """`open_client`'s checks, every front end's (its own transport's arguments it checks after):
    the settings (L3: ERR_CHAT_API_FAILURE), the url (`check_url`), and TypeError for a `store`
    that is not a path or None, a `random` that cannot be called, `listeners` that are no mapping."""
    init(app_id, settings)
    check_url(url)
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a directory path (str or Path) or None, not {type(store).__name__}")
    if random is not None and not callable(random):
        raise TypeError(f"random must be a function returning floats in [0, 1), not {type(random).__name__}")
    if listeners is not None and not isinstance(listeners, Mapping):
        raise TypeError(f"listeners must be a mapping of listener ids to listeners, "
                        f"not {type(listeners).__name__}")
