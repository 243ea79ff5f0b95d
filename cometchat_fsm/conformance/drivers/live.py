"""Driver: the trio live client against the reference server, in virtual time
(`python -m cometchat_fsm.conformance.drivers.live`).

One `trio.run` under a `MockClock` that moves only when told: the server and the client talk over
in-memory streams (`testing.memory_connector`, no sockets at all), every command is carried out
and then every task is let run until all are blocked. `advance` jumps the clock from one trio
deadline to the next up to the target, settling in between, so that timers due at the target
fire before the next command (as in `Simulation.advance`). One reference server (history in
memory) serves every example; `reset` ends the previous client, lifts every fault and closes
every socket the server still holds, and launches a new client with an empty session store.

Mapped to the protocol's answers: `connect()` of the live client waits for its attempt and
raises that attempt's failure; the protocol answers for the call, so an attempt's failure
(offline, rejected, failed) and an attempt still in flight answer with the success message and
are seen through the listener instead; so is a login the server refuses (`refuse`, D16): the
live `login()` raises the server's answer, the protocol's login answers for the call. The backoff
draws come from `random.Random(seed)`, one stream across restarts, the protocol's `draws`.
`flap`, `refuse` and `busy` are the reference server's `flap`, `refuse_login` and `busy`, in the
same virtual time. Not supported: `latency`, although the reference server plays it: the live
`login()` gives up after connect_timeout (ERR_LOGIN_FAILED, tests/test_hostile_server.py), while
the specs, the oracle and the Simulation wait for a login's answer however late, so `conform`
would report the latency 12 it draws as an L1 divergence (`NOTES`). A busy link of 20 s can
make a late pong arrive at the very instant the keep-alive timer falls due: the oracle takes the
pong first, the live client its timer (a known tie, tests/test_live_conformance.py; `conform`
finds it in about 3,000 examples of 30 steps, not in those of `make test`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trio.testing

from cometchat_fsm import places
from cometchat_fsm.conformance.drivers.pipe import PROTOCOL_VERSION, settings_of
from cometchat_fsm.core import errors
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.server.history import IN_MEMORY
from cometchat_fsm.server.reference import ReferenceServer, serve_reference
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.sim.simulation import SUCCESS_CONNECT, SUCCESS_DISCONNECT, SUCCESS_PING
from cometchat_fsm.testing import ListenerRecorder, memory_connector
from cometchat_fsm.trio.client import Client, open_client

APP_ID = "app"
USERS = ("alice", "bob")
US = 1_000_000
#: How far past a target instant a deadline may fall and still count as due at it (float rounding).
TOLERANCE = 0.5 / US
#: The errors with which the live `connect()` reports its attempt, not the call (answered as success).
ATTEMPT_ERRORS = frozenset({errors.ERR_NETWORK_OFFLINE, errors.ERR_AUTH_REJECTED,
                            errors.ERR_WEBSOCKET_CONNECTION_FAILED})
#: The error with which the live `login()` reports the server's refusal (D16), not the call's own.
LOGIN_REFUSED = "ERR_AUTH_KEY_INVALID"
SUCCESS = {"connect": SUCCESS_CONNECT, "disconnect": SUCCESS_DISCONNECT, "ping": SUCCESS_PING}
SUPPORTS = ("login", "logout", "connect", "disconnect", "ping", "background", "foreground", "offline",
            "online", "restart", "advance", "drop", "silent", "reject", "throttle", "overload", "flap",
            "refuse", "busy")
NOTES = ("latency is not offered although the reference server plays it: the live login() gives up after "
         "connect_timeout (ERR_LOGIN_FAILED) and the specs have no login timeout, so a latency of "
         "connect_timeout or more diverges on L1 (cometchat-fsm simulate --manual \"latency 12; login alice; "
         "wait 12\")")
OBSERVES = ("results", "errors", "user", "stored", "sockets")


@dataclass
class Outcome:
    done: bool = False
    result: object = None
    error: CometChatException | None = None


class Example:
    """One client against the reference server, from a `reset` to the next."""

    def __init__(self, clock: trio.testing.MockClock, server: ReferenceServer, nursery: trio.Nursery,
                 command: dict[str, Any]) -> None:
        auto, limit, seed = settings_of(command)
        self.clock = clock
        self.settings = AppSettings(region="eu", auto_establish_socket_connection=auto,
                                    max_reconnect_attempts=limit)
        self.random = random.Random(seed)
        self.server, self.nursery = server, nursery
        self.connector = memory_connector(server)
        self.stack = contextlib.ExitStack()
        self.recorder = ListenerRecorder()
        self.seen = 0
        self.online = True
        self.client: Client | None = None
        self.process: AsyncExitStack | None = None

    async def start(self) -> None:
        # In memory where the system has it: the store fsyncs every save, and what is on trial here
        # is the lifecycle, not the disk (a third of the driver's time on a disk-backed /tmp).
        shm = Path("/dev/shm")
        fast = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
        self.store = Path(self.stack.enter_context(tempfile.TemporaryDirectory(dir=fast)))
        await self.launch()

    async def close(self) -> None:
        """End the client, lift every fault and close what the server still holds."""
        await self.kill()
        server = self.server
        server.reject_auth(False)
        server.overload(None)
        server.flap(None)
        server.refuse_login(False)
        server.busy(None)
        for uid in USERS:
            server.throttle(uid, False)
            server.silence(uid, False)
            server.drop(uid)
        await self.settle()
        self.stack.close()

    async def launch(self) -> None:
        stack = AsyncExitStack()
        self.client = await stack.enter_async_context(open_client(
            APP_ID, self.settings, url=self.server.url, store=self.store, connector=self.connector,
            random=self.random.random, listeners={"rec": self.recorder}, online=self.online))
        self.process = stack
        await self.settle()

    async def kill(self) -> None:
        if self.process is not None:
            await self.process.aclose()
        self.process = self.client = None

    # --- Time ----------------------------------------------------------------------------------
    async def settle(self) -> None:
        await trio.testing.wait_all_tasks_blocked(0.0)

    async def advance(self, seconds: float) -> None:
        """Jump from deadline to deadline up to `seconds` from now, settling after each."""
        target = trio.current_time() + seconds
        while True:
            await self.settle()
            gap = trio.lowlevel.current_statistics().seconds_to_next_deadline
            now = trio.current_time()
            if now + gap <= target + TOLERANCE:
                self.clock.jump(max(gap, 0.0))
                continue
            if target > now:
                self.clock.jump(target - now)
            await self.settle()
            return

    async def call(self, fn: Callable[[], Awaitable[object]]) -> Outcome:
        out = Outcome()

        async def run() -> None:
            try:
                out.result = await fn()
            except CometChatException as exc:
                out.error = exc
            out.done = True

        self.nursery.start_soon(run)
        await self.settle()
        return out

    # --- Commands ------------------------------------------------------------------------------
    async def do(self, command: dict[str, Any]) -> str | None:
        c, server, name = self.client, self.server, command["cmd"]
        assert c is not None
        if name in ("login", "logout", "connect", "disconnect", "ping"):
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "login": lambda: c.login(str(command.get("uid")), auth_key=server.auth_key),
                "logout": c.logout, "connect": c.connect, "disconnect": c.disconnect, "ping": c.ping}
            refused_at_once = name == "connect" and c.credentials_rejected  # D16: the call's own error
            out = await self.call(calls[name])
            attempt_failed = name == "connect" and not refused_at_once and out.error is not None \
                and out.error.code in ATTEMPT_ERRORS
            login_refused = name == "login" and out.error is not None and out.error.code == LOGIN_REFUSED
            if out.error is not None and not (attempt_failed or login_refused):
                raise out.error
            return SUCCESS.get(name)
        match name:
            case "background":
                c.enter_background()
            case "foreground":
                c.enter_foreground()
            case "offline":
                self.online = False
                c.network_lost()
            case "online":
                self.online = True
                c.network_restored()
            case "advance":
                await self.advance(_seconds(command.get("seconds", 0.0)))
            case "restart":
                await self.kill()
                await self.launch()
            case "drop":
                for uid in USERS:
                    server.drop(uid)
            case "silent":
                for uid in USERS:
                    server.silence(uid)
            case "reject":
                server.reject_auth(bool(command.get("on")))
            case "throttle":
                for uid in USERS:
                    server.throttle(uid, bool(command.get("on")))
            case "overload":
                hint = command.get("retry_after")
                server.overload(None if hint is None else float(hint))
            case "flap" | "busy":
                seconds = command.get("seconds")
                fault = server.flap if name == "flap" else server.busy
                fault(None if seconds is None else _seconds(seconds))
            case "refuse":
                server.refuse_login(bool(command.get("on")))
        await self.settle()
        return None

    def events(self) -> list[dict[str, Any]]:
        fresh = self.recorder.calls[self.seen:]
        self.seen = len(self.recorder.calls)
        return [{"t": t, "notify": name} for t, name in fresh]

    def state(self) -> dict[str, Any]:
        c = self.client
        assert c is not None
        user = c.get_logged_in_user()
        stored = SessionStore(self.store).load(APP_ID)
        return {"status": c.get_connection_status().value, "user": user.uid if user else None,
                "stored": stored.uid if stored else None, "sockets": self.server.open_sockets()}


def _seconds(value: object) -> float:
    """A command's number of seconds; ERR_INVALID_ARGUMENT unless a finite number >= 0."""
    seconds = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise errors.BAD_ARGUMENTS.exception(f"seconds must be a number >= 0, not {value!r}")
    return seconds


