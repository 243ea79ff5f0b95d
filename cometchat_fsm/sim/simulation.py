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

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field

from transitions import Machine

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
    Connect,
    Disconnect,
    EnterBackground,
    EnterForeground,
    Event,
    FrameReceived,
    Login,
    LoginFailed,
    LoginVerified,
    Logout,
    NetworkLost,
    NetworkRestored,
    Ping,
    PongReceived,
    SessionRenewed,
    SessionRestored,
    SocketClosed,
    ThrottleLifted,
    ThrottleStarted,
    Timer,
    TimerFired,
)
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings, init
from cometchat_fsm.core.states import LIVE, AppState, ConnectionStatus, Network, Phase
from cometchat_fsm.sim.observe import CANCELLED, FIRED, Observation, Recorder

US = 1_000_000  # microseconds per second
#: The largest number of seconds any argument takes, and the latest virtual time (s): about 27.8
#: hours, far beyond every timer of the lifecycle (the longest are the 30 s window and backoff
#: cap). It bounds a run's work: a reconnection loop of 100,000 s takes well under a second.
MAX_SECONDS = 100_000
#: The largest retry-after hint a server fault may carry (seconds; as in traces). A hint is not
#: waited out as given: max_retry_after bounds the wait (D18), so it costs no extra work.
MAX_HINT = 1_000_000

INVALID_ARGUMENT = errors.BAD_ARGUMENTS
SUCCESS_CONNECT = "Web socket connection successful"  # E2
SUCCESS_DISCONNECT = "Web socket disconnection successful"
SUCCESS_PING = "ping successful"
#: The ideal server's answer to a login it refuses (`server_refuse_login`).
LOGIN_REFUSED = errors.ErrorSpec("ERR_AUTH_KEY_INVALID", "The auth key is not valid.",
                                 "Check the uid and the credentials, then try again.")


def to_us(seconds: float, what: str = "seconds", limit: int = MAX_SECONDS) -> int:
    """Seconds to whole microseconds; ERR_INVALID_ARGUMENT for anything but a number from 0 to
    `limit` (MAX_SECONDS unless said)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or not 0 <= seconds <= limit:
        raise INVALID_ARGUMENT.exception(f"{what} must be a number of seconds from 0 to {limit}, "
                                         f"not {seconds!r}")
    return round(seconds * US)


@dataclass(order=True)
class _Due:
    at: int
    seq: int
    what: object = field(compare=False)


@dataclass
class ServerState:
    """The ideal server's switches (its faults) and what it sees of the client."""

    reject_auth: bool = False
    throttle: bool = False
    latency_us: int = 0
    overloaded: float | None = None  # retry-after hint sent when refusing a socket
    flap_us: int | None = None  # drop each socket this long after accepting it (D14)
    refuse_login: bool = False  # refuse every login (D16)
    busy_us: int | None = None  # a keep-alive's answer arrives this late, behind other frames (D17)
    sockets: set[int] = field(default_factory=set)  # the client's sockets open or opening
    silent: set[int] = field(default_factory=set)  # half-open: nothing more arrives from them
    pings: int = 0  # app pings received (M3)
    keepalives: int = 0  # keep-alives received (D7)
    late: bool = False  # deliver late outcomes of closed sockets and late firings of cancelled timers


