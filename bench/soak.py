"""Soak run: 1,000 live clients doing random lifecycle inputs, messages and faults, then an audit.

What it does
    The reference server runs in its own process (bench/soak_server.py: 127.0.0.1 only, SQLite
    history in a temporary file, a replay window far larger than the run) so that server and
    clients are counted apart. This process holds N managed clients (`open_client`, session
    store in a temporary directory, half in auto mode and half in manual mode, picked by the
    seed), each logged in as its own user `u<i>` through the real login endpoint (manual ones
    then `connect()`), each with an app task reading its `messages()`. Then, for `--seconds`,
    every client does seeded random inputs at random moments (exponential pauses, mean 2 s):
    `send_message` to a random other user (the most common), `ping`, `enter_background` /
    `enter_foreground`, `network_lost` / `network_restored`, `connect` / `disconnect`,
    `fetch_messages`, and for the message layer (D19-D21): `switch` (the app logs in as its other
    user `v<i>`, by logout then login or directly, and later back: `u<i>`'s unread messages must
    never reach `v<i>`'s app, and come again when `u<i>` is back), `resend` (sends that failed go
    out again with their muids until acknowledged; the receiver must get each once), and a slow
    reader in one app of five (20 ms per message, an inbox of 3, and `stall`s of 5 to 19 s in
    which its app takes nothing, so that its client pauses the server and reads back).
    Meanwhile the server is faulted at random moments (mean 0.5 s apart): `drop` of 1 to 3 users,
    `silence` of a user (its sockets cut 3 to 25 s later), `throttle` of a user (lifted 1 to 10 s
    later), `overload` with a retry-after hint for 0.5 to 3 s, and two full `restart`s (every
    connection closed with 1001) at 10% and 60% of the run. Every call is bounded: one still
    running after 20 s counts as hung.

    At the end the faults are lifted, every client is brought to the foreground, online and
    connected, the run waits (bounded) until every acknowledged message has reached its app and
    the server has no replay under way, waits one more second for a late duplicate, audits,
    closes every client, and prints:

    - lost messages: sends that were acknowledged (`send_message` returned the stamped message)
      but never reached the receiving app through `messages()`, outside any gap the receiver was
      told of by `on_connected(info)`. Reported gaps have their own row: with the replay window
      used here none is expected, so a gap fails the run as well;
    - duplicates: a message id handed to the same app twice; the row also counts deliveries out
      of id order, and shows the client's own `duplicates_dropped` for context;
    - unexpected deliveries: a message never sent, sent to another user, refused by the client
      before it left, or whose id, sender or text differ from what was sent and acknowledged.
      A send that timed out may still arrive: that is counted, and fine;
    - sockets once all N are connected again: the clients' own count and the server's must both
      be N (one socket per client, D4: nothing left over from the faults);
    - leaks, after every client is closed: the server's open realtime sockets and the
      connections it is still serving (both 0), the server process's live trio tasks and open
      descriptors against their count before the clients started; in this process, live trio
      tasks (`trio.lowlevel.current_statistics().tasks_living`) and open descriptors
      (`/proc/self/fd`) against the baseline taken after one throwaway client had been opened
      and closed (that starts the library's one shared timer task, which lives as long as the
      trio run);
    - memory: RSS of this process and of the server process, each after `gc.collect()`, first
      after the warm-up (30% of the chaos phase: after the first restart storm, so every kind of
      input and fault has run) and again at the end (after the heal and the replay, all N
      clients still open): growth must stay under 10%.

    It ends with the line `N lost, N duplicated, N misdelivered, N leaked` (misdelivered: yielded
    while its receiver was not the user logged in, D19; leaked: tasks, descriptors and server
    sockets over the baseline) and the table `| target | wanted | measured | verdict |`.

How to run
    make soak                                  # 1,000 clients, 110 s of chaos: ~2 min in all
    .venv/bin/python bench/soak.py --quick     # 100 clients, 20 s; no verdict on memory
    .venv/bin/python bench/soak.py --clients N --seconds S --seed K

    Progress lines go to stdout every 10 s (time, phase, clients connected, messages
    acknowledged / received, faults so far, RSS of both processes, the server's open sockets,
    this process's trio tasks). Exit status: 0 every target met, 1 a target missed, 2 the run
    could not measure (the server did not start, not every client could log in, the run broke
    or hit the hard limit). Every phase has its own time bound and the whole run stops by itself
    in under 5 minutes (at 290 s at the latest); the server process is killed at the end
    whatever happens.

    tests/test_soak.py runs the same driver (`Soak` below, with `ServerOps` from
    bench/soak_server.py) in-process in virtual time over in-memory streams, 60 clients for 240
    virtual seconds in ~5 s, as part of `make test`: same audit, no memory figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import trio  # noqa: E402
from common import ServerProcess, exit_status, verdict_table  # noqa: E402
from soak_server import ServerOps, open_fds, rss_mib  # noqa: E402

from cometchat_fsm.core.errors import CometChatException, SendFailed  # noqa: E402
from cometchat_fsm.core.settings import AppSettings  # noqa: E402
from cometchat_fsm.core.states import ConnectionStatus, Phase  # noqa: E402
from cometchat_fsm.trio.client import Client, ConnectedInfo, Connector, Message, open_client  # noqa: E402

GROWTH_TARGET = 0.10  # RSS growth after warm-up, both processes
HARD_LIMIT = 290.0  # seconds: the whole run, server start to report
FULL_CLIENTS, FULL_SECONDS = 1_000, 110.0
QUICK_CLIENTS, QUICK_SECONDS = 100, 20.0

AUTO = AppSettings("us")
MANUAL = AppSettings("us", auto_establish_socket_connection=False)
LIVE_STATUSES = (ConnectionStatus.CONNECTED, ConnectionStatus.FEATURE_THROTTLED)

#: One client's inputs and their weights (some adjusted to its state in `Soak._pick`). `switch`
#: logs the app in as its other user (D19), `resend` sends again, with their muids, the sends that
#: failed (D20), `stall` stops a slow reader's app from taking messages for a while (D21).
INPUTS = {"send": 6.0, "ping": 1.0, "enter_background": 1.0, "enter_foreground": 0.2,
          "network_lost": 0.6, "network_restored": 0.2, "connect": 0.4, "disconnect": 0.3, "fetch": 0.3,
          "switch": 0.2, "resend": 0.5, "stall": 0.3}
#: Share of the apps that read slowly (SLOW_READ s per message, and `stall`s) with a small inbox.
SLOW_SHARE, SLOW_READ, SLOW_INBOX = 0.2, 0.02, 3
FAULTS = {"drop": 5.0, "silence": 2.0, "throttle": 2.0, "overload": 1.0}


@dataclass(frozen=True)
class Plan:
    """What one soak run does; times on the trio run's clock (virtual in tests/test_soak.py)."""

    clients: int
    seconds: float  # the chaos phase
    seed: int = 1
    manual_share: float = 0.5
    act_every: float = 2.0  # mean pause between one client's inputs
    fault_every: float = 0.5  # mean pause between server faults
    restarts_at: tuple[float, ...] = (0.1, 0.6)  # fractions of the chaos phase
    warmup: float = 0.3  # fraction of the chaos phase after which memory is first sampled
    login_concurrency: int = 50
    setup_limit: float = 30.0  # every client logged in (and connected, manual ones too)
    action_limit: float = 20.0  # one input; a call still running then counts as hung
    heal_limit: float = 30.0  # every client connected again once the faults are lifted
    replay_limit: float = 30.0  # every acknowledged message delivered
    settle: float = 1.0  # after the replay, for a late duplicate to show up
    close_limit: float = 15.0  # every client closed
    idle_limit: float = 15.0  # the server serving nothing once the clients are closed
    progress_every: float = 10.0


