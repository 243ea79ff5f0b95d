"""Replay after a reconnect (rule D13, docs/rules.md) beside live delivery, measured in one run.

Run `make bench` (after bench/run.py and bench/live.py) or `.venv/bin/python bench/replay.py`
(`--messages N`, default 10,000; `--rounds R`, default 3).

The reference server runs in its own process (bench/live_server.py: SQLite history in a file,
its default) on 127.0.0.1. In this process two managed clients: `u0` (auto mode) sends, `u1`
(manual mode) receives through `messages()`. Each round:

- live: u1 connected; u0 sends N messages, 64 `send_message` calls in flight at a time (each
  returns when the server acknowledged the stored message). Live delivery rate = N / (time
  from the first send to the last message u1's app received).
- replay: u1 `disconnect()`s; u0 sends N messages (stored, acknowledged); then u1 `connect()`s.
  Replay rate = N / (time from calling `connect()` to the last replayed message u1's app
  received); printed with the time to `connect()`'s return (auth accepted) and to the first
  replayed message.

Both are checked, not only timed: u1 must receive exactly the N ids in send order with no
duplicate, and the reconnect must say `resumed` with no gap (N is within the default replay
window of 10,000 messages). The median of the rounds is reported, beside the figures this bench
measured before rules D19-D21 (BEFORE_*); exit 1 if a check fails.

Then once, a skipped backlog (rule D21, `--backlog B`, default 50,000): u1 stays connected but
its app stops taking messages while u0 sends B; u1's client keeps at most `inbox_limit` (1,000)
and pauses the server; then the app reads again. Backlog rate = B / (time from the app's
resuming to the last message received); checked: exactly the B ids, in order, on the same
connection (no reconnect).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
import trio_websocket
from common import ServerProcess
from live import SERVER_MAX_LIFETIME, Control

from cometchat_fsm import AppSettings, Client, ConnectedInfo, Message, open_client

IN_FLIGHT = 64  # send_message calls awaiting their acknowledgement at once
#: This bench's medians before D19-D21 (muid, bounded inbox, per-user places), same machine.
BEFORE_REPLAY = 34_171  # msg/s
BEFORE_LIVE = 5_763  # msg/s
ROUND_LIMIT = 120.0  # seconds: one round (live + replay) never takes longer
SERVER_READY_LIMIT = 60.0


class Inbox:
    """u1's app: every message received, with the monotonic time it arrived."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.times: list[float] = []
        self._want = 0
        self._reached = trio.Event()
        self.taking = trio.Event()  # cleared: the app takes nothing (D21's backlog)
        self.taking.set()

    async def run(self, client: Client) -> None:
        async for message in client.messages():
            await self.taking.wait()
            self.ids.append(message.id)
            self.times.append(time.monotonic())
            if len(self.ids) >= self._want:
                self._reached.set()

    def expect(self, count: int) -> trio.Event:
        """An event set once `count` messages (in all) have arrived."""
        self._want = count
        self._reached = trio.Event()
        if len(self.ids) >= count:
            self._reached.set()
        return self._reached


class Infos:
    def __init__(self) -> None:
        self.last: ConnectedInfo | None = None

    def on_connected(self, info: ConnectedInfo) -> None:
        self.last = info


async def send_many(sender: Client, to: str, n: int, tag: str) -> list[Message]:
    """Send n messages with IN_FLIGHT calls outstanding; return them in id order."""
    sent: list[Message] = []
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            sent.append(await sender.send_message(to, f"{tag} message {i:05d} " + "x" * 64))

    async with trio.open_nursery() as nursery:
        for _ in range(IN_FLIGHT):
            nursery.start_soon(worker)
    return sorted(sent, key=lambda m: m.id)


def check(ok: bool, what: str, problems: list[str]) -> None:
    if not ok:
        problems.append(what)


