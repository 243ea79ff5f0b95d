"""`cometchat-fsm demo`: the documented lifecycle, shown live on real loopback sockets.

Two users go through a scripted day against the reference server, run in-process on
127.0.0.1: alice in auto mode, bob in manual mode, each with its own session store and its own
fault proxy (its phone's network) in front of the server. Every call, notification, fault and
delivered message prints one timeline row as it happens, and every documented behaviour is
checked when it should happen (`expect`, `hold`, `check`): the demo is also an end-to-end test,
and a status not reached in its documented time ends it at once with the reason and exit 1.

Time is trio's MockClock with autojump: once every task has waited AUTOJUMP seconds of wall
time, the clock jumps to the next deadline, so 30 s windows and 15 s keep-alives pass in
milliseconds. The threshold must exceed loopback latency (with 0 the clock would jump while
bytes are still in flight); 0.01 s is ample for sockets in one process.
"""

from __future__ import annotations

import random
import sys
import tempfile
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

import trio
import trio.testing
import trio_websocket

from cometchat_fsm.core.errors import ERR_AUTH_REJECTED, ERR_NOT_LOGGED_IN, CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import NOTIFICATION_OF_STATUS, ConnectionStatus, Phase
from cometchat_fsm.server.faultproxy import FaultProxy, open_fault_proxy
from cometchat_fsm.server.reference import ReferenceServer, serve_reference
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.trio.client import (
    SOCKET_PATH,
    Client,
    ConnectedInfo,
    Connector,
    Message,
    User,
    open_client,
    url_connector,
)
from cometchat_fsm.trio.groups import leaves

T = TypeVar("T")

CONNECTING = ConnectionStatus.CONNECTING
CONNECTED = ConnectionStatus.CONNECTED
DISCONNECTED = ConnectionStatus.DISCONNECTED
THROTTLED = ConnectionStatus.FEATURE_THROTTLED
STATUS_OF_NOTIFICATION = {name: status for status, name in NOTIFICATION_OF_STATUS.items()}

APP_ID = "demo-app"
AUTO = AppSettings(region="eu")
MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)
#: Wall seconds every task must have waited before the mock clock jumps (see the module doc).
AUTOJUMP = 0.01
#: Virtual seconds for the whole day; the script needs about 600. A bound, so nothing hangs.
BUDGET = 1800.0
#: Virtual seconds allowed for what is immediate on loopback (a login, an attempt, a relay).
QUICK = 2.0
#: Slack on a documented bound, for the loopback I/O between a timer firing and its effect.
SLACK = 0.05

TIME_W, WHO_W, WHAT_W, STATUS_W = 9, 6, 40, 16


class DemoFailure(Exception):
    """An expectation of the script was not met; str() says what was expected and what happened."""


