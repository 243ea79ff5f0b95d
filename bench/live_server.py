"""The reference server for bench/live.py, in a process of its own, with a control endpoint.

Started by bench/live.py (not meant to be run by hand). It:

1. serves `cometchat_fsm.server.reference.serve_reference` on 127.0.0.1 (a free port) with the users
   `u0` .. `u{N-1}` and the given auth key;
2. logs every user in once through the real login endpoint (`/v1/login`, over loopback, a few
   at a time) and writes the tokens to `--tokens` as JSON `{uid: token}`, so that the bench's
   clients only open realtime sockets;
3. serves a control WebSocket on another loopback port: JSON commands, one answer each;
4. prints one line `READY {"url": ..., "control": ...}` on stdout, then runs until killed (or
   until the control command `quit`, or `--lifetime` seconds, whichever comes first).

Control commands (`{"cmd": ...}`):
- `restart`: starts `ReferenceServer.restart()` (every connection closed with 1001, users and
  tokens kept) and answers at once with `{"at": t}`, t on the system's monotonic clock
  (`time.monotonic()`, CLOCK_MONOTONIC, the same clock in every process of the machine).
- `accepts` with `since`: the monotonic times of the TCP connections the server was handed
  since then (each recorded when `serve_stream` is entered, before the WebSocket handshake).
- `stats`: open realtime sockets, connections being served, `ServerStats` counters, RSS and
  open descriptors of this process.
- `gc`: this process's garbage-collector pauses since the last `restart`.
- `quit`: stop serving.

Accept times are recorded by wrapping `ReferenceServer.serve_stream` in this process only (the
package is not changed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
import trio_websocket
from common import serve_control

from cometchat_fsm.server.reference import LOGIN_PATH, ReferenceServer, serve_reference

ACCEPTS: list[float] = []
ACTIVE = [0]  # connections being served now (handshake, auth, or open)
_serve_stream = ReferenceServer.serve_stream


async def _recording_serve_stream(self: ReferenceServer, stream: trio.abc.Stream) -> None:
    ACCEPTS.append(time.monotonic())
    ACTIVE[0] += 1
    try:
        await _serve_stream(self, stream)
    finally:
        ACTIVE[0] -= 1


ReferenceServer.serve_stream = _recording_serve_stream  # type: ignore[method-assign]


class _GcPauses:
    """Pauses of this process's cyclic garbage collector since `reset()`."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t0))

    def reset(self) -> None:
        self.pauses = []

    def figures(self) -> dict[str, float]:
        return {"count": len(self.pauses), "total": sum(d for _, d in self.pauses),
                "full": sum(1 for g, _ in self.pauses if g == 2),
                "longest": max((d for _, d in self.pauses), default=0.0)}


GC = _GcPauses()


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def login_all(url: str, uids: list[str], auth_key: str, concurrency: int) -> dict[str, str]:
    """Log every uid in through the real login endpoint; return {uid: token}."""
    tokens: dict[str, str] = {}
    todo = iter(uids)

    async def worker() -> None:
        for uid in todo:
            for attempt in range(5):  # bounded: a login refused by a busy loopback is retried
                try:
                    with trio.fail_after(10):
                        async with trio_websocket.open_websocket_url(url + LOGIN_PATH) as ws:
                            await ws.send_message(json.dumps({"type": "login", "uid": uid,
                                                              "auth_key": auth_key}))
                            answer = json.loads(await ws.get_message())
                    break
                except (OSError, trio.TooSlowError, trio_websocket.HandshakeError,
                        trio_websocket.ConnectionClosed):
                    if attempt == 4:
                        raise
                    await trio.sleep(0.1)
            if answer.get("type") != "login_ok":
                raise SystemExit(f"live_server: login of {uid} refused: {answer}")
            tokens[uid] = answer["auth_token"]

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return tokens


def control_handler(server: ReferenceServer, nursery: trio.Nursery,
                    stop: trio.Event) -> Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]:
    async def handle(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                command = json.loads(await ws.get_message())
                cmd = command.get("cmd")
                answer: dict[str, Any]
                if cmd == "restart":
                    GC.reset()
                    at = time.monotonic()
                    nursery.start_soon(server.restart)
                    answer = {"at": at}
                elif cmd == "gc":
                    answer = GC.figures()
                elif cmd == "accepts":
                    since = float(command.get("since", 0.0))
                    answer = {"times": [t for t in ACCEPTS if t >= since]}
                elif cmd == "stats":
                    s = server.stats
                    answer = {"open_sockets": server.open_sockets(), "accepted": s.connections_accepted,
                              "auths_ok": s.auths_ok, "restarts": s.restarts, "tcp_accepts": len(ACCEPTS),
                              "messages_relayed": s.messages_relayed,
                              "messages_replayed": s.messages_replayed, "gaps": s.gaps,
                              "active": ACTIVE[0],
                              "rss_mib": _rss_mib(), "fds": len(os.listdir("/proc/self/fd"))}
                elif cmd == "quit":
                    stop.set()
                    answer = {"ok": True}
                else:
                    answer = {"error": f"unknown command {cmd!r}"}
                await ws.send_message(json.dumps(answer))
        except trio_websocket.ConnectionClosed:
            pass

    return handle


async def main(args: argparse.Namespace) -> None:
    uids = [f"u{i}" for i in range(args.users)]
    stop = trio.Event()
    with trio.move_on_after(args.lifetime):  # never outlives the bench, even if left behind
        async with serve_reference("127.0.0.1", 0, auth_key=args.auth_key, users=uids) as server, \
                trio.open_nursery() as nursery:
            t0 = time.perf_counter()
            tokens = await login_all(server.url, uids, server.auth_key, args.login_concurrency)
            login_s = time.perf_counter() - t0
            Path(args.tokens).write_text(json.dumps(tokens), encoding="utf-8")
            await serve_control(nursery, control_handler(server, nursery, stop), server.url,
                                login_s=login_s, users=len(uids))
            await stop.wait()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--auth-key", required=True)
    ap.add_argument("--tokens", required=True, help="file to write {uid: token} to")
    ap.add_argument("--login-concurrency", type=int, default=64)
    ap.add_argument("--lifetime", type=float, default=900.0, help="stop after this many seconds at most")
    trio.run(main, ap.parse_args())