async def measure(url: str, auth_key: str, n: int, rounds: int, store: Path, backlog: int) -> dict[str, Any]:
    results: dict[str, Any] = {"live": [], "replay": [], "accepted": [], "first": [], "problems": [],
                               "backlog": math.nan}
    problems: list[str] = results["problems"]
    async with open_client("bench-sender", AppSettings(region="eu"), url=url, store=store) as alice, \
            open_client("bench-receiver", AppSettings(region="eu", auto_establish_socket_connection=False),
                        url=url, store=store) as bob, trio.open_nursery() as nursery:
        infos = Infos()
        bob.add_connection_listener("bench", infos)
        inbox = Inbox()
        nursery.start_soon(inbox.run, bob)
        with trio.fail_after(ROUND_LIMIT):
            await alice.login("u0", auth_key=auth_key)
            await bob.login("u1", auth_key=auth_key)
            await bob.connect()
            while alice.get_connection_status().value != "connected":
                await trio.sleep(0.01)
            warm = await send_many(alice, "u1", 200, "warm-up")
            await inbox.expect(len(warm)).wait()
        for r in range(rounds):
            with trio.fail_after(ROUND_LIMIT):
                # Live: u1 connected all along.
                before = len(inbox.ids)
                arrived = inbox.expect(before + n)
                t0 = time.monotonic()
                sent = await send_many(alice, "u1", n, f"live{r}")
                await arrived.wait()
                results["live"].append(inbox.times[-1] - t0)
                check(inbox.ids[before:] == [m.id for m in sent], f"round {r}: live delivery differs",
                      problems)
                # Replay: u1 away while n are sent, then back.
                await bob.disconnect()
                sent = await send_many(alice, "u1", n, f"away{r}")
                before = len(inbox.ids)
                arrived = inbox.expect(before + n)
                infos.last = None  # the check below must see this reconnect's own info
                t0 = time.monotonic()
                await bob.connect()
                t_accepted = time.monotonic()
                await arrived.wait()
                results["replay"].append(inbox.times[-1] - t0)
                results["accepted"].append(t_accepted - t0)
                results["first"].append(inbox.times[before] - t0)
                check(inbox.ids[before:] == [m.id for m in sent], f"round {r}: replay differs", problems)
                info = infos.last
                check(info is not None and info.resumed and not info.gap,
                      f"round {r}: reconnect said {info}, expected resumed without a gap", problems)
                print(f"  round {r + 1}: live {n / results['live'][-1]:8.0f} msg/s, replay "
                      f"{n / results['replay'][-1]:8.0f} msg/s ({results['replay'][-1]:.2f} s to the last)",
                      flush=True)
        if backlog:
            with trio.fail_after(ROUND_LIMIT * 3):
                await backlog_round(alice, bob, inbox, infos, backlog, results)
        await trio.sleep(0.2)
        check(bob.duplicates_dropped == 0, f"{bob.duplicates_dropped} duplicates reached the client",
              problems)
        check(len(inbox.ids) == len(set(inbox.ids)), "a message was delivered twice", problems)
        nursery.cancel_scope.cancel()
    return results


async def backlog_round(alice: Client, bob: Client, inbox: Inbox, infos: Infos, b: int,
                        results: dict[str, Any]) -> None:
    """D21: the app stops taking while b arrive, then reads them all back."""
    problems: list[str] = results["problems"]
    infos.last = None
    inbox.taking = trio.Event()
    await trio.sleep(0.2)  # the app is waiting at its gate
    before = len(inbox.ids)
    t0 = time.monotonic()
    sent = await send_many(alice, "u1", b, "backlog")
    print(f"  backlog: {b} sent in {time.monotonic() - t0:.1f} s while the app took nothing", flush=True)
    arrived = inbox.expect(before + b)  # the app holds the first at its gate, noted once it goes on
    t0 = time.monotonic()
    inbox.taking.set()
    await arrived.wait()
    results["backlog"] = inbox.times[-1] - t0
    check(inbox.ids[before:] == [m.id for m in sent], "backlog: not exactly the messages sent, in order",
          problems)
    check(infos.last is None, "backlog: the client reconnected", problems)
    print(f"  backlog: {b} read back at {b / results['backlog']:8.0f} msg/s", flush=True)


async def quit_server(control_url: str) -> dict[str, Any]:
    async with trio_websocket.open_websocket_url(control_url) as ws:
        control = Control(ws)
        stats = await control.call(cmd="stats")
        with contextlib.suppress(trio_websocket.ConnectionClosed):  # it may stop before answering
            await control.call(cmd="quit")
    return stats


