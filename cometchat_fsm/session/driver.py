"""Driving the lifecycle core (sans I/O): events in, effects out, carried out in order.

The core decides everything; this part feeds it app calls, platform signals, frames and timer
firings as events, and carries out the effects it returns: a socket to open or close (the front
end's hooks), a frame to queue, a timer to arm or cancel (timers are data here: the front end
only wakes the client at a deadline), a notification for the listeners, the session to store
or delete, the `connect()` calls to resolve.
"""

from __future__ import annotations

import logging
from typing import Any

from cometchat_fsm.core import errors
from cometchat_fsm.core.effects import (
    AttemptEnded,
    CancelTimer,
    CloseSocket,
    DeleteSession,
    Effect,
    Notify,
    OpenSocket,
    SendKeepAlive,
    SendPing,
    StartTimer,
    StoreSession,
)
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.events import (
    AuthAccepted,
    AuthRejected,
    Event,
    FrameReceived,
    PongReceived,
    SessionRestored,
    ThrottleLifted,
    ThrottleStarted,
    Timer,
    TimerFired,
)
from cometchat_fsm.core.states import Phase
from cometchat_fsm.session.requests import RequestsPart
from cometchat_fsm.session.state import Waiter
from cometchat_fsm.session.store import StoredSession
from cometchat_fsm.session.values import ConnectedInfo
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import ProtocolError, shown

log = logging.getLogger("cometchat_fsm.session.driver")


