"""Virtual-time driver over the core, with an ideal in-memory server.

`Simulation` is what `cometchat-fsm simulate` runs and what the conformance checks drive. It
carries out the core's effects at once, runs its timers on a virtual clock, and plays a server
that answers every socket after `server_latency` seconds unless a fault says otherwise.

Time is kept in whole microseconds, so `advance(29.9)` then `advance(0.1)` lands exactly on a
timer armed 30 s earlier (floats would drift past the edge).

Every number of seconds a caller gives (advance, server_latency, server_overloaded) is from 0 to
MAX_SECONDS, and the virtual clock stops at MAX_SECONDS: an `advance` past it is refused
(ERR_INVALID_ARGUMENT). So the work of any run is bounded: at most MAX_SECONDS of keep-alives,
retries and timers, whatever the inputs.
"""

from __future__ import annotations

import itertools
import random

from transitions import Machine

from cometchat_fsm.core.effects import Effect
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.events import (
    Connect,
    Disconnect,
    EnterBackground,
    EnterForeground,
    Login,
    Logout,
    NetworkLost,
    NetworkRestored,
    Ping,
    SessionRestored,
    Timer,
)
from cometchat_fsm.core.settings import AppSettings, init
from cometchat_fsm.core.states import AppState, ConnectionStatus, Network, Phase
from cometchat_fsm.sim.ideal_server import LOGIN_REFUSED, IdealServer
from cometchat_fsm.sim.observe import Observation, Recorder
from cometchat_fsm.sim.simulation_state import (
    INVALID_ARGUMENT,
    MAX_HINT,
    MAX_SECONDS,
    SUCCESS_CONNECT,
    SUCCESS_DISCONNECT,
    SUCCESS_PING,
    US,
    ServerState,
    _Due,
    to_us,
)


