"""Live benchmark: managed clients against bare trio-websocket, over loopback, in one run.

Checks the live targets of the issue, side by side, the reference server in its own process:

1. N managed clients (`open_client`; 10,000 in a full run, fewer if the descriptor hard limit is
   below 2N + 1,000, and the output says so) connected to one server: memory per
   client at most 1.5x a bare `trio_websocket` connection doing the same auth exchange, and
   the time to connect them all at most 1.5x bare;
2. after a server restart (every connection closed with 1001) all N reconnect, and at most 15%
   of the reconnection attempts fall in the busiest 100 ms window; printed beside the same
   figure for the CometChat SDKs' fixed policy (every client retries exactly 5 s after the
   loss), simulated with bare trio-websocket clients;
3. median time from `network_restored()` to connected under 10 ms.

Run `make bench` (after bench/run.py) or `.venv/bin/python bench/live.py`; `--quick` (500
clients) prints the same figures and never fails on a target. Exit status: 0 all targets met,
1 a target missed (full run only), 2 the run could not measure (the server did not start, a
side did not connect all its clients, a child process failed). Traffic is on 127.0.0.1 only;
every wait is bounded; the server process is killed at the end whatever happens.

Processes: this one (the parent) starts bench/live_server.py, then runs the bare side and the
managed side one after the other, each in a fresh child process (`--child`), so that neither
side's memory figure profits from memory the other side freed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import ServerProcess, exit_status, verdict_table  # noqa: E402

MEMORY_TARGET = 1.5  # managed / bare, per connected client (RSS)
CONNECT_TARGET = 1.5  # managed / bare, time to connect all N
BUSIEST_TARGET = 0.15  # fraction of reconnection attempts in the busiest 100 ms window
WINDOW = 0.1  # seconds
RESTORE_TARGET_MS = 10.0  # median, network_restored() -> connected

FULL_N, QUICK_N = 10_000, 500
CONCURRENCY = 200  # connection attempts in flight at once while connecting all N (both sides)
FD_MARGIN = 1_000  # descriptors beyond the sockets that one process may need (control, files, pipes)
GUARD_HEADROOM = 6_000  # a guard collection starts this far below the limit (see FdGuard)
SOCKET_PATH = "/v1/socket"
SERVER_READY_LIMIT = 120.0  # server start + one login per user
CHILD_LIMIT = 270.0  # one side, everything included
CONTROL_LIMIT = 30.0  # one command to the server's control socket
SERVER_MAX_LIFETIME = 900.0  # the server stops by itself even if this process died


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def busiest_window(times: Sequence[float], width: float = WINDOW) -> tuple[int, float]:
    """The largest number of `times` in any half-open window [t, t + width), and its start."""
    ts = sorted(times)
    best, start, j = 0, ts[0] if ts else 0.0, 0
    for i, t in enumerate(ts):
        while t - ts[j] >= width:
            j += 1
        if i - j + 1 > best:
            best, start = i - j + 1, ts[j]
    return best, start


def spread_figures(times: Sequence[float], origin: float) -> dict[str, float]:
    n = len(times)
    if not n:
        return {"count": 0, "busiest": 0, "fraction": math.nan, "at": math.nan,
                "first": math.nan, "last": math.nan}
    best, at = busiest_window(times)
    return {"count": n, "busiest": best, "fraction": best / n, "at": at - origin,
            "first": min(times) - origin, "last": max(times) - origin}


# =================================================================================================
# Child side (one process per side): connect N, measure, restart storm, restore latency, close.
# =================================================================================================

class Side:
    """What both sides record, the same way: first connections, losses, attempts, reconnections."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.connected = 0
        self.all_connected: Any = None  # trio.Event, made inside trio.run
        self.storm = False
        self.lost_at: list[float | None] = [None] * n
        self.offset: list[float | None] = [None] * n  # first attempt after the loss, minus the loss
        self.back = [False] * n
        self.reconnected = 0
        self.all_back: Any = None
        self.attempts: list[float] = []  # socket opens started (client side), monotonic clock
        self.failures: dict[str, int] = {}

    def attempt(self, i: int) -> None:
        now = time.monotonic()
        self.attempts.append(now)
        if self.storm:
            lost = self.lost_at[i]
            if lost is not None and self.offset[i] is None:
                self.offset[i] = now - lost

    def up(self, i: int, release: Callable[[], None] | None) -> None:
        if release is not None:  # the client's first connection
            release()
            self.connected += 1
            if self.connected == self.n:
                self.all_connected.set()
        elif self.storm and self.lost_at[i] is not None and not self.back[i]:
            self.back[i] = True
            self.reconnected += 1
            if self.reconnected == self.n:
                self.all_back.set()

    def down(self, i: int) -> None:
        if self.storm and self.lost_at[i] is None:
            self.lost_at[i] = time.monotonic()

    def failed(self, exc: BaseException) -> None:
        errno = _first_errno(exc)
        name = f"{type(exc).__name__}{f' ({os.strerror(errno)})' if errno else ''}"
        self.failures[name] = self.failures.get(name, 0) + 1


