"""The sockets a client has open (sans I/O): which exist, queueing frames on them, closing them
and what their end means for the requests waiting on them (D4, D20).

A front end's socket entry is a `SocketState` (the counts D20 needs) of its own kind, with its
tasks and connection, and its one hook `cancel()`: stop this socket's tasks at once. The front
end opens sockets (`_open_socket`) and runs them; `_start_writer` is its other hook. Being the
top part, it also starts a new client: every part's state (`_init_session`), then
`open_client`'s listeners, offline start and restore (`_open`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from cometchat_fsm.core.events import Event, NetworkLost
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.session.login import LoginPart
from cometchat_fsm.session.state import SocketState
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.trace import TraceRecorder
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import encode

#: The front end's socket entry (its SocketState subclass, which implements `cancel()`).
S = TypeVar("S", bound=SocketState)


class SocketsPart(LoginPart, Generic[S]):
    """The client's sockets by number; the top of the session parts (a front end's Client is a
    `SocketsPart[its socket entry]`)."""

    __slots__ = ("_sockets",)

    _sockets: dict[int, S]

    def _init_session(self, app_id: str, settings: AppSettings, store: SessionStore,
                      random: Callable[[], float] | None, trace: TraceRecorder | None) -> None:
        """Every session part's state, for a new client (the front end's `__init__` calls it)."""
        self._init_state(app_id, settings, store, random, trace)
        self._init_listeners()
        self._init_inbox()
        self._init_requests()
        self._init_driver()
        self._init_login()
        self._sockets = {}

    def _open(self, listeners: Mapping[str, object] | None, online: bool) -> None:
        """`open_client`'s start, every front end's: `listeners` added first, so that they hear
        the restore too; offline (`online=False`) before it (D6); then the stored session (L2)."""
        for listener_id, listener in (listeners or {}).items():
            self.add_connection_listener(listener_id, listener)
        if not online:
            self._apply(NetworkLost())
        self._restore()

    @property
    def open_sockets(self) -> int:
        """Sockets open or being opened by this client (at most one: D4)."""
        return len(self._sockets)

    # --- the front end's hook -------------------------------------------------------------------
    def _start_writer(self, entry: S) -> None:
        """Frames wait in `entry.outgoing`: have them sent in order (at once if the socket is
        authenticated and no writer runs; else once it is, or when the running writer ends)."""
        raise NotImplementedError

    # --- the other parts' hooks, loop-free ------------------------------------------------------
    def _has_socket(self, sock: int) -> bool:
        return sock in self._sockets

    def _socket_state(self, sock: int) -> SocketState | None:
        return self._sockets.get(sock)

    def _close_socket(self, sock: int) -> None:
        closing = self._sockets.pop(sock, None)
        if closing is not None:
            closing.cancel()
            self._fail_waiting(sock, closing)

    def _close_sockets(self) -> None:
        for sock, entry in self._sockets.items():
            entry.cancel()
            self._fail_waiting(sock, entry)
        self._sockets.clear()

    def _send(self, sock: int, frame: wire.ClientFrame) -> None:
        entry = self._sockets.get(sock)
        if entry is not None and not entry.broken:
            if entry.outgoing is None:
                entry.outgoing = []
            entry.outgoing.append(encode(frame))
            entry.queued += 1
            self._start_writer(entry)

    def _socket_ended(self, sock: int, entry: S, outcome: Event | None) -> None:
        """Socket `sock`'s task has ended (on its own, or by `cancel()`): it is forgotten (if the
        core's close has not already), what waited on it fails (D20), and the core hears
        `outcome`, how it ended (None: nothing to tell)."""
        if self._sockets.get(sock) is entry:
            del self._sockets[sock]
        self._fail_waiting(sock, entry)
        if outcome is not None:
            self._apply_quietly(outcome)
