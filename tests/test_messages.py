"""The message layer around D13's replay: each message to its own user only (D19), a resend never
a duplicate and a send cut by its socket's close failing at once (D20), bounded memory with
nothing lost, dead sockets cut by the server, and a place written at most 1 s behind (D21).
In virtual time over in-memory streams (MockClock), every test bounded by trio.fail_after.
"""

from __future__ import annotations

import random
import shutil
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from cometchat_fsm import (
    AppSettings,
    CometChatException,
    ConnectionStatus,
    Message,
    open_client,
    serve_reference,
)
from cometchat_fsm.core.errors import SendFailed
from cometchat_fsm.server.reference import ReferenceServer
from cometchat_fsm.testing import Link, memory_connector
from cometchat_fsm.trio.client import Client, Connector

AUTO = AppSettings(region="eu")
BOUND = 900  # virtual seconds: every scenario here is far shorter


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def until(predicate: object, limit: float = 120.0) -> None:
    assert callable(predicate)
    with trio.fail_after(limit):
        while not predicate():
            await trio.sleep(0.01)


class Reader:
    """The app's reading of `messages()`, from a task of its own; `stop()` / `go()` pause it."""

    def __init__(self, client: Client, pause: float = 0.0) -> None:
        self.client = client
        self.pause = pause  # seconds the app spends on each message
        self.messages: list[Message] = []
        self.times: list[float] = []

    async def run(self, iterator: AsyncIterator[Message] | None = None) -> None:
        async for message in iterator if iterator is not None else self.client.messages():
            self.messages.append(message)
            self.times.append(trio.current_time())
            if self.pause:
                await trio.sleep(self.pause)

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


@asynccontextmanager
async def client(server: ReferenceServer, store: Path, settings: AppSettings = AUTO, app_id: str = "app",
                 connector: Connector | None = None) -> AsyncIterator[Client]:
    async with open_client(app_id, settings, url=server.url, store=store,
                           connector=connector or memory_connector(server),
                           random=random.Random(0).random) as c:
        yield c


# --- D19: one user's messages never reach another ------------------------------------------------

@pytest.mark.parametrize("made", ["before the switch", "after the switch"])
@pytest.mark.parametrize("switch", ["logout then login", "login as another user"])
async def test_d19_another_users_unread_message_is_never_yielded(
        made: str, switch: str, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """alice has a message from bob she has not taken; carol logs in on the same client: carol's
    iterator (made before or after the switch) yields carol's messages only. alice's place is
    kept: when she logs in again she gets her message, once."""
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob", "carol"), clock=trio.current_time) as server, \
                client(server, tmp_path) as c:
            await c.login("alice", auth_key=server.auth_key)
            await settle()
            iterator = c.messages() if made == "before the switch" else None
            for_alice = server.post("bob", "alice", "for alice only")
            await until(lambda: c.last_message_id == for_alice)
            if switch == "logout then login":
                await c.logout()
            await c.login("carol", auth_key=server.auth_key)
            await settle()
            server.post("bob", "carol", "for carol")
            reader = Reader(c)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader.run, iterator)
                await until(lambda: "for carol" in reader.texts)
                await trio.sleep(5)
                assert reader.texts == ["for carol"]
                assert all(m.receiver == "carol" for m in reader.messages)
                await c.login("alice", auth_key=server.auth_key)  # her place was kept (D19)
                await until(lambda: for_alice in [m.id for m in reader.messages])
                await trio.sleep(5)
                assert [(m.id, m.receiver) for m in reader.messages[1:]] == [(for_alice, "alice")]
                nursery.cancel_scope.cancel()


