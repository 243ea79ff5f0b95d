"""Messages: relay, history replay (D13), fetch, resends by muid (D20), pauses (D21)."""

from __future__ import annotations

import re
import sqlite3

from cometchat_fsm.core.errors import ErrorSpec
from cometchat_fsm.server.accounts import INVALID_UID, AccountsPart
from cometchat_fsm.server.connection import _Conn
from cometchat_fsm.server.history import StoredMessage
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import (
    MAX_FETCH,
    MUID,
    message_json_size,
    text_json_size,
)
from cometchat_fsm.wire.frames import Message

#: `text` of a message: at most this many characters (more breaks the protocol: 1008) ...
MAX_TEXT_CHARS = 16_384
#: ... and at most this many bytes as JSON (json.dumps without the quotes, every non-ASCII
#: character escaped: an emoji takes 12), so that the `message` frame that delivers it and a
#: `history` frame holding it alone stay under MAX_FRAME_BYTES. More is answered with an
#: `error` frame (ERR_TEXT_TOO_LONG); so is a lone surrogate (ERR_TEXT_INVALID): SQLite stores
#: UTF-8 only. The client checks the same before sending (client.MAX_TEXT_JSON).
MAX_TEXT_JSON_BYTES = 61_440
#: Replayed messages queued at a time (D13): the next batch is read when the outbox is empty.
REPLAY_BATCH = 200
#: `fetch`: at most this many messages per request, in a frame of at most this many bytes.
FETCH_LIMIT = MAX_FETCH
HISTORY_FRAME_BUDGET = 56 * 1024

TEXT_TOO_LONG = ErrorSpec(
    "ERR_TEXT_TOO_LONG",
    "The message text is too long.",
    f"A text is at most {MAX_TEXT_CHARS:,} characters and {MAX_TEXT_JSON_BYTES:,} bytes as JSON "
    "(an emoji counts 12, any other non-ASCII or control character 6); split it.",
)
TEXT_INVALID = ErrorSpec(
    "ERR_TEXT_INVALID",
    "The message text is not valid Unicode.",
    "A text must not hold a lone surrogate (\\ud800 to \\udfff without its pair).",
)

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def text_problem(text: str) -> ErrorSpec | None:
    """Why the server would refuse to store and deliver `text` (None: it would not)."""
    if len(text) > MAX_TEXT_CHARS or (len(text) * 12 > MAX_TEXT_JSON_BYTES
                                      and text_json_size(text) > MAX_TEXT_JSON_BYTES):
        return TEXT_TOO_LONG
    if _LONE_SURROGATE.search(text):
        return TEXT_INVALID
    return None


def _delivery(stored: StoredMessage) -> wire.Delivery:
    return wire.Delivery(_message(stored))


def _message(stored: StoredMessage) -> Message:
    return Message(stored.id, stored.sender, stored.receiver, stored.text, stored.sent_at, stored.muid)


class MessagesPart(AccountsPart):
    """Storing, relaying, replaying and fetching messages."""

    def _relay(self, conn: _Conn, frame: wire.SendMessage) -> None:
        to, text, ref, muid = frame.to, frame.text, frame.ref, frame.muid
        problem = text_problem(text)
        if problem is not None:  # the connection stays open: only this message is refused
            conn.send(wire.ErrorAnswer(problem.code, f"{problem.message} {problem.details}", ref))
            return
        if to not in self._users:
            self.stats.messages_failed += 1
            conn.send(wire.ErrorAnswer("ERR_UID_NOT_FOUND", f"The user {to!r} does not exist.", ref))
            return
        assert conn.uid is not None  # authenticated
        resent = False
        try:
            stored = self._store_and_relay(conn.uid, to, text, muid)
        except sqlite3.IntegrityError:  # D20: this sender stored this muid before: a resend
            kept = self.history.find(conn.uid, muid) if muid is not None else None
            if kept is None:
                raise
            if (kept.receiver, kept.text) != (to, text):
                conn.send(wire.ErrorAnswer("ERR_MUID_CONFLICT",
                                           f"The muid {muid!r} names another message of this sender.", ref))
                return
            self.stats.resends += 1  # the receiver has it (or gets it by replay) once
            stored, resent = kept, True
        conn.send(wire.Sent(ref, stored.id, stored.sent_at, stored.muid, resent))

    def post(self, sender: str, to: str, text: str, *, muid: str | None = None) -> int:
        """Send `text` to `to` as if `sender`'s socket had sent it; return the message id.

        For tests and demos that need traffic without a second client. With `muid`, a message
        `sender` already sent under it is not stored again: its id is returned (D20). Raises
        CometChatException ERR_INVALID_UID for an unknown user, ERR_TEXT_TOO_LONG or
        ERR_TEXT_INVALID for a text a client could not send either.
        """
        for uid in (sender, to):
            if uid not in self._users:
                raise INVALID_UID.exception(reason=f"no user {uid!r} on this server")
        problem = text_problem(text)
        if problem is not None:
            raise problem.exception(reason=f"a text of {len(text):,} characters")
        if muid is not None and not MUID.fullmatch(muid):
            raise ValueError(f"muid must match {MUID.pattern}, got {muid!r}")
        try:
            return self._store_and_relay(sender, to, text, muid).id
        except sqlite3.IntegrityError:
            kept = self.history.find(sender, muid) if muid is not None else None
            if kept is None:
                raise
            self.stats.resends += 1
            return kept.id

    def _store_and_relay(self, sender: str, to: str, text: str, muid: str | None = None) -> StoredMessage:
        self._last_sent_at = sent_at = max(self._last_sent_at, self.history.now())
        stored = self.history.add(sender, to, text, sent_at, muid)  # committed before it is acknowledged
        delivery = _delivery(stored)
        for other in self._sockets_of(to):
            # A replay (D13) or a resume after a pause (D21) will reach it in order.
            if other.authenticated and other.replay_after is None and not other.paused:
                other.send(delivery)
        self.stats.messages_relayed += 1
        return stored

    def _replay_some(self, conn: _Conn) -> None:
        """Queue the next batch of `conn`'s replay; with none left, it joins live traffic."""
        assert conn.uid is not None and conn.replay_after is not None
        if self.history.forgotten_upto(conn.uid) > conn.replay_after:
            # The keep window overtook this replay: end it, so that the client's next auth is
            # told of the gap instead of missing messages silently.
            conn.replay_after = None
            conn.close(1013, "retry-after=1.0")
            return
        batch = self.history.after(conn.uid, conn.replay_after, REPLAY_BATCH)
        if not batch:
            conn.replay_after = None
            return
        conn.replay_after = batch[-1].id
        self.stats.messages_replayed += len(batch)
        for stored in batch:
            conn.send(_delivery(stored))

    def _fetch(self, conn: _Conn, frame: wire.Fetch) -> None:
        """Kept history after an id, as much as fits in one frame (`more` says whether to ask again)."""
        assert conn.uid is not None  # authenticated
        found = self.history.after(conn.uid, frame.after_id, frame.limit + 1, include_sent=frame.sent)
        messages: list[Message] = []
        size = 0
        for stored in found[:frame.limit]:
            item = _message(stored)
            size += message_json_size(item)
            if messages and size > HISTORY_FRAME_BUDGET:
                break
            messages.append(item)
        self.stats.fetches += 1
        conn.send(wire.History(frame.ref, tuple(messages), len(messages) < len(found)))
