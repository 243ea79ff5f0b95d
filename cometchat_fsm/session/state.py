"""What every part of a live client shares: the core model, the session store, and the few
things only a front end can do (the hooks below). No I/O and no event loop here.

A front end (cometchat_fsm.trio, cometchat_fsm.asyncio) is one class made of the session parts
(driver.py: the lifecycle core's effects; login.py; inbox.py: messages and the replay place;
requests.py: sends and history; listeners.py; sockets.py: the open sockets, the top part)
and its own I/O: opening and running sockets, timers, waiting.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.session.values import ConnectedInfo, Message
from cometchat_fsm.trace import TraceRecorder
from cometchat_fsm.wire import frames as wire

log = logging.getLogger("cometchat_fsm.session")


class Signal(Protocol):
    """A one-shot wake-up a task waits on (trio.Event, asyncio.Event)."""

    def set(self) -> None:
        """Wake every task waiting (once)."""
        ...

    def wait(self) -> Awaitable[Any]:
        """Wait until `set()` is called (at once if it was)."""
        ...


@dataclass(eq=False, slots=True)
class Waiter:
    """A `connect()` waiting for the attempt in flight to end (AttemptEnded)."""

    done: Signal
    error: CometChatException | None = None


@dataclass(eq=False, slots=True)
class PendingFetch:
    """A history request waiting for the server's `history` answer on socket `sock`."""

    sock: int
    done: Signal
    messages: list[Message] | None = None
    more: bool = False
    error: CometChatException | None = None  # the socket closed first (D20)


@dataclass(eq=False, slots=True)
class PendingSend:
    """A message waiting for the server's `sent` (or `error`) answer on socket `sock`; its frame
    is the `position`-th queued there."""

    receiver: str
    text: str
    muid: str
    sock: int
    position: int
    done: Signal
    result: Message | CometChatException | None = None


@dataclass(eq=False, slots=True)
class SocketState:
    """The loop-free part of one socket the core asked for: frames queued for it and how many
    of them the writer began to send (D20: may the server have a message?). Each front end
    subclasses it with its tasks and connection, and implements `cancel()`."""

    outgoing: list[str] | None = None
    broken: bool = False  # a send failed: later frames are dropped (the reader reports the end)
    queued: int = 0
    started: int = 0

    @abstractmethod
    def cancel(self) -> None:
        """The front end's hook: stop this socket at once (its tasks cancelled; no close
        handshake to wait for, D4 allows one socket at a time). See session/sockets.py."""


class ClientState:
    """The state the session parts share; at the bottom the front end's hooks, and the sockets'
    (SocketsPart's, which sits on top of the other parts)."""

    __slots__ = ("_closed", "_connected_info", "_model", "_store", "_token", "_trace", "app_id", "settings")

    app_id: str
    settings: AppSettings
    _model: ClientModel
    _store: SessionStore
    _trace: TraceRecorder | None
    _closed: bool
    _token: str | None
    _connected_info: ConnectedInfo

    def _init_state(self, app_id: str, settings: AppSettings, store: SessionStore,
                    random: Callable[[], float] | None, trace: TraceRecorder | None) -> None:
        self.app_id = app_id
        self.settings = settings
        self._store = store
        if trace is not None:
            trace.attach(settings.mode.value)  # a recorder of the other mode: refused at once
        self._trace = trace
        # None: the process-wide random source (a Random per client would cost ~2.9 KiB).
        self._model = ClientModel(settings, random=random)
        self._token = None
        self._connected_info = ConnectedInfo()
        self._closed = False

    def _store_quietly(self, write: Callable[[], None]) -> None:
        try:
            write()
        except OSError as exc:
            log.warning("the session store could not be written (%s); the login lasts until exit", exc)

    # --- the front end's hooks ------------------------------------------------------------------
    def _now(self) -> float:
        """The front end's clock, in seconds (virtual in tests)."""
        raise NotImplementedError

    def _signal(self) -> Signal:
        """A new one-shot wake-up of the front end's event loop."""
        raise NotImplementedError

    def _spawn(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run the coroutine function `job` in the background of the client's lifetime."""
        raise NotImplementedError

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the front end's clock."""
        raise NotImplementedError

    async def _wait_for(self, signal: Signal, timeout: float) -> bool:
        """Wait until `signal` is set (True) or `timeout` seconds have passed (False)."""
        raise NotImplementedError

    # --- the sockets' (SocketsPart, session/sockets.py) -------------------------------------------
    def _send(self, sock: int, frame: wire.ClientFrame) -> None:
        """Queue `frame` on socket `sock` (dropped if that socket is gone or broken)."""
        raise NotImplementedError

    def _has_socket(self, sock: int) -> bool:
        """Whether socket `sock` is still open or being opened."""
        raise NotImplementedError

    def _socket_state(self, sock: int) -> SocketState | None:
        """The loop-free state of socket `sock`, None once it is gone."""
        raise NotImplementedError