async def test_d19_each_user_keeps_their_place_on_one_app_id(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Users take turns on one app id across relaunches: each resumes after what they took."""
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob", "carol"), clock=trio.current_time) as server:
            taken: dict[str, list[int]] = {"alice": [], "bob": []}
            sent: dict[str, list[int]] = {"alice": [], "bob": []}
            async with client(server, tmp_path) as c:  # each has a place from now on
                await c.login("alice", auth_key=server.auth_key)
                await c.login("bob", auth_key=server.auth_key)
            for turn in range(4):
                user = ("alice", "bob")[turn % 2]
                other = ("alice", "bob")[(turn + 1) % 2]
                async with client(server, tmp_path) as c:
                    await c.login(user, auth_key=server.auth_key)
                    reader = Reader(c)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(reader.run)
                        sent[user].append(server.post("carol", user, f"{user} {turn}"))
                        want = len(sent[user]) - len(taken[user])
                        await until(lambda r=reader, w=want: len(r.messages) == w)  # type: ignore[misc]
                        await settle()
                        sent[other].append(server.post("carol", other, f"{other} while away {turn}"))
                        nursery.cancel_scope.cancel()
                    taken[user] += [m.id for m in reader.messages]
                    assert all(m.receiver == user for m in reader.messages)
            # Everything, once, in order; only alice's last one waits for her next turn.
            assert taken == {"alice": sent["alice"][:-1], "bob": sent["bob"]}


# --- D20: a resend is never a duplicate -----------------------------------------------------------

async def test_d20_resends_with_one_muid_reach_the_receiver_once(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """The link dies right after the server stored alice's message: her send fails (the keep-alive
    finds the link dead) saying the server may have it; she sends again with the error's muid,
    several times over dead links: bob has one copy, and every answer names the same id."""
    links = Link()
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob"), clock=trio.current_time) as server, \
                client(server, tmp_path / "a", connector=memory_connector(server, link=links)) as alice, \
                client(server, tmp_path / "b") as bob:
            await alice.login("alice", auth_key=server.auth_key)
            await bob.login("bob", auth_key=server.auth_key)
            relay, relayed = server._relay, []

            def relay_then_die(conn: Any, frame: dict[str, object]) -> None:
                relay(conn, frame)  # stored (or found stored) and answered ...
                relayed.append(frame)
                if len(relayed) <= 3:
                    links.sever()  # ... but the link to alice dies before the answer gets through

            server._relay = relay_then_die  # type: ignore[method-assign]
            reader = Reader(bob)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader.run)
                await settle()
                muid: str | None = None
                for _ in range(3):
                    auths = server.stats.auths_ok
                    with pytest.raises(SendFailed) as failed:
                        await alice.send_message("bob", "hello once", muid=muid)
                    assert failed.value.code in ("ERR_SEND_INTERRUPTED", "ERR_SEND_TIMEOUT")
                    assert failed.value.may_be_stored and "same muid" in failed.value.details
                    muid = failed.value.muid
                    await until(lambda: server.stats.auths_ok > auths  # on a new link  # noqa: B023
                                and alice.get_connection_status() is ConnectionStatus.CONNECTED)
                final = await alice.send_message("bob", "hello once", muid=muid)
                await trio.sleep(5)
                assert [(m.id, m.muid, m.text) for m in reader.messages] == [(final.id, muid, "hello once")]
                assert final.muid == muid and server.stats.messages_relayed == 1
                mine = await alice.fetch_messages(0, 100, include_sent=True)  # what alice sent, once
                assert [(m.id, m.sender, m.receiver, m.muid) for m in mine] == [
                    (final.id, "alice", "bob", muid)]
                assert await alice.fetch_messages(0, 100) == []  # without include_sent: what she received
                nursery.cancel_scope.cancel()


async def test_d20_muids_made_given_checked_and_never_reused_for_another_text(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob"), clock=trio.current_time) as server, \
                client(server, tmp_path) as alice:
            await alice.login("alice", auth_key=server.auth_key)
            await settle()
            made = [await alice.send_message("bob", f"m{i}") for i in range(2)]
            assert all(m.muid is not None and len(m.muid) == 32 for m in made)
            assert made[0].muid != made[1].muid
            given = await alice.send_message("bob", "hi", muid="order-42:a")
            again = await alice.send_message("bob", "hi", muid="order-42:a")
            assert (again.id, again.muid, again.sent_at) == (given.id, "order-42:a", given.sent_at)
            assert server.stats.resends == 1
            with pytest.raises(CometChatException) as refused:
                await alice.send_message("bob", "another text", muid="order-42:a")
            assert refused.value.code == "ERR_MUID_CONFLICT"
            for bad in ("", "x" * 101, "with space", "é"):
                with pytest.raises(CometChatException) as invalid:
                    await alice.send_message("bob", "hi", muid=bad)
                assert invalid.value.code == "ERR_INVALID_ARGUMENT"
            with pytest.raises(TypeError):
                await alice.send_message("bob", "hi", muid=7)  # type: ignore[arg-type]
            assert server.post("bob", "alice", "x", muid="k") == server.post("bob", "alice", "x", muid="k")


@pytest.mark.parametrize("call", ["send_message", "fetch_messages"])
async def test_d20_a_call_waiting_on_a_socket_that_closes_fails_at_once(
        call: str, tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A send (or history request) in flight when `network_lost()` arrives 0.5 s later fails
    within 0.1 s of virtual time, not after its 10 s timeout; the send's error says the server
    may have the message and that resending with the same muid is safe."""
    links = Link()
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob"), clock=trio.current_time) as server, \
                client(server, tmp_path, connector=memory_connector(server, link=links)) as alice:
            await alice.login("alice", auth_key=server.auth_key)
            await settle()
            links.sever()  # nothing will answer

            lost_at: list[float] = []

            async def lose_the_network() -> None:
                await trio.sleep(0.5)
                lost_at.append(trio.current_time())
                alice.network_lost()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(lose_the_network)
                with pytest.raises(CometChatException) as failed:
                    if call == "send_message":
                        await alice.send_message("bob", "hi", muid="m-1")
                    else:
                        await alice.fetch_messages(0, 10)
                assert lost_at and trio.current_time() - lost_at[0] < 0.1
            assert alice.get_connection_status() is ConnectionStatus.DISCONNECTED
            if call == "send_message":
                assert isinstance(failed.value, SendFailed)
                assert failed.value.code == "ERR_SEND_INTERRUPTED"
                assert (failed.value.muid, failed.value.may_be_stored) == ("m-1", True)
                assert "may have stored it" in failed.value.details and "same muid" in failed.value.details
            else:
                assert failed.value.code == "ERR_FETCH_INTERRUPTED"


