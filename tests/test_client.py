"""The live client against the reference server, in virtual time over in-memory streams."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from listeners import Recorder

from cometchat_fsm import AppSettings, CometChatException, ConnectionStatus
from cometchat_fsm.server.reference import ReferenceServer, serve_reference
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.testing import memory_connector
from cometchat_fsm.trio.client import Client, open_client

AUTO = AppSettings(region="eu")
MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)


@pytest.fixture
async def server() -> AsyncIterator[ReferenceServer]:
    async with serve_reference(users=("alice", "bob")) as s:
        yield s


@asynccontextmanager
async def client(server: ReferenceServer, settings: AppSettings, store: Path,
                 app_id: str = "app", seed: int = 0) -> AsyncIterator[tuple[Client, Recorder]]:
    import random

    async with open_client(app_id, settings, url=server.url, store=store,
                           connector=memory_connector(server), random=random.Random(seed).random) as c:
        rec = Recorder()
        c.add_connection_listener("rec", rec)
        yield c, rec


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def until(predicate: Callable[[], bool], limit: float = 60.0) -> float:
    """Wait (virtual time) until predicate holds; return how long it took."""
    start = trio.current_time()
    with trio.fail_after(limit):
        while not predicate():
            await trio.sleep(0.001)
    return trio.current_time() - start


async def test_auto_login_connects_one_socket_and_notifies_in_order(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with client(server, AUTO, tmp_path) as (c, rec):
            user = await c.login("alice", auth_key=server.auth_key)
            await settle()
            assert user.uid == "alice" and c.get_logged_in_user() == user
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
            assert rec.names == ["on_connecting", "on_connected"]
            assert server.open_sockets("alice") == 1


async def test_manual_background_window_closes_at_30s_and_ping_renews(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(300):
        async with client(server, MANUAL, tmp_path) as (c, rec):
            await c.login("alice", auth_key=server.auth_key)
            await settle()
            assert server.open_sockets("alice") == 0  # M1: login opens nothing
            assert await c.connect() == "Web socket connection successful"
            c.enter_background()
            t0 = trio.current_time()
            await trio.sleep(29)
            assert await c.ping() == "ping successful"
            await trio.sleep(29.9)
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
            await trio.sleep(0.2)
            assert c.get_connection_status() is ConnectionStatus.DISCONNECTED
            assert rec.calls[-1] == (pytest.approx(t0 + 59.0), "on_disconnected")
            await settle()
            assert server.open_sockets("alice") == 0
            c.enter_foreground()  # M5: back in the foreground, still disconnected
            await trio.sleep(5)
            assert c.get_connection_status() is ConnectionStatus.DISCONNECTED


async def test_a_dropped_socket_reconnects_within_the_first_backoff_step(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with client(server, AUTO, tmp_path) as (c, rec):
            await c.login("alice", auth_key=server.auth_key)
            await settle()
            server.drop("alice")
            await settle()
            assert c.get_connection_status() is ConnectionStatus.DISCONNECTED
            took = await until(lambda: c.get_connection_status() is ConnectionStatus.CONNECTED)
            assert took <= 1.01  # D6a: the first retry waits U[0, 1 s]
            assert rec.names[-3:] == ["on_disconnected", "on_connecting", "on_connected"]
            assert server.open_sockets("alice") == 1


async def test_a_half_open_link_is_detected_and_recovered(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(120):
        async with client(server, AUTO, tmp_path) as (c, _rec):
            await c.login("alice", auth_key=server.auth_key)
            await settle()
            server.silence("alice")
            lost = await until(lambda: c.get_connection_status() is not ConnectionStatus.CONNECTED)
            back = await until(lambda: c.get_connection_status() is ConnectionStatus.CONNECTED)
            # keep-alive 15 s + pong timeout 3 s, then one backoff step of at most 1 s
            assert lost <= 18.01 and lost + back <= 19.02  # (polled every 1 ms)
            await settle()
            assert server.open_sockets("alice") == 1


async def test_rejected_auth_raises_reports_and_is_not_retried(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(120):
        async with client(server, MANUAL, tmp_path) as (c, rec):
            await c.login("alice", auth_key=server.auth_key)
            server.reject_auth(True)
            with pytest.raises(CometChatException) as info:
                await c.connect()
            assert info.value.code == "ERR_AUTH_REJECTED"
            assert rec.names == ["on_connecting", "on_connection_error", "on_disconnected"]
            assert isinstance(rec.errors[0], CometChatException)
            rejected = server.stats.auths_rejected
            await trio.sleep(100)
            assert server.stats.auths_rejected == rejected  # D5: no retry
            assert c.get_connection_status() is ConnectionStatus.DISCONNECTED


async def test_api_errors_before_login_and_without_a_connection(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with client(server, MANUAL, tmp_path) as (c, _):
            for call, details in ((c.connect, "establishing"), (c.disconnect, "disconnecting"),
                                  (c.ping, "sending a ping")):
                with pytest.raises(CometChatException) as info:
                    await call()
                assert info.value.code == "ERR_NOT_LOGGED_IN" and details in info.value.details
            await c.login("alice", auth_key=server.auth_key)
            with pytest.raises(CometChatException) as info:
                await c.ping()
            assert info.value.code == "ERR_NO_WEBSOCKET_CONNECTION"


async def test_bad_credentials_raise_and_store_nothing(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with client(server, AUTO, tmp_path) as (c, _):
            with pytest.raises(CometChatException) as info:
                await c.login("mallory", auth_key=server.auth_key)
            assert info.value.code == "ERR_UID_NOT_FOUND"
            with pytest.raises(CometChatException) as info:
                await c.login("alice", auth_key="wrong")
            assert info.value.code == "ERR_AUTH_KEY_INVALID"
            assert c.get_logged_in_user() is None
        assert SessionStore(tmp_path).load("app") is None


async def test_stored_session_survives_a_restart(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with client(server, AUTO, tmp_path, app_id="auto") as (c, _):
            await c.login("alice", auth_key=server.auth_key)
        async with client(server, MANUAL, tmp_path, app_id="manual") as (c, _):
            await c.login("bob", auth_key=server.auth_key)
        path = SessionStore(tmp_path).path_for("auto")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        heard = Recorder()
        async with open_client("auto", AUTO, url=server.url, store=tmp_path,
                               connector=memory_connector(server),
                               listeners={"early": heard}) as c:  # L2: auto connects by itself
            await settle()
            assert c.get_logged_in_user() is not None
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
            assert heard.names == ["on_connecting", "on_connected"]  # heard from the start
        async with client(server, MANUAL, tmp_path, app_id="manual") as (c, _):  # L2: manual waits
            await settle()
            assert c.get_logged_in_user() is not None
            assert c.get_connection_status() is ConnectionStatus.DISCONNECTED
            assert await c.connect() == "Web socket connection successful"
            await c.logout()
        assert SessionStore(tmp_path).load("manual") is None  # D9


async def test_a_corrupt_store_gives_a_logged_out_client_and_a_warning(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock,
        caplog: pytest.LogCaptureFixture) -> None:
    path = SessionStore(tmp_path).path_for("app")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with trio.fail_after(30), caplog.at_level(logging.WARNING):
        async with client(server, AUTO, tmp_path) as (c, _):
            assert c.get_logged_in_user() is None
            await c.login("alice", auth_key=server.auth_key)
    assert any("damaged" in r.message for r in caplog.records)


async def test_a_listener_that_raises_does_not_break_the_client(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock,
        caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def on_connecting(self) -> None:
            raise RuntimeError("boom")

    with trio.fail_after(30):
        async with client(server, AUTO, tmp_path) as (c, rec):
            c.add_connection_listener("broken", Broken())
            await c.login("alice", auth_key=server.auth_key)
            await settle()
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
            assert rec.names == ["on_connecting", "on_connected"]
    assert any("boom" in (r.exc_text or "") or "raised" in r.message for r in caplog.records)


async def test_messages_are_relayed_with_the_sender_stamped(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with client(server, AUTO, tmp_path, app_id="a") as (a, _), \
                client(server, AUTO, tmp_path, app_id="b") as (b, _):
            await a.login("alice", auth_key=server.auth_key)
            await b.login("bob", auth_key=server.auth_key)
            await settle()
            sent = await a.send_message("bob", "hello")
            received = await b.messages().__anext__()
            assert (received.id, received.sender, received.receiver, received.text) == \
                (sent.id, "alice", "bob", "hello")


async def test_network_signals_act_at_once(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with client(server, AUTO, tmp_path) as (c, _rec):
            await c.login("alice", auth_key=server.auth_key)
            await settle()
            c.network_lost()
            assert c.get_connection_status() is ConnectionStatus.DISCONNECTED  # D6a: no keep-alive wait
            await settle()
            assert server.open_sockets("alice") == 0
            t = trio.current_time()
            c.network_restored()
            await settle()
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
            assert trio.current_time() == t  # an immediate attempt, no backoff


async def test_invalid_settings_and_calls_after_close(tmp_path: Path) -> None:
    with trio.fail_after(10):
        with pytest.raises(CometChatException) as info:
            async with open_client("app", AppSettings(region="mars"), url="ws://127.0.0.1:9", store=tmp_path):
                pass
        assert info.value.code == "ERR_CHAT_API_FAILURE"
        async with open_client("app", AUTO, url="ws://127.0.0.1:9", store=tmp_path) as c:
            with pytest.raises(TypeError):
                await c.login(42, auth_key="k")  # type: ignore[arg-type]
        with pytest.raises(CometChatException) as info:
            await c.connect()
        assert info.value.code == "ERR_CLIENT_CLOSED"


async def test_a_login_as_the_same_user_renews_a_revoked_stored_session(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """D16 (login part): the README example's second run. A stored token the server no longer
    accepts is renewed by `login()` as the same user, which reaches the server every time; the
    next connect presents the fresh token, and the fresh session is what the store keeps."""
    with trio.fail_after(60):
        async with client(server, MANUAL, tmp_path) as (c, _):
            await c.login("alice", auth_key=server.auth_key)
        stale = SessionStore(tmp_path).load("app")
        assert stale is not None
        server.revoke("alice")
        async with client(server, MANUAL, tmp_path) as (c, rec):
            assert c.get_logged_in_user() is not None  # L2: restored, no socket in manual mode
            before = server.stats.logins_ok
            await c.login("alice", auth_key=server.auth_key)
            assert server.stats.logins_ok == before + 1  # verified by the server, not skipped
            assert await c.connect() == "Web socket connection successful"
            assert rec.names == ["on_connecting", "on_connected"]
            assert server.open_sockets("alice") == 1
            await c.login("alice", auth_key=server.auth_key)  # connected: renewed, no new socket
            await settle()
            assert server.stats.logins_ok == before + 2 and server.open_sockets("alice") == 1
            assert rec.names == ["on_connecting", "on_connected"]
        fresh = SessionStore(tmp_path).load("app")
        assert fresh is not None and fresh.uid == "alice" and fresh.auth_token != stale.auth_token


async def test_a_refused_renewal_keeps_the_session_and_says_why(
        server: ReferenceServer, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with client(server, MANUAL, tmp_path) as (c, _):
            await c.login("alice", auth_key=server.auth_key)
            assert await c.connect() == "Web socket connection successful"
            with pytest.raises(CometChatException) as raised:
                await c.login("alice", auth_key="not-the-key")
            assert raised.value.code != "ERR_LOGIN_IN_PROGRESS"
            assert c.get_logged_in_user() is not None
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