def _first_errno(exc: BaseException | None, depth: int = 0) -> int | None:
    """The errno of the first OSError in `exc`, its causes and its groups' leaves."""
    if exc is None or depth > 5:
        return None
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    if isinstance(exc, BaseExceptionGroup):
        for leaf in exc.exceptions:
            found = _first_errno(leaf, depth + 1)
            if found:
                return found
    return _first_errno(exc.__cause__ or exc.__context__, depth + 1)


def progress(role: str, what: str) -> None:
    """A line on stderr while a side runs (the parent prints the figures at the end)."""
    print(f"    {role}: {what}", file=sys.stderr, flush=True)


class FdGuard:
    """While `run` runs: the most descriptors this process held (sampled every 0.1 s), and a
    full collection whenever it holds more than `limit` (with the collector off, a socket left
    in a reference cycle stays open until a collection)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.peak = 0
        self.collections = 0

    async def run(self) -> None:
        import trio

        while True:
            try:
                count = open_fds()
            except OSError:  # EMFILE: listing needs a descriptor itself
                count = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self.peak = max(self.peak, count)
            if count > self.limit:
                gc.collect()
                self.collections += 1
            await trio.sleep(0.1)


class GcWatch:
    """Pauses of the cyclic garbage collector from now on: count, total and longest."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t0))

    def figures(self) -> dict[str, float]:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        return {"count": len(self.pauses), "total": sum(d for _, d in self.pauses),
                "full": sum(1 for g, _ in self.pauses if g == 2),
                "longest": max((d for _, d in self.pauses), default=0.0)}


