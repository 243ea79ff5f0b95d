"""Where an asyncio client's memory goes: tracemalloc over N connected clients, per client.

Starts bench/live_server.py (127.0.0.1), connects N clients in this process (asyncio
`open_client` restoring a stored session, or `--bare` websockets connections), and prints the
traced bytes per client grouped by the innermost frame of cometchat_fsm (or of this script:
the app's own part) that led to each allocation; `--inner` groups by the innermost frame
itself. The collector is off while connecting, as in bench/live_asyncio.py.

    .venv/bin/python bench/asyncio_memory.py            # 300 clients
    .venv/bin/python bench/asyncio_memory.py --bare --n 300
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import linecache
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import ServerProcess  # noqa: E402
from live_asyncio import Watch  # noqa: E402

WARMUP = 20


async def connect_all(n: int, bare: bool, url: str, tokens: dict[str, str], store: str) -> Any:
    from websockets.asyncio.client import connect

    from cometchat_fsm.asyncio import AppSettings, open_client

    settings, sem = AppSettings("us"), asyncio.Semaphore(200)

    async def one(i: int, stop: asyncio.Event, up: Any) -> None:
        await sem.acquire()
        if bare:
            async with connect(url + "/v1/socket", ping_interval=None, compression=None, proxy=None,
                               max_size=65_536) as ws:
                await ws.send(json.dumps({"type": "auth", "uid": f"u{i}", "auth_token": tokens[f"u{i}"],
                                          "last_id": None}))
                await ws.recv()
                up()
                sem.release()
                await stop.wait()
            return
        async with open_client(f"bench-{i}", settings, url=url, store=store,
                               listeners={"bench": Watch(up, sem.release)}):
            await stop.wait()

    async def run(count: int, first: int, traced: bool) -> Any:
        stop, done, up_count = asyncio.Event(), asyncio.Event(), [0]

        def up() -> None:
            up_count[0] += 1
            if up_count[0] == count:
                done.set()
        tasks = [asyncio.create_task(one(first + i, stop, up)) for i in range(count)]
        async with asyncio.timeout(60):
            await done.wait()
        await asyncio.sleep(0.2)  # the last auth_ok's callbacks have run
        snapshot = tracemalloc.take_snapshot() if traced else None
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return snapshot

    await run(WARMUP, n, False)
    gc.collect()
    tracemalloc.start(40)
    before = tracemalloc.take_snapshot()
    gc.disable()
    after = await run(n, 0, True)
    gc.enable()
    tracemalloc.stop()
    return before, after


def where(frame: Any) -> str:
    name = frame.filename
    for marker in ("/cometchat_fsm/", "/site-packages/", "/lib/python3"):
        if marker in name:
            name = name.split(marker, 1)[1]
            break
    else:
        name = Path(name).name
    return f"{name}:{frame.lineno}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--bare", action="store_true", help="bare websockets connections instead")
    ap.add_argument("--inner", action="store_true", help="group by the innermost frame itself")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cometchat-asyncio-memory-"))
    server = ServerProcess("live_server.py", "--users", str(args.n + WARMUP), "--tokens", str(tmp / "t.json"),
                           "--lifetime", "300")
    try:
        info = server.wait_ready(120.0)
        tokens = json.loads((tmp / "t.json").read_text(encoding="utf-8"))
        from cometchat_fsm.session.store import SessionStore, StoredSession
        store = SessionStore(tmp / "sessions")
        for i in range(args.n + WARMUP):
            store.save(f"bench-{i}", StoredSession(f"u{i}", tokens[f"u{i}"]))
        sessions = str(tmp / "sessions")
        before, after = asyncio.run(connect_all(args.n, args.bare, info["url"], tokens, sessions))
    finally:
        server.stop()
    groups: dict[str, int] = {}
    files: dict[str, str] = {}
    total = 0
    for stat in after.compare_to(before, "traceback"):
        frames = list(stat.traceback)[::-1]  # innermost first
        mine = (f for f in frames if "/cometchat_fsm/" in f.filename or f.filename == __file__)
        chosen = frames[0] if args.inner else next(mine, frames[0])
        place = where(chosen)
        groups[place] = groups.get(place, 0) + stat.size_diff
        files[place] = chosen.filename
        total += stat.size_diff
    side = "bare websockets" if args.bare else "asyncio open_client"
    print(f"{side}: {total / args.n / 1024:.2f} KiB traced per connected client (N = {args.n})")
    for place, size in sorted(groups.items(), key=lambda kv: -kv[1])[:args.top]:
        line = linecache.getline(files[place], int(place.rsplit(":", 1)[1])).strip()
        print(f"{size / args.n:8.0f} B  {place}  {line[:70]}")

if __name__ == "__main__":
    main()
