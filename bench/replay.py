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
window of 10,000 messages). The median of the rounds is reported; exit 1 if a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
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
ROUND_LIMIT = 120.0  # seconds: one round (live + replay) never takes longer
SERVER_READY_LIMIT = 60.0


class Inbox:
    """u1's app: every message received, with the monotonic time it arrived."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.times: list[float] = []
        self._want = 0
        self._reached = trio.Event()

    async def run(self, client: Client) -> None:
        async for message in client.messages():
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


async def measure(url: str, auth_key: str, n: int, rounds: int, store: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"live": [], "replay": [], "accepted": [], "first": [], "problems": []}
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
        await trio.sleep(0.2)
        check(bob.duplicates_dropped == 0, f"{bob.duplicates_dropped} duplicates reached the client",
              problems)
        check(len(inbox.ids) == len(set(inbox.ids)), "a message was delivered twice", problems)
        nursery.cancel_scope.cancel()
    return results


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
    args = ap.parse_args()
    n, rounds = args.messages, args.rounds
    if n < 1 or rounds < 1:
        ap.error("--messages and --rounds must be at least 1")
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
            results = trio.run(measure, ready["url"], server.auth_key, n, rounds, Path(tmp) / "store")
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
          f"({live:.2f} s from the first send to the last arrival)")
    print(f"  replay after a reconnect ({n} missed):                 {n / replay:8.0f} msg/s "
          f"({replay:.2f} s from connect() to the last replayed message;\n"
          f"  {accepted * 1000:.1f} ms to the auth accepted, {first * 1000:.1f} ms to the first replayed "
          "message)")
    print(f"  replay / live rate: {live / replay:.2f}x")
    if server_stats:
        print(f"  server: relayed {server_stats.get('messages_relayed')}, replayed "
              f"{server_stats.get('messages_replayed')}, gaps {server_stats.get('gaps')}")
    print("\n| figure | measured | check |\n|---|---|---|")  # no targets: figures beside a check
    verdict = "ok" if not results["problems"] else "FAILED"
    print(f"| replay rate, {n} missed | {n / replay:.0f} msg/s ({replay:.2f} s to the last) | "
          f"exactly the {n}, in order, no gap: {verdict} |")
    print(f"| live delivery rate | {n / live:.0f} msg/s | exactly the {n}, in order: {verdict} |")
    for problem in results["problems"]:
        print(f"FAILED: {problem}")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