class DriverPart(RequestsPart):
    """Events to the core, its effects carried out; frames from the server as events."""

    __slots__ = ("_draining", "_pending", "_timers", "_waiters")

    _pending: list[Effect]
    _draining: bool
    _waiters: list[Waiter]
    #: Armed timers: the core's Timer -> the front end's handle for its deadline.
    _timers: dict[Timer, object]

    def _init_driver(self) -> None:
        self._pending = []
        self._draining = False
        self._waiters = []
        self._timers = {}

    # --- the front end's hooks ------------------------------------------------------------------
    def _open_socket(self, sock: int) -> None:
        raise NotImplementedError

    def _arm_timer(self, timer: Timer, delay: float) -> object:
        """Have `_timer_fired(timer, handle)` called `delay` seconds from now; return the handle."""
        raise NotImplementedError

    def _disarm_timer(self, handle: object) -> None:
        raise NotImplementedError

    # --- the sockets' (SocketsPart, session/sockets.py) -------------------------------------------
    def _close_socket(self, sock: int) -> None:
        """Stop socket `sock` at once; then `_fail_waiting` for it."""
        raise NotImplementedError

    def _close_sockets(self) -> None:
        """Stop every socket at once and fail what waits on them."""
        raise NotImplementedError

    # --- events in, effects out -----------------------------------------------------------------
    def _call(self, name: str, event: Event, **args: Any) -> None:
        """An app call or platform signal: noted in the trace (if recording), then applied."""
        noted = self._trace.input(self._now(), name, **args) if self._trace is not None else -1
        try:
            self._apply(event)
        except CometChatException as exc:
            if self._trace is not None:
                self._trace.failed(noted, exc.code)
            raise

    def _apply(self, event: Event) -> None:
        """Hand `event` to the core and carry out its effects in order. An effect that leads to
        another event (a listener calling the client) queues behind the ones already due."""
        self._pending.extend(self._model.handle(event))
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending:
                self._carry_out(self._pending.pop(0))
        finally:
            self._draining = False

    def _apply_quietly(self, event: Event) -> None:
        """From a background task: a failure is logged, never raised into the front end's tasks."""
        try:
            self._apply(event)
        except Exception:
            log.exception("event %r could not be applied", event)

    def _carry_out(self, effect: Effect) -> None:
        match effect:
            case OpenSocket(socket=sock):
                self._open_socket(sock)
            case CloseSocket(socket=sock):
                self._close_socket(sock)
            case SendKeepAlive(socket=sock):
                self._send(sock, wire.KeepAlive())
            case SendPing(socket=sock):
                self._send(sock, wire.Ping())
            case StartTimer(timer=timer, delay=delay):
                self._cancel_timer(timer)
                if not self._closed:  # a closed client runs no timer
                    self._timers[timer] = self._arm_timer(timer, delay)
            case CancelTimer(timer=timer):
                self._cancel_timer(timer)
            case Notify(name=name, error=error):
                self._notify(name, error)
            case StoreSession(user=user):
                token = self._token
                if token is not None:
                    self._store_quietly(lambda: self._store.save(
                        self.app_id, StoredSession(user, token, self._place())))
            case DeleteSession():
                self._store_quietly(lambda: self._store.delete(self.app_id))
            case AttemptEnded(error=error):
                waiters, self._waiters = self._waiters, []
                for w in waiters:
                    w.error = error
                    w.done.set()

    def _cancel_timer(self, timer: Timer) -> None:
        handle = self._timers.pop(timer, None)
        if handle is not None:
            self._disarm_timer(handle)

    def _timer_fired(self, timer: Timer, handle: object) -> None:
        if self._timers.get(timer) is handle:  # not cancelled or re-armed meanwhile
            del self._timers[timer]
            self._apply_quietly(TimerFired(timer))

    # --- frames in ------------------------------------------------------------------------------
    def _on_frame(self, sock: int, frame: wire.Frame) -> None:
        """A frame the server sent on socket `sock`, as events and answers. ProtocolError for
        a frame that has no place on the realtime socket (the front end closes it with 1008)."""
        if not self._has_socket(sock):
            return  # read just before the core closed this socket: it speaks for nothing now
        if not isinstance(frame, wire.Pong):
            self._apply_quietly(FrameReceived(sock))  # D17: any frame answers a pending keep-alive
        match frame:
            case wire.AuthOk():
                self._connected_info = self._resume(frame)
                self._skipping = self._resuming = False  # D21: this socket's replay starts after _last_id
                self._apply_quietly(AuthAccepted(sock))
            case wire.AuthRejected(message=message):
                self._apply_quietly(AuthRejected(sock, errors.AUTH_REJECTED.exception(message or "")))
            case wire.Pong():
                self._apply_quietly(PongReceived(sock))
            case wire.Throttle(active=active):
                self._apply_quietly(ThrottleStarted(sock) if active else ThrottleLifted(sock))
            case wire.Delivery(message=message):
                self._deliver(sock, message)
            case wire.Resumed():
                if self._resuming:  # message frames from now on follow our last one (D21)
                    self._skipping = self._resuming = False
            case wire.History() | wire.Sent() | wire.ErrorAnswer():
                self._answered(frame)
            case _:
                raise ProtocolError(f"a {shown(frame.type)} frame on the realtime socket")

    def _resume(self, frame: wire.AuthOk) -> ConnectedInfo:
        """Read D13's part of `auth_ok`; a server that did not know our place gives its newest id."""
        if not frame.resumed and frame.last_id is not None:
            self._last_id = frame.last_id
        if frame.gap is not None:
            return ConnectedInfo(frame.resumed, True, frame.gap.after, frame.gap.through)
        return ConnectedInfo(frame.resumed)

    # --- life and death -------------------------------------------------------------------------
    def _restore(self) -> None:
        """L2: a session stored by an earlier run is the current one again."""
        stored = self._store.load(self.app_id)
        if stored is not None:
            self._token = stored.auth_token
            # D13: resume where the last run stopped (the place written last, D21: per user, D19)
            self._last_id = self._stored_place(stored.uid, stored.last_id)
            self._apply(SessionRestored(stored.uid))  # L2

    def _close(self) -> None:
        """The app exits: sockets and timers end; waiting sends and fetches fail; listeners hear
        nothing more. The stored session and the user's place keep the last message the app
        took from messages() (the last one received if the inbox is empty), so that the next
        run resumes after it and replays what was left unread (D13, D19, D21)."""
        user, token = self._model.user, self._token
        place_id = self._place()
        if user is not None and token is not None and place_id is not None \
                and self._model.phase is not Phase.LOGGING_IN \
                and not self._model.credentials_rejected():  # D16: a rejected session stays deleted
            place = StoredSession(user, token, place_id)
            self._store_quietly(lambda: self._store.save(self.app_id, place))
            self._save_place(user, place_id)
        self._closed = True
        if self._trace is not None:
            self._trace.close(self._now())  # the end line: watched up to now
        self._close_listeners()
        self._close_sockets()
        for timer in list(self._timers):
            self._cancel_timer(timer)
        self._wake_readers()  # readers take what is left, then end
        for w in self._waiters:
            w.error = errors.CLIENT_CLOSED.exception()
            w.done.set()
