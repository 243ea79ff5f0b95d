"""wss://: the reference server serves TLS, the client verifies certificates by default."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

from cometchat_fsm import AppSettings, CometChatException, ConnectionStatus, open_client, serve_reference

MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_a_client_that_trusts_the_ca_logs_in_and_connects(ca: trustme.CA, tmp_path: Path) -> None:
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    with trio.fail_after(10):
        async with serve_reference(users=("alice",), ssl_context=server_context(ca)) as server:
            assert server.url.startswith("wss://127.0.0.1:")
            async with open_client("app", MANUAL, url=server.url, store=tmp_path,
                                   ssl_context=trusting) as chat:
                await chat.login("alice", auth_key=server.auth_key)
                assert await chat.connect() == "Web socket connection successful"
                assert chat.get_connection_status() is ConnectionStatus.CONNECTED
                assert server.open_sockets("alice") == 1


async def test_an_unknown_certificate_is_refused_by_default(ca: trustme.CA, tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with serve_reference(users=("alice",), ssl_context=server_context(ca)) as server:
            async with open_client("app", MANUAL, url=server.url, store=tmp_path) as chat:
                with pytest.raises(CometChatException) as info:
                    await chat.login("alice", auth_key=server.auth_key)
                assert info.value.code == "ERR_LOGIN_FAILED"
                assert chat.get_logged_in_user() is None
            assert server.stats.logins_ok == 0