class Simulation:
    """One client and an ideal server in virtual time; the conventions the checks rely on are listed
    in the docstring of `conformance/oracle.py`.

    `Simulation(settings, seed=0, app_id="app")` runs `init` (L3: ERR_CHAT_API_FAILURE for an
    empty app id or bad settings). The app calls (`login`, `connect`, ...) and platform signals
    (`enter_background`, `network_lost`, ...) take effect at once, at the current virtual time
    `now` (seconds); time moves only with `advance(seconds)`. `seed` fixes the backoff's jitter
    (D6). Observables: `status` (alias `get_connection_status()`), `logged_in_user` (alias
    `get_logged_in_user()`), `phase`, `notifications`, `errors`, `open_sockets`; the `server_*`
    methods are the server's faults.
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

    def _new_model(self) -> ClientModel:
        return ClientModel(self.settings, machine=self._machine, random=self._random.random)

    # --- Observables --------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """The virtual time in seconds since the start (0 to MAX_SECONDS)."""
        return self._now_us / US

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

    def _observe(self) -> None:
        m = self.model
        self._record.state(self.now, m.phase, m.app, m.network)

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
        while self._queue and self._queue[0].at <= target:
            due = heapq.heappop(self._queue)
            self._now_us = due.at
            self._fire(due)
        self._now_us = target

    # --- Server faults ------------------------------------------------------------------------
    def server_drop(self) -> None:
        """The server closes the client's socket."""
        sock = self.model.socket
        if sock is not None and sock in self.server.sockets:
            self.server.sockets.discard(sock)
            self._input(SocketClosed(sock))

    def server_silent(self) -> None:
        """The current socket goes half-open: nothing more arrives on it; new sockets work."""
        if self.model.socket is not None:
            self.server.silent.add(self.model.socket)

    def server_reject_auth(self, flag: bool) -> None:
        """While on, the server rejects every socket's authentication (D5, D16). A flag that is not
        a bool raises ERR_INVALID_ARGUMENT."""
        self.server.reject_auth = self._flag(flag)

    def server_throttle(self, flag: bool) -> None:
        """While on, the server throttles the live connection: status featureThrottled (D12). A
        flag that is not a bool raises ERR_INVALID_ARGUMENT."""
        self.server.throttle = self._flag(flag)
        sock = self.model.socket
        if sock is not None and self._reachable(sock) and self.model.phase in LIVE:
            self._input(ThrottleStarted(sock) if flag else ThrottleLifted(sock))

    def server_latency(self, seconds: float) -> None:
        """From now on the server answers logins, sockets and keep-alives after `seconds` (0 to
        MAX_SECONDS; otherwise ERR_INVALID_ARGUMENT); an attempt unanswered for connect_timeout
        fails (P2)."""
        self.server.latency_us = to_us(seconds, "latency")

    def server_overloaded(self, retry_after: float | None) -> None:
        """While set, the server refuses new sockets with this retry-after hint (D6, D18)."""
        if retry_after is not None:
            to_us(retry_after, "retry_after", MAX_HINT)
        self.server.overloaded = retry_after

    def server_flap(self, seconds: float | None) -> None:
        """From now on the server drops every socket `seconds` after accepting its
        authentication (a flapping server, D14); None stops it (no socket is dropped since)."""
        self.server.flap_us = None if seconds is None else to_us(seconds, "flap")

    def deliver_late(self, flag: bool) -> None:
        """While on, the driver behaves as a real event loop can: a socket the core closed still
        reports outcomes (its close, an acceptance, a pong) just after, and again just after the
        next socket opens; a timer the core cancelled still fires just after, unless it was armed
        again. The core must ignore each
        (conformance/explore.py checks the same from every state)."""
        self.server.late = self._flag(flag)

    def server_refuse_login(self, flag: bool) -> None:
        """While on, the server refuses every login (the client then stays logged out, D16)."""
        self.server.refuse_login = self._flag(flag)

    def server_busy(self, seconds: float | None) -> None:
        """From now on the link is busy (D17): the answer to each keep-alive arrives `seconds`
        after its latency, behind data already on the way, and a frame of that data arrives
        after the latency, as the keep-alive goes out; None: answers come after the latency again."""
        self.server.busy_us = None if seconds is None else to_us(seconds, "busy")

    # --- Machinery ----------------------------------------------------------------------------
    @staticmethod
    def _flag(flag: bool) -> bool:
        if not isinstance(flag, bool):
            raise INVALID_ARGUMENT.exception(f"flag must be True or False, not {flag!r}")
        return flag

    def _reachable(self, sock: int) -> bool:
        return sock in self.server.sockets and sock not in self.server.silent

    def _input(self, event: Event) -> None:
        self._feed(event)
        self._settle()

    def _settle(self) -> None:
        """Process everything due at this very instant (a server with no latency answers now)."""
        self.advance(0)

    def _feed(self, event: Event) -> None:
        for effect in self.model.handle(event):
            self._carry_out(effect)
        self._observe()

    def _schedule(self, delay_us: int, what: object) -> int:
        seq = next(self._seq)
        heapq.heappush(self._queue, _Due(self._now_us + delay_us, seq, what))
        return seq

    def _carry_out(self, effect: Effect) -> None:
        self.effects_log.append((self.now, effect))
        match effect:
            case OpenSocket(socket=sock):
                self.server.sockets.add(sock)
                for old in self._closed:  # the old sockets' outcomes race the new one's
                    self._schedule(0, ("late", old))
                self._closed.clear()
                self._schedule(self.server.latency_us, ("answer", sock))
            case CloseSocket(socket=sock):
                self.server.sockets.discard(sock)
                if self.server.late:
                    self._schedule(0, ("late", sock))
                    self._closed.append(sock)
            case SendKeepAlive(socket=sock):
                self.server.keepalives += 1
                if self._reachable(sock):
                    if self.server.busy_us is not None:  # D17: data first, the answer behind it
                        self._schedule(self.server.latency_us, ("frame", sock))
                    self._schedule(self.server.latency_us + (self.server.busy_us or 0), ("pong", sock))
            case SendPing(socket=sock):
                if self._reachable(sock):
                    self.server.pings += 1
            case StartTimer(timer=timer, delay=delay):
                self._timers[timer] = self._schedule(round(delay * US), timer)
                retry = self.model.retries - 1 if timer is Timer.RETRY else None  # counted when drawn
                self._record.armed(self.now, timer, delay, retry)
            case CancelTimer(timer=timer):
                self._timers.pop(timer, None)
                if self.server.late:
                    self._schedule(0, ("late-timer", timer))
                self._record.ended(self.now, timer, CANCELLED)
            case Notify(name=name, error=error):
                self.notifications.append((self.now, name))
                if error is not None:
                    self.errors.append((self.now, error))
            case StoreSession(user=user):
                self.stored_user = user
            case DeleteSession():
                self.stored_user = None
            case AttemptEnded(error=error):
                self.attempts.append((self.now, error))

    def _fire(self, due: _Due) -> None:
        what = due.what
        if isinstance(what, Timer):
            if self._timers.get(what) == due.seq:
                del self._timers[what]
                self._record.ended(self.now, what, FIRED)
                self._feed(TimerFired(what))
            return
        assert isinstance(what, tuple)
        kind, sock = what[0], what[1]  # for a login, `sock` is the login's number
        if kind == "late-timer":
            if sock not in self._timers:  # armed again since: its own firing is the live one
                self._feed(TimerFired(sock))
            return
        if kind == "late":
            for late in (AuthAccepted(sock), PongReceived(sock), SocketClosed(sock)):
                if self.model.socket != sock:
                    self._feed(late)
            return
        if kind == "login":
            if self.model.phase is Phase.LOGGING_IN and sock == self._logins:
                self._feed(LoginFailed(LOGIN_REFUSED.exception()) if self.server.refuse_login
                           else LoginVerified())
        elif kind == "renew":
            if sock == self._logins and self.model.user == what[2] and not self.server.refuse_login:
                self._feed(SessionRenewed())
        elif kind == "answer":
            if not self._reachable(sock):
                return
            if self.server.overloaded is not None:
                self.server.sockets.discard(sock)
                self._feed(SocketClosed(sock, retry_after=self.server.overloaded))
            elif self.server.reject_auth:
                self._feed(AuthRejected(sock))
            else:
                self._feed(AuthAccepted(sock))
                if self.server.throttle and self.model.socket == sock:
                    self._feed(ThrottleStarted(sock))
                if self.server.flap_us is not None:
                    self._schedule(self.server.flap_us, ("flap", sock))
        elif kind == "flap":
            if self.server.flap_us is not None and sock in self.server.sockets:  # as server_drop
                self.server.sockets.discard(sock)
                self._feed(SocketClosed(sock))
        elif kind == "pong":
            if self._reachable(sock):
                self._feed(PongReceived(sock))
        elif kind == "frame":
            if self._reachable(sock):
                self._feed(FrameReceived(sock))


__all__ = ["INVALID_ARGUMENT", "MAX_SECONDS", "AppState", "Network", "ServerState", "Simulation", "to_us"]