class Timeline:
    """Rows of virtual time (seconds since the demo began), who, what happened, status, notes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = trio.current_time()

    def now(self) -> float:
        return trio.current_time() - self.start

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def row(self, who: str, what: str, status: str = "", notes: str = "", *, at: float | None = None) -> None:
        time = self.now() if at is None else at
        line = f"{time:{TIME_W}.3f}  {who:<{WHO_W}} {what:<{WHAT_W}} {status:<{STATUS_W}} {notes}"
        self.print(line.rstrip())

    def header(self) -> None:
        self.print(f"{'time (s)':>{TIME_W}}  {'who':<{WHO_W}} {'what happened':<{WHAT_W}} "
                   f"{'status':<{STATUS_W}} notified / result / check")

    def section(self, title: str) -> None:
        self.print()
        self.print(f"== {title}")


@dataclass
class Attempt:
    """One realtime socket the client tried to open, as its connector saw it."""

    start: float
    end: float | None = None  # when opening it failed; None if it opened
    error: str = ""


class Actor:
    """One user's app: its client, a listener that prints and records every notification, and
    counters for the summary. The record outlives a client, so an app restart keeps it."""

    def __init__(self, name: str, settings: AppSettings, store: Path, url: str,
                 rng: Callable[[], float], timeline: Timeline) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.url = url
        self.rng = rng
        self.timeline = timeline
        self.notified: list[tuple[float, str]] = []
        self.attempts: list[Attempt] = []
        self.inbox: list[Message] = []
        self.sent: list[Message] = []
        self.connected_info: ConnectedInfo | None = None  # what the last on_connected(info) said (D13)
        self.connects = 0  # connections the app asked for (login in auto mode, connect, foreground)
        self.reconnects = 0  # connections the client made by itself after an unintended loss
        self.asked = False  # the app asked for a connection that has not come yet
        self._last = DISCONNECTED  # the status the last notification announced
        self._client: Client | None = None
        self._capture: list[str] | None = None
        self._changed = trio.Event()
        self._arrived = trio.Event()

    @property
    def mode(self) -> str:
        return self.settings.mode.value

    @property
    def client(self) -> Client:
        if self._client is None:
            raise DemoFailure(f"{self.name}: the script used the client while the app was not running")
        return self._client

    @property
    def status(self) -> ConnectionStatus:
        return self.client.get_connection_status()

    def attach(self, client: Client) -> None:
        self._client = client
        client.add_connection_listener("demo", self)

    def detach(self) -> None:
        self._client = None

    # --- the connection listener -------------------------------------------------------------
    def on_connecting(self) -> None:
        self._heard("on_connecting")

    def on_connected(self, info: ConnectedInfo | None = None) -> None:
        self.connected_info = info
        self._heard("on_connected")

    def on_disconnected(self) -> None:
        self._heard("on_disconnected")

    def on_feature_throttled(self) -> None:
        self._heard("on_feature_throttled")

    def on_connection_error(self, exc: CometChatException) -> None:
        self._heard("on_connection_error", exc.code)

    def _heard(self, name: str, detail: str = "") -> None:
        at = self.timeline.now()
        self.notified.append((at, name))
        announced = STATUS_OF_NOTIFICATION.get(name, self.status)
        what = self._describe(name, detail)
        if name == "on_connected" and self._last is not THROTTLED:
            if self.asked:
                self.connects += 1
                self.asked = False
            else:
                self.reconnects += 1
        self._last = announced
        text = f"{name}({detail})" if detail else name
        if self._capture is not None:  # told inside an app call: shown on the call's row
            self._capture.append(text)
        else:
            self.timeline.row(self.name, "  " + what, announced.value, text, at=at)
        self._changed.set()
        self._changed = trio.Event()

    def _describe(self, name: str, detail: str) -> str:
        if name == "on_connection_error":
            return f"error {detail}"
        if name == "on_connecting":
            return "attempt started"
        if name == "on_connected":
            return "throttle lifted" if self._last is THROTTLED else "server accepted the auth"
        if name == "on_feature_throttled":
            return "server throttles features"
        return {Phase.RECONNECT_WAIT: "connection lost; retry scheduled",
                Phase.OFFLINE: "closed; waits for the network",
                Phase.IDLE: "closed; no retry",
                Phase.LOGGED_OUT: "logged out"}.get(self.client.phase, "closed")

    async def changed(self) -> None:
        """Wait for the next notification (bound it with the caller's timeout)."""
        await self._changed.wait()

    async def arrival(self) -> None:
        """Wait for the next delivered message (bound it with the caller's timeout)."""
        await self._arrived.wait()

    # --- the app's calls, one row each ----------------------------------------------------------
    async def call(self, label: str, action: Callable[[], Awaitable[T]], *, rule: str = "") -> T:
        """Run an app call; its row shows the status after it, what it notified, what it returned.
        An unexpected error is a failure of the demo."""
        start = self.timeline.now()
        captured: list[str] = []
        self._capture = captured
        try:
            result = await action()
        except CometChatException as exc:
            self._row(start, label, rule, captured, f"raised {exc.code}")
            raise DemoFailure(f"{self.name}: {label} raised {exc}") from None
        finally:
            self._capture = None
        self._row(start, label, rule, captured, _result_text(result))
        return result

    async def call_fails(self, label: str, action: Callable[[], Awaitable[object]], *, code: str,
                         rule: str = "") -> CometChatException:
        """Run an app call that must raise the error `code`."""
        start = self.timeline.now()
        captured: list[str] = []
        self._capture = captured
        try:
            result = await action()
        except CometChatException as exc:
            self._row(start, label, rule, captured, f"raised {exc.code}")
            if exc.code != code:
                raise DemoFailure(f"{self.name}: {label} raised {exc.code}, expected {code}") from None
            return exc
        finally:
            self._capture = None
        self._row(start, label, rule, captured, _result_text(result))
        raise DemoFailure(f"{self.name}: {label} returned {result!r}, expected the error {code}")

    def signal(self, label: str, action: Callable[[], None], *, rule: str = "") -> None:
        """Deliver a platform signal (app state, network) the way `call` runs an app call."""
        start = self.timeline.now()
        captured: list[str] = []
        self._capture = captured
        try:
            action()
        except CometChatException as exc:
            raise DemoFailure(f"{self.name}: {label} raised {exc}") from None
        finally:
            self._capture = None
        self._row(start, label, rule, captured, "")

    def _row(self, start: float, label: str, rule: str, captured: list[str], result: str) -> None:
        what = f"{label}  [{rule}]" if rule else label
        notes = "; ".join(part for part in (", ".join(captured), result) if part)
        status = self._client.get_connection_status().value if self._client is not None else ""
        self.timeline.row(self.name, what, status, notes, at=start)

    # --- messages and sockets -------------------------------------------------------------------
    async def read_messages(self, client: Client) -> None:
        """Print each delivered message; ends when the client closes."""
        async for message in client.messages():
            self.inbox.append(message)
            self.timeline.row(self.name, f"<- message #{message.id} from {message.sender}",
                              client.get_connection_status().value, repr(message.text))
            self._arrived.set()
            self._arrived = trio.Event()

    def connector(self) -> Connector:
        """The default connector, noting each realtime socket attempt and printing a failed one,
        so that backoff and "no attempt" become visible."""
        inner = url_connector(self.url, connect_timeout=self.settings.connect_timeout)

        @asynccontextmanager
        async def connect(resource: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
            if resource != SOCKET_PATH:
                async with inner(resource) as ws:
                    yield ws
                return
            attempt = Attempt(self.timeline.now())
            self.attempts.append(attempt)
            async with AsyncExitStack() as stack:
                try:
                    ws = await stack.enter_async_context(inner(resource))
                except BaseException as exc:  # Cancelled too: the client gave up on it (here: P2)
                    attempt.end = self.timeline.now()
                    cancelled = isinstance(exc, trio.Cancelled)
                    attempt.error = "cancelled by the client" if cancelled else type(exc).__name__
                    status = self._client.get_connection_status().value if self._client else ""
                    self.timeline.row(self.name, f"  socket #{len(self.attempts)} failed to open", status,
                                      f"{attempt.error} after {attempt.end - attempt.start:.3f} s")
                    raise
                yield ws

        return connect


def _result_text(result: object) -> str:
    if isinstance(result, str):
        return f'-> "{result}"'
    if isinstance(result, Message):
        return f"-> sent #{result.id}"
    if isinstance(result, User):
        return f"-> logged in as {result.uid}"
    return ""


class Demo:
    """The scripted day and the checks that make it a test."""

    def __init__(self, timeline: Timeline, server: ReferenceServer, alice: Actor, bob: Actor,
                 net: dict[str, FaultProxy], tasks: trio.Nursery) -> None:
        self.t = timeline
        self.server = server
        self.alice = alice
        self.bob = bob
        self.net = net
        self.tasks = tasks

    # --- checks ---------------------------------------------------------------------------------
    def fail(self, who: str, what: str, message: str) -> DemoFailure:
        self.t.row(who, what, "", "FAILED")
        return DemoFailure(message)

    def ok(self, who: str, what: str, status: str, notes: str) -> None:
        self.t.row(who, what, status, f"ok: {notes}")

    def check(self, actor: Actor, holds: bool, what: str, notes: str, failure: str) -> None:
        if not holds:
            raise self.fail(actor.name, f"check: {what}", f"{actor.name}: {what}: {failure}")
        self.ok(actor.name, f"check: {what}", actor.status.value, notes)

    def now_is(self, actor: Actor, status: ConnectionStatus, why: str) -> None:
        actual = actor.status
        self.check(actor, actual is status, f"{status.value} at once", why,
                   f"expected {status.value} right after the call, but it is {actual.value}")

    async def expect(self, actor: Actor, status: ConnectionStatus, *, within: float, after: float = 0.0,
                     since: float | None = None, why: str = "") -> float:
        """Wait until `actor` reports `status`, at most `within` and at least `after` seconds after
        `since` (default: now); return how long it took."""
        start = self.t.now() if since is None else since
        label = f"expect {status.value} within {within:g} s"
        mark = len(actor.notified)
        with trio.move_on_at(self.t.start + start + within):
            while actor.status is not status:  # bounded by the deadline
                await actor.changed()
        took = self.t.now() - start
        if actor.status is not status:
            heard = ", ".join(f"{name}@{at:.3f}" for at, name in actor.notified[mark:]) or "none"
            raise self.fail(actor.name, label, (
                f"{actor.name}: expected status {status.value} within {within:g} s ({why or 'the script'}), "
                f"but after {took:.3f} s it is {actor.status.value} (phase {actor.client.phase}); "
                f"notifications meanwhile: {heard}"))
        if took < after:
            raise self.fail(actor.name, label, (
                f"{actor.name}: expected {status.value} no sooner than {after:g} s ({why}), "
                f"but it came after {took:.3f} s"))
        self.ok(actor.name, label, status.value, f"after {took:.3f} s" + (f" ({why})" if why else ""))
        return took

    async def hold(self, actor: Actor, status: ConnectionStatus, seconds: float, *, why: str,
                   attempts_allowed: bool = False) -> int:
        """Check that `actor` stays at `status` for `seconds`: no notification, and (unless allowed)
        no socket attempt. Return the number of attempts seen."""
        label = f"check: stays {status.value} for {seconds:g} s"
        if actor.status is not status:
            raise self.fail(actor.name, label, f"{actor.name}: expected {status.value} to hold, "
                                               f"but it is {actor.status.value} from the start")
        notes, attempts = len(actor.notified), len(actor.attempts)
        await trio.sleep(seconds)
        heard = actor.notified[notes:]
        tried = actor.attempts[attempts:]
        if actor.status is not status or heard or (tried and not attempts_allowed):
            raise self.fail(actor.name, label, (
                f"{actor.name}: expected {status.value} for {seconds:g} s ({why}), but: status "
                f"{actor.status.value}, notifications {[n for _, n in heard]}, socket attempts {len(tried)}"))
        self.ok(actor.name, label, status.value, why)
        return len(tried)

    def sequence(self, actor: Actor, since: int, expected: list[str], why: str) -> None:
        heard = [name for _, name in actor.notified[since:]]
        self.check(actor, heard == expected, "notifications in order", f"{', '.join(heard)} ({why})",
                   f"expected {expected}, heard {heard}")

    async def server_sockets(self, actor: Actor, count: int, why: str) -> None:
        label = f"check: server holds {count} socket(s)"
        with trio.move_on_after(QUICK):
            await self.server.wait_open_sockets(count, actor.name)
        actual = self.server.open_sockets(actor.name)
        if actual != count:
            raise self.fail(actor.name, label, f"{actor.name}: expected {count} open socket(s) at the "
                                               f"server ({why}), it holds {actual}")
        self.ok(actor.name, label, actor.status.value, why)

    async def _send(self, sender: Actor, receiver: Actor, text: str) -> Message:
        """The app call and its row; the message as the server stamped it."""
        label = f'send_message("{receiver.name}", "{text}")'
        # Its row comes first: the delivery may be printed before the sender hears "sent".
        self.t.row(sender.name, label, sender.status.value)
        try:
            sent = await sender.client.send_message(receiver.name, text)
        except CometChatException as exc:
            raise self.fail(sender.name, label, f"{sender.name}: {label} raised {exc}") from None
        sender.sent.append(sent)
        return sent

    @staticmethod
    async def _delivered(receiver: Actor, sent: Message) -> list[Message]:
        """What `receiver` got with the id of `sent`, waiting at most QUICK for it to arrive."""
        with trio.move_on_after(QUICK):
            while not any(m.id == sent.id for m in receiver.inbox):  # bounded by the timeout
                await receiver.arrival()
        return [m for m in receiver.inbox if m.id == sent.id]

    async def send(self, sender: Actor, receiver: Actor, text: str) -> None:
        """Send and wait for the delivery; the server, not the sender, names the sender."""
        sent = await self._send(sender, receiver, text)
        got = await self._delivered(receiver, sent)
        if [(m.sender, m.receiver, m.text) for m in got] != [(sender.name, receiver.name, text)]:
            raise self.fail(receiver.name, f"check: message #{sent.id} delivered",
                            f"{receiver.name}: expected message #{sent.id} from {sender.name} ({text!r}) "
                            f"once within {QUICK:g} s, got {got}")

    async def send_to_absent(self, sender: Actor, receiver: Actor, text: str) -> Message:
        """Send to a user with no socket: the server keeps it (D13); nothing is delivered yet."""
        sent = await self._send(sender, receiver, text)
        self.ok(sender.name, f"check: message #{sent.id} kept by the server", sender.status.value,
                f"{receiver.name} has no socket; the server stores it (D13)")
        return sent

    async def replayed(self, receiver: Actor, sent: Message) -> None:
        """D13: after the reconnect the server replays what the receiver missed, exactly once."""
        got = await self._delivered(receiver, sent)
        info = receiver.connected_info
        label = f"check: message #{sent.id} replayed on return"
        if len(got) != 1 or info is None or not info.resumed or info.gap:
            raise self.fail(receiver.name, label, f"{receiver.name}: expected message #{sent.id} once, "
                                                  f"replayed without a gap; got {got}, on_connected({info})")
        self.ok(receiver.name, label, receiver.status.value,
                "D13: on_connected(info) said resumed, no gap; the replay came before live traffic")

    def note(self, who: str, what: str, notes: str = "") -> None:
        self.t.row(who, what, "", notes)

    # --- the day --------------------------------------------------------------------------------
    @asynccontextmanager
    async def running(self, actor: Actor) -> AsyncIterator[Client]:
        """The app runs: `open_client` restores a stored session (L2), messages are printed."""
        async with open_client(APP_ID, actor.settings, url=actor.url, store=actor.store,
                               connector=actor.connector(), random=actor.rng) as client:
            actor.attach(client)
            self.tasks.start_soon(actor.read_messages, client)
            try:
                yield client
            finally:
                actor.detach()

    async def run(self) -> None:
        async with self.running(self.alice), self.running(self.bob):
            await self.login()
            await self.messages()
            await self.auto_background()
            await self.manual_background()
            await self.network()
            await self.half_open()
            await self.throttle_and_reject()
            self.note("apps", "both apps exit (clients closed)")
        await self.restart()
        self.summary()

    async def login(self) -> None:
        a, b = self.alice, self.bob
        self.t.section("1. Login (L1, A1, M1): auto mode connects by itself, manual mode waits for connect()")
        a.asked = True
        await a.call('login("alice")', lambda: a.client.login("alice", auth_key=self.server.auth_key),
                     rule="L1")
        await self.expect(a, CONNECTED, within=QUICK, why="A1")
        self.check(a, SessionStore(a.store).load(APP_ID) is not None, "session stored locally", "L1",
                   "no session file after login")
        await self.server_sockets(a, 1, "A1")
        await b.call('login("bob")', lambda: b.client.login("bob", auth_key=self.server.auth_key), rule="M1")
        await self.hold(b, DISCONNECTED, 10, why="login opened no socket (M1)")
        await self.server_sockets(b, 0, "M1")
        b.asked = True
        await b.call("connect()", b.client.connect, rule="M1")
        self.now_is(b, CONNECTED, "connect() returns once the server accepted the auth (D5)")
        await self.server_sockets(b, 1, "M1")

    async def messages(self) -> None:
        a, b = self.alice, self.bob
        self.t.section("2. Messages: relayed at once, the sender stamped by the server")
        await self.send(a, b, "Lunch at noon?")
        await self.send(b, a, "Sure, see you!")

    async def auto_background(self) -> None:
        a = self.alice
        self.t.section("3. Auto mode (A2, A1, D13): the background disconnects at once, the foreground "
                       "reconnects\n   and the server replays what was sent meanwhile")
        a.signal("enter_background()", a.client.enter_background, rule="A2")
        self.now_is(a, DISCONNECTED, "A2")
        await self.server_sockets(a, 0, "A2")
        away = await self.send_to_absent(self.bob, a, "Call me when you're back")
        await self.hold(a, DISCONNECTED, 60, why="no socket in the background (A2)")
        a.asked = True
        a.signal("enter_foreground()", a.client.enter_foreground, rule="A1")
        await self.expect(a, CONNECTED, within=QUICK, why="A1")
        await self.replayed(a, away)

    async def manual_background(self) -> None:
        a, b = self.alice, self.bob
        window = b.settings.background_window
        self.t.section("4. Manual mode in the background (M2, M3, M5): a 30 s window, renewed by ping()")
        b.signal("enter_background()", b.client.enter_background, rule="M2")
        await self.expect(b, DISCONNECTED, within=window + SLACK, after=window - SLACK,
                          why="M2: 30 s after enter_background()")
        await self.server_sockets(b, 0, "M2")
        b.signal("enter_foreground()", b.client.enter_foreground, rule="M5")
        await self.hold(b, DISCONNECTED, 10, why="no reconnection until connect() (M5)")
        b.asked = True
        await b.call("connect()", b.client.connect, rule="M5")
        self.now_is(b, CONNECTED, "M5")

        b.signal("enter_background()", b.client.enter_background, rule="M3")
        pinged = self.t.now()
        for _ in range(3):
            await self.hold(b, CONNECTED, 25, why="within the window")
            pinged = self.t.now()
            await b.call("ping()", b.client.ping, rule="M3")
        self.check(b, b.status is CONNECTED, "connected 75 s in background",
                   "M3: each ping renews the 30 s window", f"status {b.status.value}")
        await self.send(a, b, "Still up?")  # delivered: the socket is still open in the background
        await self.expect(b, DISCONNECTED, within=window + SLACK, after=window - SLACK, since=pinged,
                          why="M2: 30 s after the last ping()")
        b.signal("enter_foreground()", b.client.enter_foreground, rule="M5")
        b.asked = True
        await b.call("connect()", b.client.connect, rule="M5")

    async def network(self) -> None:
        a, b, net_a, net_b = self.alice, self.bob, self.net["alice"], self.net["bob"]
        base, cap = a.settings.backoff_base, a.settings.backoff_cap
        self.t.section("5. Network loss (D6a); unintended losses (A3, M4, D6b) reconnect with backoff (D6)")
        self.note("net", "alice's network goes offline", "proxy cuts and refuses")
        net_a.go_offline()
        a.signal("network_lost()", a.client.network_lost, rule="D6a")
        self.now_is(a, DISCONNECTED, "no wait for the keep-alive (D6a)")
        refused = net_a.refused
        await self.hold(a, DISCONNECTED, 60, why="no attempt while offline (D6)")
        self.check(a, net_a.refused == refused, "nothing reached the network", "0 connections refused",
                   f"the proxy refused {net_a.refused - refused} connection(s)")
        self.note("net", "alice's network is back", "proxy online")
        net_a.go_online()
        a.signal("network_restored()", a.client.network_restored, rule="D6a")
        await self.expect(a, CONNECTED, within=0.5, why="D6a: an immediate attempt, no backoff")

        for actor, rule in ((a, "A3"), (b, "M4")):
            mark = len(actor.notified)
            self.note("server", f"drop({actor.name})", "closes the socket with 4002")
            self.server.drop(actor.name)
            await self.expect(actor, DISCONNECTED, within=QUICK, why="the close frame arrives")
            await self.expect(actor, CONNECTED, within=base + SLACK, since=actor.notified[-1][0],
                              why=f"{rule}: the first retry waits U[0, {base:g} s]")
            self.sequence(actor, mark, ["on_disconnected", "on_connecting", "on_connected"], "D6b")

        # D14: the retry count starts over only once a connection has held for stable_after.
        await self.hold(b, CONNECTED, b.settings.stable_after + SLACK,
                        why="D14: a connection that held starts the backoff over")
        self.note("net", "bob's link to the server fails", "proxy offline; the phone does not notice")
        mark, first = len(b.notified), len(b.attempts)
        net_b.go_offline()
        await self.expect(b, CONNECTING, within=base + QUICK, why="D6b: disconnected, then the first retry")
        tried = await self.hold(b, CONNECTING, 40, attempts_allowed=True,
                                why="failed attempts notify nothing (D6b)")
        self.note("net", "bob's link is back", "proxy online")
        net_b.go_online()
        limit = b.settings.connect_timeout + cap
        await self.expect(b, CONNECTED, within=limit + QUICK,
                          why=f"an attempt in flight ends within {b.settings.connect_timeout:g} s (P2), "
                              f"the next retry within {cap:g} s")
        self.sequence(b, mark, ["on_disconnected", "on_connecting", "on_connected"], "D6b")
        lost = b.notified[mark][0]
        attempts = b.attempts[first:]
        waits, previous = [], lost
        for attempt in attempts:
            waits.append(attempt.start - previous)
            previous = attempt.end if attempt.end is not None else attempt.start
        bounds = [min(cap, base * 2 ** n) for n in range(len(waits))]
        self.check(b, tried > 0 and all(w <= bound + SLACK for w, bound in zip(waits, bounds, strict=True)),
                   f"backoff over {len(attempts)} attempts",
                   "waits " + ", ".join(f"{w:.2f}" for w in waits) + " s; each <= "
                   + ", ".join(f"{bound:g}" for bound in bounds) + " (D6)",
                   f"waits {waits} exceed min({cap:g}, {base:g} * 2^n) = {bounds}")

    async def half_open(self) -> None:
        a, net_a = self.alice, self.net["alice"]
        s = a.settings
        bound = s.keepalive_interval + s.pong_timeout
        self.t.section("6. Half-open link (D7): found by the keep-alive within 15 + 3 s, then recovered")
        self.note("net", "alice's connection goes dead", "proxy blackholes it; new ones pass")
        mark = len(a.notified)
        net_a.blackhole()
        net_a.go_online()  # the open connection stays dead, as after a lost NAT entry
        await self.expect(a, DISCONNECTED, within=bound + SLACK,
                          why=f"keep-alive every {s.keepalive_interval:g} s, pong {s.pong_timeout:g} s later")
        await self.expect(a, CONNECTED, within=s.backoff_base + QUICK, why="A3")
        self.sequence(a, mark, ["on_disconnected", "on_connecting", "on_connected"], "D6b")

    async def throttle_and_reject(self) -> None:
        a, b = self.alice, self.bob
        self.t.section("7. Throttling (D12) and a rejected authentication, not retried, not reused (D5, D16)")
        self.note("server", "throttle(alice, True)")
        self.server.throttle("alice", True)
        await self.expect(a, THROTTLED, within=QUICK, why="D12")
        self.note("server", "throttle(alice, False)")
        self.server.throttle("alice", False)
        await self.expect(a, CONNECTED, within=QUICK, why="D12")

        await b.call("disconnect()", b.client.disconnect, rule="D1")
        self.now_is(b, DISCONNECTED, "D1")
        self.note("server", "reject_auth(True)")
        self.server.reject_auth(True)
        mark = len(b.notified)
        rejected = self.server.stats.auths_rejected
        await b.call_fails("connect()", b.client.connect, code=ERR_AUTH_REJECTED, rule="D5")
        self.sequence(b, mark, ["on_connecting", "on_connection_error", "on_disconnected"], "D5")
        await self.hold(b, DISCONNECTED, 60, why="not retried (D5)")
        self.check(b, self.server.stats.auths_rejected == rejected + 1, "the server saw one attempt",
                   "1 auth rejected", f"{self.server.stats.auths_rejected - rejected} auths rejected")
        self.note("server", "reject_auth(False)")
        self.server.reject_auth(False)
        self.check(b, SessionStore(b.store).load(APP_ID) is None, "rejected session deleted", "D16",
                   "the rejected session is still stored")
        await b.call_fails("connect()", b.client.connect, code=ERR_AUTH_REJECTED, rule="D16")
        # The same user logs in again: the server gives fresh credentials (D16).
        await b.call('login("bob")', lambda: b.client.login("bob", auth_key=self.server.auth_key), rule="D16")
        b.asked = True
        await b.call("connect()", b.client.connect, rule="D16")

    async def restart(self) -> None:
        a, b = self.alice, self.bob
        self.t.section("8. Restart (L2): a stored session connects in auto mode only; logout (D9, E1)")
        a.asked = True
        self.note("apps", "both apps start (open_client)", "each restores its stored session")
        async with self.running(a), self.running(b):
            self.now_is(a, CONNECTING, "L2: the restore opened the socket (before any listener was added)")
            await self.expect(a, CONNECTED, within=QUICK, why="L2: auto mode connects by itself")
            self.check(b, b.client.get_logged_in_user() == User("bob"), "bob is logged in", "L2",
                       "the stored session was not restored")
            await self.hold(b, DISCONNECTED, 10, why="L2: manual mode waits for connect()")
            for actor in (a, b):
                await actor.call("logout()", actor.client.logout, rule="D9")
                self.check(actor, SessionStore(actor.store).load(APP_ID) is None, "session forgotten", "D9",
                           "the session file is still there")
            await b.call_fails("connect()", b.client.connect, code=ERR_NOT_LOGGED_IN, rule="E1")

    def summary(self) -> None:
        self.t.section("Summary")
        expected = {"alice": 3, "bob": 2}  # alice: network restored, drop, half-open; bob: drop, outage
        self.t.print("user    mode    sockets opened  failed to open  connects  reconnects  sent  received")
        for actor, other in ((self.alice, self.bob), (self.bob, self.alice)):
            opened = sum(1 for attempt in actor.attempts if not attempt.error)
            failed = len(actor.attempts) - opened
            self.t.print(f"{actor.name:<7} {actor.mode:<7} {opened:>14}  {failed:>14}  {actor.connects:>8}  "
                         f"{actor.reconnects:>10}  {len(actor.sent):>4}  {len(actor.inbox):>8}")
            if actor.reconnects != expected[actor.name]:
                raise DemoFailure(f"{actor.name}: expected {expected[actor.name]} automatic reconnections, "
                                  f"counted {actor.reconnects}")
            if sorted(m.id for m in actor.sent) != sorted(m.id for m in other.inbox):
                raise DemoFailure(f"{other.name} did not receive exactly what {actor.name} sent")
        st = self.server.stats
        self.t.print(f"server: auths ok {st.auths_ok}, rejected {st.auths_rejected}; keep-alives "
                     f"answered {st.keepalives_answered}; pings {st.pings_received}; messages relayed "
                     f"{st.messages_relayed}, replayed {st.messages_replayed}; sockets dropped {st.dropped}")


async def _day(out: TextIO, seed: int) -> None:
    timeline = Timeline(out)
    with tempfile.TemporaryDirectory(prefix="cometchat-demo-") as tmp:
        async with serve_reference("127.0.0.1", users=("alice", "bob"), clock=trio.current_time) as server, \
                open_fault_proxy(server.host, server.port) as net_a, \
                open_fault_proxy(server.host, server.port) as net_b, \
                trio.open_nursery() as tasks:
            alice = Actor("alice", AUTO, Path(tmp, "alice"), net_a.url(), random.Random(seed).random,
                          timeline)
            bob = Actor("bob", MANUAL, Path(tmp, "bob"), net_b.url(), random.Random(seed + 1).random,
                        timeline)
            timeline.print("cometchat-fsm demo: a scripted day of two apps on real loopback sockets, "
                           "in virtual time")
            timeline.print(f"  server  {server.url}  (reference server; users alice, bob)")
            for actor, net in ((alice, net_a), (bob, net_b)):
                timeline.print(f"  {actor.name:<6}  {actor.mode} mode (auto_establish_socket_connection="
                               f"{actor.settings.auto_establish_socket_connection}), through fault proxy "
                               f"{net.url()}")
            s = AUTO
            timeline.print(f"  timers  background window {s.background_window:g} s, keep-alive "
                           f"{s.keepalive_interval:g} s + {s.pong_timeout:g} s, backoff {s.backoff_base:g} s "
                           f"to {s.backoff_cap:g} s with full jitter (seed {seed})")
            timeline.print()
            timeline.header()
            await Demo(timeline, server, alice, bob, {"alice": net_a, "bob": net_b}, tasks).run()
            tasks.cancel_scope.cancel()


async def run_demo(out: TextIO | None = None, seed: int = 0) -> int:
    """Run the day under the caller's clock; print it to `out`; return the exit status."""
    stream = out if out is not None else sys.stdout
    started = trio.current_time()
    try:
        with trio.fail_after(BUDGET):
            await _day(stream, seed)
    except Exception as exc:  # a group of them, too: report, never a bare traceback
        found = leaves(exc)
        failures = [e for e in found if isinstance(e, DemoFailure)]
        if failures:
            reason = str(failures[0])
        elif all(isinstance(e, trio.TooSlowError) for e in found):
            reason = f"the script overran its budget of {BUDGET:g} virtual seconds"
        else:
            traceback.print_exception(exc, file=sys.stderr)
            reason = "unexpected " + "; ".join(f"{type(e).__name__}: {e}" for e in found)
        print(f"\ndemo FAILED: {reason}", file=stream, flush=True)
        return 1
    print(f"\ndemo ok ({trio.current_time() - started:.1f} virtual seconds)", file=stream, flush=True)
    return 0


def main(out: TextIO | None = None, seed: int = 0) -> int:
    """Run the demo in virtual time (see the module doc); return the exit status."""
    clock = trio.testing.MockClock(autojump_threshold=AUTOJUMP)
    return trio.run(run_demo, out, seed, clock=clock)