class Control:
    """The control WebSocket of bench/live_server.py: one JSON command, one JSON answer."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def call(self, **command: Any) -> dict[str, Any]:
        """Bounded (CONTROL_LIMIT s): a server too busy to answer stops the side with its name."""
        import trio

        try:
            with trio.fail_after(CONTROL_LIMIT):
                await self.ws.send_message(json.dumps(command))
                answer: dict[str, Any] = json.loads(await self.ws.get_message())
        except trio.TooSlowError:
            raise RuntimeError(f"the server did not answer {command.get('cmd')!r} within "
                               f"{CONTROL_LIMIT:.0f} s") from None
        return answer


def bare_side(cfg: dict[str, Any], tokens: dict[str, str], side: Side) -> Callable[..., Any]:
    """A bare trio-websocket client: open the socket, send the auth frame, read `auth_ok`, hold
    the connection (reading, so that a close is noticed); after a loss, sleep exactly 5 s and
    reconnect (the CometChat SDKs' fixed policy), again every 5 s while attempts fail."""
    import trio
    import trio_websocket

    url = cfg["url"] + SOCKET_PATH

    async def client(i: int, sem: trio.Semaphore) -> None:
        uid = f"u{i}"
        await sem.acquire()
        release: Callable[[], None] | None = sem.release
        try:
            while True:
                side.attempt(i)
                try:
                    async with trio_websocket.open_websocket_url(
                            url, connect_timeout=10.0, disconnect_timeout=2.0,
                            max_message_size=65_536) as ws:
                        await ws.send_message(json.dumps(
                            {"type": "auth", "uid": uid, "auth_token": tokens[uid], "last_id": None}))
                        answer = json.loads(await ws.get_message())
                        if answer.get("type") != "auth_ok":
                            raise RuntimeError(f"auth refused: {answer}")
                        side.up(i, release)
                        release = None
                        while True:
                            json.loads(await ws.get_message())
                except (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
                        trio.BrokenResourceError, trio.TooSlowError) as exc:
                    if not isinstance(exc, trio_websocket.ConnectionClosed):
                        side.failed(exc)
                side.down(i)
                await trio.sleep(5.0)
        finally:
            if release is not None:
                release()

    return client


class _Recording:
    """A connector that notes each socket attempt as it starts, then dials as `inner` does."""

    __slots__ = ("i", "inner", "side")

    def __init__(self, side: Side, i: int,
                 inner: Callable[[str], AbstractAsyncContextManager[Any]]) -> None:
        self.side, self.i, self.inner = side, i, inner

    def __call__(self, resource: str) -> AbstractAsyncContextManager[Any]:
        if resource != SOCKET_PATH:
            return self.inner(resource)
        self.side.attempt(self.i)
        return _Attempt(self.side, self.inner(resource))


class _Attempt:
    """An opening socket: notes why it failed, if it does (the client's attempt timer cancels
    an attempt rather than failing it, so those are not counted here)."""

    __slots__ = ("cm", "side")

    def __init__(self, side: Side, cm: AbstractAsyncContextManager[Any]) -> None:
        self.side, self.cm = side, cm

    async def __aenter__(self) -> Any:
        try:
            return await self.cm.__aenter__()
        except Exception as exc:
            self.side.failed(exc)
            raise

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self.cm.__aexit__(*exc)


def trio_websocket_connector(url: str, connect_timeout: float) -> Callable[[str], Any]:
    """For context only: a connector on trio-websocket's own `open_websocket_url`."""
    import trio_websocket

    base = url.rstrip("/")

    def connect(resource: str) -> AbstractAsyncContextManager[Any]:
        return trio_websocket.open_websocket_url(base + resource, connect_timeout=connect_timeout,
                                                 disconnect_timeout=2.0, max_message_size=65_536)
    return connect


def managed_side(cfg: dict[str, Any], side: Side, clients: dict[int, Any], watches: dict[int, Any],
                 dial: str = "default") -> Callable[..., Any]:
    """A managed client: `open_client` with a stored session (L2), so that it connects on its
    own (auto mode): reads its session file, opens the socket, sends the auth frame, reads
    `auth_ok`, keeps the socket (keep-alive every 15 s), reconnects with the core's backoff.
    The connector is the default one (`url_connector`), wrapped to note attempts."""
    import trio

    from cometchat_fsm.core.settings import AppSettings
    from cometchat_fsm.trio.client import open_client, url_connector

    settings = AppSettings("us")
    url, store = cfg["url"], cfg["store"]

    class Watch:
        """The app's connection listener."""

        __slots__ = ("connected_event", "i", "release")

        def __init__(self, i: int, release: Callable[[], None]) -> None:
            self.i = i
            self.release: Callable[[], None] | None = release
            self.connected_event: trio.Event | None = None

        def on_connected(self) -> None:
            release, self.release = self.release, None
            side.up(self.i, release)
            if self.connected_event is not None:
                self.connected_event.set()

        def on_disconnected(self) -> None:
            side.down(self.i)

    async def client(i: int, sem: trio.Semaphore) -> None:
        await sem.acquire()
        watch = Watch(i, sem.release)
        try:
            inner = (url_connector(url, connect_timeout=settings.connect_timeout) if dial == "default"
                     else trio_websocket_connector(url, settings.connect_timeout))
            async with open_client(f"bench-{i}", settings, url=url, store=store,
                                   connector=_Recording(side, i, inner), listeners={"bench": watch}) as c:
                clients[i] = c
                watches[i] = watch
                await trio.sleep_forever()  # the app holds its client
        finally:
            if watch.release is not None:
                watch.release()

    return client


async def connect_all(client: Callable[..., Any], n: int, side: Side, nursery: Any, limit: float,
                      concurrency: int) -> float:
    """Start n clients (at most `concurrency` attempts in flight); time until all are connected."""
    import trio

    sem = trio.Semaphore(concurrency)
    side.all_connected = trio.Event()
    t0 = time.perf_counter()
    for i in range(n):
        nursery.start_soon(client, i, sem)
    with trio.move_on_after(limit):
        await side.all_connected.wait()
    return time.perf_counter() - t0


async def traced_per_client(make: Callable[[Side], Callable[..., Any]], n: int,
                            cfg: dict[str, Any]) -> tuple[float, int]:
    """tracemalloc: Python allocations per connected client (traced after minus before)."""
    import trio

    side = Side(n)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        async with trio.open_nursery() as nursery:
            await connect_all(make(side), n, side, nursery, cfg["connect_limit"], cfg["concurrency"])
            gc.collect()
            per = (tracemalloc.get_traced_memory()[0] - before) / n
            nursery.cancel_scope.cancel()
    finally:
        tracemalloc.stop()
    return per, side.connected


async def wait_server_idle(control: Control, limit: float) -> int:
    """Until the server serves no connection at all, not even a handshake left over from the
    side before (bounded); return how many it still serves."""
    import trio

    with trio.move_on_after(limit):
        while (await control.call(cmd="stats"))["active"]:
            await trio.sleep(0.2)
    return int((await control.call(cmd="stats"))["active"])


async def wait_server_settled(control: Control, limit: float) -> float:
    """Until the server serves nothing but its open realtime sockets (no handshake left over
    from the storm), bounded; return how long that took."""
    import trio

    t0 = time.monotonic()
    with trio.move_on_after(limit):
        while True:
            stats = await control.call(cmd="stats")
            if stats["active"] <= stats["open_sockets"]:
                break
            await trio.sleep(0.2)
    return time.monotonic() - t0


async def child_main(cfg: dict[str, Any]) -> dict[str, Any]:
    import trio
    import trio_websocket

    role, n = cfg["role"], cfg["n"]
    tokens: dict[str, str] = json.loads(Path(cfg["tokens"]).read_text(encoding="utf-8"))
    out: dict[str, Any] = {"role": role, "n": n}
    clients: dict[int, Any] = {}
    watches: dict[int, Any] = {}

    def make(side: Side, dial: str = "default") -> Callable[..., Any]:
        if role == "bare":
            return bare_side(cfg, tokens, side)
        return managed_side(cfg, side, clients, watches, dial)

    if role == "managed":  # the stored sessions the clients restore (setup, not timed)
        from cometchat_fsm.session.store import SessionStore, StoredSession
        store = SessionStore(cfg["store"])
        for i in range(max(n, cfg["warmup"], cfg["tm_n"])):
            store.save(f"bench-{i}", StoredSession(f"u{i}", tokens[f"u{i}"]))

    async with trio_websocket.open_websocket_url(cfg["control"], max_message_size=64 << 20) as cws:
        control = Control(cws)
        out["server_busy_before"] = await wait_server_idle(control, 60.0)
        progress(role, "started")

        # Warm-up: a few clients connected and closed, so that lazy imports and first-use
        # caches are not counted as per-client memory.
        warm = Side(cfg["warmup"])
        async with trio.open_nursery() as nursery:
            await connect_all(make(warm), warm.n, warm, nursery, 30.0, cfg["concurrency"])
            nursery.cancel_scope.cancel()
        clients.clear()
        watches.clear()

        # 1. Connect all N: time, and the client process's RSS before and after. One process
        # holds all N clients, so each full collection scans every client connected so far and
        # stalls all connections in flight, a cost no real client (alone in its process) pays:
        # the collector is off while connecting, on both sides (step 4 times it on as well).
        side = Side(n)
        gc.collect()
        rss0 = rss_bytes()
        cpu0 = time.process_time()
        gc.disable()
        async with trio.open_nursery() as nursery:
            out["connect_s"] = await connect_all(make(side), n, side, nursery, cfg["connect_limit"],
                                                 cfg["concurrency"])
            out["connect_cpu"] = time.process_time() - cpu0
            gc.enable()
            out["connected"] = side.connected
            gc.collect()
            out["rss_per_client"] = (rss_bytes() - rss0) / n
            out["rss_mib"] = rss_bytes() / 2**20
            out["fds"] = open_fds()
            if side.connected < n:
                out["error"] = f"only {side.connected} of {n} connected within {cfg['connect_limit']:.0f} s"
                nursery.cancel_scope.cancel()
                return out

            progress(role, f"{side.connected} connected in {out['connect_s']:.1f} s")
            # 2. Server restart: every connection closed with 1001; wait until all are back.
            # One process holds all N clients, so a full collection scans every client's objects
            # (seconds) and stalls all of them at once, which no real client (alone in its
            # process) suffers: the collector is off for the storm, on both sides alike. Sockets
            # left in reference cycles then stay open, so a guard collects whenever the process
            # nears its descriptor limit (counted and reported). The server is left alone.
            gc.collect()
            gc.disable()
            gcw = GcWatch()
            fds = FdGuard(cfg["fd_limit"] - GUARD_HEADROOM)
            side.storm = True
            side.all_back = trio.Event()
            cpu0 = time.process_time()
            restart = await control.call(cmd="restart")
            t_restart = restart["at"]
            limit = cfg["storm_limit"] if role == "managed" else cfg["baseline_limit"]
            with trio.move_on_after(limit):
                async with trio.open_nursery() as watching:
                    watching.start_soon(fds.run)
                    await side.all_back.wait()
                    watching.cancel_scope.cancel()
            out["back_s"] = time.monotonic() - t_restart
            out["storm_cpu"] = time.process_time() - cpu0
            out["storm_gc"] = gcw.figures()
            out["storm_fds"] = fds.peak
            out["guard_collections"] = fds.collections
            out["storm_limit"] = limit
            gc.enable()
            progress(role, f"{side.reconnected} back {out['back_s']:.1f} s after the restart")
            out["reconnected"] = side.reconnected
            attempts = [t for t in side.attempts if t >= t_restart]
            out["attempts"] = spread_figures(attempts, t_restart)
            offsets = [o for o in side.offset if o is not None]
            out["offsets"] = spread_figures(offsets, 0.0)
            out["offset_median"] = statistics.median(offsets) if offsets else math.nan
            losses = [t for t in side.lost_at if t is not None]
            out["losses"] = spread_figures(losses, t_restart)
            accepts = (await control.call(cmd="accepts", since=t_restart))["times"]
            out["accepts"] = spread_figures(accepts, t_restart)
            out["failures"] = side.failures
            stats = await control.call(cmd="stats")
            out["server"] = {"rss_mib": stats["rss_mib"], "fds": stats["fds"],
                             "gc": await control.call(cmd="gc")}

            # 3. network_restored() -> connected (managed only), the other clients idle; the
            # collector on again, the storm's garbage collected first and the server done with
            # the storm's leftover handshakes (not timed).
            gc.collect()
            if role == "managed":
                progress(role, "storm counted; waiting for the server to settle (at most 30 s)")
                out["server_settle_s"] = await wait_server_settled(control, 30.0)
                progress(role, f"server settled in {out['server_settle_s']:.1f} s; "
                               "measuring network_restored()")
            if role == "managed":
                picked = [k for k in range(n) if side.back[k]][:cfg["restore_clients"]]
                samples: list[float] = []
                ends = time.monotonic() + 40.0  # the whole test is bounded too
                for k in range(cfg["restore_samples"] if picked else 0):
                    if time.monotonic() > ends:
                        break
                    w = watches[picked[k % len(picked)]]
                    c = clients[w.i]
                    c.network_lost()
                    with trio.move_on_after(1.0):  # let the old socket go (bounded)
                        while c.open_sockets:
                            await trio.sleep(0.001)
                    await trio.sleep(0.005)
                    w.connected_event = trio.Event()
                    t0 = time.perf_counter()
                    c.network_restored()
                    with trio.move_on_after(5.0):
                        await w.connected_event.wait()
                    samples.append(time.perf_counter() - t0 if w.connected_event.is_set() else math.inf)
                    w.connected_event = None
                out["restore_ms"] = sorted(s * 1000 for s in samples)
                out["restore_clients"] = len(picked)
                progress(role, f"{len(samples)} network_restored() samples; closing the clients")
            nursery.cancel_scope.cancel()
        del side
        clients.clear()
        watches.clear()
        gc.collect()
        progress(role, "storm and restore measured")

        # 4. Connect all N again, the collector on as usual (context for step 1).
        await wait_server_idle(control, 30.0)
        again = Side(n)
        gcw = GcWatch()
        cpu0 = time.process_time()
        async with trio.open_nursery() as nursery:
            out["connect_gc_s"] = await connect_all(make(again), n, again, nursery, cfg["connect_limit"],
                                                    cfg["concurrency"])
            out["connect_gc_cpu"] = time.process_time() - cpu0
            out["connect_gc"] = gcw.figures()
            out["connected_gc"] = again.connected
            nursery.cancel_scope.cancel()
        del again
        clients.clear()
        watches.clear()
        gc.collect()
        progress(role, f"connected {n} again with the collector on in {out['connect_gc_s']:.1f} s")

        # 5. tracemalloc: Python allocations per connected client, on a smaller run.
        out["server_busy_before_tm"] = await wait_server_idle(control, 30.0)
        out["tm_per_client"], out["tm_connected"] = await traced_per_client(make, cfg["tm_n"], cfg)
        if role == "managed":  # context: the same client dialling with trio-websocket's own opener
            out["tm_tws_per_client"], _ = await traced_per_client(
                lambda s: make(s, "trio-websocket"), cfg["tm_n"], cfg)
            clients.clear()
            watches.clear()
    return out


def run_child(cfg: dict[str, Any]) -> None:
    import trio

    gc.collect()
    try:
        out = trio.run(child_main, cfg)
    except BaseException as exc:  # report it; the parent decides
        import traceback

        traceback.print_exc(file=sys.stderr)
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        out = {"role": cfg["role"], "error": f"{type(leaf).__name__}: {leaf}"}
    print("RESULT " + json.dumps(out), flush=True)


# =================================================================================================
# Parent side: limits, server process, the two children, the report.
# =================================================================================================

def raise_fd_limit(n: int) -> tuple[int, str]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = n + GUARD_HEADROOM + FD_MARGIN
    note = (f"descriptors: soft limit {soft} -> {hard} (the hard limit, inherited by the child "
            f"processes). A client process holds N sockets, plus during the restart storm the "
            f"sockets of abandoned attempts until a guard collection at limit - {GUARD_HEADROOM} "
            f"(see bench/README.md), so it needs N + {GUARD_HEADROOM} + {FD_MARGIN} = {need}")
    if hard != resource.RLIM_INFINITY and hard < need:
        scaled = max(100, (hard - GUARD_HEADROOM - FD_MARGIN) // 100 * 100)
        return scaled, f"{note}: N SCALED DOWN from {n} to {scaled}"
    return n, f"{note}: N = {n} kept"


def run_side(role: str, cfg: dict[str, Any], limit: float) -> dict[str, Any]:
    cfg = {**cfg, "role": role}
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)],
                              stdout=subprocess.PIPE, text=True, timeout=limit, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"role": role, "error": f"the {role} process did not finish within {limit:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    return {"role": role, "error": f"the {role} process gave no result (exit {done.returncode})"}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK_N} clients, fewer samples; figures only, never fails on a target")
    ap.add_argument("--n", type=int, default=None,
                    help=f"clients per side (default {FULL_N}; quick {QUICK_N})")
    ap.add_argument("--side", choices=("bare", "managed"), default=None,
                    help="run one side only: its figures, for a diagnosis (the verdicts need both: exit 2)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return 0

    from importlib.metadata import version

    quick = args.quick
    started = time.perf_counter()
    n, fd_note = raise_fd_limit(args.n or (QUICK_N if quick else FULL_N))
    print(f"cometchat-fsm live bench{' (quick)' if quick else ''}: Python {platform.python_version()}, "
          f"trio {version('trio')}, trio-websocket {version('trio-websocket')}, {os.cpu_count()} CPUs, "
          f"127.0.0.1 only")
    print(fd_note)

    shm = Path("/dev/shm")
    tmp = Path(tempfile.mkdtemp(prefix="cometchat-live-",
                                dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
    server: ServerProcess | None = None
    results: dict[str, dict[str, Any]] = {}
    cfg: dict[str, Any] = {}
    try:
        tokens = tmp / "tokens.json"
        server = ServerProcess("live_server.py", "--users", str(n), "--tokens", str(tokens),
                               "--lifetime", str(SERVER_MAX_LIFETIME))
        info = server.wait_ready(SERVER_READY_LIMIT)
        print(f"server: bench/live_server.py in its own process, {info['users']} users, each logged in "
              f"once through /v1/login beforehand ({info['login_s']:.1f} s, setup, not timed)", flush=True)
        cfg = {"url": info["url"], "control": info["control"], "tokens": str(tokens),
               "store": str(tmp / "sessions"), "n": n, "concurrency": CONCURRENCY,
               "warmup": 20 if quick else 50, "tm_n": 200 if quick else 1_000,
               "connect_limit": 60.0, "storm_limit": 90.0, "baseline_limit": 60.0,
               "restore_clients": 5, "restore_samples": 50 if quick else 200,
               "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
        for role in (args.side,) if args.side else ("bare", "managed"):
            t0 = time.perf_counter()
            results[role] = run_side(role, cfg, CHILD_LIMIT)
            print(f"  {role} side done ({time.perf_counter() - t0:.0f} s)", flush=True)
    except RuntimeError as exc:
        print(f"could not measure: {exc}")
        return 2
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report(results, n, quick, cfg, started)


def _get(r: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(r, dict) or k not in r:
            return math.nan
        r = r[k]
    return r


def _pct(x: float) -> str:
    return f"{x * 100:5.1f} %"


def report(results: dict[str, dict[str, Any]], n: int, quick: bool, cfg: dict[str, Any],
           started: float) -> int:
    for role in ("bare", "managed"):  # --side ran one: the other's figures are blank
        results.setdefault(role, {"role": role, "error": "not run (--side)"})
    bare, man = results["bare"], results["managed"]
    broken = [f"{r['role']}: {r['error']}" for r in results.values() if "error" in r]

    print(f"\nConnect all {n} (each side in a fresh process, after a warm-up of {cfg['warmup']} clients; "
          f"at most {cfg['concurrency']}\nattempts in flight on both sides):")
    print("  bare     trio_websocket.open_websocket_url(/v1/socket), auth frame, read auth_ok; a task"
          " holds the\n           socket, reading frames")
    print("  managed  open_client() with a stored session (auto mode): reads its session file, opens"
          " the socket\n           (url_connector), auth frame, auth_ok -> CONNECTED, keep-alive timer"
          " armed; listener\n           on_connected; a task holds the client")
    print(f"  {'':<8} {'GC off (the verdict)':<33} GC on, as usual (context)")
    for name, r in (("bare", bare), ("managed", man)):
        t_off, t_on = _get(r, "connect_s"), _get(r, "connect_gc_s")
        off = f"{t_off:6.2f} s ({_get(r, 'connected') / t_off:4.0f}/s, CPU {_get(r, 'connect_cpu'):4.1f} s)"
        on = (f"{t_on:6.2f} s ({_get(r, 'connected_gc') / t_on:4.0f}/s, "
              f"CPU {_get(r, 'connect_gc_cpu'):4.1f} s, of which GC {_get(r, 'connect_gc', 'total'):4.1f} s)")
        print(f"  {name:<8} {off:<33} {on}")
    t_ratio = _get(man, "connect_s") / _get(bare, "connect_s")
    t_gc_ratio = _get(man, "connect_gc_s") / _get(bare, "connect_gc_s")
    print(f"  managed / bare: {t_ratio:.2f}x with the collector off, {t_gc_ratio:.2f}x with it on")

    print("\nMemory per connected client (KiB):")
    print(f"  {'':<8} {'RSS delta':>10} {'tracemalloc':>12}   (RSS: client process, {n} clients, after "
          f"gc.collect();\n  {'':<33}tracemalloc: Python objects, {cfg['tm_n']} clients)")
    for name, r in (("bare", bare), ("managed", man)):
        print(f"  {name:<8} {_get(r, 'rss_per_client') / 1024:10.1f} {_get(r, 'tm_per_client') / 1024:12.1f}")
    m_ratio = _get(man, "rss_per_client") / _get(bare, "rss_per_client")
    tm_ratio = _get(man, "tm_per_client") / _get(bare, "tm_per_client")
    tws = _get(man, "tm_tws_per_client")
    print(f"  managed / bare: {m_ratio:.2f}x RSS (the verdict), {tm_ratio:.2f}x tracemalloc")
    print(f"  context: the managed client dialling with trio-websocket's open_websocket_url instead of "
          f"url_connector's\n  fail-fast opener (cometchat_fsm.trio.wsclient): {tws / 1024:.1f} KiB "
          f"tracemalloc, {tws / _get(bare, 'tm_per_client'):.2f}x bare")

    print(f"\nServer restart (ReferenceServer.restart(): 1001 to every connection), until all {n} are "
          f"connected again\n(bound: fixed 5 s {cfg['baseline_limit']:.0f} s, managed "
          f"{cfg['storm_limit']:.0f} s). Garbage collector off in the client processes for the storm,\n"
          "but for guard collections near the descriptor limit (see bench/README.md); on in the server.")
    print("  attempts: socket opens started, counted client side (bare: before open_websocket_url;"
          " managed: as the\n  client calls its connector); accepts: TCP connections handed to the"
          " server (server side); per loss:\n  each client's first attempt timed from its own loss"
          " (as if all had lost the connection at once)")
    rows = (("fixed 5 s", bare, "bare clients, each retrying exactly 5 s after its loss"),
            ("managed", man, "the core's backoff, first retry U[0, 1 s)"))
    for name, r, what in rows:
        a, acc, off, loss = (_get(r, "attempts"), _get(r, "accepts"), _get(r, "offsets"),
                             _get(r, "losses"))
        print(f"  {name} ({what}):")
        if not isinstance(a, dict) or not a["count"]:
            print("    no figures")
            continue
        print(f"    busiest 100 ms: attempts {a['busiest']:>5} of {a['count']:>6} = {_pct(a['fraction'])} "
              f"(at +{a['at']:.2f} s); accepts {acc['busiest']:>4} of {acc['count']:>6} = "
              f"{_pct(acc['fraction'])}; per loss {_pct(off['fraction'])} (median delay "
              f"{_get(r, 'offset_median'):.2f} s)")
        print(f"    losses noticed +{loss['first']:.2f} .. +{loss['last']:.2f} s, attempts +{a['first']:.2f}"
              f" .. +{a['last']:.2f} s; {_get(r, 'reconnected')} of {n} back after {_get(r, 'back_s'):.1f} s")
        cg, sg = _get(r, "storm_gc"), _get(r, "server", "gc")
        print(f"    client CPU {_get(r, 'storm_cpu'):.1f} s; descriptors at most {_get(r, 'storm_fds')}, "
              f"guard collections {_get(r, 'guard_collections')} ({_get(cg, 'total'):.1f} s); server GC "
              f"{_get(sg, 'total'):.1f} s (longest pause {_get(sg, 'longest') * 1000:.0f} ms)")
        if _get(r, "failures"):
            failures = ", ".join(f"{k} {v}" for k, v in r["failures"].items())
            print(f"    failed attempts: {failures}")
    storm = _get(man, "attempts", "fraction")
    storm_rel = _get(man, "offsets", "fraction")
    base_storm, base_rel = _get(bare, "attempts", "fraction"), _get(bare, "offsets", "fraction")
    print(f"  managed / fixed 5 s, busiest window: attempts {storm / base_storm:.2f}x, "
          f"per loss {storm_rel / base_rel:.2f}x")

    restore = _get(man, "restore_ms")
    med = math.nan
    if isinstance(restore, list) and restore:
        med = statistics.median(restore)
        p90 = restore[int(0.9 * (len(restore) - 1))]
        picked = _get(man, "restore_clients")
        done = [x for x in restore if math.isfinite(x)]
        late = len(restore) - len(done)
        note = f"; {late} not connected within 5 s" if late else ""
        settle = _get(man, "server_settle_s")
        print(f"\nnetwork_restored() -> on_connected (after the server settled, {settle:.1f}"
              f" s): {len(restore)} samples over {picked} clients, the other {n - picked} connected and"
              f" idle: median "
              f"{med:.2f} ms, p90 {p90:.2f} ms, min {restore[0]:.2f}, "
              f"max {max(done, default=math.nan):.2f} ms{note}")
    print(f"\nProcesses: client RSS after connecting bare {_get(bare, 'rss_mib'):.0f} MiB, managed "
          f"{_get(man, 'rss_mib'):.0f} MiB; server after the storms {_get(man, 'server', 'rss_mib'):.0f} "
          f"MiB; descriptors open after connecting: bare {_get(bare, 'fds')}, managed {_get(man, 'fds')}, "
          f"server {_get(man, 'server', 'fds')}")

    back = _get(man, "reconnected")
    table = [
        (f"memory per client, managed / bare ({n})", f"<= {MEMORY_TARGET:.1f}x", f"{m_ratio:.2f}x",
         m_ratio <= MEMORY_TARGET),
        (f"time to connect {n}, managed / bare", f"<= {CONNECT_TARGET:.1f}x",
         f"{t_ratio:.2f}x (GC on: {t_gc_ratio:.2f}x)", t_ratio <= CONNECT_TARGET),
        (f"all {n} reconnect after a restart (managed)", f"within {cfg.get('storm_limit', 0):.0f} s",
         f"{back} in {_get(man, 'back_s'):.1f} s", back == n),
        ("reconnection attempts in the busiest 100 ms", f"<= {BUSIEST_TARGET:.0%}",
         f"{storm:.1%} (fixed 5 s: {base_storm:.1%}); per loss {storm_rel:.1%} (fixed 5 s: "
         f"{base_rel:.1%})", storm <= BUSIEST_TARGET),
        ("network_restored() -> connected, median", f"< {RESTORE_TARGET_MS:.0f} ms", f"{med:.2f} ms",
         med < RESTORE_TARGET_MS),
    ]
    missed = [name.strip() for name in verdict_table(table)]
    print(f"({time.perf_counter() - started:.1f} s)")
    if broken:
        print("could not measure: " + "; ".join(broken))
        return 2
    if quick:
        print("(quick run: figures only, no verdict on the exit status)")
        return 0
    return exit_status(missed)


if __name__ == "__main__":
    sys.exit(main())
