"""The fault proxy on loopback: raw TCP and trio-websocket echo servers behind it, each fault state.

Every wait is on an event or a socket; the only timed waits are the short `SILENCE` windows that
prove *nothing* arrives, which is the point of a blackhole.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketRequest

from cometchat_fsm.server.faultproxy import FaultProxy, open_fault_proxy

BOUND = 3.0  # every test body; a hang fails in seconds, not at the CI timeout
QUICK = 0.5  # "at once": a cut or refusal must be seen within this
SILENCE = 0.2  # how long "nothing arrives" is watched for


def _task_count() -> int:
    """All tasks in this run: a leaked proxy task would raise it."""
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)
    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def _tcp_echo(stream: trio.SocketStream) -> None:
    try:
        async for data in stream:  # ends at EOF
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def _ws_echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:  # until the connection closes
            await ws.send_message(await ws.get_message())
    except ConnectionClosed:
        pass


@asynccontextmanager
async def _tcp_server() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _tcp_echo, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def _ws_server() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, _ws_echo, "127.0.0.1", 0, None)
        yield server.port
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def _tcp_proxy() -> AsyncIterator[FaultProxy]:
    async with _tcp_server() as port, open_fault_proxy("127.0.0.1", port) as proxy:
        yield proxy


async def _connect(proxy: FaultProxy) -> trio.SocketStream:
    return await trio.open_tcp_stream(proxy.host, proxy.port)


async def _echo(stream: trio.SocketStream, data: bytes) -> None:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):  # bounded by the test's fail_after
        chunk = await stream.receive_some()
        assert chunk, "EOF before the echo"
        got += chunk
    assert got == data


async def _assert_cut(stream: trio.SocketStream) -> None:
    """The peer closed: EOF or a reset, and soon."""
    with trio.fail_after(QUICK):
        try:
            assert await stream.receive_some() == b""
        except trio.BrokenResourceError:
            pass


async def test_bytes_pass_both_ways_and_counters() -> None:
    with trio.fail_after(BOUND):
        async with _tcp_proxy() as proxy:
            assert proxy.state == "online"
            assert proxy.url() == f"ws://127.0.0.1:{proxy.port}"
            assert proxy.url("http", "chat") == f"http://127.0.0.1:{proxy.port}/chat"
            big = bytes(range(256)) * 4096  # 1 MiB: many chunks, flow control in both pumps
            a, b = await _connect(proxy), await _connect(proxy)
            await _echo(a, b"hello")
            await _echo(b, b"x")
            assert proxy.connections == 2
            async with trio.open_nursery() as nursery:  # send and read at once, or both sides stall
                nursery.start_soon(a.send_all, big)
                got = bytearray()
                while len(got) < len(big):
                    got += await a.receive_some()
            assert got == big
            # A half-close travels through: the echo server sees EOF and closes, so a reads EOF.
            await a.send_eof()
            assert await a.receive_some() == b""
            await a.aclose()
            await proxy.wait_connections(1)
            await b.aclose()
            await proxy.wait_connections(0)
            total = 5 + 1 + len(big)
            assert (proxy.bytes_up, proxy.bytes_down) == (total, total)
            assert (proxy.accepted, proxy.refused, proxy.upstream_failures) == (2, 0, 0)


@pytest.mark.parametrize("reset", [False, True])
async def test_offline_cuts_refuses_and_online_restores(reset: bool) -> None:
    with trio.fail_after(BOUND):
        async with _tcp_proxy() as proxy:
            old = await _connect(proxy)
            await _echo(old, b"before")
            proxy.go_offline(reset=reset)
            # Synchronous: every socket is closed when go_offline returns.
            assert (proxy.state, proxy.connections) == ("offline", 0)
            if reset:
                with trio.fail_after(QUICK), pytest.raises(trio.BrokenResourceError):
                    await old.receive_some()
            else:
                await _assert_cut(old)
            # The port stays bound; a new connection is accepted and reset at once.
            refused = await _connect(proxy)
            await _assert_cut(refused)
            assert proxy.refused == 1 and proxy.connections == 0
            proxy.go_online()
            assert proxy.state == "online"
            new = await _connect(proxy)
            await _echo(new, b"after")
            for stream in (old, refused, new):
                await stream.aclose()
            await proxy.wait_connections(0)


async def test_blackhole_delivers_nothing_closes_nothing_and_buffers_nothing() -> None:
    with trio.fail_after(BOUND):
        async with _tcp_proxy() as proxy:
            stream = await _connect(proxy)
            await _echo(stream, b"ping")
            proxy.blackhole()
            assert proxy.state == "blackhole"
            await stream.send_all(b"lost")
            with trio.move_on_after(SILENCE) as silent:
                await stream.receive_some()
            assert silent.cancelled_caught, "a blackhole delivered or closed"
            assert proxy.connections == 1
            # The proxy stops reading, so the kernel's buffers fill and a sender blocks: no buffer
            # in the proxy grows. 64 MiB is far more than loopback socket buffers hold.
            with trio.move_on_after(SILENCE) as blocked:
                await stream.send_all(bytes(64 * 1024 * 1024))
            assert blocked.cancelled_caught, "64 MiB went into a blackhole without blocking"
            assert proxy.bytes_up == 4
            await stream.aclose()
            proxy.go_offline()
            assert proxy.connections == 0


async def test_upstream_unreachable_closes_the_client_at_once() -> None:
    with trio.fail_after(BOUND):
        with socket.socket() as probe:  # a port nobody listens on: bound, then freed
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        async with open_fault_proxy("127.0.0.1", dead_port) as proxy:
            stream = await _connect(proxy)
            await _assert_cut(stream)
            await proxy.wait_connections(0)
            assert (proxy.accepted, proxy.upstream_failures) == (1, 1)
            await stream.aclose()


async def test_exit_closes_every_socket_and_ends_every_task() -> None:
    with trio.fail_after(BOUND):
        before = _task_count()
        async with _tcp_server() as port:
            async with open_fault_proxy("127.0.0.1", port) as proxy:
                live = await _connect(proxy)
                await _echo(live, b"a")
                proxy.blackhole()
                stuck = await _connect(proxy)  # accepted into the blackhole
                await proxy.wait_connections(2)
                assert _task_count() > before
            assert proxy.connections == 0
            await _assert_cut(live)
            await _assert_cut(stuck)
            for stream in (live, stuck):
                await stream.aclose()
        assert _task_count() == before


async def test_websocket_offline_and_online() -> None:
    with trio.fail_after(BOUND):
        async with _ws_server() as port, open_fault_proxy("127.0.0.1", port) as proxy:
            async with trio_websocket.open_websocket_url(proxy.url()) as ws:
                await ws.send_message("hello")
                assert await ws.get_message() == "hello"
                proxy.go_offline()
                with trio.fail_after(QUICK), pytest.raises(ConnectionClosed):
                    await ws.get_message()
            # Caveat: trio-websocket 0.12 waits for the handshake event even after the socket is
            # reset, so a refused connection surfaces as its connect timeout, not at once.
            with trio.fail_after(QUICK), pytest.raises(HandshakeError):
                async with trio_websocket.open_websocket_url(proxy.url(), connect_timeout=SILENCE):
                    pass
            assert proxy.refused == 1
            proxy.go_online()
            async with trio_websocket.open_websocket_url(proxy.url()) as ws:
                await ws.send_message(b"back")
                assert await ws.get_message() == b"back"
            await proxy.wait_connections(0)


async def test_websocket_blackhole_is_silent_and_open_and_stays_dead() -> None:
    with trio.fail_after(BOUND):
        async with _ws_server() as port, open_fault_proxy("127.0.0.1", port) as proxy:
            async with trio_websocket.open_websocket_url(proxy.url()) as stale:
                await stale.send_message("one")
                assert await stale.get_message() == "one"
                proxy.blackhole()
                await stale.send_message("two")
                with trio.move_on_after(SILENCE) as silent:
                    await stale.get_message()
                assert silent.cancelled_caught, "a blackholed websocket got an echo"
                assert stale.closed is None and proxy.connections == 1
                proxy.go_online()
                # New connections work again; the stale one is still half-open, silent, not closed.
                async with trio_websocket.open_websocket_url(proxy.url()) as fresh:
                    await fresh.send_message("three")
                    assert await fresh.get_message() == "three"
                    await stale.send_message("four")
                    with trio.move_on_after(SILENCE) as still_silent:
                        await stale.get_message()
                    assert still_silent.cancelled_caught and stale.closed is None
                    assert proxy.connections == 2
                # Only a cut ends the stale connection (else its close handshake would wait).
                proxy.go_offline()
                with trio.fail_after(QUICK), pytest.raises(ConnectionClosed):
                    await stale.get_message()
            assert proxy.connections == 0