async def _serve(clock: trio.testing.MockClock) -> None:
    async with serve_reference(users=USERS, history=IN_MEMORY) as server, trio.open_nursery() as nursery:
        await _answer(clock, server, nursery)
        nursery.cancel_scope.cancel()


async def _answer(clock: trio.testing.MockClock, server: ReferenceServer, nursery: trio.Nursery) -> None:
    example: Example | None = None

    def send(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    try:
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            command = json.loads(line)
            ident, name = command.get("id"), command.get("cmd")
            if name == "quit":
                break
            if name in ("init", "reset"):
                if example is not None:
                    await example.close()
                example = Example(clock, server, nursery, command)
                await example.start()
                reply: dict[str, Any] = {"id": ident, "ok": True, "events": example.events(),
                                         "state": example.state()}
                if name == "init":
                    reply.update(protocol=PROTOCOL_VERSION, driver="live-client",
                                 implementation=f"cometchat-fsm {places.version()} trio client, reference "
                                                "server, in-memory streams",
                                 supports=list(SUPPORTS), observes=list(OBSERVES), notes=NOTES,
                                 settings=["max_reconnect_attempts"])
                send(reply)
                continue
            if example is None or name not in SUPPORTS:
                send({"id": ident, "ok": False,
                      "error": {"code": errors.ERR_UNSUPPORTED, "details": str(name)},
                      "events": [], "state": {}})
                continue
            try:
                result = await example.do(command)
                send({"id": ident, "ok": True, "result": result, "events": example.events(),
                      "state": example.state()})
            except CometChatException as exc:
                send({"id": ident, "ok": False, "error": {"code": exc.code, "message": exc.message,
                                                          "details": exc.details},
                      "events": example.events(), "state": example.state()})
    finally:
        if example is not None:
            await example.close()


def main() -> int:
    clock = trio.testing.MockClock()  # moves only when `advance` jumps it
    trio.run(_serve, clock, clock=clock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
