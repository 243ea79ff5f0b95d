"""Messages received, the inbox, and the replay place (D13, D19, D21), sans I/O.

The inbox holds the current user's received messages the app has not taken, at most
`settings.inbox_limit`. The place is where the next replay must start: after the last message
the app took while some are left in the inbox (what it did not take comes again), else after the
last received. It is stored per user and app id, at most PLACE_WRITE_INTERVAL seconds behind.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterator

from cometchat_fsm.core.states import LIVE, Phase
from cometchat_fsm.session.listeners import ListenersPart
from cometchat_fsm.session.state import Signal
from cometchat_fsm.session.values import Message
from cometchat_fsm.wire import frames as wire

log = logging.getLogger("cometchat_fsm.session.inbox")

#: The stored place (D13) is written at most this many seconds behind what the app took (D21).
PLACE_WRITE_INTERVAL = 1.0


class InboxPart(ListenersPart):
    """The inbox, the place, and the user switch that empties them (D19)."""

    __slots__ = ("_last_id", "_place_due", "_place_written_at", "_queue", "_readers", "_resuming",
                 "_skipping", "_taken_id", "duplicates_dropped", "misaddressed_dropped")

    #: Message frames dropped: delivered before (D13) / for another user than the one logged in (D19).
    duplicates_dropped: int
    misaddressed_dropped: int
    #: The id of the last message put in the inbox (D13); sent with every auth frame.
    _last_id: int | None
    _queue: deque[Message] | None  # made on first use, dropped once empty (an empty deque is ~0.8 KiB)
    _readers: Signal | None
    _taken_id: int | None
    # D21: the inbox was full, so message frames are ignored (the server was told `pause`)
    # until the server's `resumed` answers our `resume` (or a new socket replays anyway).
    _skipping: bool
    _resuming: bool
    _place_due: bool
    _place_written_at: float

    def _init_inbox(self) -> None:
        self.duplicates_dropped = self.misaddressed_dropped = 0
        self._last_id = self._taken_id = None
        self._queue = None
        self._readers = None
        self._skipping = self._resuming = self._place_due = False
        self._place_written_at = -math.inf

    @property
    def last_message_id(self) -> int | None:
        """The id of the last message put in the inbox for the app (None before any): the next
        socket's replay resumes after it (D13). The stored place may be earlier: it follows
        what the app took (D21)."""
        return self._last_id

    def messages(self) -> AsyncIterator[Message]:
        """Messages received for the user logged in when each is yielded, in id order, each
        once (D13, D19): a logout or a login as another user discards what the previous user
        had not taken, whenever this iterator was made. Several iterators share one inbox (each
        message goes to one of them). The inbox holds at most `settings.inbox_limit` messages
        (D21); beyond that the client stops taking them and, once the app has taken half, reads
        the rest back from the server in order. The iteration ends when the client closes.
        ERR_CLIENT_CLOSED once closed."""
        self._check_open()
        return self._take()

    async def _take(self) -> AsyncIterator[Message]:
        while True:
            while not (queue := self._queue):
                if self._closed:
                    return
                if self._readers is None:
                    self._readers = self._signal()
                await self._readers.wait()
            message = queue.popleft()
            left = len(queue)
            if not left:
                self._queue = None
            self._taken_id = message.id  # taken: a replay must start after it
            self._place_moved()
            if self._skipping and not self._resuming and left <= self.settings.inbox_limit // 2:
                self._ask_to_resume()
            if message.receiver == self._model.user:  # D19 (the inbox is emptied at a switch anyway)
                yield message

    def _wake_readers(self) -> None:
        if self._readers is not None:
            self._readers.set()
            self._readers = None

    def _deliver(self, sock: int, message: Message) -> None:
        """A `message` frame from the server: into the inbox, or dropped, or the server paused."""
        if self._closed:
            return  # read just as the app closed the client: its inbox is closed
        if message.receiver != self._model.user:
            self.misaddressed_dropped += 1  # D19: never another user's message
            log.warning("socket %d: dropped a message for another user", sock)
            return
        if self._last_id is not None and message.id <= self._last_id:
            self.duplicates_dropped += 1  # D13: delivered before (a replay overlapping live traffic)
            return
        if self._skipping:
            return  # D21: read back after `resumed` (or replayed on the next socket), in order
        queue = self._queue
        if queue is not None and len(queue) >= self.settings.inbox_limit:
            self._skipping = True  # D21: full; the server holds the rest until we resume
            self._send(sock, wire.Pause())
            return
        if not queue:
            self._taken_id = self._last_id
            queue = self._queue = deque()
        queue.append(message)
        self._last_id = message.id
        self._wake_readers()

    def _ask_to_resume(self) -> None:
        """D21: room again in the inbox: the server sends what followed our last one, then live."""
        sock = self._model.socket
        if self._model.phase in LIVE and sock is not None and self._has_socket(sock) \
                and self._last_id is not None:
            self._resuming = True
            self._send(sock, wire.Resume(self._last_id))

    def _place(self) -> int | None:
        """Where a replay must start (D13): after the last message the app took while it has
        some left in the inbox (D19, D21: what it did not take comes again), else after the
        last received."""
        return self._taken_id if self._queue else self._last_id

    def _place_moved(self) -> None:
        """The app took a message: have the place written at most PLACE_WRITE_INTERVAL later (D21)."""
        if self._place_due or self._closed:
            return
        wait = self._place_written_at + PLACE_WRITE_INTERVAL - self._now()
        if wait <= 0:
            self._write_place()
        else:
            self._place_due = True

            async def write_later() -> None:
                await self._sleep(wait)
                self._place_due = False
                if not self._closed:
                    self._write_place()
            self._spawn(write_later)

    def _write_place(self) -> None:
        """Store the current user's place in the per-user places (D19, D21)."""
        self._save_place(*self._leaving())

    def _leaving(self) -> tuple[str | None, int | None]:
        """The current user and their place (None while a login waits: no place yet)."""
        if self._model.phase is Phase.LOGGING_IN:
            return None, None
        return self._model.user, self._place()

    def _save_place(self, user: str | None, place: int | None) -> None:
        if user is None or place is None:
            return
        self._place_written_at = self._now()
        self._store_quietly(lambda: self._store.save_place(self.app_id, user, place))

    def _switch_user(self, leaving: tuple[str | None, int | None]) -> None:
        """D19: the user `leaving[0]` logged out (or another logs in): their place is stored
        for their next login, and what they had not taken is discarded, never shown to another."""
        self._save_place(*leaving)
        self._queue = None
        self._last_id = self._taken_id = None
        self._skipping = self._resuming = False

    def _stored_place(self, uid: str, newest: int | None) -> int | None:
        """Where `uid`'s replay resumes after a login: the place stored for them on this app id
        (D19), else the server's newest id at login (messages after it are this session's)."""
        try:
            place = self._store.load_place(self.app_id, uid)
        except OSError as exc:
            log.warning("the stored places could not be read (%s)", exc)
            place = None
        return place if place is not None else newest
