"""Connection listeners and status changes (D11): who hears each notification, in order.

A listener is any object with some of the methods of `ConnectionListener`; each method may be
a plain function or a coroutine function. Plain methods are called at once, as the core
notifies; a coroutine is awaited, and every notification after it (to any listener) waits until
it has finished, so that each listener hears D11's order. A listener that raises is logged and
the client goes on.

`status_changes()` is the other way to listen: an async iterator of `StatusChange` values. It
holds at most `limit` changes the consumer has not taken; a slower consumer loses the oldest
ones (counted in its `dropped`), never blocks the client, and always sees the latest.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from cometchat_fsm.core import errors
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.states import (
    NOTIFICATION_NAMES,
    ON_CONNECTED,
    ON_CONNECTION_ERROR,
    STATUS_OF_NOTIFICATION,
)
from cometchat_fsm.session.checks import require_str, takes_an_argument
from cometchat_fsm.session.state import ClientState, Signal
from cometchat_fsm.session.values import ConnectedInfo, StatusChange

log = logging.getLogger("cometchat_fsm.session.listeners")

#: Changes a `status_changes()` iterator holds for a slow consumer before it drops the oldest.
STATUS_FEED_LIMIT = 64


@runtime_checkable
class ConnectionListener(Protocol):
    """What a connection listener may implement (each method optional; plain or `async def`).

    `on_connected` may take the `ConnectedInfo` of the connection (D13) or nothing;
    `on_connection_error` gets the CometChatException that ended the attempt (D5, D16).
    """

    def on_connecting(self) -> object:
        """An attempt to open the realtime socket started (status connecting, D11)."""
        ...

    def on_connected(self, info: ConnectedInfo | None = None) -> object:
        """The socket is open and its authentication accepted (status connected, D5)."""
        ...

    def on_disconnected(self) -> object:
        """The connection ended or an attempt gave up (status disconnected, D6b, D15)."""
        ...

    def on_feature_throttled(self) -> object:
        """The server throttles this user (status featureThrottled, D12)."""
        ...

    def on_connection_error(self, error: CometChatException) -> object:
        """An attempt failed with `error` (code, message, details: D5, D15, D16)."""
        ...


class StatusFeed:
    """One `status_changes()` iterator's changes not yet taken (at most `limit`)."""

    __slots__ = ("dropped", "items", "wake")

    def __init__(self, limit: int) -> None:
        self.items: deque[StatusChange] = deque(maxlen=limit)
        self.dropped = 0  # changes lost because the consumer was slower than `limit` changes
        self.wake: Signal | None = None

    def push(self, change: StatusChange) -> None:
        """Queue `change`; when `limit` are queued the oldest goes (counted in `dropped`)."""
        if len(self.items) == self.items.maxlen:
            self.dropped += 1
        self.items.append(change)
        self.poke()

    def poke(self) -> None:
        """Wake the consumer waiting for a change, if one waits."""
        if self.wake is not None:
            self.wake.set()
            self.wake = None


#: (listener id, notification, the method or None, its arguments or the awaitable it returned)
_Call = tuple[str, str, Callable[..., object] | None, Any]


