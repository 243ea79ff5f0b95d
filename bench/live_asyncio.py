"""Live benchmark of the asyncio front end: memory per connected client and time to connect N,
for `cometchat_fsm.asyncio.open_client`, the trio `open_client` and bare `websockets`, in one run.

The reference server runs in its own process (bench/live_server.py: users u0..u{N-1}, each
logged in once beforehand); each side runs in a fresh child process of its own, one after the
other, so that no side profits from memory another freed. Each side connects N clients (at most
200 attempts in flight, the garbage collector off while connecting, as in bench/live.py) and
reports the process's RSS growth per connected client and the wall time until all are
connected. A managed client restores a stored session (L2) and connects on its own (auto mode);
a bare client opens the socket, sends the auth frame and reads `auth_ok`.

Run `.venv/bin/python bench/live_asyncio.py` (10,000 clients; `--quick`: 500) or `make bench`.
Exit status: 0 the asyncio front end is within 1.5x bare websockets on both figures (or
`--quick`), 1 a target missed, 2 the run could not measure. 127.0.0.1 only; every wait bounded.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import ServerProcess, exit_status, verdict_table  # noqa: E402

TARGET = 1.5  # asyncio front end / bare websockets, per figure
FULL_N, QUICK_N = 10_000, 500
CONCURRENCY = 200
CONNECT_LIMIT = 120.0  # seconds for one side to connect all N
CHILD_LIMIT = 240.0
SIDES = ("bare websockets", "asyncio open_client", "trio open_client")


class Watch:
    """The app's connection listener, one per client (a class of the app, as in bench/live.py:
    not a class and an Event made per client, which the bare side does not pay either)."""

    __slots__ = ("release", "up")

    def __init__(self, up: Callable[[], None], release: Callable[[], None]) -> None:
        self.up = up
        self.release: Callable[[], None] | None = release

    def on_connected(self) -> None:
        release, self.release = self.release, None
        if release is not None:  # the first connection of this client: counted once
            self.up()
            release()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _tokens(cfg: dict[str, Any]) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(Path(cfg["tokens"]).read_text(encoding="utf-8"))
    return loaded


def _stored_sessions(cfg: dict[str, Any]) -> None:
    from cometchat_fsm.session.store import SessionStore, StoredSession

    store, tokens = SessionStore(cfg["store"]), _tokens(cfg)
    for i in range(cfg["n"] + cfg["warmup"]):
        store.save(f"bench-{i}", StoredSession(f"u{i}", tokens[f"u{i}"]))


async def asyncio_side(cfg: dict[str, Any]) -> dict[str, Any]:
    """bare websockets or cometchat_fsm.asyncio: N connected, then measured."""
    import asyncio

    from websockets.asyncio.client import connect

    from cometchat_fsm.asyncio import AppSettings, open_client

    n, bare = cfg["n"], cfg["role"] == SIDES[0]
    tokens, settings = _tokens(cfg), AppSettings("us")
    sem = asyncio.Semaphore(CONCURRENCY)
    held: list[Any] = []

    async def one(i: int, up: Callable[[], None], stop: asyncio.Event) -> None:
        await sem.acquire()  # released once connected: at most CONCURRENCY attempts in flight
        released = False
        watch: Watch | None = None
        try:
            if bare:
                async with connect(cfg["url"] + "/v1/socket", ping_interval=None, compression=None,
                                   proxy=None, max_size=65_536) as ws:
                    await ws.send(json.dumps({"type": "auth", "uid": f"u{i}", "auth_token": tokens[f"u{i}"],
                                              "last_id": None}))
                    if json.loads(await ws.recv())["type"] != "auth_ok":
                        raise RuntimeError("auth refused")
                    up()
                    sem.release()
                    released = True
                    await stop.wait()
                return
            watch = Watch(up, sem.release)
            async with open_client(f"bench-{i}", settings, url=cfg["url"], store=cfg["store"],
                                   listeners={"bench": watch}) as c:
                held.append(c)
                await stop.wait()  # the app holds its client, as the bare side holds its socket
        finally:
            if not released and (watch is None or watch.release is not None):
                sem.release()

    async def run(count: int, first: int) -> tuple[float, int]:
        stop, done, count_up = asyncio.Event(), asyncio.Event(), [0]

        def up() -> None:
            count_up[0] += 1
            if count_up[0] == count:
                done.set()
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(one(first + i, up, stop)) for i in range(count)]
        try:
            async with asyncio.timeout(CONNECT_LIMIT):
                await done.wait()
        except TimeoutError:
            pass
        took = time.perf_counter() - t0
        cfg["_rss_connected"] = rss_bytes()
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return took, count_up[0]

    await run(cfg["warmup"], n)  # warm-up: imports and first-use caches are not per client
    held.clear()
    gc.collect()
    rss0 = rss_bytes()
    gc.disable()
    took, connected = await run(n, 0)
    gc.enable()
    return {"connect_s": took, "connected": connected, "rss_per_client": (cfg["_rss_connected"] - rss0) / n}


async def trio_side(cfg: dict[str, Any]) -> dict[str, Any]:
    """The trio front end, measured the same way."""
    import trio

    from cometchat_fsm import AppSettings
    from cometchat_fsm.trio.client import open_client

    n, settings = cfg["n"], AppSettings("us")
    result: dict[str, Any] = {}

    async def run(count: int, first: int) -> tuple[float, int]:
        sem, done, count_up = trio.Semaphore(CONCURRENCY), trio.Event(), [0]

        def up() -> None:
            count_up[0] += 1
            if count_up[0] == count:
                done.set()

        async def one(i: int) -> None:
            await sem.acquire()
            watch = Watch(up, sem.release)
            try:
                async with open_client(f"bench-{i}", settings, url=cfg["url"], store=cfg["store"],
                                       listeners={"bench": watch}):
                    await trio.sleep_forever()
            finally:
                if watch.release is not None:
                    sem.release()

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, first + i)
            with trio.move_on_after(CONNECT_LIMIT):
                await done.wait()
            took = time.perf_counter() - t0
            result["_rss_connected"] = rss_bytes()
            nursery.cancel_scope.cancel()
        return took, count_up[0]

    await run(cfg["warmup"], n)
    gc.collect()
    rss0 = rss_bytes()
    gc.disable()
    took, connected = await run(n, 0)
    gc.enable()
    per_client = (result["_rss_connected"] - rss0) / n
    return {"connect_s": took, "connected": connected, "rss_per_client": per_client}


def run_child(cfg: dict[str, Any]) -> None:
    _stored_sessions(cfg)
    try:
        if cfg["role"] == SIDES[2]:
            import trio
            out = trio.run(trio_side, cfg)
        else:
            import asyncio
            out = asyncio.run(asyncio_side(cfg))
    except BaseException as exc:  # the parent reports it
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(out), flush=True)


def run_side(cfg: dict[str, Any]) -> dict[str, Any]:
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)],
                              stdout=subprocess.PIPE, text=True, timeout=CHILD_LIMIT, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {CHILD_LIMIT:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    return {"error": f"no result (exit {done.returncode})"}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_N} clients; figures only, never fails")
    ap.add_argument("--n", type=int, default=None, help=f"clients per side (default {FULL_N})")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return 0
    n = args.n or (QUICK_N if args.quick else FULL_N)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < n + 1_000:
        n = max(100, (hard - 1_000) // 100 * 100)
        print(f"N scaled down to {n} (descriptor hard limit {hard})")
    print(f"asyncio front end bench: Python {platform.python_version()}, websockets {version('websockets')}, "
          f"trio {version('trio')}, N = {n}, 127.0.0.1 only", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="cometchat-asyncio-bench-"))
    server: ServerProcess | None = None
    results: dict[str, dict[str, Any]] = {}
    try:
        warmup = 20
        tokens = str(tmp / "tokens.json")
        server = ServerProcess("live_server.py", "--users", str(n + warmup), "--tokens", tokens,
                               "--lifetime", "900")
        info = server.wait_ready(120.0)
        for role in SIDES:
            cfg = {"role": role, "n": n, "warmup": warmup, "url": info["url"], "tokens": tokens,
                   "store": str(tmp / f"sessions-{role.split()[0]}")}
            results[role] = run_side(cfg)
            time.sleep(2.0)  # the server notices the closed connections before the next side
    except RuntimeError as exc:
        print(f"could not measure: {exc}")
        return 2
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| side | connected | time to connect all | memory per client (RSS) |\n|---|---|---|---|")
    for role in SIDES:
        r = results[role]
        if "error" in r:
            print(f"| {role} | error: {r['error']} | | |")
            continue
        kib = r["rss_per_client"] / 1024
        print(f"| {role} | {r['connected']} | {r['connect_s']:.2f} s | {kib:.1f} KiB |")
    if any("error" in r or r["connected"] < n for r in results.values()):
        return 2
    bare, aio, tri = (results[s] for s in SIDES)
    memory, speed = aio["rss_per_client"] / bare["rss_per_client"], aio["connect_s"] / bare["connect_s"]
    rows = [
        ("asyncio memory / bare websockets", f"<= {TARGET}x", f"{memory:.2f}x", memory <= TARGET),
        ("asyncio connect time / bare websockets", f"<= {TARGET}x", f"{speed:.2f}x", speed <= TARGET),
        ("asyncio / trio front end, memory", "(figure)",
         f"{aio['rss_per_client'] / tri['rss_per_client']:.2f}x", True),
        ("asyncio / trio front end, connect time", "(figure)",
         f"{aio['connect_s'] / tri['connect_s']:.2f}x", True),
    ]
    missed = verdict_table(rows)
    return 0 if args.quick else exit_status(missed)


if __name__ == "__main__":
    sys.exit(main())