class Simulation(IdealServer):
    """One client and an ideal server in virtual time; the conventions the checks rely on are listed
    in the docstring of `conformance/oracle.py`.

    `Simulation(settings, seed=0, app_id="app")` runs `init` (L3: ERR_CHAT_API_FAILURE for an
    empty app id or bad settings). The app calls (`login`, `connect`, ...) and platform signals
    (`enter_background`, `network_lost`, ...) take effect at once, at the current virtual time
    `now` (seconds); time moves only with `advance(seconds)`. `seed` fixes the backoff's jitter
    (D6). Observables: `status` (alias `get_connection_status()`), `logged_in_user` (alias
    `get_logged_in_user()`), `phase`, `notifications`, `errors`, `open_sockets`; the `server_*`
    methods are the server's faults (sim/ideal_server.py, `IdealServer`; the attributes and the
    machinery the parts share are in sim/simulation_state.py).
    """

    def __init__(self, settings: AppSettings, *, seed: int = 0, app_id: str = "app",
                 machine: Machine | None = None) -> None:
        self.init_message = init(app_id, settings)  # L3
        self.settings = settings
        self.seed = seed
        self._random = random.Random(seed)
        self._machine = machine
        self._now_us = 0
        self._queue: list[_Due] = []
        self._seq = itertools.count()
        self._timers: dict[Timer, int] = {}  # timer -> seq of its live queue entry
        self._logins = 0
        self._closed: list[int] = []  # closed sockets whose late outcomes race the next socket
        self.server = ServerState()
        self.stored_user: str | None = None  # the session store (L1): survives restart()
        self.notifications: list[tuple[float, str]] = []
        self.errors: list[tuple[float, CometChatException]] = []
        self.attempts: list[tuple[float, CometChatException | None]] = []
        self.effects_log: list[tuple[float, Effect]] = []
        self.model = self._new_model()
        self._record = Recorder()  # for observation(): pictures of the run
        self._observe()

    # --- Observables --------------------------------------------------------------------------
    @property
    def status(self) -> ConnectionStatus:
        """The connection status the SDK would report now (D11); `get_connection_status()` is the
        SDK-compatible alias (CometChat's getConnectionStatus)."""
        return self.model.status

    def get_connection_status(self) -> ConnectionStatus:
        """SDK-compatible alias of `status` (CometChat's getConnectionStatus): the status now."""
        return self.status

    @property
    def phase(self) -> Phase:
        """The machine's phase now: finer than `status` (core/states.py, STATUS_OF_PHASE)."""
        return self.model.phase

    @property
    def open_sockets(self) -> int:
        """Sockets of this client the server has open or opening (at most 1: D4)."""
        return len(self.server.sockets)

    @property
    def logged_in_user(self) -> str | None:
        """The uid of the logged-in user (L1, L2), None when logged out or while the first login
        is pending (D10); `get_logged_in_user()` is the SDK-compatible alias."""
        return self.model.user

    def get_logged_in_user(self) -> str | None:
        """SDK-compatible alias of `logged_in_user` (CometChat's getLoggedinUser): the uid of the
        logged-in user, or None. (The live client's returns a `User` holding the uid.)"""
        return self.logged_in_user

    @property
    def armed_timers(self) -> frozenset[Timer]:
        """The core's timers armed now (core/events.py, `Timer`)."""
        return frozenset(self.model.armed)

    def observation(self) -> Observation:
        """The run so far: phase, app state and network over time, every timer armed, and the
        notifications (read-only; observe.py)."""
        return self._record.observation(self.now, self.notifications)

    # --- App calls ----------------------------------------------------------------------------
    def login(self, uid: str) -> None:
        """Log in as `uid`; the ideal server verifies it after `server_latency` seconds, then
        auto mode connects (L1). A login while one is pending raises ERR_LOGIN_IN_PROGRESS
        (D10); the same user again keeps the socket, another user replaces the first (D10);
        with `server_refuse_login` on, the login fails (D16). An empty uid raises
        ERR_INVALID_ARGUMENT."""
        if not isinstance(uid, str) or not uid.strip():
            raise INVALID_ARGUMENT.exception(f"uid must be a non-empty string, not {uid!r}")
        before = self.model.phase
        self._feed(Login(uid))
        if self.model.phase is Phase.LOGGING_IN and before is not Phase.LOGGING_IN:
            self._logins += 1  # the answer names its login, so an abandoned one verifies nothing
            self._schedule(self.server.latency_us, ("login", self._logins, uid))
        elif self.model.user == uid and before is not Phase.LOGGING_IN:
            # D16: the same user's credentials are verified again; D10: the socket stays.
            self._schedule(self.server.latency_us, ("renew", self._logins, uid))
        self._settle()

    def logout(self) -> None:
        """Log out: close the socket, cancel every timer and attempt, forget the stored session
        (D9). Logged out already, nothing happens."""
        self._input(Logout())

    def connect(self) -> str:
        """Ask for a connection (M1; in auto mode it is already wanted: A1) and return the SDK's
        success message "Web socket connection successful" (E2); the outcome comes later as
        on_connected or on_connection_error (D5, D6). Idempotent: never a second socket (D4).
        Raises ERR_NOT_LOGGED_IN (E1), ERR_AUTH_REJECTED after a rejected authentication (D5,
        D16), ERR_APP_IN_BACKGROUND in auto mode in the background (P1)."""
        self._input(Connect())
        return SUCCESS_CONNECT

    def disconnect(self) -> str:
        """Close the connection and every plan to reconnect (D1), returning "Web socket
        disconnection successful" (E2). Raises ERR_NOT_LOGGED_IN (E1)."""
        self._input(Disconnect())
        return SUCCESS_DISCONNECT

    def ping(self) -> str:
        """Send a ping on the live connection, returning "ping successful" (E2); in manual mode in
        the background it renews the 30 s window (M3, D2). Raises ERR_NOT_LOGGED_IN (E1), then
        ERR_NO_WEBSOCKET_CONNECTION when not connected (D3)."""
        self._input(Ping())
        return SUCCESS_PING

    # --- Platform signals ---------------------------------------------------------------------
    def enter_background(self) -> None:
        """The platform says the app left the foreground: auto mode drops the connection (A2),
        manual mode keeps it for the background window, 30 s unless pinged (M2, D2, D8)."""
        self._input(EnterBackground())

    def enter_foreground(self) -> None:
        """The platform says the app is in the foreground again: auto mode connects when logged
        in (A1), a wanted connection is retried at once (D6)."""
        self._input(EnterForeground())

    def network_lost(self) -> None:
        """The platform says the network is down: an attempt in flight is cancelled and no retry
        is made until it is back (D6, D6a)."""
        self._input(NetworkLost())

    def network_restored(self) -> None:
        """The platform says the network is back: a wanted connection is tried at once (D6a)."""
        self._input(NetworkRestored())

    def restart(self) -> None:
        """The app process is killed and launched again: sockets and timers die with it, the
        session store survives (L1), and init restores the stored session (L2)."""
        network = self.model.network
        self.server.sockets.clear()
        self.server.silent.clear()
        self._timers.clear()
        self._record.discard_all(self.now)
        self._queue.clear()  # timers and in-flight answers belonged to the dead process
        fired = self.model.fired
        self.model = self._new_model()
        self.model.fired = fired  # coverage recording goes on across the restart
        if network is Network.OFFLINE:
            self._feed(NetworkLost())
        if self.stored_user is not None:
            self._feed(SessionRestored(self.stored_user))
        self._settle()

    # --- Time ---------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, firing every timer and server answer due.

        ERR_INVALID_ARGUMENT (and nothing happens) if the clock would pass MAX_SECONDS.
        """
        target = self._now_us + to_us(seconds)
        if target > MAX_SECONDS * US:
            raise INVALID_ARGUMENT.exception(
                f"the virtual clock stops at {MAX_SECONDS} s; it is at {format(self.now, 'g')} s, "
                f"so at most {(MAX_SECONDS * US - self._now_us) / US:g} s more can pass")
        self._run_until(target)


__all__ = ["INVALID_ARGUMENT", "LOGIN_REFUSED", "MAX_HINT", "MAX_SECONDS", "SUCCESS_CONNECT",
           "SUCCESS_DISCONNECT", "SUCCESS_PING", "US", "AppState", "Network", "ServerState", "Simulation",
           "to_us"]
