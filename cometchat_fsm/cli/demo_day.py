"""The demo's scripted day: two apps (alice in auto mode, bob in manual mode) through login,
messages, background, network loss, a half-open link, throttling, a rejected auth and a restart.

Part of `cometchat-fsm demo` (cli/demo.py); the checks it calls live in cli/demo_checks.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cometchat_fsm.cli.demo_actor import CONNECTED, CONNECTING, DISCONNECTED, THROTTLED, Actor
from cometchat_fsm.cli.demo_checks import QUICK, SLACK, DemoChecks
from cometchat_fsm.core.errors import ERR_AUTH_REJECTED, ERR_NOT_LOGGED_IN
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.trio.client import Client, User, open_client

APP_ID = "demo-app"
AUTO = AppSettings(region="eu")
MANUAL = AppSettings(region="eu", auto_establish_socket_connection=False)


class Demo(DemoChecks):
    """The scripted day: eight sections, then the summary; each step checked as it happens."""

    @asynccontextmanager
    async def running(self, actor: Actor) -> AsyncIterator[Client]:
        """The app runs: `open_client` restores a stored session (L2), messages are printed."""
        async with open_client(APP_ID, actor.settings, url=actor.url, store=actor.store,
                               connector=actor.connector(), random=actor.rng) as client:
            actor.attach(client)
            self.tasks.start_soon(actor.read_messages, client)
            try:
                yield client
            finally:
                actor.detach()

    async def run(self) -> None:
        async with self.running(self.alice), self.running(self.bob):
            await self.login()
            await self.messages()
            await self.auto_background()
            await self.manual_background()
            await self.network()
            await self.half_open()
            await self.throttle_and_reject()
            self.note("apps", "both apps exit (clients closed)")
        await self.restart()
        self.summary()

    async def login(self) -> None:
        a, b = self.alice, self.bob
        self.t.section("1. Login (L1, A1, M1): auto mode connects by itself, manual mode waits for connect()")
        a.asked = True
        await a.call('login("alice")', lambda: a.client.login("alice", auth_key=self.server.auth_key),
                     rule="L1")
        await self.expect(a, CONNECTED, within=QUICK, why="A1")
        self.check(a, SessionStore(a.store).load(APP_ID) is not None, "session stored locally", "L1",
                   "no session file after login")
        await self.server_sockets(a, 1, "A1")
        await b.call('login("bob")', lambda: b.client.login("bob", auth_key=self.server.auth_key), rule="M1")
        await self.hold(b, DISCONNECTED, 10, why="login opened no socket (M1)")
        await self.server_sockets(b, 0, "M1")
        b.asked = True
        await b.call("connect()", b.client.connect, rule="M1")
        self.now_is(b, CONNECTED, "connect() returns once the server accepted the auth (D5)")
        await self.server_sockets(b, 1, "M1")

    async def messages(self) -> None:
        a, b = self.alice, self.bob
        self.t.section("2. Messages: relayed at once, the sender stamped by the server")
        await self.send(a, b, "Lunch at noon?")
        await self.send(b, a, "Sure, see you!")

    async def auto_background(self) -> None:
        a = self.alice
        self.t.section("3. Auto mode (A2, A1, D13): the background disconnects at once, the foreground "
                       "reconnects\n   and the server replays what was sent meanwhile")
        a.signal("enter_background()", a.client.enter_background, rule="A2")
        self.now_is(a, DISCONNECTED, "A2")
        await self.server_sockets(a, 0, "A2")
        away = await self.send_to_absent(self.bob, a, "Call me when you're back")
        await self.hold(a, DISCONNECTED, 60, why="no socket in the background (A2)")
        a.asked = True
        a.signal("enter_foreground()", a.client.enter_foreground, rule="A1")
        await self.expect(a, CONNECTED, within=QUICK, why="A1")
        await self.replayed(a, away)

    async def manual_background(self) -> None:
        a, b = self.alice, self.bob
        window = b.settings.background_window
        self.t.section("4. Manual mode in the background (M2, M3, M5): a 30 s window, renewed by ping()")
        b.signal("enter_background()", b.client.enter_background, rule="M2")
        await self.expect(b, DISCONNECTED, within=window + SLACK, after=window - SLACK,
                          why="M2: 30 s after enter_background()")
        await self.server_sockets(b, 0, "M2")
        b.signal("enter_foreground()", b.client.enter_foreground, rule="M5")
        await self.hold(b, DISCONNECTED, 10, why="no reconnection until connect() (M5)")
        b.asked = True
        await b.call("connect()", b.client.connect, rule="M5")
        self.now_is(b, CONNECTED, "M5")

        b.signal("enter_background()", b.client.enter_background, rule="M3")
        pinged = self.t.now()
        for _ in range(3):
            await self.hold(b, CONNECTED, 25, why="within the window")
            pinged = self.t.now()
            await b.call("ping()", b.client.ping, rule="M3")
        self.check(b, b.status is CONNECTED, "connected 75 s in background",
                   "M3: each ping renews the 30 s window", f"status {b.status.value}")
        await self.send(a, b, "Still up?")  # delivered: the socket is still open in the background
        await self.expect(b, DISCONNECTED, within=window + SLACK, after=window - SLACK, since=pinged,
                          why="M2: 30 s after the last ping()")
        b.signal("enter_foreground()", b.client.enter_foreground, rule="M5")
        b.asked = True
        await b.call("connect()", b.client.connect, rule="M5")

    async def network(self) -> None:
        a, b, net_a, net_b = self.alice, self.bob, self.net["alice"], self.net["bob"]
        base, cap = a.settings.backoff_base, a.settings.backoff_cap
        self.t.section("5. Network loss (D6a); unintended losses (A3, M4, D6b) reconnect with backoff (D6)")
        self.note("net", "alice's network goes offline", "proxy cuts and refuses")
        net_a.go_offline()
        a.signal("network_lost()", a.client.network_lost, rule="D6a")
        self.now_is(a, DISCONNECTED, "no wait for the keep-alive (D6a)")
        refused = net_a.refused
        await self.hold(a, DISCONNECTED, 60, why="no attempt while offline (D6)")
        self.check(a, net_a.refused == refused, "nothing reached the network", "0 connections refused",
                   f"the proxy refused {net_a.refused - refused} connection(s)")
        self.note("net", "alice's network is back", "proxy online")
        net_a.go_online()
        a.signal("network_restored()", a.client.network_restored, rule="D6a")
        await self.expect(a, CONNECTED, within=0.5, why="D6a: an immediate attempt, no backoff")

        for actor, rule in ((a, "A3"), (b, "M4")):
            mark = len(actor.notified)
            self.note("server", f"drop({actor.name})", "closes the socket with 4002")
            self.server.drop(actor.name)
            await self.expect(actor, DISCONNECTED, within=QUICK, why="the close frame arrives")
            await self.expect(actor, CONNECTED, within=base + SLACK, since=actor.notified[-1][0],
                              why=f"{rule}: the first retry waits U[0, {base:g} s]")
            self.sequence(actor, mark, ["on_disconnected", "on_connecting", "on_connected"], "D6b")

        # D14: the retry count starts over only once a connection has held for stable_after.
        await self.hold(b, CONNECTED, b.settings.stable_after + SLACK,
                        why="D14: a connection that held starts the backoff over")
        self.note("net", "bob's link to the server fails", "proxy offline; the phone does not notice")
        mark, first = len(b.notified), len(b.attempts)
        net_b.go_offline()
        await self.expect(b, CONNECTING, within=base + QUICK, why="D6b: disconnected, then the first retry")
        tried = await self.hold(b, CONNECTING, 40, attempts_allowed=True,
                                why="failed attempts notify nothing (D6b)")
        self.note("net", "bob's link is back", "proxy online")
        net_b.go_online()
        limit = b.settings.connect_timeout + cap
        await self.expect(b, CONNECTED, within=limit + QUICK,
                          why=f"an attempt in flight ends within {b.settings.connect_timeout:g} s (P2), "
                              f"the next retry within {cap:g} s")
        self.sequence(b, mark, ["on_disconnected", "on_connecting", "on_connected"], "D6b")
        lost = b.notified[mark][0]
        attempts = b.attempts[first:]
        waits, previous = [], lost
        for attempt in attempts:
            waits.append(attempt.start - previous)
            previous = attempt.end if attempt.end is not None else attempt.start
        bounds = [min(cap, base * 2 ** n) for n in range(len(waits))]
        self.check(b, tried > 0 and all(w <= bound + SLACK for w, bound in zip(waits, bounds, strict=True)),
                   f"backoff over {len(attempts)} attempts",
                   "waits " + ", ".join(f"{w:.2f}" for w in waits) + " s; each <= "
                   + ", ".join(f"{bound:g}" for bound in bounds) + " (D6)",
                   f"waits {waits} exceed min({cap:g}, {base:g} * 2^n) = {bounds}")

    async def half_open(self) -> None:
        a, net_a = self.alice, self.net["alice"]
        s = a.settings
        bound = s.keepalive_interval + s.pong_timeout
        self.t.section("6. Half-open link (D7): found by the keep-alive within 15 + 3 s, then recovered")
        self.note("net", "alice's connection goes dead", "proxy blackholes it; new ones pass")
        mark = len(a.notified)
        net_a.blackhole()
        net_a.go_online()  # the open connection stays dead, as after a lost NAT entry
        await self.expect(a, DISCONNECTED, within=bound + SLACK,
                          why=f"keep-alive every {s.keepalive_interval:g} s, pong {s.pong_timeout:g} s later")
        await self.expect(a, CONNECTED, within=s.backoff_base + QUICK, why="A3")
        self.sequence(a, mark, ["on_disconnected", "on_connecting", "on_connected"], "D6b")

    async def throttle_and_reject(self) -> None:
        a, b = self.alice, self.bob
        self.t.section("7. Throttling (D12) and a rejected authentication, not retried, not reused (D5, D16)")
        self.note("server", "throttle(alice, True)")
        self.server.throttle("alice", True)
        await self.expect(a, THROTTLED, within=QUICK, why="D12")
        self.note("server", "throttle(alice, False)")
        self.server.throttle("alice", False)
        await self.expect(a, CONNECTED, within=QUICK, why="D12")

        await b.call("disconnect()", b.client.disconnect, rule="D1")
        self.now_is(b, DISCONNECTED, "D1")
        self.note("server", "reject_auth(True)")
        self.server.reject_auth(True)
        mark = len(b.notified)
        rejected = self.server.stats.auths_rejected
        await b.call_fails("connect()", b.client.connect, code=ERR_AUTH_REJECTED, rule="D5")
        self.sequence(b, mark, ["on_connecting", "on_connection_error", "on_disconnected"], "D5")
        await self.hold(b, DISCONNECTED, 60, why="not retried (D5)")
        self.check(b, self.server.stats.auths_rejected == rejected + 1, "the server saw one attempt",
                   "1 auth rejected", f"{self.server.stats.auths_rejected - rejected} auths rejected")
        self.note("server", "reject_auth(False)")
        self.server.reject_auth(False)
        self.check(b, SessionStore(b.store).load(APP_ID) is None, "rejected session deleted", "D16",
                   "the rejected session is still stored")
        await b.call_fails("connect()", b.client.connect, code=ERR_AUTH_REJECTED, rule="D16")
        # The same user logs in again: the server gives fresh credentials (D16).
        await b.call('login("bob")', lambda: b.client.login("bob", auth_key=self.server.auth_key), rule="D16")
        b.asked = True
        await b.call("connect()", b.client.connect, rule="D16")

    async def restart(self) -> None:
        a, b = self.alice, self.bob
        self.t.section("8. Restart (L2): a stored session connects in auto mode only; logout (D9, E1)")
        a.asked = True
        self.note("apps", "both apps start (open_client)", "each restores its stored session")
        async with self.running(a), self.running(b):
            self.now_is(a, CONNECTING, "L2: the restore opened the socket (before any listener was added)")
            await self.expect(a, CONNECTED, within=QUICK, why="L2: auto mode connects by itself")
            self.check(b, b.client.get_logged_in_user() == User("bob"), "bob is logged in", "L2",
                       "the stored session was not restored")
            await self.hold(b, DISCONNECTED, 10, why="L2: manual mode waits for connect()")
            for actor in (a, b):
                await actor.call("logout()", actor.client.logout, rule="D9")
                self.check(actor, SessionStore(actor.store).load(APP_ID) is None, "session forgotten", "D9",
                           "the session file is still there")
            await b.call_fails("connect()", b.client.connect, code=ERR_NOT_LOGGED_IN, rule="E1")

