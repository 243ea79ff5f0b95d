"""What the reference server's parts share: its settings, users, tokens, connections and stats."""

from __future__ import annotations

import math
import secrets

import trio

from cometchat_fsm.server.connection import IDLE_TIMEOUT, ServerStats, _Conn
from cometchat_fsm.server.history import IN_MEMORY, History


class ServerState:
    """The server's state; the parts (accounts, messages, faults, realtime, serving) act on it."""

    def __init__(self, nursery: trio.Nursery, host: str, port: int, *, auth_key: str | None = None,
                 max_connections: int | None = None, history: History | None = None,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        if max_connections is not None and max_connections < 0:
            raise ValueError("max_connections must be >= 0")
        if not (math.isfinite(idle_timeout) and idle_timeout > 0):
            raise ValueError("idle_timeout must be a positive number of seconds")
        #: Seconds without a frame after which an authenticated realtime socket is cut (D21).
        self.idle_timeout = idle_timeout
        self.host = host
        self.port = port
        self.scheme = "ws"  # "wss" when serving TLS
        #: The app's auth key; random unless given.
        self.auth_key = auth_key if auth_key is not None else secrets.token_urlsafe(24)
        self.max_connections = max_connections
        self.stats = ServerStats()
        self._nursery = nursery
        #: Users, tokens and messages (D13); they outlive `restart()` and, in a file, the process.
        self.history = history if history is not None else History(IN_MEMORY)
        self._users: set[str] = self.history.users()
        self._tokens: dict[str, str] = self.history.tokens()  # token -> uid
        self._throttled: set[str] = set()
        self._conns: set[_Conn] = set()
        self._by_uid: dict[str, set[_Conn]] = {}  # realtime sockets by the uid their auth frame named
        self._changed = trio.Event()
        self._reject_auth = False
        self._refusing = False
        self._retry_after: float | None = None
        self._flap: float | None = None  # seconds after acceptance that each socket is dropped (D14)
        self._latency = 0.0  # seconds before each login, socket and keep-alive is answered (D5, P2)
        self._refuse_login = False  # refuse every login (D16)
        self._busy: float | None = None  # seconds a keep-alive's answer comes behind other data (D17)
        self._closing = False
        self._last_sent_at = 0.0

    @property
    def url(self) -> str:
        """The base URL clients connect to, e.g. ws://127.0.0.1:8765 (add LOGIN_PATH / SOCKET_PATH)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def open_sockets(self, uid: str | None = None) -> int:
        """Realtime sockets open now: all of them (None), or those whose auth frame named `uid`.

        A socket counts from its accepted handshake (for a uid: from reading its auth frame)
        until its connection is closed; a silenced socket is still open. Sockets closed at once
        because of overload never count.
        """
        if uid is not None:
            return len(self._by_uid.get(uid, ()))
        return sum(1 for c in self._conns if c.kind == "socket")

    async def wait_open_sockets(self, count: int, uid: str | None = None) -> None:
        """Wait until `open_sockets(uid) == count` (bound it with trio.fail_after)."""
        while self.open_sockets(uid) != count:
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --- scripted faults ----------------------------------------------------------------------

    def _sockets_of(self, uid: str) -> list[_Conn]:
        return list(self._by_uid.get(uid, ()))