class ListenersPart(ClientState):
    """Connection listeners by id, their in-order delivery, and the status feeds."""

    __slots__ = ("_backlog", "_feeds", "_listeners")

    _listeners: dict[str, object]
    _backlog: deque[_Call] | None  # made when an async listener runs (an empty deque is ~0.8 KiB)
    _feeds: list[StatusFeed]

    def _init_listeners(self) -> None:
        self._listeners = {}
        self._backlog = None
        self._feeds = []

    def add_connection_listener(self, listener_id: str, listener: object) -> None:
        """Add (or replace) the listener named `listener_id`: an object with any of the methods
        of `ConnectionListener` (on_connecting, on_connected, on_disconnected,
        on_feature_throttled, on_connection_error), each a function or a coroutine function
        (awaited in order, D11). ERR_INVALID_ARGUMENT for an empty id; TypeError for an id that
        is no str or an object with none of the methods; ERR_CLIENT_CLOSED once closed."""
        self._check_open()
        require_str("listener_id", listener_id, errors.INVALID_LISTENER_ID)
        if not any(callable(getattr(listener, name, None)) for name in NOTIFICATION_NAMES):
            raise TypeError(f"listener must be an object with at least one of the methods "
                            f"{', '.join(NOTIFICATION_NAMES)}; got {type(listener).__name__}")
        self._listeners[listener_id] = listener

    def remove_connection_listener(self, listener_id: str) -> None:
        """Remove the listener named `listener_id`; an unknown id is no error."""
        self._check_open()
        require_str("listener_id", listener_id, errors.INVALID_LISTENER_ID)
        self._listeners.pop(listener_id, None)

    def status_changes(self, limit: int = STATUS_FEED_LIMIT) -> AsyncIterator[StatusChange]:
        """Every status change from now on, as `StatusChange` values in D11's order, until the
        client closes. At most `limit` (default 64) wait for a slow consumer; beyond that the
        oldest are dropped, so the client never waits for its consumer. TypeError for a `limit`
        that is no int, ERR_INVALID_ARGUMENT for one below 1."""
        self._check_open()
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 1:
            raise errors.BAD_ARGUMENTS.exception(f"limit must be at least 1, got {limit}")
        feed = StatusFeed(limit)
        self._feeds.append(feed)
        return self._follow(feed)

    async def _follow(self, feed: StatusFeed) -> AsyncIterator[StatusChange]:
        try:
            while True:
                while not feed.items:
                    if self._closed:
                        return
                    feed.wake = wake = self._signal()
                    await wake.wait()
                yield feed.items.popleft()
        finally:
            if feed in self._feeds:
                self._feeds.remove(feed)

    def _notify(self, name: str, error: CometChatException | None) -> None:
        status = STATUS_OF_NOTIFICATION.get(name)
        if self._trace is not None:
            now = self._now()
            self._trace.notify(now, name)
            if status is not None:
                self._trace.status(now, status)
        if self._feeds:
            change = StatusChange(name, self._model.status, error)
            for feed in self._feeds:
                feed.push(change)
        for listener_id, listener in list(self._listeners.items()):
            method = getattr(listener, name, None)
            if method is None:
                continue
            if name == ON_CONNECTION_ERROR:
                args: tuple[object, ...] = (error,)
            elif name == ON_CONNECTED and takes_an_argument(method):
                args = (self._connected_info,)  # D13: on_connected(info) is optional
            else:
                args = ()
            self._invoke((listener_id, name, method, args))

    def _invoke(self, call: _Call) -> None:
        if self._backlog:  # an async listener is still running: wait behind it (D11)
            self._backlog.append(call)
            return
        listener_id, name, method, args = call
        assert method is not None
        try:
            result = method(*args)
        except Exception:
            log.exception("connection listener %r raised in %s; the client goes on", listener_id, name)
            return
        if inspect.isawaitable(result):
            self._backlog = deque([(listener_id, name, None, result)])
            self._spawn(self._drain_backlog)

    async def _drain_backlog(self) -> None:
        """Await the listeners' coroutines one after another, calling the methods queued behind."""
        while backlog := self._backlog:
            listener_id, name, method, payload = backlog[0]
            try:
                result = payload if method is None else method(*payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("connection listener %r raised in %s; the client goes on", listener_id, name)
            finally:
                if self._backlog:
                    self._backlog.popleft()
        self._backlog = None

    def _close_listeners(self) -> None:
        """The client closed: listeners hear nothing more; status iterators end."""
        self._listeners.clear()
        for _, _, method, payload in self._backlog or ():
            if method is None and inspect.iscoroutine(payload):
                payload.close()  # never started: not "never awaited"
        self._backlog = None
        for feed in self._feeds:
            feed.poke()

    def _check_open(self) -> None:
        if self._closed:
            raise errors.CLIENT_CLOSED.exception()