class Control(Protocol):
    async def call(self, **command: Any) -> dict[str, Any]: ...


class LocalControl:
    """The server in this process (tests): the same `ServerOps` commands, called directly."""

    def __init__(self, ops: ServerOps) -> None:
        self.ops = ops

    async def call(self, **command: Any) -> dict[str, Any]:
        return await self.ops.call(command)


class RemoteControl:
    """bench/soak_server.py's control WebSocket: one JSON command, one JSON answer, one at a time."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.lock = trio.Lock()

    async def call(self, **command: Any) -> dict[str, Any]:
        async with self.lock:
            await self.ws.send_message(json.dumps(command))
            answer: dict[str, Any] = json.loads(await self.ws.get_message())
            return answer


class Peer:
    """One app: its client, its user, its random inputs, what its listener and inbox saw."""

    __slots__ = ("alt", "client", "connections", "fg", "gaps", "head", "i", "logged_in", "manual", "online",
                 "pending", "reading", "received", "rng", "slow", "uid")

    def __init__(self, i: int, manual: bool, seed: int, slow: bool = False) -> None:
        self.i, self.uid, self.manual, self.slow = i, f"u{i}", manual, slow
        self.alt = False  # logged in as its other user `v<i>` (D19), who is sent nothing
        self.pending: list[tuple[int, str]] = []  # (ledger index, muid) of failed sends (D20)
        self.reading = trio.Event()  # cleared while a slow reader stalls (D21)
        self.reading.set()
        self.rng = random.Random(seed * 1_000_003 + i)
        self.client: Client | None = None
        self.logged_in = False
        self.head = 0  # the newest message id when its login was answered: it receives what follows
        self.fg = self.online = True  # what the app last told the client
        self.connections = 0
        self.gaps: list[tuple[int, int]] = []  # (missed_after, missed_through) from on_connected(info)
        # Gaps are only ever reported for u<i>'s connections: v<i> is sent nothing.
        self.received = array("q")  # message ids, in the order the app read them

    def on_connected(self, info: ConnectedInfo) -> None:  # the connection listener (D13 form)
        self.connections += 1
        if info.gap:
            self.gaps.append((info.missed_after or 0, info.missed_through or 0))

    @property
    def live(self) -> bool:
        return self.client is not None and self.client.get_connection_status() in LIVE_STATUSES


@dataclass
class Ledger:
    """Every send attempt, by index: receiver, sender, outcome. Compact (arrays), so that its own
    growth stays small next to the memory figure."""

    receiver: array[int] = field(default_factory=lambda: array("i"))
    sender: array[int] = field(default_factory=lambda: array("i"))
    #: > 0 the acknowledged id; 0 unknown (timed out or cut); -1 refused before it left.
    outcome: array[int] = field(default_factory=lambda: array("q"))
    delivered: bytearray = field(default_factory=bytearray)  # 1 once the receiver's app got it
    first_id: array[int] = field(default_factory=lambda: array("q"))  # the id it was first delivered as
    acked = 0
    received = 0
    unexpected: Counter[str] = field(default_factory=Counter)  # what arrived and should not have
    fetched = 0

    def new(self, sender: int, receiver: int) -> int:
        self.sender.append(sender)
        self.receiver.append(receiver)
        self.outcome.append(0)
        self.delivered.append(0)
        self.first_id.append(0)
        return len(self.outcome) - 1

    def receive(self, peer: Peer, message: Message) -> None:
        self.received += 1
        peer.received.append(message.id)
        self.check(peer, message, "delivered")

    def check(self, peer: Peer, message: Message, how: str) -> None:
        """A message the app got (delivered or fetched) must be one that was sent to it, unchanged."""
        try:
            idx = int(message.text.removeprefix("m"))
            ok_index = message.text == f"m{idx}" and 0 <= idx < len(self.outcome)
        except ValueError:
            ok_index = False
        if not ok_index:
            self.unexpected[f"{how}: never sent"] += 1
            return
        outcome = self.outcome[idx]
        if how == "delivered":
            self.delivered[idx] = 1
            if self.first_id[idx] and self.first_id[idx] != message.id:
                self.unexpected["delivered: twice under two ids (a resend stored again)"] += 1
            self.first_id[idx] = message.id
        if self.receiver[idx] != peer.i or message.receiver != peer.uid:
            self.unexpected[f"{how}: to another user"] += 1
        elif message.sender != f"u{self.sender[idx]}":
            self.unexpected[f"{how}: wrong sender"] += 1
        elif outcome == -1:
            self.unexpected[f"{how}: refused by the client, yet sent"] += 1
        elif outcome > 0 and message.id != outcome:
            self.unexpected[f"{how}: id differs from the acknowledged one"] += 1


class Soak:
    """One soak run against a server reached by `connector` (None: over TCP at `url`) and faulted
    through `control`. `run()` returns the figures; `verdicts()` turns them into the table."""

    def __init__(self, plan: Plan, *, url: str, auth_key: str, store: Path, control: Control,
                 connector: Connector | None = None, measure_memory: bool = True,
                 progress: Callable[[str], None] | None = None) -> None:
        self.plan, self.url, self.auth_key, self.store = plan, url, auth_key, store
        self.control, self.connector = control, connector
        self.measure_memory, self.progress = measure_memory, progress
        rng = random.Random(plan.seed)
        manual = set(rng.sample(range(plan.clients), round(plan.clients * plan.manual_share)))
        slow = set(rng.sample(range(plan.clients), round(plan.clients * SLOW_SHARE)))
        self.peers = [Peer(i, i in manual, plan.seed, i in slow) for i in range(plan.clients)]
        self.fault_rng = random.Random(plan.seed * 7_919 + 1)
        self.ledger = Ledger()
        self.inputs: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # CometChatException codes: the lifecycle saying no
        self.errors: Counter[str] = Counter()  # anything else an API call raised
        self.hung: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.phase = "setup"
        self.closing = trio.Event()
        self.setup_done = trio.Event()
        self.setup_left = plan.clients
        self.setup_failures: Counter[str] = Counter()
        self.out: dict[str, Any] = {"clients": plan.clients, "seconds": plan.seconds, "seed": plan.seed,
                                    "manual": len(manual)}
        self.started = 0.0
        self.cpu0 = 0.0

    # --- one client's life --------------------------------------------------------------------

    def _settings(self, peer: Peer) -> AppSettings:
        settings = MANUAL if peer.manual else AUTO
        return dataclasses.replace(settings, inbox_limit=SLOW_INBOX) if peer.slow else settings

    async def _hold(self, peer: Peer, slots: trio.Semaphore) -> None:
        """Open the client, log in (and connect, in manual mode), read its messages until closing."""
        async with open_client(f"soak-{peer.i}", self._settings(peer), url=self.url, store=self.store,
                               connector=self.connector, listeners={"soak": peer}) as client:
            peer.client = client
            async with trio.open_nursery() as inner:
                inner.start_soon(self._read, peer, client)
                async with slots:
                    await self._login(peer, client)
                self.setup_left -= 1
                if not self.setup_left:
                    self.setup_done.set()
                await self.closing.wait()
                inner.cancel_scope.cancel()

    async def _login(self, peer: Peer, client: Client) -> None:
        for attempt in range(5):  # bounded: a login refused by a busy server is tried again
            try:
                await client.login(peer.uid, auth_key=self.auth_key)
                peer.head = client.last_message_id or 0
                if peer.manual:
                    await client.connect()
                peer.logged_in = True
                return
            except CometChatException as exc:
                if attempt == 4:
                    self.setup_failures[exc.code] += 1
                    return
                await trio.sleep(0.2 * (attempt + 1))

    async def _read(self, peer: Peer, client: Client) -> None:
        async for message in client.messages():
            now = client.get_logged_in_user()
            if now is None or now.uid != message.receiver:  # D19
                self.ledger.unexpected["delivered: to a user not logged in"] += 1
            self.ledger.receive(peer, message)
            if peer.slow:
                await trio.sleep(SLOW_READ)
                await peer.reading.wait()

    # --- random inputs ------------------------------------------------------------------------

    def _pick(self, peer: Peer) -> str:
        rng = peer.rng
        if not peer.fg and rng.random() < 0.4:
            return "enter_foreground"
        if not peer.online and rng.random() < 0.4:
            return "network_restored"
        if not peer.live and peer.manual and rng.random() < 0.3:
            return "connect"
        names = list(INPUTS)
        kind = rng.choices(names, weights=[INPUTS[n] for n in names])[0]
        if peer.alt and kind in ("send", "resend"):  # sends go out as u<i> only
            return "switch" if rng.random() < 0.3 else "ping"
        return kind

    async def _act(self, peer: Peer, kind: str) -> None:
        client, rng = peer.client, peer.rng
        assert client is not None
        if kind == "send":
            other = rng.randrange(self.plan.clients - 1)
            other += other >= peer.i
            idx = self.ledger.new(peer.i, other)
            await self._send(peer, client, idx, f"m{idx}-{peer.i}")
        elif kind == "resend":  # D20: the failed ones again, with their muids
            while peer.pending:
                idx, muid = peer.pending.pop(0)
                await self._send(peer, client, idx, muid)  # a failure puts it back, and ends the input
        elif kind == "switch":  # D19: by logout then login, or by a login as the other user
            if rng.random() < 0.5:
                await client.logout()
            await self._switch(peer, client, not peer.alt)
        elif kind == "stall":
            if peer.slow:
                peer.reading = trio.Event()
                await trio.sleep(rng.uniform(5.0, 19.0))  # within the action bound
                peer.reading.set()
        elif kind == "fetch":
            after = max(0, (client.last_message_id or 0) - rng.randrange(1, 50))
            for message in await client.fetch_messages(after, rng.randrange(1, 30)):
                self.ledger.fetched += 1
                self.ledger.check(peer, message, "fetched")
        elif kind in ("enter_background", "enter_foreground", "network_lost", "network_restored"):
            getattr(client, kind)()
            if kind.startswith("enter_"):
                peer.fg = kind == "enter_foreground"
            else:
                peer.online = kind == "network_restored"
        else:  # ping, connect, disconnect
            await getattr(client, kind)()

    async def _send(self, peer: Peer, client: Client, idx: int, muid: str) -> None:
        other = self.ledger.receiver[idx]
        try:
            sent = await client.send_message(f"u{other}", f"m{idx}", muid=muid)
        except SendFailed as exc:  # cut or unanswered: maybe stored; the same muid is safe (D20)
            peer.pending.append((idx, exc.muid))
            raise
        except CometChatException as exc:
            if exc.code == "ERR_NO_WEBSOCKET_CONNECTION":  # refused before anything left
                peer.pending.append((idx, muid))  # sent again later all the same
            raise
        if self.ledger.outcome[idx] <= 0:
            self.ledger.acked += 1
        elif self.ledger.outcome[idx] != sent.id:
            self.ledger.unexpected["resend: acknowledged under another id"] += 1
        self.ledger.outcome[idx] = sent.id

    async def _switch(self, peer: Peer, client: Client, alt: bool) -> None:
        """Log the app in as `v<i>` (alt) or back as `u<i>`; manual mode connects again."""
        await client.login(f"v{peer.i}" if alt else peer.uid, auth_key=self.auth_key)
        peer.alt = alt
        if peer.manual:
            await client.connect()

    async def _call(self, peer: Peer, kind: str) -> None:
        """One input, bounded; what it raised is counted by kind."""
        self.inputs[kind] += 1
        with trio.move_on_after(self.plan.action_limit) as bound:
            try:
                await self._act(peer, kind)
            except CometChatException as exc:
                self.refused[exc.code] += 1
            except Exception as exc:  # not the lifecycle's answer: a bug somewhere
                self.errors[f"{kind}: {type(exc).__name__}: {exc}"[:200]] += 1
        if bound.cancelled_caught:
            self.hung[kind] += 1

    async def _drive(self, peer: Peer, until: float) -> None:
        while True:
            pause = peer.rng.expovariate(1.0 / self.plan.act_every)
            if trio.current_time() + pause >= until:
                return
            await trio.sleep(pause)
            await self._call(peer, self._pick(peer))

    # --- server faults ------------------------------------------------------------------------

    async def _later(self, delay: float, **command: Any) -> None:
        await trio.sleep(delay)
        await self.control.call(**command)

    async def _faults(self, start: float, until: float, nursery: trio.Nursery) -> None:
        rng, plan = self.fault_rng, self.plan
        restarts = sorted(start + f * plan.seconds for f in plan.restarts_at)
        overload_gen = 0

        async def overload_off(delay: float, gen: int) -> None:
            await trio.sleep(delay)
            if gen == overload_gen:  # not a newer overload's to lift
                await self.control.call(cmd="overload", retry_after=None)

        while True:
            at = trio.current_time() + rng.expovariate(1.0 / plan.fault_every)
            if restarts and restarts[0] <= at:
                await trio.sleep_until(restarts.pop(0))
                await self.control.call(cmd="restart")
                self.faults["restart"] += 1
                continue
            if at >= until:
                return
            await trio.sleep_until(at)
            kind = rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
            self.faults[kind] += 1
            uid = f"u{rng.randrange(plan.clients)}"
            if kind == "drop":
                for _ in range(rng.randint(1, 3)):
                    await self.control.call(cmd="drop", uid=f"u{rng.randrange(plan.clients)}")
            elif kind == "silence":
                await self.control.call(cmd="silence", uid=uid, flag=True)
                nursery.start_soon(partial(self._later, rng.uniform(3, 25), cmd="silence", uid=uid,
                                           flag=False))
            elif kind == "throttle":
                await self.control.call(cmd="throttle", uid=uid, flag=True)
                nursery.start_soon(partial(self._later, rng.uniform(1, 10), cmd="throttle", uid=uid,
                                           flag=False))
            else:
                overload_gen += 1
                await self.control.call(cmd="overload", retry_after=rng.choice([0.5, 1.0, 2.0]))
                nursery.start_soon(overload_off, rng.uniform(0.5, 3.0), overload_gen)

    # --- observation --------------------------------------------------------------------------

    def _rss(self) -> float:
        gc.collect()
        return rss_mib()

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(f"[{trio.current_time() - self.started:5.0f} s] {text}")

    async def _progress(self) -> None:
        while True:
            await trio.sleep(self.plan.progress_every)
            s = await self.control.call(cmd="stats")
            live = sum(p.live for p in self.peers)
            self._say(f"{self.phase}: {live}/{len(self.peers)} connected, {self.ledger.acked} messages "
                      f"acknowledged, {self.ledger.received} received, {sum(self.faults.values())} faults; "
                      f"RSS client {rss_mib():.0f} MiB, server {s['rss_mib']:.0f} MiB; server sockets "
                      f"{s['open_sockets']}; client tasks "
                      f"{trio.lowlevel.current_statistics().tasks_living}")

    async def _memory_sample(self, at: float) -> None:
        await trio.sleep_until(at)
        if self.measure_memory:
            self.out["rss_client_warm"] = self._rss()
            self.out["rss_server_warm"] = (await self.control.call(cmd="stats", gc=True))["rss_mib"]
            self._say(f"warm-up sample: RSS client {self.out['rss_client_warm']:.1f} MiB, server "
                      f"{self.out['rss_server_warm']:.1f} MiB")

    def _snapshot(self) -> dict[str, int]:
        gc.collect()
        return {"tasks": trio.lowlevel.current_statistics().tasks_living, "fds": open_fds()}

    async def _warmup_client(self) -> None:
        """One client opened, logged in, connected and closed before the baseline: it starts the
        library's shared timer task (one per trio run) and the lazy imports."""
        with trio.fail_after(30):
            async with open_client("soak-warmup", AUTO, url=self.url, store=self.store,
                                   connector=self.connector) as client:
                await client.login("u0", auth_key=self.auth_key)
                while client.get_connection_status() is not ConnectionStatus.CONNECTED:
                    await trio.sleep(0.05)
            while (await self.control.call(cmd="stats"))["active"]:
                await trio.sleep(0.05)

    # --- the run ------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        plan, out = self.plan, self.out
        self.started = trio.current_time()
        self.cpu0 = time.process_time()
        await self._warmup_client()
        out["base"] = self._snapshot()
        out["server_base"] = await self.control.call(cmd="stats", gc=True)
        async with trio.open_nursery() as top:
            if self.progress is not None:
                top.start_soon(self._progress)
            async with trio.open_nursery() as holders:
                await self._life(holders)
            out["closed_in_time"] = not holders.cancel_scope.cancelled_caught
            self.phase = "closed"
            # The server notices each close on its own: wait (bounded) until it serves nothing.
            with trio.move_on_after(plan.idle_limit):
                while True:
                    s = await self.control.call(cmd="stats")
                    if not s["open_sockets"] and not s["active"]:
                        break
                    await trio.sleep(0.1)
            top.cancel_scope.cancel()
        out["after"] = self._snapshot()
        out["server_after"] = await self.control.call(cmd="stats", gc=True)
        out["elapsed"] = trio.current_time() - self.started
        out["cpu_client_s"] = time.process_time() - self.cpu0
        out["cpu_server_s"] = out["server_after"]["cpu_s"] - out["server_base"]["cpu_s"]
        return out

    async def _life(self, holders: trio.Nursery) -> None:
        plan, out = self.plan, self.out
        slots = trio.Semaphore(plan.login_concurrency)
        t0 = trio.current_time()
        for peer in self.peers:
            holders.start_soon(self._hold, peer, slots)
        with trio.move_on_after(plan.setup_limit):
            await self.setup_done.wait()
        out["setup_s"] = trio.current_time() - t0
        out["logged_in"] = sum(p.logged_in for p in self.peers)
        out["setup_failures"] = dict(self.setup_failures)
        self._say(f"setup: {out['logged_in']} of {plan.clients} logged in and connecting "
                  f"({sum(p.manual for p in self.peers)} manual) in {out['setup_s']:.1f} s")
        if out["logged_in"] == plan.clients:
            await self._chaos()
            await self._heal()
        self.phase = "closing"
        self.closing.set()
        holders.cancel_scope.deadline = trio.current_time() + plan.close_limit

    async def _chaos(self) -> None:
        plan, out = self.plan, self.out
        self.phase = "chaos"
        start = trio.current_time()
        until = start + plan.seconds
        async with trio.open_nursery() as drivers:
            for peer in self.peers:
                drivers.start_soon(self._drive, peer, until)
            drivers.start_soon(self._memory_sample, start + plan.warmup * plan.seconds)
            async with trio.open_nursery() as faults:
                await self._faults(start, until, faults)
                faults.cancel_scope.cancel()  # pending "lift later"s: the heal lifts everything
            # The drivers stop starting inputs at `until`; the ones under way end within their bound.
            drivers.cancel_scope.deadline = until + plan.action_limit + 1
        out["chaos_s"] = trio.current_time() - start
        out["drivers_cut"] = drivers.cancel_scope.cancelled_caught

    async def _heal(self) -> None:
        plan, out = self.plan, self.out
        self.phase = "heal"
        start = trio.current_time()
        out["lift"] = await self.control.call(cmd="lift")
        for peer in self.peers:
            assert peer.client is not None
            peer.client.enter_foreground()
            peer.client.network_restored()
            peer.fg = peer.online = True
            peer.reading.set()
        slots = trio.Semaphore(100)

        async def home(peer: Peer) -> None:
            """Back to u<i> (D19: its place was kept), for the messages it was sent meanwhile."""
            client = peer.client
            assert client is not None
            for _ in range(10):
                user = client.get_logged_in_user()
                if user is not None and user.uid == peer.uid and client.phase is not Phase.LOGGING_IN:
                    return
                async with slots:
                    with trio.move_on_after(plan.action_limit):
                        try:
                            await self._switch(peer, client, False)
                        except CometChatException:
                            await trio.sleep(0.5)

        with trio.move_on_after(plan.heal_limit):
            async with trio.open_nursery() as nursery:
                for peer in self.peers:
                    nursery.start_soon(home, peer)

        async def connect(peer: Peer) -> None:
            async with slots:
                await self._call(peer, "connect")

        with trio.move_on_after(plan.heal_limit):
            while not all(p.live for p in self.peers):
                async with trio.open_nursery() as nursery:  # connect() those not connected, again
                    for peer in self.peers:
                        if not peer.live:
                            nursery.start_soon(connect, peer)
                    with trio.move_on_after(2.0):
                        while not all(p.live for p in self.peers):
                            await trio.sleep(0.05)
        out["live_after_heal"] = sum(p.live for p in self.peers)

        async def resend(peer: Peer) -> None:  # D20: what failed, again with its muid, until acked
            async with slots:
                while peer.pending and peer.live:
                    await self._call(peer, "resend")
                    await trio.sleep(0.05)  # a send refused at once must not spin

        with trio.move_on_after(plan.heal_limit):
            async with trio.open_nursery() as nursery:
                for peer in self.peers:
                    nursery.start_soon(resend, peer)
        out["unsent_after_heal"] = sum(len(p.pending) for p in self.peers)
        out["heal_s"] = trio.current_time() - start
        self._say(f"heal: faults lifted, {out['live_after_heal']} of {plan.clients} connected in "
                  f"{out['heal_s']:.1f} s")
        self.phase = "replay"
        start = trio.current_time()
        with trio.move_on_after(plan.replay_limit):
            while True:
                s = await self.control.call(cmd="stats")
                if not s["replaying"] and not self._outstanding():
                    break
                await trio.sleep(0.05)
        out["replay_s"] = trio.current_time() - start
        await trio.sleep(plan.settle)  # a late duplicate would show up now
        self._audit()
        if self.measure_memory:
            out["rss_client_end"] = self._rss()
            out["rss_server_end"] = (await self.control.call(cmd="stats", gc=True))["rss_mib"]
        out["server_end"] = await self.control.call(cmd="stats")
        out["client_sockets"] = sum(p.client.open_sockets for p in self.peers if p.client is not None)

    def _expected(self) -> list[set[int]]:
        """Per receiver, the acknowledged ids it must get (those after its login's head)."""
        ledger, peers = self.ledger, self.peers
        expected: list[set[int]] = [set() for _ in peers]
        for idx, message_id in enumerate(ledger.outcome):
            if message_id > 0:
                to = ledger.receiver[idx]
                if message_id > peers[to].head:
                    expected[to].add(message_id)
        return expected

    def _outstanding(self) -> int:
        return sum(len(want - set(p.received)) for want, p in zip(self._expected(), self.peers, strict=True))

    def _audit(self) -> None:
        out, ledger = self.out, self.ledger
        lost = in_gaps = dups = disorder = late = 0
        examples: list[str] = []
        for want, peer in zip(self._expected(), self.peers, strict=True):
            got = list(peer.received)
            have = set(got)
            dups += len(got) - len(have)
            disorder += sum(1 for a, b in itertools.pairwise(got) if b <= a)
            for message_id in sorted(want - have):
                if any(a < message_id <= b for a, b in peer.gaps):
                    in_gaps += 1
                else:
                    lost += 1
                    if len(examples) < 5:
                        mode = "manual" if peer.manual else "auto"
                        last = peer.client.last_message_id if peer.client else None
                        examples.append(f"id {message_id} to {peer.uid} ({mode}, last id {last})")
        unknown = [i for i, o in enumerate(ledger.outcome) if o == 0]
        late = sum(ledger.delivered[i] for i in unknown)  # sent, answer lost, yet delivered: fine
        out.update({
            "attempts": len(ledger.outcome), "acked": ledger.acked,
            "refused_sends": sum(1 for o in ledger.outcome if o == -1), "unknown_sends": len(unknown),
            "unacked_delivered": late, "received": ledger.received, "fetched": ledger.fetched,
            "lost": lost, "lost_examples": examples, "in_gaps": in_gaps,
            "gaps": sum(len(p.gaps) for p in self.peers), "duplicates": dups, "disorder": disorder,
            "dropped_by_clients": sum(p.client.duplicates_dropped for p in self.peers if p.client),
            "unexpected": dict(ledger.unexpected), "inputs": dict(self.inputs), "refused": dict(self.refused),
            "errors": dict(self.errors), "hung": dict(self.hung), "faults": dict(self.faults),
            "connections": sum(p.connections for p in self.peers),
        })


