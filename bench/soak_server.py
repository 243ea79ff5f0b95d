"""The reference server for bench/soak.py, in a process of its own, with a control endpoint.

Started by bench/soak.py (not meant to be run by hand). It serves
`cometchat_fsm.server.reference.serve_reference` on 127.0.0.1 (a free port) with the users `u0` ..
`u{N-1}` (and `v0` .. `v{N-1}`, whom the apps switch to: D19), the given auth key, its SQLite
history in the given file and a replay window far larger than the run (so that no reconnect
should ever be told of a gap); then it serves a control WebSocket on another loopback port
(JSON commands, one answer each, see `ServerOps`), prints one line
`READY {"url": ..., "control": ...}` and runs until the control command `quit` or `--lifetime`
seconds, whichever comes first.

`ServerOps` is also what tests/test_soak.py drives in-process (the same commands on a server
in virtual time), so both runs fault and count the server the same way.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
import trio_websocket
from common import serve_control

from cometchat_fsm.server.history import Retention
from cometchat_fsm.server.reference import ReferenceServer, serve_reference

#: Far beyond any soak run: every reconnect's replay covers all it missed (no gap expected).
SOAK_RETENTION = Retention(replay_seconds=86_400.0, replay_messages=1_000_000,
                           keep_seconds=7 * 86_400.0, keep_messages=1_000_000)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class ServerOps:
    """The soak's faults and counters on one `ReferenceServer`: `await call({"cmd": ...})`.

    Commands: `drop` (uid), `silence` (uid, flag), `throttle` (uid, flag), `overload`
    (retry_after: seconds or null), `restart` (started, answered at once), `lift` (every fault
    this object set is undone: overload off, silenced sockets cut, throttles lifted), `stats`
    (gc: collect first). Connections are counted from the moment the server is handed a stream
    (before the WebSocket handshake) until `serve_stream` returns, by wrapping this server's
    `serve_stream` (this instance only; the package is not changed).
    """

    def __init__(self, server: ReferenceServer, nursery: trio.Nursery) -> None:
        self.server = server
        self.nursery = nursery
        self.active = 0  # connections being served now (handshake, auth, open or closing)
        self.served = 0  # connections handed to the server so far
        self.silenced: set[str] = set()
        self.throttled: set[str] = set()
        serve = server.serve_stream

        async def counted(stream: trio.abc.Stream) -> None:
            self.active += 1
            self.served += 1
            try:
                await serve(stream)
            finally:
                self.active -= 1

        # Looked up on the instance by the listener task and by connect_in_memory, each time.
        server.serve_stream = counted  # type: ignore[method-assign]

    def stats(self, collect: bool = False) -> dict[str, Any]:
        if collect:
            gc.collect()
        server, s = self.server, self.server.stats
        conns = list(server._conns)
        return {
            "open_sockets": server.open_sockets(), "active": self.active, "served": self.served,
            "conns": len(conns),
            "replaying": sum(1 for c in conns if c.replay_after is not None or c.outbox),
            "tasks": trio.lowlevel.current_statistics().tasks_living,
            "rss_mib": rss_mib(), "fds": open_fds(), "cpu_s": time.process_time(),
            "accepted": s.connections_accepted, "logins_ok": s.logins_ok, "auths_ok": s.auths_ok,
            "relayed": s.messages_relayed, "replayed": s.messages_replayed, "gaps": s.gaps,
            "fetches": s.fetches, "dropped": s.dropped, "overloaded": s.overloaded,
            "restarts": s.restarts, "keepalives": s.keepalives_answered, "pings": s.pings_received,
            "frames_rejected": sum(s.frames_rejected.values()),
            "resends": s.resends, "pauses": s.pauses, "idle_closed": s.idle_closed,
        }

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        server, cmd = self.server, command.get("cmd")
        if cmd == "drop":
            return {"n": server.drop(command["uid"])}
        if cmd == "silence":
            uid, flag = command["uid"], bool(command.get("flag", True))
            (self.silenced.add if flag else self.silenced.discard)(uid)
            return {"n": server.silence(uid, flag)}
        if cmd == "throttle":
            uid, flag = command["uid"], bool(command.get("flag", True))
            (self.throttled.add if flag else self.throttled.discard)(uid)
            server.throttle(uid, flag)
            return {"ok": True}
        if cmd == "overload":
            server.overload(command.get("retry_after"))
            return {"ok": True}
        if cmd == "restart":
            self.nursery.start_soon(server.restart)
            return {"ok": True}
        if cmd == "lift":
            server.overload(None)
            cut = sum(server.silence(uid, False) for uid in sorted(self.silenced))
            for uid in sorted(self.throttled):
                server.throttle(uid, False)
            lifted = len(self.throttled)
            self.silenced.clear()
            self.throttled.clear()
            return {"cut": cut, "unthrottled": lifted}
        if cmd == "stats":
            return self.stats(bool(command.get("gc")))
        return {"error": f"unknown command {cmd!r}"}


def soak_users(clients: int) -> list[str]:
    """Each app's user `u<i>` and the other user `v<i>` it switches to now and then (D19)."""
    return [f"{kind}{i}" for kind in "uv" for i in range(clients)]


async def main(args: argparse.Namespace) -> None:
    uids = soak_users(args.users)
    stop = trio.Event()
    with trio.move_on_after(args.lifetime):  # never outlives the soak, even if left behind
        async with serve_reference("127.0.0.1", 0, auth_key=args.auth_key, users=uids,
                                   history=args.history, retention=SOAK_RETENTION) as server, \
                trio.open_nursery() as nursery:
            ops = ServerOps(server, nursery)  # before any checkpoint: the listener sees the wrapper

            async def handle(request: trio_websocket.WebSocketRequest) -> None:
                ws = await request.accept()
                try:
                    while True:
                        command = json.loads(await ws.get_message())
                        if command.get("cmd") == "quit":
                            stop.set()
                            answer: dict[str, Any] = {"ok": True}
                        else:
                            answer = await ops.call(command)
                        await ws.send_message(json.dumps(answer))
                except trio_websocket.ConnectionClosed:
                    pass

            await serve_control(nursery, handle, server.url, users=args.users)
            await stop.wait()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--auth-key", required=True)
    ap.add_argument("--history", required=True, help="the SQLite file of users, tokens and messages")
    ap.add_argument("--lifetime", type=float, default=330.0, help="stop after this many seconds at most")
    trio.run(main, ap.parse_args())