async def test_d20_a_send_that_never_left_says_so(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Two sends in flight on a link whose writes block: the first frame is being written (the
    server may have it), the second never left the client; the close fails both at once, each
    saying which (`may_be_stored`), and sending both again with their muids stores each once."""
    links = Link()
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob"), clock=trio.current_time) as server, \
                client(server, tmp_path, connector=memory_connector(server, link=links)) as alice:
            await alice.login("alice", auth_key=server.auth_key)
            await settle()
            links.stall()
            failures: dict[str, SendFailed] = {}

            async def send(muid: str) -> None:
                with pytest.raises(SendFailed) as failed:
                    await alice.send_message("bob", muid, muid=muid)
                failures[muid] = failed.value

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, "first")
                await settle()
                nursery.start_soon(send, "second")
                await settle()
                lost_at = trio.current_time()
                alice.network_lost()
            assert trio.current_time() - lost_at < 0.1
            assert [(m, f.code, f.may_be_stored) for m, f in sorted(failures.items())] == [
                ("first", "ERR_SEND_INTERRUPTED", True), ("second", "ERR_SEND_INTERRUPTED", False)]
            assert "has not stored it" in failures["second"].details
            alice.network_restored()
            await until(lambda: alice.get_connection_status() is ConnectionStatus.CONNECTED)
            again = [await alice.send_message("bob", m, muid=m) for m in ("first", "second")]
            again += [await alice.send_message("bob", m, muid=m) for m in ("first", "second")]
            assert [m.id for m in again[2:]] == [m.id for m in again[:2]] and server.stats.resends == 2


# --- D21: bounded memory, nothing lost; dead sockets cut; the place kept up to date --------------

def _client_bytes() -> int:
    """Bytes held now by objects allocated under the client's code (tracemalloc)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*cometchat_fsm/trio/client.py", all_frames=True)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def test_d21_memory_stays_flat_for_an_app_that_does_not_read_and_it_later_gets_all(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """50,000 messages arrive while the app reads nothing: the client's memory stays within 2x of
    its figure with 1,000, on one connection that stays up; when the app starts reading it gets
    all 50,000, in order, once."""
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob"), clock=trio.current_time) as server, \
                client(server, tmp_path) as bob:
            await bob.login("bob", auth_key=server.auth_key)
            await settle()
            sent: list[int] = []

            async def post(count: int) -> None:
                for _ in range(count // 500):
                    sent.extend(server.post("alice", "bob", f"m{len(sent)}") for _ in range(500))
                    await settle()
                    await trio.sleep(0.1)

            tracemalloc.start(5)  # deep enough to reach client.py from json and trio-websocket
            try:
                base = _client_bytes()
                await post(1_000)
                with_1000 = _client_bytes() - base
                await post(49_000)
                await trio.sleep(60)  # keep-alives go on meanwhile (D7, D17)
                with_50000 = _client_bytes() - base
            finally:
                tracemalloc.stop()
            print(f"client memory: {with_1000:,} B with 1,000 unread, {with_50000:,} B with 50,000")
            assert with_50000 <= 2 * with_1000, (with_1000, with_50000)
            assert bob.get_connection_status() is ConnectionStatus.CONNECTED
            assert server.stats.auths_ok == 1 and server.stats.pauses >= 1  # never reconnected
            reader = Reader(bob)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader.run)
                await until(lambda: len(reader.messages) >= len(sent), 600)
                await trio.sleep(5)
                nursery.cancel_scope.cancel()
            assert [m.id for m in reader.messages] == sent  # all, in order, once
            assert server.stats.auths_ok == 1


async def test_d21_the_server_cuts_a_socket_that_went_silently_dead(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """alice's link dies without a close (a phone's NAT entry expired): her client finds out by its
    keep-alive and reconnects; the server cuts the dead socket, so its count for alice is back to 1
    within 33 s of the link dying, and no more messages are relayed to it. A live but quiet
    connection (keep-alives only) is never cut."""
    links = Link()
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob"), clock=trio.current_time) as server, \
                client(server, tmp_path, connector=memory_connector(server, link=links)) as alice:
            await alice.login("alice", auth_key=server.auth_key)
            await trio.sleep(200)  # quiet but alive: the keep-alive every 15 s keeps it
            assert server.open_sockets("alice") == 1 and server.stats.idle_closed == 0
            await trio.sleep(7.5)  # half-way between two keep-alives
            died = trio.current_time()
            links.sever()
            await until(lambda: server.stats.auths_ok == 2)  # the client reconnected ...
            assert server.open_sockets("alice") == 2  # ... while the server still counts the dead one
            await until(lambda: server.open_sockets("alice") == 1)
            assert trio.current_time() - died <= 33.0
            assert server.stats.idle_closed == 1
            assert alice.get_connection_status() is ConnectionStatus.CONNECTED


async def test_d21_after_a_kill_at_most_one_second_of_taken_messages_comes_again(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """The app takes 10 messages a second; the process is killed (what the store holds at that
    moment is all the next run gets: no close). The next run replays at most what the app took
    in the last second before the kill, and nothing after it is lost."""
    store, after_kill = tmp_path / "store", tmp_path / "after-kill"
    with trio.fail_after(BOUND):
        async with serve_reference(users=("alice", "bob"), clock=trio.current_time) as server:
            async with client(server, store) as bob:
                await bob.login("bob", auth_key=server.auth_key)
                await settle()
                sent = [server.post("alice", "bob", f"m{i}") for i in range(300)]
                reader = Reader(bob, pause=0.1)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader.run)
                    await trio.sleep(12.34)
                    killed = trio.current_time()
                    shutil.copytree(store, after_kill)  # the disk as the kill leaves it
                    taken = [m.id for m in reader.messages]
                    last_second = sum(1 for t in reader.times if t > killed - 1.0)
                    nursery.cancel_scope.cancel()
            assert len(taken) > 100 and taken == sent[:len(taken)]
            async with client(server, after_kill) as again:
                reader = Reader(again)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader.run)
                    await until(lambda: bool(reader.messages) and reader.messages[-1].id == sent[-1])
                    nursery.cancel_scope.cancel()
            got = [m.id for m in reader.messages]
            replayed = sum(1 for i in got if i in set(taken))
            print(f"after the kill: {replayed} of {len(taken)} taken replayed; "
                  f"{last_second} taken in the last second")
            assert got == sent[sent.index(got[0]):]  # in order, nothing after the place lost
            assert replayed <= last_second
