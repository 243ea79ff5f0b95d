"""The reference server against docs/protocol.md: login, auth, relay, bad frames, scripted faults.

Most tests talk to the server over in-memory streams (`connect_in_memory`) in virtual time
(`autojump_clock`); a few use real loopback sockets to show the TCP path is the same.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected, WebSocketConnection

from cometchat_fsm.cli import commands_live, parser
from cometchat_fsm.cli import main as cli
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.server.reference import (
    LOGIN_PATH,
    SOCKET_PATH,
    ReferenceServer,
    connect_in_memory,
    serve_reference,
)
from cometchat_fsm.trio.wsclient import handshake

BOUND = 30  # seconds, virtual in most tests: generous, since only a hang would reach it
USERS = ("alice", "bob", "carol")
Frame = dict[str, Any]
Capsys = pytest.CaptureFixture[str]


@asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[tuple[ReferenceServer, trio.Nursery]]:
    """A server with USERS, and a nursery for client readers that is cancelled before it exits."""
    async with trio.open_nursery() as nursery:
        async with serve_reference(users=USERS, **kwargs) as server:
            yield server, nursery
        nursery.cancel_scope.cancel()


async def send(ws: WebSocketConnection, frame: Frame) -> None:
    await ws.send_message(json.dumps(frame))


async def recv(ws: WebSocketConnection) -> Frame:
    message = await ws.get_message()
    assert isinstance(message, str)
    frame = json.loads(message)
    assert isinstance(frame, dict)
    return frame


async def closed(ws: WebSocketConnection) -> CloseReason:
    """The close the server sent (after any frames still queued, which are skipped)."""
    with pytest.raises(ConnectionClosed) as info:
        while True:  # bounded by the test's fail_after and the server's close
            await ws.get_message()
    reason = info.value.reason
    assert reason is not None
    return reason


async def silent(ws: WebSocketConnection, seconds: float = 5.0) -> bool:
    """True if nothing arrives for `seconds` (virtual time)."""
    with trio.move_on_after(seconds):
        await ws.get_message()
        return False
    return True


async def login(server: ReferenceServer, nursery: trio.Nursery, frame: Frame) -> Frame:
    ws = await connect_in_memory(server, nursery, LOGIN_PATH)
    await send(ws, {"type": "login", **frame})
    answer = await recv(ws)
    assert (await closed(ws)).code == 1000
    return answer


async def token_of(server: ReferenceServer, nursery: trio.Nursery, uid: str) -> str:
    answer = await login(server, nursery, {"uid": uid, "auth_key": server.auth_key})
    assert answer["type"] == "login_ok"
    token = answer["auth_token"]
    assert isinstance(token, str)
    return token


async def authed(server: ReferenceServer, nursery: trio.Nursery, uid: str,
                 token: str | None = None) -> WebSocketConnection:
    token = token or await token_of(server, nursery, uid)
    ws = await connect_in_memory(server, nursery, SOCKET_PATH)
    await send(ws, {"type": "auth", "uid": uid, "auth_token": token, "last_id": None})
    ok = await recv(ws)
    assert ok["type"] == "auth_ok" and ok["uid"] == uid and isinstance(ok["server_time"], float)
    return ws


async def exchange_works(server: ReferenceServer, nursery: trio.Nursery,
                         pair: tuple[WebSocketConnection, WebSocketConnection] | None = None) -> None:
    """bob -> carol still works (on the given sockets, or on fresh ones)."""
    bob, carol = pair or (await authed(server, nursery, "bob"), await authed(server, nursery, "carol"))
    await send(bob, {"type": "message", "to": "carol", "text": "still here", "ref": 99})
    got = await recv(carol)
    assert (got["sender"], got["text"]) == ("bob", "still here")
    # A fuzzed frame may have been a valid message to bob: skip what arrived before the answer.
    answer = await recv(bob)
    while answer["type"] == "message":
        answer = await recv(bob)
    assert answer["type"] == "sent"


# --- login ----------------------------------------------------------------------------------------


async def test_login_with_the_auth_key_then_with_the_token(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            ok = await login(server, nursery, {"uid": "alice", "auth_key": server.auth_key})
            assert ok["type"] == "login_ok" and ok["uid"] == "alice" and len(ok["auth_token"]) >= 32
            again = await login(server, nursery, {"auth_token": ok["auth_token"]})
            assert again == ok
            other = await token_of(server, nursery, "alice")
            assert other != ok["auth_token"]  # every login issues a new token; the old one stays valid
            assert server.stats.logins_ok == 3


@pytest.mark.parametrize(("frame", "code"), [
    ({"uid": "dave", "auth_key": None}, "ERR_UID_NOT_FOUND"),
    ({"uid": "no such uid!", "auth_key": None}, "ERR_UID_NOT_FOUND"),
    ({"uid": "alice", "auth_key": "wrong"}, "ERR_AUTH_KEY_INVALID"),
    ({"uid": "dave", "auth_key": "wrong"}, "ERR_AUTH_KEY_INVALID"),  # the key first: no uid probing
    ({"auth_token": "made-up"}, "ERR_AUTH_TOKEN_INVALID"),
])
async def test_login_errors(frame: Frame, code: str, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            if frame.get("auth_key", "") is None:
                frame = {**frame, "auth_key": server.auth_key}
            answer = await login(server, nursery, frame)
            assert answer["type"] == "error" and answer["code"] == code and answer["message"]
            assert (server.stats.logins_ok, server.stats.logins_failed) == (0, 1)


async def test_revoke_forgets_the_tokens(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            token = await token_of(server, nursery, "alice")
            server.revoke("alice")
            answer = await login(server, nursery, {"auth_token": token})
            assert answer["code"] == "ERR_AUTH_TOKEN_INVALID"


def test_add_user_validates_the_uid() -> None:
    async def main() -> None:
        with trio.fail_after(BOUND):
            async with serve_reference() as server:
                for good in ("a", "A-z_0.9", "x" * 100):
                    server.add_user(good)
                for bad in ("", "x" * 101, "a b", "é", "a/b", "a\n"):
                    with pytest.raises(CometChatException) as info:
                        server.add_user(bad)
                    assert info.value.code == "ERR_INVALID_UID"
                assert server.users == {"a", "A-z_0.9", "x" * 100}

    trio.run(main)


# --- auth, keep-alive, ping -----------------------------------------------------------------------


async def test_auth_ok_keepalive_pong_and_ping_counted(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            alice = await authed(server, nursery, "alice")
            await send(alice, {"type": "ping"})
            await send(alice, {"type": "keepalive"})
            assert await recv(alice) == {"type": "pong"}  # the ping got no answer
            assert await silent(alice)
            assert (server.stats.auths_ok, server.stats.keepalives_answered, server.stats.pings_received) \
                == (1, 1, 1)


@pytest.mark.parametrize("case", ["garbage token", "bob's token", "reject_auth"])
async def test_auth_rejected_closes_4001(case: str, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            token = "garbage" if case == "garbage token" else await token_of(server, nursery, "bob")
            if case == "reject_auth":
                server.reject_auth(True)
            uid = "bob" if case == "reject_auth" else "alice"
            ws = await connect_in_memory(server, nursery, SOCKET_PATH)
            await send(ws, {"type": "auth", "uid": uid, "auth_token": token, "last_id": None})
            answer = await recv(ws)
            assert answer["type"] == "auth_rejected" and answer["code"] == "ERR_AUTH_REJECTED"
            assert (await closed(ws)).code == 4001
            assert server.stats.auths_rejected == 1
            server.reject_auth(False)
            await authed(server, nursery, "bob")  # with a fresh token, and reject_auth off


async def test_a_revoked_token_is_rejected_but_open_sockets_stay(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            token = await token_of(server, nursery, "alice")
            alice = await authed(server, nursery, "alice", token)
            server.revoke("alice")
            ws = await connect_in_memory(server, nursery, SOCKET_PATH)
            await send(ws, {"type": "auth", "uid": "alice", "auth_token": token, "last_id": None})
            assert (await recv(ws))["type"] == "auth_rejected"
            await send(alice, {"type": "keepalive"})
            assert await recv(alice) == {"type": "pong"}


async def test_no_auth_within_the_bound_closes_1008(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            ws = await connect_in_memory(server, nursery, SOCKET_PATH)
            start = trio.current_time()
            reason = await closed(ws)
            assert reason.code == 1008 and "auth" in (reason.reason or "")
            assert trio.current_time() - start == pytest.approx(10.0)


# --- relay ----------------------------------------------------------------------------------------


async def test_relay_stamps_the_sender_and_reaches_every_socket(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            alice = await authed(server, nursery, "alice")
            bob1, bob2 = await authed(server, nursery, "bob"), await authed(server, nursery, "bob")
            carol = await authed(server, nursery, "carol")
            # Impersonation attempt: the frame claims carol sent it.
            await send(alice, {"type": "message", "to": "bob", "text": "hi", "ref": 7, "sender": "carol"})
            sent = await recv(alice)
            assert sent["type"] == "sent" and sent["ref"] == 7 and isinstance(sent["id"], int)
            for bob in (bob1, bob2):
                got = await recv(bob)
                assert got == {"type": "message", "id": sent["id"], "sender": "alice", "receiver": "bob",
                               "text": "hi", "sent_at": sent["sent_at"], "muid": None}
            assert await silent(carol)
            await send(bob1, {"type": "message", "to": "alice", "text": "yo", "ref": 1})
            assert (await recv(alice))["sender"] == "bob"
            second = await recv(bob1)
            assert second["id"] > sent["id"] and second["sent_at"] >= sent["sent_at"]
            assert server.stats.messages_relayed == 2


async def test_unknown_receiver_gets_an_error_with_the_ref(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            alice = await authed(server, nursery, "alice")
            for to in ("dave", "not a uid"):
                await send(alice, {"type": "message", "to": to, "text": "hi", "ref": 3})
                error = await recv(alice)
                assert error["type"] == "error" and error["ref"] == 3 and error["code"] == "ERR_UID_NOT_FOUND"
            await send(alice, {"type": "keepalive"})
            assert await recv(alice) == {"type": "pong"}  # still open
            assert server.stats.messages_failed == 2


# --- bad frames -----------------------------------------------------------------------------------

BAD_FRAMES: list[tuple[str, bool, str | bytes, int, str]] = [  # name, authed first, payload, code, in reason
    ("binary", True, b'{"type": "keepalive"}', 1008, "binary"),
    ("bad JSON", True, '{"type": "keepalive"', 1007, "JSON"),
    ("NaN is not JSON", True, '{"type": "keepalive", "x": NaN}', 1007, "JSON"),
    ("not an object", True, '["keepalive"]', 1008, "object"),
    ("no type", True, '{"to": "bob"}', 1008, "type"),
    ("unknown type", True, '{"type": "shout"}', 1008, "shout"),
    ("missing field", True, '{"type": "message", "text": "hi", "ref": 1}', 1008, "'to'"),
    ("wrong-typed field", True, '{"type": "message", "to": "bob", "text": "hi", "ref": "1"}', 1008, "'ref'"),
    ("bool is not an int", True, '{"type": "message", "to": "bob", "text": "hi", "ref": true}', 1008,
     "'ref'"),
    ("auth twice", True, '{"type": "auth", "uid": "alice", "auth_token": "t", "last_id": null}', 1008,
     "auth"),
    ("100 KiB frame", True, json.dumps({"type": "keepalive", "pad": "x" * 100 * 1024}), 1009, "65536"),
    ("40 K chars, 80 KB", True, '{"type": "keepalive", "pad": "' + "é" * 40_000 + '"}', 1009, "65536"),
    ("message before auth", False, '{"type": "message", "to": "bob", "text": "hi", "ref": 1}', 1008, "auth"),
    ("bad JSON before auth", False, "{", 1007, "JSON"),
    ("wrong-typed auth", False, '{"type": "auth", "uid": 5, "auth_token": "t", "last_id": null}', 1008,
     "'uid'"),
    ("wrong-typed last_id", False, '{"type": "auth", "uid": "a", "auth_token": "t", "last_id": "x"}', 1008,
     "'last_id'"),
]


@pytest.mark.parametrize(("name", "authed_first", "payload", "code", "named"), BAD_FRAMES,
                         ids=[b[0] for b in BAD_FRAMES])
async def test_a_bad_frame_closes_only_its_connection(name: str, authed_first: bool, payload: str | bytes,
                                                       code: int, named: str,
                                                       autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            bob, carol = await authed(server, nursery, "bob"), await authed(server, nursery, "carol")
            if authed_first:
                alice = await authed(server, nursery, "alice")
            else:
                alice = await connect_in_memory(server, nursery, SOCKET_PATH)
            await alice.send_message(payload)
            reason = await closed(alice)
            assert reason.code == code
            assert named in (reason.reason or "")
            assert server.stats.frames_rejected == {code: 1}
            await exchange_works(server, nursery, (bob, carol))
            await server.wait_open_sockets(2)


async def test_a_bad_login_frame_closes_1008(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            bad: list[Frame] = [{"type": "auth"}, {"type": "login", "uid": "alice"},
                                {"type": "login", "auth_token": 5}]
            for frame in bad:
                ws = await connect_in_memory(server, nursery, LOGIN_PATH)
                await send(ws, frame)
                assert (await closed(ws)).code == 1008
            assert server.stats.frames_rejected[1008] == 3


# --- loopback -------------------------------------------------------------------------------------


@asynccontextmanager
async def tcp_client(server: ReferenceServer, path: str) -> AsyncIterator[WebSocketConnection]:
    """A client WebSocket over loopback TCP whose socket is closed on exit (trio-websocket 0.12
    leaves a client's socket open when the server closed first)."""
    stream = await trio.open_tcp_stream(server.host, server.port)
    try:
        async with trio.open_nursery() as nursery:
            yield await trio_websocket.wrap_client_stream(nursery, stream, server.host, path)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # e.g. ConnectionRejected, raised by the reader task
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await trio.aclose_forcefully(stream)


async def tcp_login(server: ReferenceServer, uid: str) -> Frame:
    async with tcp_client(server, LOGIN_PATH) as ws:
        await send(ws, {"type": "login", "uid": uid, "auth_key": server.auth_key})
        answer = await recv(ws)
        assert (await closed(ws)).code == 1000
        return answer


async def test_loopback_login_auth_relay_and_exit_closes_1001() -> None:
    with trio.fail_after(BOUND):
        streams: list[trio.SocketStream] = []
        try:
            async with trio.open_nursery() as nursery:  # the clients outlive the server
                async with serve_reference(users=USERS) as server:
                    assert server.url == f"ws://127.0.0.1:{server.port}" and server.host == "127.0.0.1"
                    clients = {}
                    for uid in ("alice", "bob"):
                        token = (await tcp_login(server, uid))["auth_token"]
                        streams.append(await trio.open_tcp_stream(server.host, server.port))
                        ws = await trio_websocket.wrap_client_stream(nursery, streams[-1], server.host,
                                                                     SOCKET_PATH)
                        await send(ws, {"type": "auth", "uid": uid, "auth_token": token, "last_id": None})
                        assert (await recv(ws))["type"] == "auth_ok"
                        clients[uid] = ws
                    over_tcp = {"type": "message", "to": "bob", "text": "over TCP", "ref": 1}
                    await send(clients["alice"], over_tcp)
                    assert (await recv(clients["bob"]))["text"] == "over TCP"
                    assert (await recv(clients["alice"]))["type"] == "sent"
                    assert server.open_sockets() == 2
                for ws in clients.values():
                    assert (await closed(ws)).code == 1001
        finally:
            for stream in streams:
                await trio.aclose_forcefully(stream)


async def test_a_frame_over_64_kib_on_loopback_closes_1009() -> None:
    with trio.fail_after(BOUND):
        async with serve_reference(users=USERS) as server:
            answer = await tcp_login(server, "alice")
            async with tcp_client(server, SOCKET_PATH) as ws:
                await send(ws, {"type": "auth", "uid": "alice", "auth_token": answer["auth_token"],
                                "last_id": None})
                assert (await recv(ws))["type"] == "auth_ok"
                await ws.send_message("x" * 100 * 1024)
                assert (await closed(ws)).code == 1009
            assert server.stats.frames_rejected[1009] == 1


async def test_loopback_refuse_and_unknown_path() -> None:
    with trio.fail_after(BOUND):
        async with serve_reference(users=USERS) as server:
            with pytest.raises(ConnectionRejected) as info:
                async with tcp_client(server, "/v2/nothing"):
                    pass
            assert info.value.status_code == 404
            server.refuse(True)
            for path in (LOGIN_PATH, SOCKET_PATH):
                with pytest.raises(ConnectionRejected) as info:
                    async with tcp_client(server, path):
                        pass
                assert info.value.status_code == 503
            server.refuse(False)  # the listener stayed up
            assert (await tcp_login(server, "alice"))["type"] == "login_ok"
            assert server.stats.handshakes_rejected == 3


# --- scripted faults ------------------------------------------------------------------------------


async def test_refused_and_unknown_in_memory(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            with pytest.raises(ConnectionRejected) as info:
                await connect_in_memory(server, nursery, "/nope")
            assert info.value.status_code == 404
            server.refuse()
            with pytest.raises(ConnectionRejected) as info:
                await connect_in_memory(server, nursery, SOCKET_PATH)
            assert info.value.status_code == 503
            server.refuse(False)
            await authed(server, nursery, "alice")


async def test_drop_closes_that_users_sockets_with_4002(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            a1, a2 = await authed(server, nursery, "alice"), await authed(server, nursery, "alice")
            bob, carol = await authed(server, nursery, "bob"), await authed(server, nursery, "carol")
            assert server.drop("alice") == 2
            assert (await closed(a1)).code == 4002 and (await closed(a2)).code == 4002
            await server.wait_open_sockets(0, "alice")
            assert server.open_sockets() == 2
            await exchange_works(server, nursery, (bob, carol))
            await authed(server, nursery, "alice")  # alice may come back


async def test_silence_makes_current_sockets_half_open(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            old = await authed(server, nursery, "alice")
            bob = await authed(server, nursery, "bob")
            assert server.silence("alice") == 1
            await send(old, {"type": "keepalive"})
            await send(bob, {"type": "message", "to": "alice", "text": "lost", "ref": 1})
            assert (await recv(bob))["type"] == "sent"
            assert await silent(old, 20)  # no pong, no message, no close
            assert server.open_sockets("alice") == 1  # still open
            new = await authed(server, nursery, "alice")  # a new socket of alice works normally
            await send(bob, {"type": "message", "to": "alice", "text": "found", "ref": 2})
            assert (await recv(new))["text"] == "found"
            assert server.open_sockets("alice") == 2
            # The client gives up on the silent socket: the server notices and forgets it.
            with trio.move_on_after(3):
                await old.aclose()  # no close answer ever comes; cancelling aborts the stream
            await server.wait_open_sockets(1, "alice")
            await send(new, {"type": "keepalive"})
            assert await recv(new) == {"type": "pong"}


async def test_silence_off_cuts_the_silenced_sockets(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            old = await authed(server, nursery, "alice")
            server.silence("alice")
            assert server.silence("alice", False) == 1
            assert (await closed(old)).code == 1006  # cut, no close frame
            await server.wait_open_sockets(0)


async def test_drop_cuts_a_silenced_socket(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            old = await authed(server, nursery, "alice")
            server.silence("alice")
            assert server.drop("alice") == 1
            assert (await closed(old)).code == 1006
            await server.wait_open_sockets(0)


async def test_throttle_now_and_for_later_auths(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            alice, bob = await authed(server, nursery, "alice"), await authed(server, nursery, "bob")
            server.throttle("alice", True)
            assert await recv(alice) == {"type": "throttle", "active": True}
            later = await authed(server, nursery, "alice")  # asserts auth_ok came first
            assert await recv(later) == {"type": "throttle", "active": True}
            server.throttle("alice", False)
            assert await recv(alice) == {"type": "throttle", "active": False}
            assert await recv(later) == {"type": "throttle", "active": False}
            after = await authed(server, nursery, "alice")
            await send(after, {"type": "keepalive"})
            assert await recv(after) == {"type": "pong"}  # no throttle frame any more
            assert await silent(bob)


async def test_overload_closes_new_sockets_1013_with_the_hint(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            alice = await authed(server, nursery, "alice")
            server.overload(2.5)
            ws = await connect_in_memory(server, nursery, SOCKET_PATH)
            reason = await closed(ws)
            assert (reason.code, reason.reason) == (1013, "retry-after=2.5")
            assert server.open_sockets() == 1 and server.stats.overloaded == 1
            assert (await login(server, nursery, {"uid": "bob", "auth_key": server.auth_key}))["type"] \
                == "login_ok"  # logins are not realtime sockets
            await send(alice, {"type": "keepalive"})
            assert await recv(alice) == {"type": "pong"}
            server.overload(None)
            await authed(server, nursery, "bob")
            with pytest.raises(ValueError):
                server.overload(-1)


async def test_max_connections_overloads_with_one_second(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running(max_connections=1) as (server, nursery):
            alice = await authed(server, nursery, "alice")
            ws = await connect_in_memory(server, nursery, SOCKET_PATH)
            reason = await closed(ws)
            assert (reason.code, reason.reason) == (1013, "retry-after=1.0")
            server.drop("alice")
            await closed(alice)
            await server.wait_open_sockets(0)
            await authed(server, nursery, "bob")


async def test_restart_closes_1001_and_keeps_users_and_tokens(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            token = await token_of(server, nursery, "alice")
            alice, bob = await authed(server, nursery, "alice", token), await authed(server, nursery, "bob")
            await server.restart()
            assert (await closed(alice)).code == 1001 and (await closed(bob)).code == 1001
            assert server.open_sockets() == 0 and server.stats.restarts == 1
            await authed(server, nursery, "alice", token)  # the same token still works
            await exchange_works(server, nursery)


async def test_open_sockets_counts_from_the_auth_frame(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            token = await token_of(server, nursery, "alice")
            ws = await connect_in_memory(server, nursery, SOCKET_PATH)
            await server.wait_open_sockets(1)
            assert server.open_sockets("alice") == 0  # no auth frame read yet
            await send(ws, {"type": "auth", "uid": "alice", "auth_token": token, "last_id": None})
            await recv(ws)
            counts = (server.open_sockets(), server.open_sockets("alice"), server.open_sockets("bob"))
            assert counts == (1, 1, 0)
            rejected = await connect_in_memory(server, nursery, SOCKET_PATH)
            await send(rejected, {"type": "auth", "uid": "bob", "auth_token": "bad", "last_id": None})
            await recv(rejected)
            await closed(rejected)
            await server.wait_open_sockets(0, "bob")
            await ws.aclose()
            await server.wait_open_sockets(0)


# --- the CLI --------------------------------------------------------------------------------------


def test_serve_arguments() -> None:
    args = parser.build_parser().parse_args(["serve", "--port", "8765", "--user", "alice", "bob",
                                             "--user", "carol", "--auth-key", "k3y", "--host", "127.0.0.2"])
    assert (args.command, args.host, args.port, args.users, args.auth_key) \
        == ("serve", "127.0.0.2", 8765, ["alice", "bob", "carol"], "k3y")
    defaults = parser.build_parser().parse_args(["serve"])
    assert (defaults.host, defaults.port, defaults.users, defaults.auth_key) == ("127.0.0.1", 0, [], None)
    with pytest.raises(SystemExit):
        parser.build_parser().parse_args(["serve", "--port", "65536"])


def test_serve_runs_until_ctrl_c(capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    async def ctrl_c() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    monkeypatch.setattr(commands_live, "_until_interrupted", ctrl_c)
    assert cli.main(["serve", "--user", "alice", "--user", "bob", "--auth-key", "sekret"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("serving ws://127.0.0.1:")
    assert lines[1:] == ["auth key: sekret", "users: alice, bob", "server stopped"]
    assert err == ""


def test_serve_keeps_users_in_its_history_file(capsys: Capsys, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    async def ctrl_c() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    monkeypatch.setattr(commands_live, "_until_interrupted", ctrl_c)
    history = tmp_path / "server.sqlite3"
    assert cli.main(["serve", "--user", "alice", "--history", str(history)]) == 0
    assert cli.main(["serve", "--user", "bob", "--history", str(history)]) == 0
    out = capsys.readouterr().out
    assert "users: alice, bob" in out.split("server stopped")[1]  # the second run knew alice
    assert f"history: {history}" in out
    (tmp_path / "bad.sqlite3").write_text("this is not a database, it is text " * 100)
    assert cli.main(["serve", "--history", str(tmp_path / "bad.sqlite3")]) == 2
    out, err = capsys.readouterr()
    assert "cannot use the history file" in err and len(err.splitlines()) == 1


def test_serve_rejects_a_bad_uid_in_one_line(capsys: Capsys) -> None:
    assert cli.main(["serve", "--user", "no spaces"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "ERR_INVALID_UID" in err


# --- no frame crashes the server ------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
TYPES = st.sampled_from(["keepalive", "ping", "message", "auth", "login", "pong", "sent", ""]) \
    | st.text(max_size=8)
FIELDS = st.fixed_dictionaries({}, optional={
    "to": st.sampled_from(USERS) | JSON, "text": st.text(max_size=30) | JSON, "ref": st.integers() | JSON,
    "uid": JSON, "auth_token": JSON, "last_id": JSON, "sender": JSON})
FRAMES = (
    st.builds(lambda kind, fields: json.dumps({"type": kind, **fields}), TYPES, FIELDS)
    | JSON.map(json.dumps)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(FRAMES, min_size=1, max_size=4), before_auth=st.booleans())
def test_no_frame_crashes_the_server_or_touches_another_connection(frames: list[str | bytes],
                                                                   before_auth: bool) -> None:
    errors = _Errors()
    logging.getLogger("cometchat_fsm.server.reference").addHandler(errors)

    async def main() -> None:
        with trio.fail_after(BOUND):
            async with running() as (server, nursery):
                bob, carol = await authed(server, nursery, "bob"), await authed(server, nursery, "carol")
                if before_auth:
                    alice = await connect_in_memory(server, nursery, SOCKET_PATH)
                else:
                    alice = await authed(server, nursery, "alice")
                for frame in frames:
                    try:
                        await alice.send_message(frame)
                    except ConnectionClosed:
                        break
                await trio.testing.wait_all_tasks_blocked()
                if alice.closed is not None:
                    assert alice.closed.code in {1007, 1008, 1009}, alice.closed
                await exchange_works(server, nursery, (bob, carol))

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        logging.getLogger("cometchat_fsm.server.reference").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


# --- raw bytes: what a trio-websocket client cannot send ------------------------------------------

HANDSHAKE = (b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"\x0f\xa5\x5a\xf0") -> bytes:
    """One client frame (masked, as RFC 6455 requires of clients)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_socket(server: ReferenceServer, path: bytes = SOCKET_PATH.encode()) -> trio.abc.Stream:
    """An in-memory stream to `server` with the WebSocket handshake done by hand."""
    client, server_end = trio.testing.memory_stream_pair()
    server._nursery.start_soon(server.serve_stream, server_end)
    await client.send_all(HANDSHAKE % path)
    head = b""
    while b"\r\n\r\n" not in head:  # bounded by the test's fail_after
        chunk = await client.receive_some()
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return client


async def read_to_eof(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():  # bounded by the test's fail_after
        data += chunk
    return data


async def test_text_that_is_not_utf8_closes_only_that_connection(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            bob, carol = await authed(server, nursery, "bob"), await authed(server, nursery, "carol")
            raw = await raw_socket(server)
            await raw.send_all(ws_frame(0x1, b'{"type": "\xff"}'))
            # wsproto reports bad UTF-8 as if the peer had closed with 1007, so trio-websocket cuts
            # the stream without a close frame: the client sees an abnormal close (1006).
            assert await read_to_eof(raw) == b""
            assert server.stats.frames_rejected == {1007: 1}
            await exchange_works(server, nursery, (bob, carol))
            await server.wait_open_sockets(2)


async def test_a_ping_during_the_close_cuts_only_that_connection(autojump_clock: trio.abc.Clock) -> None:
    # trio-websocket 0.12 answers a ping that arrives after its close frame, which wsproto refuses
    # with an exception: the server must contain it to that one connection, and not log it as a bug.
    errors = _Errors()
    logging.getLogger("cometchat_fsm.server.reference").addHandler(errors)
    try:
        with trio.fail_after(BOUND):
            async with running() as (server, nursery):
                bob, carol = await authed(server, nursery, "bob"), await authed(server, nursery, "carol")
                raw = await raw_socket(server)
                await raw.send_all(ws_frame(0x1, b"{"))  # bad JSON: the server starts closing (1007)
                await trio.testing.wait_all_tasks_blocked()
                await raw.send_all(ws_frame(0x9, b"ping"))
                answer = await read_to_eof(raw)
                assert answer[:1] == b"\x88" and int.from_bytes(answer[2:4], "big") == 1007
                await exchange_works(server, nursery, (bob, carol))
                await server.wait_open_sockets(2)
    finally:
        logging.getLogger("cometchat_fsm.server.reference").removeHandler(errors)
    assert not errors.records


async def test_in_memory_handshake_on_a_dead_stream_raises(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            client, peer = trio.testing.memory_stream_pair()
            await peer.aclose()
            with pytest.raises(trio_websocket.HandshakeError):
                await handshake(nursery, client, "127.0.0.1", SOCKET_PATH, message_queue_size=16,
                                max_message_size=65536)


async def test_garbage_instead_of_a_handshake(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            client, server_end = trio.testing.memory_stream_pair()
            server._nursery.start_soon(server.serve_stream, server_end)
            await client.send_all(b"\x00\xffNOT HTTP\r\n\r\n")
            assert (await read_to_eof(client)).startswith(b"HTTP/1.1 400")
            await exchange_works(server, nursery)


RAW_FRAMES = st.builds(
    lambda opcode, payload, fin: ws_frame(opcode, payload, fin=fin),
    st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]), st.binary(max_size=130), st.booleans(),
) | st.binary(min_size=1, max_size=20)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(RAW_FRAMES, min_size=1, max_size=6), authenticate=st.booleans())
def test_no_byte_sequence_takes_the_server_down(chunks: list[bytes], authenticate: bool) -> None:
    errors = _Errors()
    logging.getLogger("cometchat_fsm.server.reference").addHandler(errors)

    async def main() -> None:
        with trio.fail_after(BOUND):
            async with running() as (server, nursery):
                bob, carol = await authed(server, nursery, "bob"), await authed(server, nursery, "carol")
                raw = await raw_socket(server)
                if authenticate:
                    token = await token_of(server, nursery, "alice")
                    auth = json.dumps({"type": "auth", "uid": "alice", "auth_token": token, "last_id": None})
                    await raw.send_all(ws_frame(0x1, auth.encode()))
                for chunk in chunks:  # each chunk after the server reacted to the previous ones
                    try:
                        await raw.send_all(chunk)
                    except trio.BrokenResourceError:
                        break
                    await trio.testing.wait_all_tasks_blocked()
                await exchange_works(server, nursery, (bob, carol))
                await raw.aclose()
                await server.wait_open_sockets(2)

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        logging.getLogger("cometchat_fsm.server.reference").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


# --- hostile clients (issue 5) ----------------------------------------------------------------------


async def test_a_client_that_never_reads_is_cut_with_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over loopback (TCP back-pressure is real): bob authenticates, then stops reading while
    alice floods him. His outbox never exceeds OUTBOX_LIMIT, he is closed 1013 (retry later) and
    cut when the close cannot be delivered, others keep talking meanwhile, and every message
    stays in the history for his next connection (D13)."""
    from cometchat_fsm.server import connection, serving

    for module in (connection, serving):  # the close's bound, for the outbox's and the handler's
        monkeypatch.setattr(module, "CLOSE_TIMEOUT", 0.5)
    flood, text = 1_500, "z" * 16_000
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            bob_token = (await tcp_login(server, "bob"))["auth_token"]
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with trio.open_nursery() as bob_side:
                bob = await trio_websocket.wrap_client_stream(bob_side, stream, server.host, SOCKET_PATH,
                                                              message_queue_size=1)
                await send(bob, {"type": "auth", "uid": "bob", "auth_token": bob_token, "last_id": None})
                assert (await recv(bob))["type"] == "auth_ok"  # and never reads again
                alice = await authed(server, nursery, "alice")
                acks = 0

                async def drain_alice() -> None:
                    nonlocal acks
                    with contextlib.suppress(ConnectionClosed):  # the server's 1001 at the end
                        while True:
                            if (await recv(alice))["type"] == "sent":
                                acks += 1

                nursery.start_soon(drain_alice)
                largest = 0
                for i in range(flood):
                    await send(alice, {"type": "message", "to": "bob", "text": text, "ref": i})
                    largest = max([largest, *(len(c.outbox) for c in server._sockets_of("bob"))])
                    if i % 100 == 0:
                        await trio.sleep(0)
                with trio.fail_after(20):
                    await server.wait_open_sockets(0, "bob")
                    while acks < flood:
                        await trio.sleep(0.01)
                assert largest <= connection.OUTBOX_LIMIT
                await exchange_works(server, nursery)
                bob_side.cancel_scope.cancel()
            await trio.aclose_forcefully(stream)
            assert len(server.history.after("bob", 0, 2 * flood)) == flood  # nothing lost


async def test_wrong_tokens_again_and_again_are_each_rejected(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            alice_token = await token_of(server, nursery, "alice")
            for i in range(50):
                ws = await connect_in_memory(server, nursery, SOCKET_PATH)
                uid, token = ("bob", alice_token) if i % 2 else ("alice", f"guess-{i}")
                await send(ws, {"type": "auth", "uid": uid, "auth_token": token, "last_id": 0})
                answer = await recv(ws)
                assert answer["type"] == "auth_rejected" and answer["code"] == "ERR_AUTH_REJECTED"
                assert (await closed(ws)).code == 4001
            assert server.stats.auths_rejected == 50
            await server.wait_open_sockets(0)
            await authed(server, nursery, "alice", alice_token)  # the real one still works
            await exchange_works(server, nursery)


async def test_no_client_reads_another_users_messages(autojump_clock: trio.abc.Clock) -> None:
    """Replay and history answer the authenticated user only, whatever the frames ask."""
    with trio.fail_after(BOUND):
        async with running() as (server, nursery):
            for i in range(3):
                server.post("carol", "bob", f"for bob {i}")
            mine = server.post("carol", "alice", "for alice")
            alice = await connect_in_memory(server, nursery, SOCKET_PATH)
            token = await token_of(server, nursery, "alice")
            await send(alice, {"type": "auth", "uid": "alice", "auth_token": token, "last_id": 0})
            ok = await recv(alice)
            assert ok["type"] == "auth_ok" and ok["resumed"] is True
            replayed = await recv(alice)
            assert (replayed["id"], replayed["receiver"]) == (mine, "alice")
            await send(alice, {"type": "fetch", "after_id": 0, "limit": 100, "ref": 1, "uid": "bob",
                               "receiver": "bob"})
            history = await recv(alice)
            assert history["type"] == "history" and [m["id"] for m in history["messages"]] == [mine]
            assert await silent(alice)
