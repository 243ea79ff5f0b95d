"""One user's app in the demo: its client, a listener that prints every notification, its app
calls and platform signals (one timeline row each), and a connector that notes each socket attempt.

Part of `cometchat-fsm demo` (cli/demo.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import trio
import trio_websocket

from cometchat_fsm.cli.demo_timeline import DemoFailure, Timeline
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import NOTIFICATION_OF_STATUS, ConnectionStatus, Phase
from cometchat_fsm.trio.client import (
    SOCKET_PATH,
    Client,
    ConnectedInfo,
    Connector,
    Message,
    User,
    url_connector,
)

T = TypeVar("T")

CONNECTING = ConnectionStatus.CONNECTING
CONNECTED = ConnectionStatus.CONNECTED
DISCONNECTED = ConnectionStatus.DISCONNECTED
THROTTLED = ConnectionStatus.FEATURE_THROTTLED
STATUS_OF_NOTIFICATION = {name: status for status, name in NOTIFICATION_OF_STATUS.items()}


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
        result, exc = await self._run_row(label, action, rule)
        if exc is not None:
            raise DemoFailure(f"{self.name}: {label} raised {exc}")
        return result  # type: ignore[return-value]  # no error: the action returned it

    async def call_fails(self, label: str, action: Callable[[], Awaitable[object]], *, code: str,
                         rule: str = "") -> CometChatException:
        """Run an app call that must raise the error `code`."""
        result, exc = await self._run_row(label, action, rule)
        if exc is None:
            raise DemoFailure(f"{self.name}: {label} returned {result!r}, expected the error {code}")
        if exc.code != code:
            raise DemoFailure(f"{self.name}: {label} raised {exc.code}, expected {code}")
        return exc

    async def _run_row(self, label: str, action: Callable[[], Awaitable[T]],
                       rule: str) -> tuple[T | None, CometChatException | None]:
        """Run an app call and write its row (status after it, notifications, result or error)."""
        start = self.timeline.now()
        captured: list[str] = []
        self._capture = captured
        try:
            result = await action()
        except CometChatException as exc:
            self._row(start, label, rule, captured, f"raised {exc.code}")
            return None, exc
        finally:
            self._capture = None
        self._row(start, label, rule, captured, _result_text(result))
        return result, None

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

