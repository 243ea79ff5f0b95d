"""The reference server for asyncio programs: the trio server (cometchat_fsm.server) run by
`trio.run` in a thread of its own, on loopback, for the block's duration.

The asyncio front end itself (client.py) uses no trio; only this bridge does, so that the
README's live example runs under `asyncio.run` with its import changed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
import trio.from_thread
import trio.lowlevel

from cometchat_fsm.server.reference import ReferenceServer
from cometchat_fsm.server.reference import serve_reference as serve_on_trio

T = TypeVar("T")

#: Seconds the server's thread may take to start or to stop (it binds a loopback port; closing
#: waits for its connections to close, at most a few seconds).
THREAD_BOUND = 30.0


class ThreadedServer:
    """A reference server running in its own thread: `url` and `auth_key` as on
    `ReferenceServer`; `run_sync(fn, *args)` calls an operator control (`server.add_user`,
    `server.drop`, ...) in the server's thread and returns its result."""

    def __init__(self, server: ReferenceServer, token: trio.lowlevel.TrioToken) -> None:
        self.server = server
        self.url = server.url
        self.auth_key = server.auth_key
        self._token = token
        self._stop = trio.Event()

    def _stop_soon(self) -> None:
        try:
            self.run_sync(self._stop.set)
        except trio.RunFinishedError:
            pass  # the server's run ended already

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn(*args)` in the server's trio thread and return its result (a fault, a post:
        `server.run_sync(server.server.drop, "alice")`); its exception is raised here."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)


@asynccontextmanager
async def serve_reference(*args: Any, **options: Any) -> AsyncIterator[ThreadedServer]:
    """`cometchat_fsm.serve_reference(*args, **options)` in a thread (same arguments); on exit
    the server closes every connection (1001) and its thread ends. Raises what the server's
    start raised (e.g. OSError for a port in use)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[ThreadedServer] = loop.create_future()
    failure: list[BaseException] = []

    async def serve() -> None:
        async with serve_on_trio(*args, **options) as server:
            threaded = ThreadedServer(server, trio.lowlevel.current_trio_token())
            loop.call_soon_threadsafe(ready.set_result, threaded)
            await threaded._stop.wait()

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:
            failure.append(exc)
            if not ready.done():
                loop.call_soon_threadsafe(ready.set_exception, exc)

    thread = threading.Thread(target=run, name="cometchat_fsm reference server", daemon=True)
    thread.start()
    async with asyncio.timeout(THREAD_BOUND):
        threaded = await ready
    try:
        yield threaded
    finally:
        await loop.run_in_executor(None, threaded._stop_soon)
        await loop.run_in_executor(None, thread.join, THREAD_BOUND)
