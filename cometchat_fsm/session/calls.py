"""The app's lifecycle calls and platform signals, and what it can read (sans I/O)."""

from __future__ import annotations

from cometchat_fsm.core import errors
from cometchat_fsm.core.events import (
    Connect,
    Disconnect,
    EnterBackground,
    EnterForeground,
    Event,
    NetworkLost,
    NetworkRestored,
    Ping,
)
from cometchat_fsm.core.states import LIVE, ConnectionStatus, Phase
from cometchat_fsm.session.driver import DriverPart
from cometchat_fsm.session.state import Waiter
from cometchat_fsm.session.values import ConnectedInfo, User
from cometchat_fsm.sim.simulation import SUCCESS_CONNECT, SUCCESS_DISCONNECT, SUCCESS_PING

#: connect() waits this long beyond `connect_timeout` for its attempt to end (a guard: P2).
CONNECT_GUARD = 5.0


class CallsPart(DriverPart):
    """connect, disconnect, ping, the platform signals, and the read-only view."""

    __slots__ = ()

    # --- Reading ------------------------------------------------------------------------------
    @property
    def status(self) -> ConnectionStatus:
        """The SDK's status: connecting, connected, disconnected or featureThrottled (D11), a
        `StrEnum` equal to those strings; `get_connection_status()` is the SDK-compatible alias."""
        return self._model.status

    def get_connection_status(self) -> ConnectionStatus:
        """SDK-compatible alias of `status` (the SDK's getConnectionStatus)."""
        return self._model.status

    @property
    def logged_in_user(self) -> User | None:
        """The user logged in (also while a login or a restored session is verified), else None
        (L1, L2); `get_logged_in_user()` is the SDK-compatible alias."""
        return User(self._model.user) if self._model.user is not None else None

    def get_logged_in_user(self) -> User | None:
        """SDK-compatible alias of `logged_in_user` (the SDK's getLoggedinUser)."""
        return self.logged_in_user

    @property
    def phase(self) -> Phase:
        """The core's phase (finer than the status: LOGGING_IN, BACKOFF, OFFLINE, ...)."""
        return self._model.phase

    @property
    def credentials_rejected(self) -> bool:
        """True after the server rejected this login's credentials (D16): until the next login,
        `connect()` raises ERR_AUTH_REJECTED at once and nothing opens a socket."""
        return self._model.credentials_rejected()

    @property
    def connected_info(self) -> ConnectedInfo:
        """What the server said about the last connection that opened (D13)."""
        return self._connected_info

    # --- App calls ----------------------------------------------------------------------------
    async def connect(self) -> str:
        """Open the socket (M1, D4); return E2's message, or raise why the attempt failed:
        the core's precondition errors (E1), ERR_NO_INTERNET offline, the attempt's own error
        (D5, D16), ERR_CONNECT_TIMEOUT if it did not end within connect_timeout + 5 s."""
        self._check_open()
        self._call("connect", Connect())
        phase = self._model.phase
        if phase in LIVE:
            return SUCCESS_CONNECT
        if phase is Phase.OFFLINE:
            raise errors.CONNECT_OFFLINE.exception()
        waiter = Waiter(self._signal())
        self._waiters.append(waiter)
        # The core ends every attempt within connect_timeout (P2); the bound is a second guard.
        bound = self.settings.connect_timeout + CONNECT_GUARD
        try:
            ended = await self._wait_for(waiter.done, bound)
        finally:
            if waiter in self._waiters:  # timed out or cancelled: nobody will resolve it
                self._waiters.remove(waiter)
        if not ended:
            raise errors.CONNECT_TIMEOUT.exception(f"no end of the attempt after {bound:g} s")
        if waiter.error is not None:
            raise waiter.error
        return SUCCESS_CONNECT

    async def disconnect(self) -> str:
        """D1: close the socket, stop every retry and timer."""
        self._check_open()
        self._call("disconnect", Disconnect())
        return SUCCESS_DISCONNECT

    async def ping(self) -> str:
        """M3: tell the server the app is alive; in manual background mode, renews the window."""
        self._check_open()
        self._call("ping", Ping())
        return SUCCESS_PING

    # --- Platform signals ---------------------------------------------------------------------
    def enter_background(self) -> None:
        """The app left the foreground (A2: auto mode closes; M2, D2: manual mode's 30 s window)."""
        self._platform("enter_background", EnterBackground())

    def enter_foreground(self) -> None:
        """The app is in the foreground again (A1: auto mode connects)."""
        self._platform("enter_foreground", EnterForeground())

    def network_lost(self) -> None:
        """The platform lost the network (D6: silent, no attempt while offline)."""
        self._platform("network_lost", NetworkLost())

    def network_restored(self) -> None:
        """The platform has the network again (D6: an attempt at once when conditions return)."""
        self._platform("network_restored", NetworkRestored())

    def _platform(self, name: str, event: Event) -> None:
        self._check_open()
        self._call(name, event)
