"""Requests that wait for the server's answer on the realtime socket: sending a message (D20)
and reading history (D13), sans I/O (the front end only waits, with its clock)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator

from cometchat_fsm.core import errors
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.states import LIVE
from cometchat_fsm.session.checks import SEND_ERROR_DETAILS, check_text, require_uid
from cometchat_fsm.session.inbox import InboxPart
from cometchat_fsm.session.state import PendingFetch, PendingSend, SocketState
from cometchat_fsm.session.values import Message
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import MAX_FETCH, MUID, shown


class RequestsPart(InboxPart):
    """`send_message` and `fetch_messages`, and the answers that end them."""

    __slots__ = ("_fetches", "_refs", "_sends")

    _refs: Iterator[int]
    _sends: dict[int, PendingSend]
    _fetches: dict[int, PendingFetch]

    def _init_requests(self) -> None:
        self._refs = itertools.count(1)
        self._sends = {}
        self._fetches = {}

    async def send_message(self, receiver_uid: str, text: str, *, muid: str | None = None) -> Message:
        """Send `text` to `receiver_uid`; return the message as the server stored it (D20).

        `muid` is this message's own id (1 to 100 letters, digits, '_', '.', ':', '-'); without
        one the client makes one (`Message.muid`). The server keeps one message per (sender,
        muid) for its keep window and answers a repeated send with the stored message (same id):
        sending again with the same muid never makes a duplicate. Needs a connection
        (`ERR_NO_WEBSOCKET_CONNECTION`). Unanswered after `connect_timeout` seconds:
        `ERR_SEND_TIMEOUT`; its socket closed first: `ERR_SEND_INTERRUPTED` at once. Both are
        `errors.SendFailed` with `.muid` and `.may_be_stored` (whether the server may have the
        message; resending with that muid is safe either way). The server's refusals keep their
        code: `ERR_UID_NOT_FOUND`, `ERR_TEXT_TOO_LONG`, `ERR_TEXT_INVALID`, `ERR_MUID_CONFLICT`
        (the muid names another message of this sender).
        """
        self._check_open()
        receiver_uid = require_uid("receiver_uid", receiver_uid)
        check_text(text)
        if muid is None:
            muid = secrets.token_hex(16)
        elif not isinstance(muid, str):
            raise TypeError(f"muid must be a str or None, not {type(muid).__name__}")
        elif not MUID.fullmatch(muid):
            raise errors.INVALID_MUID.exception(f"got {shown(muid)}")
        sock = self._model.socket
        entry = self._socket_state(sock) if sock is not None else None
        if self._model.phase not in LIVE or sock is None or entry is None:
            raise errors.SEND_NOT_CONNECTED.exception(f"status is {self._model.status.value}")
        ref = next(self._refs)
        pending = self._sends[ref] = PendingSend(receiver_uid, text, muid, sock, entry.queued, self._signal())
        try:
            self._send(sock, wire.SendMessage(receiver_uid, text, ref, muid))
            await self._wait_for(pending.done, self.settings.connect_timeout)
        finally:
            self._sends.pop(ref, None)
        if pending.result is None:
            raise errors.SEND_TIMEOUT.send_failed(muid=muid, may_be_stored=True)
        if isinstance(pending.result, CometChatException):
            raise pending.result
        return pending.result

    async def fetch_messages(self, after_id: int, limit: int = 100, *,
                             include_sent: bool = False) -> list[Message]:
        """Up to `limit` (1 to 1000) kept messages for the logged-in user with ids above
        `after_id`, oldest first (D13: how an app fills the gap `on_connected(info)` reported).
        With `include_sent=True` also the messages this user sent, in the same id order (D20:
        how an app sees whether a send it gave up on was stored). Needs a connection
        (`ERR_NO_WEBSOCKET_CONNECTION`); unanswered after `connect_timeout` seconds
        `ERR_FETCH_TIMEOUT`; its socket closed first: `ERR_FETCH_INTERRUPTED` at once."""
        self._check_open()
        for name, value in (("after_id", after_id), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not isinstance(include_sent, bool):
            raise TypeError(f"include_sent must be a bool, not {type(include_sent).__name__}")
        if after_id < 0 or not 1 <= limit <= MAX_FETCH:
            raise errors.INVALID_FETCH.exception(f"got after_id={after_id}, limit={limit}")
        found: list[Message] = []
        while len(found) < limit:
            sock = self._model.socket
            if self._model.phase not in LIVE or sock is None or not self._has_socket(sock):
                raise errors.SEND_NOT_CONNECTED.exception(f"status is {self._model.status.value}")
            ref = next(self._refs)
            waiting = self._fetches[ref] = PendingFetch(sock, self._signal())
            try:
                self._send(sock, wire.Fetch(after_id, limit - len(found), ref, include_sent))
                await self._wait_for(waiting.done, self.settings.connect_timeout)
            finally:
                self._fetches.pop(ref, None)
            if waiting.error is not None:
                raise waiting.error
            if waiting.messages is None:
                raise errors.FETCH_TIMEOUT.exception()
            found.extend(waiting.messages)
            if not waiting.more or not waiting.messages:
                break
            after_id = waiting.messages[-1].id
        return found

    def _answered(self, frame: wire.Sent | wire.ErrorAnswer | wire.History) -> None:
        """The server's answer to request `frame.ref` (one no request waits for is ignored)."""
        match frame:
            case wire.History(ref=ref, messages=found, more=more):
                waiting = self._fetches.get(ref) if ref is not None else None
                if waiting is not None:
                    waiting.messages, waiting.more = list(found), more
                    waiting.done.set()
            case wire.Sent(ref=ref, id=id_, sent_at=sent_at):
                pending = self._sends.get(ref) if ref is not None else None
                if pending is not None:
                    pending.result = Message(id_, self._model.user or "", pending.receiver, pending.text,
                                             sent_at, pending.muid)
                    pending.done.set()
            case wire.ErrorAnswer(ref=ref, code=code, message=text):
                pending = self._sends.get(ref) if ref is not None else None
                if pending is not None:
                    code = code or "ERR_SEND_FAILED"
                    pending.result = CometChatException(
                        code, text or "The server refused the message.",
                        SEND_ERROR_DETAILS.get(code, "The message was not sent; see its code and message."))
                    pending.done.set()

    def _fail_waiting(self, sock: int, entry: SocketState) -> None:
        """D20: sends and history requests waiting on `sock`, which has closed, fail now rather
        than at their timeout; a send says whether its frame may have reached the server."""
        for pending in self._sends.values():
            if pending.sock == sock and pending.result is None:
                left = pending.position < entry.started
                spec = errors.SEND_INTERRUPTED if left else errors.SEND_NEVER_LEFT
                pending.result = spec.send_failed(muid=pending.muid, may_be_stored=left)
                pending.done.set()
        for waiting in self._fetches.values():
            if waiting.sock == sock and waiting.messages is None and waiting.error is None:
                waiting.error = errors.FETCH_INTERRUPTED.exception()
                waiting.done.set()
