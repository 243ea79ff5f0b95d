"""The live client's API misused (issue #5, part 3), and the message text limit on both sides.

A wrong type is a TypeError naming the argument; a wrong value is a CometChatException whose
code an app can branch on and whose message and details say what to do instead; a closed
client refuses every call with ERR_CLIENT_CLOSED. None of it touches the network or the
lifecycle. Time is virtual; the server is the reference server over in-memory streams.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import trio
import trio.testing
import trio_websocket
from hypothesis import given

from cometchat_fsm import (
    AppSettings,
    CometChatException,
    ConnectionStatus,
    Message,
    open_client,
    serve_reference,
)
from cometchat_fsm.server.messages import text_problem
from cometchat_fsm.server.reference import (
    LOGIN_PATH,
    MAX_FRAME_BYTES,
    MAX_TEXT_CHARS,
    MAX_TEXT_JSON_BYTES,
    SOCKET_PATH,
    ReferenceServer,
    connect_in_memory,
)
from cometchat_fsm.session.checks import check_text
from cometchat_fsm.testing import memory_connector
from cometchat_fsm.trio import client as client_module
from cometchat_fsm.trio.client import MAX_TEXT, MAX_TEXT_JSON, Client, Connector
from cometchat_fsm.wire import frames as wire
from cometchat_fsm.wire.codec import encode

AUTO = AppSettings(region="eu")
MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)
URL = "ws://127.0.0.1:9"
BOUND = 60  # virtual seconds: only a hang reaches it
EMOJI = "\U0001F600"  # 12 bytes as JSON: \ud83d\ude00
Call = Callable[[Client], Awaitable[object] | object]


class Listener:
    def on_connected(self) -> None:
        pass


def no_network() -> tuple[Connector, list[str]]:
    """A connector that notes what it was asked to open and refuses it."""
    asked: list[str] = []

    def connect(resource: str) -> Any:
        asked.append(resource)
        raise OSError("no network in this test")
    return connect, asked


@asynccontextmanager
async def offline_client(tmp_path: Path,
                         settings: AppSettings = MANUAL) -> AsyncIterator[tuple[Client, list[str]]]:
    connector, asked = no_network()
    async with open_client("app", settings, url=URL, store=tmp_path, connector=connector) as c:
        yield c, asked


async def raises(call: Call, c: Client) -> BaseException:
    """What `call(c)` raised (sync or async); fails if it raised nothing."""
    try:
        result = call(c)
        if inspect.isawaitable(result):
            await result
    except (CometChatException, TypeError) as exc:
        return exc
    pytest.fail("the call raised nothing")


def says_what_to_do(exc: BaseException, code: str, *words: str) -> None:
    assert isinstance(exc, CometChatException), repr(exc)
    assert exc.code == code, exc
    assert exc.message.endswith(".") and exc.details.endswith("."), exc
    for word in words:
        assert word in str(exc), (word, str(exc))


# --- open_client --------------------------------------------------------------------------------

BAD_SETTINGS: list[tuple[str, Any, Any, str]] = [  # name, app id, settings, named in the error
    ("empty app id", "", AUTO, "app id"),
    ("blank app id", "   ", AUTO, "app id"),
    ("app id not a str", 42, AUTO, "app id"),
    ("unknown region", "app", AppSettings(region="mars"), "region"),
    ("region not a str", "app", AppSettings(region=5), "region"),  # type: ignore[arg-type]
    ("negative connect_timeout", "app", replace(AUTO, connect_timeout=-1), "connect_timeout"),
    ("zero pong_timeout", "app", replace(AUTO, pong_timeout=0), "pong_timeout"),
    ("NaN keepalive_interval", "app", replace(AUTO, keepalive_interval=math.nan), "keepalive_interval"),
    ("bool backoff_base", "app", replace(AUTO, backoff_base=True), "backoff_base"),
    ("str background_window", "app", replace(AUTO, background_window="30"), "background_window"),  # type: ignore[arg-type]
    ("negative max_reconnect_attempts", "app", replace(AUTO, max_reconnect_attempts=-1),
     "max_reconnect_attempts"),
    ("fractional max_reconnect_attempts", "app", replace(AUTO, max_reconnect_attempts=1.5),  # type: ignore[arg-type]
     "max_reconnect_attempts"),
    ("settings not AppSettings", "app", {"region": "eu"}, "AppSettings"),
]


@pytest.mark.parametrize(("name", "app_id", "settings", "named"), BAD_SETTINGS,
                         ids=[b[0] for b in BAD_SETTINGS])
async def test_open_client_refuses_invalid_settings_with_l3s_error(
        name: str, app_id: Any, settings: Any, named: str, tmp_path: Path) -> None:
    with trio.fail_after(BOUND):
        with pytest.raises(CometChatException) as info:
            async with open_client(app_id, settings, url=URL, store=tmp_path):
                pytest.fail("the block ran")
    says_what_to_do(info.value, "ERR_CHAT_API_FAILURE", named)
    assert info.value.message == "SDK initialization failed."
    assert info.value.details == "Please verify your App ID and region, then try again."


BAD_OPTIONS: list[tuple[str, dict[str, Any], type, str]] = [  # name, open_client keywords, error, named
    ("url not a str", {"url": 80}, TypeError, "url"),
    ("http url", {"url": "http://127.0.0.1:80"}, CometChatException, "ws://"),
    ("url without host", {"url": "ws://"}, CometChatException, "ws://"),
    ("url without scheme", {"url": "127.0.0.1:80"}, CometChatException, "ws://"),
    ("port out of range", {"url": "ws://127.0.0.1:99999"}, CometChatException, "ws://"),
    ("store not a path", {"store": 5}, TypeError, "store"),
    ("random not callable", {"random": 0.5}, TypeError, "random"),
    ("listeners not a mapping", {"listeners": [Listener()]}, TypeError, "listeners"),
    ("listener id empty", {"listeners": {"": Listener()}}, CometChatException, "listener"),
    ("listener without methods", {"listeners": {"x": object()}}, TypeError, "on_connected"),
    ("ssl_context not a context", {"ssl_context": "tls"}, TypeError, "ssl_context"),
]


@pytest.mark.parametrize(("name", "options", "kind", "named"), BAD_OPTIONS, ids=[b[0] for b in BAD_OPTIONS])
async def test_open_client_refuses_invalid_options(
        name: str, options: dict[str, Any], kind: type, named: str, tmp_path: Path) -> None:
    arguments: dict[str, Any] = {"url": URL, "store": tmp_path, **options}
    with trio.fail_after(BOUND):
        with pytest.raises(kind) as info:
            async with open_client("app", AUTO, **arguments):
                pytest.fail("the block ran")
    assert named in str(info.value)
    if kind is CometChatException:
        says_what_to_do(info.value, "ERR_INVALID_ARGUMENT")


# --- login ------------------------------------------------------------------------------------

BAD_LOGINS: list[tuple[str, Call, type | str, str]] = [  # name, the call, TypeError or a code, named
    ("uid not a str", lambda c: c.login(42, auth_key="k"), TypeError, "uid"),  # type: ignore[arg-type]
    ("auth_key not a str", lambda c: c.login("bob", auth_key=b"k"), TypeError, "auth_key"),  # type: ignore[arg-type]
    ("auth_token not a str", lambda c: c.login(auth_token=7), TypeError, "auth_token"),  # type: ignore[arg-type]
    ("nothing", lambda c: c.login(), "ERR_INVALID_ARGUMENT", "login(uid, auth_key=...)"),
    ("a uid without auth_key", lambda c: c.login("bob"), "ERR_INVALID_ARGUMENT", "auth_key"),
    ("both auth_key and auth_token", lambda c: c.login("bob", auth_key="k", auth_token="t"),
     "ERR_INVALID_ARGUMENT", "auth_token alone"),
    ("auth_key with auth_token only", lambda c: c.login(auth_key="k", auth_token="t"),
     "ERR_INVALID_ARGUMENT", "auth_token alone"),
    ("empty auth_key", lambda c: c.login("bob", auth_key=""), "ERR_INVALID_ARGUMENT", "auth_key is empty"),
    ("empty auth_token", lambda c: c.login(auth_token=""), "ERR_INVALID_ARGUMENT", "auth_token is empty"),
    ("empty uid", lambda c: c.login("", auth_key="k"), "ERR_INVALID_UID", "1 to 100 characters"),
    ("uid of 101 characters", lambda c: c.login("u" * 101, auth_key="k"), "ERR_INVALID_UID", "1 to 100"),
    ("uid with a space", lambda c: c.login("bo b", auth_key="k"), "ERR_INVALID_UID", "letters, digits"),
    ("uid with a slash", lambda c: c.login("../bob", auth_key="k"), "ERR_INVALID_UID", "letters, digits"),
    ("uid with a newline", lambda c: c.login("bob\n", auth_key="k"), "ERR_INVALID_UID", "letters, digits"),
    ("uid not ASCII", lambda c: c.login("böb", auth_key="k"), "ERR_INVALID_UID", "letters, digits"),
]


@pytest.mark.parametrize(("name", "call", "expected", "named"), BAD_LOGINS, ids=[b[0] for b in BAD_LOGINS])
async def test_a_misused_login_is_refused_before_any_request(
        name: str, call: Call, expected: type | str, named: str, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with offline_client(tmp_path) as (c, asked):
            exc = await raises(call, c)
            if expected is TypeError:
                assert isinstance(exc, TypeError) and named in str(exc) and "must be a str" in str(exc)
            else:
                says_what_to_do(exc, str(expected), named)
            assert asked == []  # nothing was sent anywhere
            assert c.get_logged_in_user() is None
            assert c.get_connection_status() is ConnectionStatus.DISCONNECTED


async def test_a_uid_of_100_characters_is_asked_about(tmp_path: Path,
                                                      autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with serve_reference(users=("u" * 100,)) as server, \
                open_client("app", MANUAL, url=server.url, store=tmp_path,
                            connector=memory_connector(server)) as c:
            user = await c.login("u" * 100, auth_key=server.auth_key)
            assert user.uid == "u" * 100
            with pytest.raises(CometChatException) as info:
                await c.login("u" * 101, auth_key=server.auth_key)
            assert info.value.code == "ERR_INVALID_UID" and server.stats.logins_ok == 1


# --- a connected client's calls ---------------------------------------------------------------

@asynccontextmanager
async def connected(tmp_path: Path, users: tuple[str, ...] = ("alice", "bob")
                    ) -> AsyncIterator[tuple[ReferenceServer, Client]]:
    async with serve_reference(users=users) as server, \
            open_client("app", MANUAL, url=server.url, store=tmp_path,
                        connector=memory_connector(server)) as c:
        await c.login(users[0], auth_key=server.auth_key)
        await c.connect()
        yield server, c


BAD_CALLS: list[tuple[str, Call, type | str, str]] = [  # name, the call, TypeError or a code, named
    ("receiver not a str", lambda c: c.send_message(5, "hi"), TypeError, "receiver_uid"),  # type: ignore[arg-type]
    ("text not a str", lambda c: c.send_message("bob", None), TypeError, "text"),  # type: ignore[arg-type]
    ("text bytes", lambda c: c.send_message("bob", b"hi"), TypeError, "text"),  # type: ignore[arg-type]
    ("empty receiver", lambda c: c.send_message("", "hi"), "ERR_INVALID_UID", "receiver_uid is empty"),
    ("receiver with a space", lambda c: c.send_message("b ob", "hi"), "ERR_INVALID_UID", "'b ob'"),
    ("receiver of 101 characters", lambda c: c.send_message("b" * 101, "hi"), "ERR_INVALID_UID", "1 to 100"),
    ("empty text", lambda c: c.send_message("bob", ""), "ERR_INVALID_ARGUMENT", "text is empty"),
    ("text over 16,384 characters", lambda c: c.send_message("bob", "x" * 16_385), "ERR_INVALID_ARGUMENT",
     "16,385 characters"),
    ("after_id a str", lambda c: c.fetch_messages("0"), TypeError, "after_id"),  # type: ignore[arg-type]
    ("after_id a bool", lambda c: c.fetch_messages(False), TypeError, "after_id"),
    ("limit a float", lambda c: c.fetch_messages(0, 1.5), TypeError, "limit"),  # type: ignore[arg-type]
    ("negative after_id", lambda c: c.fetch_messages(-1), "ERR_INVALID_ARGUMENT", "after_id=-1"),
    ("limit 0", lambda c: c.fetch_messages(0, 0), "ERR_INVALID_ARGUMENT", "limit=0"),
    ("limit 1001", lambda c: c.fetch_messages(0, 1001), "ERR_INVALID_ARGUMENT", "1 to 1000"),
    ("listener id not a str", lambda c: c.add_connection_listener(1, Listener()), TypeError,  # type: ignore[arg-type]
     "listener_id"),
    ("empty listener id", lambda c: c.add_connection_listener("", Listener()), "ERR_INVALID_ARGUMENT",
     "non-empty string"),
    ("listener None", lambda c: c.add_connection_listener("x", None), TypeError, "on_connection_error"),
    ("listener a function", lambda c: c.add_connection_listener("x", print), TypeError, "on_connected"),
    ("listener without those methods", lambda c: c.add_connection_listener("x", object()), TypeError,
     "at least one of the methods"),
    ("removing a listener id not a str", lambda c: c.remove_connection_listener(None), TypeError,  # type: ignore[arg-type]
     "listener_id"),
    ("removing an empty listener id", lambda c: c.remove_connection_listener(""), "ERR_INVALID_ARGUMENT",
     "listener"),
    ("status feed limit a str", lambda c: c.status_changes("9"), TypeError, "limit"),  # type: ignore[arg-type]
    ("status feed limit 0", lambda c: c.status_changes(0), "ERR_INVALID_ARGUMENT", "limit"),
]


@pytest.mark.parametrize(("name", "call", "expected", "named"), BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
async def test_a_misused_call_is_refused_and_the_connection_stays(
        name: str, call: Call, expected: type | str, named: str, tmp_path: Path,
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with connected(tmp_path) as (server, c):
            exc = await raises(call, c)
            if expected is TypeError:
                assert isinstance(exc, TypeError) and named in str(exc), exc
            else:
                says_what_to_do(exc, str(expected), named)
            await trio.testing.wait_all_tasks_blocked()
            assert c.get_connection_status() is ConnectionStatus.CONNECTED
            assert server.stats.messages_relayed == server.stats.fetches == 0
            assert not server.stats.frames_rejected
            assert (await c.send_message("bob", "still fine")).text == "still fine"


async def test_removing_an_unknown_listener_is_no_error(tmp_path: Path) -> None:
    with trio.fail_after(BOUND):
        async with offline_client(tmp_path) as (c, _):
            c.remove_connection_listener("never added")
            c.add_connection_listener("x", Listener())
            c.remove_connection_listener("x")
            c.remove_connection_listener("x")


# --- a closed client --------------------------------------------------------------------------

#: Every public method of Client, called with valid arguments (the readers are below).
CALLS: dict[str, Call] = {
    "login": lambda c: c.login("bob", auth_key="k"),
    "logout": lambda c: c.logout(),
    "connect": lambda c: c.connect(),
    "disconnect": lambda c: c.disconnect(),
    "ping": lambda c: c.ping(),
    "send_message": lambda c: c.send_message("bob", "hi"),
    "fetch_messages": lambda c: c.fetch_messages(0),
    "enter_background": lambda c: c.enter_background(),
    "enter_foreground": lambda c: c.enter_foreground(),
    "network_lost": lambda c: c.network_lost(),
    "network_restored": lambda c: c.network_restored(),
    "add_connection_listener": lambda c: c.add_connection_listener("x", Listener()),
    "remove_connection_listener": lambda c: c.remove_connection_listener("x"),
    "messages": lambda c: c.messages(),
    "status_changes": lambda c: c.status_changes(),
}
#: Reading what the client knew stays possible after it closed.
READERS = {"get_connection_status", "get_logged_in_user", "status", "logged_in_user", "phase",
           "credentials_rejected", "connected_info", "last_message_id", "open_sockets", "duplicates_dropped",
           "misaddressed_dropped", "settings", "app_id"}


def test_every_public_method_is_covered() -> None:
    public = {name for name in dir(Client) if not name.startswith("_")}
    assert public - READERS == set(CALLS), public - READERS ^ set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_every_call_on_a_closed_client_raises_client_closed(
        name: str, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob")) as server:
            async with open_client("app", AUTO, url=server.url, store=tmp_path,
                                   connector=memory_connector(server)) as c:
                await c.login("alice", auth_key=server.auth_key)
                await trio.testing.wait_all_tasks_blocked()
            exc = await raises(CALLS[name], c)
            says_what_to_do(exc, "ERR_CLIENT_CLOSED", "open_client()")
            nonsense = [object()] * _arity(name)  # not even looked at
            assert await raises(lambda c: getattr(c, name)(*nonsense), c) == exc
            for reader in READERS:
                value = getattr(c, reader)
                if callable(value):
                    value()


def _arity(name: str) -> int:
    return sum(p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
               for p in inspect.signature(getattr(Client, name)).parameters.values()) - 1


async def test_a_messages_iteration_started_before_close_just_ends(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        got: list[Message] = []
        async with trio.open_nursery() as nursery, offline_client(tmp_path) as (c, _):
            async def read() -> None:
                async for message in c.messages():
                    got.append(message)
                got.append(None)  # type: ignore[arg-type]
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
        assert got == [None]  # the loop ended when the client closed


# --- the message text: 16,384 characters and 61,440 bytes as JSON, on both sides ---------------

def test_the_two_sides_have_the_same_limits() -> None:
    assert (MAX_TEXT, MAX_TEXT_JSON) == (MAX_TEXT_CHARS, MAX_TEXT_JSON_BYTES)
    assert MAX_TEXT_JSON < MAX_FRAME_BYTES == client_module.MAX_FRAME


BOUNDARY: list[tuple[str, str, bool]] = [  # name, text, sendable
    ("16,384 ASCII", "x" * 16_384, True),
    ("16,384 newlines: 32,768 bytes", "\n" * 16_384, True),
    ("5,120 emoji: exactly 61,440 bytes", EMOJI * 5_120, True),
    ("5,121 emoji", EMOJI * 5_121, False),
    ("16,384 emoji: 196,608 bytes", EMOJI * 16_384, False),
    ("10,240 control characters: exactly 61,440 bytes", "\x01" * 10_240, True),
    ("10,240 control characters and one more byte", "\x01" * 10_240 + "a", False),
    ("accents, exactly 61,440 bytes", "é" * 10_239 + "abcdef", True),
    ("accents, 61,441 bytes", "é" * 10_239 + "abcdefg", False),
    ("quotes and backslashes", '"\\' * 8_192, True),
    ("a lone high surrogate", "hi \ud83d there", False),
    ("a lone low surrogate", "\ude00", False),
    ("a surrogate pair as two code points", "\ud83d\ude00", False),  # not a Python str of text
]


@pytest.mark.parametrize(("name", "text", "sendable"), BOUNDARY, ids=[b[0] for b in BOUNDARY])
async def test_send_message_checks_the_text_before_sending(
        name: str, text: str, sendable: bool, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """What the client sends arrives intact; what it refuses never reaches the server, with an
    error that says how long a text may be and how much this one is."""
    with trio.fail_after(BOUND):
        async with connected(tmp_path) as (server, alice):
            if sendable:
                sent = await alice.send_message("bob", text)
                assert sent.text == text
                [stored] = server.history.after("bob", 0, 10)
                assert stored.text == text
            else:
                exc = await raises(lambda c: c.send_message("bob", text), alice)
                says_what_to_do(exc, "ERR_INVALID_ARGUMENT", "16,384 characters", "61,440 bytes")
                assert isinstance(exc, CometChatException)
                assert ("surrogate" in exc.reason) is any("\ud800" <= ch <= "\udfff" for ch in text)
                assert server.stats.messages_relayed == 0 and server.history.head == 0
            assert alice.get_connection_status() is ConnectionStatus.CONNECTED
            assert not server.stats.frames_rejected


async def test_a_text_at_the_limit_reaches_the_receiver_in_frames_under_64_kib(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """The largest texts, between the longest uids: the message frame and the history frame
    that carry them stay under 64 KiB (before the limit, 16,384 emoji made a 196 KiB frame and
    the receiver's connection closed with 1009, again at every replay)."""
    sender, receiver = "s" * 100, "r" * 100
    texts = [EMOJI * 5_120, "\x01" * 10_240, "x" * 16_384]
    with trio.fail_after(BOUND):
        async with serve_reference(users=(sender, receiver)) as server, trio.open_nursery() as nursery:
            tokens = [await token_of(server, nursery, uid) for uid in (sender, receiver)]
            ws_sender = await authed(server, nursery, sender, tokens[0])
            ws_receiver = await authed(server, nursery, receiver, tokens[1])
            for ref, text in enumerate(texts):
                await ws_sender.send_message(json.dumps({"type": "message", "to": receiver, "text": text,
                                                         "ref": 2**53 + ref}))
                assert json.loads(await ws_sender.get_message())["type"] == "sent"
                raw = await ws_receiver.get_message()
                assert isinstance(raw, str) and len(raw.encode()) < MAX_FRAME_BYTES
                assert json.loads(raw)["text"] == text
            for after in range(len(texts)):
                await ws_receiver.send_message(json.dumps({"type": "fetch", "after_id": after, "limit": 1000,
                                                           "ref": 2**53}))
                raw = await ws_receiver.get_message()
                assert isinstance(raw, str) and len(raw.encode()) < MAX_FRAME_BYTES
                history = json.loads(raw)
                assert history["messages"][0]["text"] == texts[after]
            assert not server.stats.frames_rejected
            nursery.cancel_scope.cancel()


async def token_of(server: ReferenceServer, nursery: trio.Nursery, uid: str) -> str:
    ws = await connect_in_memory(server, nursery, LOGIN_PATH)
    await ws.send_message(json.dumps({"type": "login", "uid": uid, "auth_key": server.auth_key}))
    answer = json.loads(await ws.get_message())
    assert answer["type"] == "login_ok"
    token: str = answer["auth_token"]
    return token


async def authed(server: ReferenceServer, nursery: trio.Nursery, uid: str,
                 token: str) -> trio_websocket.WebSocketConnection:
    ws = await connect_in_memory(server, nursery, SOCKET_PATH)
    await ws.send_message(json.dumps({"type": "auth", "uid": uid, "auth_token": token, "last_id": None}))
    assert json.loads(await ws.get_message())["type"] == "auth_ok"
    return ws


SERVER_REFUSES: list[tuple[str, str, str]] = [  # name, text, the error frame's code
    ("5,121 emoji", EMOJI * 5_121, "ERR_TEXT_TOO_LONG"),
    ("16,384 emoji", EMOJI * 16_384, "ERR_TEXT_TOO_LONG"),  # a 196 KiB frame closes with 1009 first
    ("10,241 control characters", "\x01" * 10_241, "ERR_TEXT_TOO_LONG"),
    ("a lone surrogate", "a\udc80b", "ERR_TEXT_INVALID"),
    ("16,385 ASCII characters", "x" * 16_385, "ERR_TEXT_TOO_LONG"),
]


@pytest.mark.parametrize(("name", "text", "code"), SERVER_REFUSES, ids=[s[0] for s in SERVER_REFUSES])
async def test_the_server_answers_a_text_it_cannot_carry_with_an_error(
        name: str, text: str, code: str, autojump_clock: trio.testing.MockClock) -> None:
    """A client that does not check: the server answers `error` with the ref, stores nothing,
    and keeps the connection (docs/protocol.md, the message frame)."""
    frame = json.dumps({"type": "message", "to": "bob", "text": text, "ref": 7})
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob")) as server, trio.open_nursery() as nursery:
            alice = await authed(server, nursery, "alice", await token_of(server, nursery, "alice"))
            await alice.send_message(frame)
            if len(frame) > MAX_FRAME_BYTES:
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await alice.get_message()
                assert closed.value.reason is not None and closed.value.reason.code == 1009
            else:
                answer = json.loads(await alice.get_message())
                assert answer["type"] == "error" and answer["ref"] == 7 and answer["code"] == code
                assert "61,440" in answer["message"] or "surrogate" in answer["message"]
                await alice.send_message(json.dumps({"type": "keepalive"}))
                assert json.loads(await alice.get_message()) == {"type": "pong"}  # still open
            assert server.history.head == 0 and server.stats.messages_relayed == 0
            nursery.cancel_scope.cancel()


async def test_server_post_refuses_what_a_client_could_not_send(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob")) as server:
            for text, code in ((EMOJI * 5_121, "ERR_TEXT_TOO_LONG"), ("x" * 16_385, "ERR_TEXT_TOO_LONG"),
                               ("\ud800", "ERR_TEXT_INVALID")):
                with pytest.raises(CometChatException) as info:
                    server.post("alice", "bob", text)
                assert info.value.code == code and info.value.details
            assert server.post("alice", "bob", EMOJI * 5_120) == 1


KINDS = ["a", "\n", '"', "\x01", "\x7f", "é", "\u20ac", EMOJI, "\ud800"]


@given(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 6_000)), min_size=1, max_size=4))
def test_client_and_server_agree_on_every_text(parts: list[tuple[str, int]]) -> None:
    """Whatever the mixture, the client sends exactly what the server takes, and every frame
    that then carries the text (the client's, the delivery, a history of one) fits in 64 KiB."""
    text = "".join(kind * count for kind, count in parts)
    if not text:
        return
    try:
        check_text(text)
        client_ok = True
    except CometChatException:
        client_ok = False
    server_ok = text_problem(text) is None
    assert client_ok is server_ok
    if client_ok:
        mine = json.dumps({"type": "message", "to": "r" * 100, "text": text, "ref": 2**63})
        item = wire.Message(2**63, "s" * 100, "r" * 100, text, 1764288000.123456, "m" * 100)
        delivery = encode(wire.Delivery(item))
        history = encode(wire.History(2**63, (item,), True))
        assert max(len(mine), len(delivery), len(history)) < MAX_FRAME_BYTES