def verdicts(out: dict[str, Any], *, memory: bool) -> list[tuple[str, str, str, bool]]:
    """The table: (target, wanted, measured, met)."""
    n = out["clients"]
    base, after = out.get("base", {}), out.get("after", {})
    sb, sa = out.get("server_base", {}), out.get("server_after", {})
    unexpected = sum(out.get("unexpected", {}).values())
    rows = [
        ("lost messages (acknowledged, never delivered, outside a reported gap)", "0",
         f"{out.get('lost', math.nan)} of {out.get('acked', 0)} acknowledged", out.get("lost") == 0),
        ("duplicates delivered to apps", "0",
         f"{out.get('duplicates', math.nan)} (out of order: {out.get('disorder', math.nan)}; dropped by "
         f"the clients: {out.get('dropped_by_clients', 0)})",
         out.get("duplicates") == 0 and out.get("disorder") == 0),
        ("unexpected deliveries (never sent, wrong user, altered)", "0", f"{unexpected}", unexpected == 0
         and "unexpected" in out),
        ("sends failed and never acknowledged after resending with their muids (D20)", "0",
         f"{out.get('unsent_after_heal', math.nan)}", out.get("unsent_after_heal") == 0),
        ("gaps reported (replay window larger than the run: none expected)", "0",
         f"{out.get('gaps', math.nan)} ({out.get('in_gaps', 0)} messages inside)", out.get("gaps") == 0),
        ("API calls hung (> action bound) or raising a non-CometChat error", "0",
         f"{sum(out.get('hung', {}).values())} hung, {sum(out.get('errors', {}).values())} errors"
         f"{'; inputs cut at the end of the chaos phase' if out.get('drivers_cut') else ''}",
         "hung" in out and not out["hung"] and not out["errors"] and not out.get("drivers_cut")),
        ("clients connected after the faults were lifted", f"{n} of {n}",
         f"{out.get('live_after_heal', 0)} in {out.get('heal_s', math.nan):.1f} s",
         out.get("live_after_heal") == n),
        ("sockets once all are connected again: client side / server side (D4)", f"{n} / {n}",
         f"{out.get('client_sockets')} / {out.get('server_end', {}).get('open_sockets')}",
         out.get("client_sockets") == n and out.get("server_end", {}).get("open_sockets") == n),
        ("server: open realtime sockets / connections served, all clients closed", "0 / 0",
         f"{sa.get('open_sockets', math.nan)} / {sa.get('active', math.nan)}",
         sa.get("open_sockets") == 0 and sa.get("active") == 0 and out.get("closed_in_time", False)),
        ("server: trio tasks / descriptors over the baseline", "0 / 0",
         f"{sa.get('tasks', 0) - sb.get('tasks', 0)} / {sa.get('fds', 0) - sb.get('fds', 0)} "
         f"({sa.get('tasks')} tasks, {sa.get('fds')} fds)",
         bool(sa) and sa["tasks"] <= sb["tasks"] and sa["fds"] <= sb["fds"]),
        ("client process: leaked trio tasks", "0",
         f"{after.get('tasks', 0) - base.get('tasks', 0)} ({base.get('tasks')} -> {after.get('tasks')})",
         bool(after) and after["tasks"] <= base["tasks"]),
        ("client process: leaked descriptors", "0",
         f"{after.get('fds', 0) - base.get('fds', 0)} ({base.get('fds')} -> {after.get('fds')})",
         bool(after) and after["fds"] <= base["fds"]),
    ]
    if memory:
        for side in ("client", "server"):
            warm, end = out.get(f"rss_{side}_warm", math.nan), out.get(f"rss_{side}_end", math.nan)
            growth = end / warm - 1
            rows.append((f"{side} process RSS growth after warm-up", f"< {GROWTH_TARGET:.0%}",
                         f"{growth:+.1%} ({warm:.1f} -> {end:.1f} MiB)", growth < GROWTH_TARGET))
    return rows


