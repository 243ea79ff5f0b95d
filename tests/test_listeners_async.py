"""Listeners and status the Python way (issue 14): a listener method may be a coroutine
function (awaited, and every later notification waits for it: D11's order holds), a
`ConnectionListener` Protocol, and `status_changes()` as an async iterator, bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trio.testing

from cometchat_fsm import AppSettings, ConnectionStatus
from cometchat_fsm.server.reference import ReferenceServer, serve_reference
from cometchat_fsm.session.listeners import ConnectionListener
from cometchat_fsm.session.values import ConnectedInfo, StatusChange
from cometchat_fsm.testing import memory_connector
from cometchat_fsm.trio.client import Client, open_client

MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)
BOUND = 60


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[ReferenceServer, Client]]:
    async with serve_reference(users=("alice",)) as server, \
            open_client("app", MANUAL, url=server.url, store=tmp_path,
                        connector=memory_connector(server)) as c:
        await c.login("alice", auth_key=server.auth_key)
        yield server, c


class Slow:
    """Coroutine methods that take virtual time, noting when each began and ended."""

    def __init__(self, log: list[tuple[float, str]]) -> None:
        self.log = log

    async def on_connecting(self) -> None:
        self.log.append((trio.current_time(), "slow on_connecting began"))
        await trio.sleep(2)
        self.log.append((trio.current_time(), "slow on_connecting ended"))

    async def on_connected(self, info: ConnectedInfo | None = None) -> None:
        self.log.append((trio.current_time(), f"slow on_connected resumed={info and info.resumed}"))


class Quick:
    def __init__(self, log: list[tuple[float, str]]) -> None:
        self.log = log

    def on_connecting(self) -> None:
        self.log.append((trio.current_time(), "quick on_connecting"))

    def on_connected(self) -> None:
        self.log.append((trio.current_time(), "quick on_connected"))


async def test_an_async_on_connected_is_awaited(tmp_path: Path,
                                                autojump_clock: trio.testing.MockClock) -> None:
    heard: list[str] = []

    class Listener:
        async def on_connected(self) -> None:
            await trio.sleep(0)
            heard.append("on_connected")

    with trio.fail_after(BOUND):
        async with running(tmp_path) as (_, c):
            c.add_connection_listener("ui", Listener())
            await c.connect()
            await trio.testing.wait_all_tasks_blocked()
            assert heard == ["on_connected"]


async def test_notifications_wait_for_a_coroutine_before_them(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """D11 for each listener: the sync listener's on_connected comes after the async listener's
    on_connecting has finished, although the core connected meanwhile."""
    log: list[tuple[float, str]] = []
    with trio.fail_after(BOUND):
        async with running(tmp_path) as (_, c):
            c.add_connection_listener("slow", Slow(log))
            c.add_connection_listener("quick", Quick(log))
            start = trio.current_time()
            await c.connect()
            assert c.get_connection_status() is ConnectionStatus.CONNECTED  # the client did not wait
            await trio.sleep(5)
            assert [(t - start, what) for t, what in log] == [
                (0, "slow on_connecting began"),
                (2, "slow on_connecting ended"),
                (2, "quick on_connecting"),
                (2, "slow on_connected resumed=True"),
                (2, "quick on_connected"),
            ]


async def test_status_changes_in_order_and_bounded(tmp_path: Path,
                                                   autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with running(tmp_path) as (_, c):
            changes = c.status_changes()
            await c.connect()
            await c.disconnect()
            seen = [await anext(changes) for _ in range(3)]
            assert [(s.notification, s.status) for s in seen] == [
                ("on_connecting", ConnectionStatus.CONNECTING), ("on_connected", ConnectionStatus.CONNECTED),
                ("on_disconnected", ConnectionStatus.DISCONNECTED)]

            slow = c.status_changes(limit=2)  # a consumer that never reads while 6 changes happen
            for _ in range(2):
                await c.connect()
                await c.disconnect()
            assert [(await anext(slow)).notification for _ in range(2)] == ["on_connected", "on_disconnected"]


async def test_status_changes_end_when_the_client_closes(tmp_path: Path,
                                                         autojump_clock: trio.testing.MockClock) -> None:
    got: list[StatusChange] = []
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            async with running(tmp_path) as (_, c):
                async def follow() -> None:
                    async for change in c.status_changes():
                        got.append(change)
                nursery.start_soon(follow)
                await trio.testing.wait_all_tasks_blocked()
                await c.connect()
                await trio.testing.wait_all_tasks_blocked()
            # the block ended: the iterator ends too, so the nursery can close
    assert [g.status for g in got] == [ConnectionStatus.CONNECTING, ConnectionStatus.CONNECTED]


def test_a_listener_with_every_method_is_a_connection_listener() -> None:
    class Full:
        def on_connecting(self) -> None: ...
        def on_connected(self, info: ConnectedInfo | None = None) -> None: ...
        def on_disconnected(self) -> None: ...
        def on_feature_throttled(self) -> None: ...
        def on_connection_error(self, error: object) -> None: ...

    full: ConnectionListener = Full()
    assert isinstance(full, ConnectionListener) and not isinstance(Quick([]), ConnectionListener)
