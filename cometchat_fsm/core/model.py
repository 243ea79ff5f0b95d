"""One client's lifecycle state, and the actions the transition table names.

`ClientModel` is a `transitions` model: the shared Machine moves its `state` (a `Phase`).
Its actions do no I/O and read no clock; each appends effects to an outbox that `handle`
returns. The decisions are all in `lifecycle.TABLE`; here they are only carried out.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from transitions import Machine

from cometchat_fsm.core import errors
from cometchat_fsm.core.effects import (
    AttemptEnded,
    CloseSocket,
    DeleteSession,
    Effect,
    Notify,
    OpenSocket,
    SendKeepAlive,
    SendPing,
    StoreSession,
)
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.events import Event, Timer
from cometchat_fsm.core.lifecycle import ROUTES, row_index, shared_machine
from cometchat_fsm.core.model_timers import TimerActions
from cometchat_fsm.core.settings import AppSettings, Mode
from cometchat_fsm.core.states import (
    NOTIFICATION_OF_STATUS,
    ON_CONNECTION_ERROR,
    STATUS_OF_PHASE,
    AppState,
    ConnectionStatus,
    Network,
    Phase,
)

_NOTIFY = {status: Notify(name) for status, name in NOTIFICATION_OF_STATUS.items()}


class ClientModel(TimerActions):
    """A client's lifecycle: feed it events with `handle`, carry out the effects it returns."""

    state: Phase  # set by the Machine

    def __init__(self, settings: AppSettings, *, machine: Machine | None = None,
                 random: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.mode = settings.mode
        self.app = AppState.FOREGROUND
        self.network = Network.ONLINE
        self.user: str | None = None
        self.pending_user: str | None = None
        self.requested_user: str | None = None
        self.socket: int | None = None
        self.sockets_opened = 0
        self.armed: set[Timer] = set()
        self.retries = 0
        #: The server rejected this login's credentials (D16): no socket until a new login.
        self.rejected = False
        self.retry_after: float | None = None
        self.error: CometChatException | None = None
        # The process-wide source by default: a Random per client would be 85% of its memory.
        self.random = random if random is not None else _random.random
        self.outbox: list[Effect] = []
        #: When a list: every trigger handled and the index of the TABLE row it took (coverage).
        self.fired: list[tuple[str, int | None]] | None = None
        # The Machine is shared and holds no reference to its models: it is only the table.
        # `add_model` would bind ~55 helper methods to every client (19 KiB instead of ~3).
        self.machine = machine if machine is not None else shared_machine()
        self.state = Phase.LOGGED_OUT

    # --- Reading ------------------------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        """The phase now (the machine's state)."""
        return self.state

    @property
    def status(self) -> ConnectionStatus:
        """The connection status of the phase now (STATUS_OF_PHASE, D11)."""
        return STATUS_OF_PHASE[self.state]

    def handle(self, event: Event) -> list[Effect]:
        """Apply one event; return the effects to carry out, in order.

        Raises `CometChatException` for an app call whose precondition fails (E1, D3, D10, P1);
        nothing changes then.
        """
        events = self.machine.events
        for trigger in ROUTES[type(event)](self, event):
            before = self.state
            rows = events.get(trigger)
            if rows is None or before.name not in rows.transitions:
                continue  # no row for this trigger in this phase: nothing happens (and nothing logs)
            if self.fired is not None:
                self.fired.append((trigger, row_index(self, trigger)))
            rows.trigger(self)
            if self.state is not before:
                status = STATUS_OF_PHASE[self.state]
                if status is not STATUS_OF_PHASE[before]:
                    self.outbox.append(_NOTIFY[status])
        self.retry_after = None
        self.error = None
        out, self.outbox = self.outbox, []
        return out

    # --- Conditions ---------------------------------------------------------------------------
    def auto(self) -> bool:
        """Condition: auto mode (auto_establish_socket_connection, A1-A3)."""
        return self.mode is Mode.AUTO

    def manual(self) -> bool:
        """Condition: manual mode (M1-M5)."""
        return self.mode is Mode.MANUAL

    def foreground(self) -> bool:
        """Condition: the app is in the foreground."""
        return self.app is AppState.FOREGROUND

    def background(self) -> bool:
        """Condition: the app is in the background (A2, M2)."""
        return self.app is AppState.BACKGROUND

    def network_up(self) -> bool:
        """Condition: the platform reports the network online (D6, D6a)."""
        return self.network is Network.ONLINE

    def retries_left(self) -> bool:
        """Condition: max_reconnect_attempts is unlimited or not used up (D6, D15)."""
        limit = self.settings.max_reconnect_attempts
        return limit is None or self.retries < limit

    def credentials_rejected(self) -> bool:
        """Condition: the server rejected this login's credentials (D16): no socket until a new login."""
        return self.rejected

    def awaiting_pong(self) -> bool:
        """Condition: a keep-alive's answer is awaited (the PONG timer is armed), so a frame from
        the server answers it (D17)."""
        return Timer.PONG in self.armed

    # --- Actions: login -----------------------------------------------------------------------
    def remember_login(self) -> None:
        """Action: the login just asked for is now the pending one (D10)."""
        self.pending_user, self.requested_user = self.requested_user, None

    def adopt_user(self) -> None:
        """Action: the server verified the pending login; its user is the logged-in one (L1, D10, D16)."""
        self.user, self.pending_user = self.pending_user, None
        self.rejected = False

    def forget_user(self) -> None:
        """Action: no user any more, none pending (D9, D16)."""
        self.user = self.pending_user = None
        self.rejected = False

    def reject_credentials(self) -> None:
        """D16: the user stays signed in, but the stored session goes and no socket opens with it."""
        self.rejected = True
        self.outbox.append(DeleteSession())

    def store_session(self) -> None:
        """Action: keep the logged-in user in the session store (L1, L2)."""
        assert self.user is not None
        self.outbox.append(StoreSession(self.user))

    def delete_session(self) -> None:
        """Action: delete the stored session (D9)."""
        self.outbox.append(DeleteSession())

    # --- Actions: socket ----------------------------------------------------------------------
    def open_socket(self) -> None:
        """Action: open the one socket (D4) for the logged-in user and arm the attempt timer, connect_timeout
        seconds (P2)."""
        assert self.socket is None and self.user is not None, "at most one socket (D4)"
        self.sockets_opened += 1
        self.socket = self.sockets_opened
        self.outbox.append(OpenSocket(self.socket, self.user))
        self._start(Timer.ATTEMPT, self.settings.connect_timeout)

    def close_socket(self) -> None:
        """Action: close the socket; an attempt in flight ends cancelled, with the error saying why (D1, D6a,
        A2, M5)."""
        if Timer.ATTEMPT in self.armed:  # closing mid-attempt cancels that attempt
            self._cancel(Timer.ATTEMPT)
            self.outbox.append(AttemptEnded(self._cancellation().exception()))
        if self.socket is not None:
            self.outbox.append(CloseSocket(self.socket))
            self.socket = None

    def succeed_attempt(self) -> None:
        """Action: the attempt succeeded (the server accepted the authentication, D5)."""
        self._cancel(Timer.ATTEMPT)
        self.outbox.append(AttemptEnded(None))

    def fail_attempt(self) -> None:
        """Action: the attempt failed; its error (ERR_WEBSOCKET_CONNECTION_FAILED) says whether the client
        retries (D6, D15)."""
        self._cancel(Timer.ATTEMPT)
        self.outbox.append(AttemptEnded(self._failure().exception()))

    def give_up(self) -> None:
        """D15: no attempt is left; said once, before the status changes (as D5's rejection)."""
        self.outbox.append(Notify(ON_CONNECTION_ERROR, errors.RETRIES_EXHAUSTED.exception()))

    # What an ended attempt's error tells the app: what the client does next (D15). Actions run
    # after the phase has moved, so the phase is where the client went.
    def _failure(self) -> errors.ErrorSpec:
        if self.state is Phase.RETRY_WAIT:
            return errors.ATTEMPT_FAILED  # a retry is scheduled
        if self.foreground():
            return errors.ATTEMPT_FAILED_GAVE_UP
        return errors.ATTEMPT_FAILED_IN_BACKGROUND

    def _cancellation(self) -> errors.ErrorSpec:
        if self.state is Phase.OFFLINE:
            return errors.ATTEMPT_CANCELLED_OFFLINE
        if self.state is not Phase.LOGGED_OUT and self.background():
            return errors.ATTEMPT_CANCELLED_AUTO_BACKGROUND if self.auto() \
                else errors.ATTEMPT_CANCELLED_MANUAL_BACKGROUND
        return errors.ATTEMPT_CANCELLED

    def reject_attempt(self) -> None:
        """Action: the server rejected the authentication: the attempt ends with ERR_AUTH_REJECTED (or the
        server's error), told once by on_connection_error (D5, D11)."""
        error = self.error if self.error is not None else errors.AUTH_REJECTED.exception()
        self._cancel(Timer.ATTEMPT)
        self.outbox.append(AttemptEnded(error))
        self.outbox.append(Notify(ON_CONNECTION_ERROR, error))

    def send_ping(self) -> None:
        """Action: send the app's ping on the socket (M3)."""
        assert self.socket is not None
        self.outbox.append(SendPing(self.socket))

    def send_keepalive(self) -> None:
        """Action: send a keep-alive and arm the pong timer, pong_timeout seconds (D7)."""
        assert self.socket is not None
        self.outbox.append(SendKeepAlive(self.socket))
        self._start(Timer.PONG, self.settings.pong_timeout)

    def take_pong(self) -> None:
        """Action: the pong came: cancel the pong timer, arm the next keep-alive (D7)."""
        self._cancel(Timer.PONG)
        self.arm_keepalive()