def summary(out: dict[str, Any]) -> dict[str, int]:
    """The four headline counts: lost, duplicated, misdelivered (D19), leaked."""
    unexpected = out.get("unexpected", {})
    base, after = out.get("base", {}), out.get("after", {})
    sb, sa = out.get("server_base", {}), out.get("server_after", {})
    leaked = sum(max(0, now.get(key, 0) - then.get(key, 0))
                 for now, then in ((after, base), (sa, sb)) for key in ("tasks", "fds"))
    leaked += sa.get("open_sockets", 0) + sa.get("active", 0)
    return {
        "lost": out.get("lost", -1) + out.get("unsent_after_heal", 0),
        "duplicated": out.get("duplicates", -1) + sum(v for k, v in unexpected.items() if "twice" in k),
        "misdelivered": sum(v for k, v in unexpected.items() if "another user" in k or "not logged in" in k),
        "leaked": leaked,
    }


def print_report(out: dict[str, Any], rows: list[tuple[str, str, str, bool]]) -> list[str]:
    def line(name: str, data: dict[str, int]) -> None:
        items = ", ".join(f"{k} {v}" for k, v in sorted(data.items(), key=lambda kv: -kv[1]))
        print(f"  {name}: {items or 'none'}")

    s = out.get("server_end", {})
    n, manual = out["clients"], out["manual"]
    print(f"\nSoak: {n} clients ({manual} manual, {n - manual} auto), "
          f"seed {out['seed']}, chaos {out['seconds']:.0f} s; setup {out.get('setup_s', math.nan):.1f} s, "
          f"heal {out.get('heal_s', math.nan):.1f} s, replay wait {out.get('replay_s', math.nan):.1f} s")
    line("inputs", out.get("inputs", {}))
    line("refused by the lifecycle (CometChatException codes)", out.get("refused", {}))
    line("faults", out.get("faults", {}))
    print(f"  messages: {out.get('attempts', 0)} send calls: {out.get('acked', 0)} acknowledged, "
          f"{out.get('refused_sends', 0)} refused (not connected), {out.get('unknown_sends', 0)} without an "
          f"answer (timed out or cut; {out.get('unacked_delivered', 0)} of these delivered all the same); "
          f"{out.get('received', 0)} delivered to apps; {out.get('fetched', 0)} read back with "
          f"fetch_messages")
    print(f"  server: {s.get('relayed', 0)} relayed, {s.get('replayed', 0)} replayed after reconnects, "
          f"{s.get('auths_ok', 0)} auths, {s.get('logins_ok', 0)} logins, {s.get('dropped', 0)} sockets "
          f"dropped, {s.get('overloaded', 0)} refused as overloaded, {s.get('restarts', 0)} restarts, "
          f"{s.get('fetches', 0)} fetches; {out.get('connections', 0)} on_connected in the clients")
    print(f"  CPU over the whole run ({out.get('elapsed', math.nan):.0f} s on the run's clock): client "
          f"process {out.get('cpu_client_s', math.nan):.1f} s, server process "
          f"{out.get('cpu_server_s', math.nan):.1f} s")
    if out.get("errors"):
        line("unexpected errors", out["errors"])
    if out.get("hung"):
        line("hung calls", out["hung"])
    if out.get("unexpected"):
        line("unexpected deliveries", out["unexpected"])
    if out.get("lost_examples"):
        print(f"  lost, for example: {'; '.join(out['lost_examples'])}")
    counts = summary(out)
    print(f"  D19-D21: {out.get('inputs', {}).get('switch', 0)} user switches, "
          f"{out.get('inputs', {}).get('resend', 0)} resend inputs ({s.get('resends', 0)} sends the server "
          f"already had), {s.get('pauses', 0)} inbox pauses, {s.get('idle_closed', 0)} idle sockets cut")
    print(f"\n{counts['lost']} lost, {counts['duplicated']} duplicated, "
          f"{counts['misdelivered']} misdelivered, {counts['leaked']} leaked")
    return verdict_table(rows)