def main() -> int:
    from importlib.metadata import version

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000, help="messages per measurement (default 10,000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of live + replay (default 3)")
    ap.add_argument("--backlog", type=int, default=50_000,
                    help="messages of the skipped backlog read back once (D21; default 50,000; 0: none)")
    args = ap.parse_args()
    n, rounds, backlog = args.messages, args.rounds, args.backlog
    if n < 1 or rounds < 1 or backlog < 0:
        ap.error("--messages and --rounds must be at least 1, --backlog at least 0")
    started = time.perf_counter()
    print(f"cometchat-fsm replay bench: Python {platform.python_version()}, trio {version('trio')}, "
          f"trio-websocket {version('trio-websocket')}, {os.cpu_count()} CPUs, 127.0.0.1 only")
    print(f"server: bench/live_server.py in its own process (SQLite history in a temporary file); "
          f"{n} messages per measurement, {rounds} rounds, {IN_FLIGHT} sends in flight", flush=True)
    with tempfile.TemporaryDirectory(prefix="cometchat-replay-bench-") as tmp:
        tokens = Path(tmp) / "tokens.json"
        server = ServerProcess("live_server.py", "--users", "2", "--tokens", str(tokens),
                               "--lifetime", str(SERVER_MAX_LIFETIME))
        try:
            ready = server.wait_ready(SERVER_READY_LIMIT)
            results = trio.run(measure, ready["url"], server.auth_key, n, rounds, Path(tmp) / "store",
                               backlog)
            stats = trio.run(quit_server, ready["control"])
        finally:
            server.stop()
    live = statistics.median(results["live"])
    replay = statistics.median(results["replay"])
    accepted = statistics.median(results["accepted"])
    first = statistics.median(results["first"])
    server_stats = stats
    print(f"\nmedian of {rounds} rounds, {n} messages each:")
    print(f"  live delivery (u1 connected, sender acked per message): {n / live:8.0f} msg/s "
          f"({live:.2f} s from the first send to the last arrival; before D19-D21: {BEFORE_LIVE:,})")
    print(f"  replay after a reconnect ({n} missed):                 {n / replay:8.0f} msg/s "
          f"(before D19-D21: {BEFORE_REPLAY:,};\n"
          f"  {replay:.2f} s from connect() to the last replayed message;\n"
          f"  {accepted * 1000:.1f} ms to the auth accepted, {first * 1000:.1f} ms to the first replayed "
          "message)")
    if backlog:
        rate = backlog / results["backlog"]
        print(f"  skipped backlog read back ({backlog}, D21):                {rate:8.0f} msg/s "
              f"({results['backlog']:.2f} s from the app's resuming to the last message)")
    print(f"  replay / live rate: {live / replay:.2f}x")
    if server_stats:
        print(f"  server: relayed {server_stats.get('messages_relayed')}, replayed "
              f"{server_stats.get('messages_replayed')}, gaps {server_stats.get('gaps')}")
    print("\n| figure | measured | check |\n|---|---|---|")  # no targets: figures beside a check
    verdict = "ok" if not results["problems"] else "FAILED"
    print(f"| replay rate, {n} missed | {n / replay:.0f} msg/s ({replay:.2f} s to the last) | "
          f"exactly the {n}, in order, no gap: {verdict} |")
    print(f"| live delivery rate | {n / live:.0f} msg/s | exactly the {n}, in order: {verdict} |")
    print(f"| replay rate before D19-D21 | {BEFORE_REPLAY} msg/s | (earlier run) |")
    print(f"| live delivery rate before D19-D21 | {BEFORE_LIVE} msg/s | (earlier run) |")
    if backlog:
        rate = backlog / results["backlog"]
        print(f"| skipped backlog read back, {backlog} (D21) | {rate:.0f} msg/s "
              f"({results['backlog']:.2f} s) | "
              f"exactly the {backlog}, in order, one connection: {verdict} |")
    for problem in results["problems"]:
        print(f"FAILED: {problem}")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