# =================================================================================================
# The full run: server process, clients here.
# =================================================================================================

async def run_remote(plan: Plan, info: dict[str, Any], auth_key: str, store: Path,
                     measure_memory: bool) -> dict[str, Any]:
    import trio_websocket

    def say(text: str) -> None:
        print(text, flush=True)

    async with trio_websocket.open_websocket_url(info["control"], max_message_size=1 << 20) as ws:
        soak = Soak(plan, url=info["url"], auth_key=auth_key, store=store, control=RemoteControl(ws),
                    measure_memory=measure_memory, progress=say)
        out = await soak.run()
        await ws.send_message(json.dumps({"cmd": "quit"}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=None,
                    help=f"default {FULL_CLIENTS} (quick {QUICK_CLIENTS})")
    ap.add_argument("--seconds", type=float, default=None,
                    help=f"the chaos phase (default {FULL_SECONDS:.0f}; quick {QUICK_SECONDS:.0f})")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a smaller, shorter run; no verdict on memory")
    args = ap.parse_args(argv)
    clients = args.clients or (QUICK_CLIENTS if args.quick else FULL_CLIENTS)
    seconds = args.seconds if args.seconds is not None else (QUICK_SECONDS if args.quick else FULL_SECONDS)
    if clients < 2:
        ap.error("--clients must be at least 2")
    plan = Plan(clients=clients, seconds=seconds, seed=args.seed)
    budget = (plan.setup_limit + plan.seconds + plan.action_limit + plan.heal_limit + plan.replay_limit
              + plan.settle + plan.close_limit + plan.idle_limit + 30)
    if budget > HARD_LIMIT:
        print(f"note: the phase bounds add up to {budget:.0f} s; the hard limit of {HARD_LIMIT:.0f} s "
              "stops the run earlier if it gets there")

    from importlib.metadata import version

    started = time.monotonic()
    with_memory = not args.quick
    print(f"cometchat-fsm soak: {clients} clients, {seconds:.0f} s of random inputs and faults, seed "
          f"{args.seed}; Python {platform.python_version()}, trio {version('trio')}, trio-websocket "
          f"{version('trio-websocket')}, {os.cpu_count()} CPUs, 127.0.0.1 only", flush=True)
    shm = Path("/dev/shm")
    tmp = Path(tempfile.mkdtemp(prefix="cometchat-soak-",
                                dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
    server: ServerProcess | None = None
    try:
        server = ServerProcess("soak_server.py", "--users", str(clients), "--history",
                               str(tmp / "history.sqlite3"), "--lifetime", str(HARD_LIMIT + 30))
        info = server.wait_ready(30.0)
        print(f"server: bench/soak_server.py in its own process (pid {server.proc.pid}) at {info['url']}",
              flush=True)
        auth_key = server.auth_key

        async def bounded() -> dict[str, Any] | None:
            with trio.move_on_after(HARD_LIMIT - (time.monotonic() - started)):
                return await run_remote(plan, info, auth_key, tmp / "sessions", with_memory)
            return None

        out = trio.run(bounded)
        if out is None:
            print(f"could not measure: the run did not end within {HARD_LIMIT:.0f} s")
            return 2
    except Exception as exc:  # the run itself broke (the server went away, a setup step failed)
        import traceback

        traceback.print_exc()
        print(f"could not measure: {type(exc).__name__}: {exc}")
        return 2
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if out.get("logged_in") != clients:
        print(f"could not measure: only {out.get('logged_in')} of {clients} clients logged in "
              f"({out.get('setup_failures')})")
        return 2
    rows = verdicts(out, memory=with_memory)
    missed = print_report(out, rows)
    print(f"({time.monotonic() - started:.1f} s{'; quick run: no verdict on memory' if args.quick else ''})")
    return exit_status(missed)


if __name__ == "__main__":
    sys.exit(main())

