"""What the bench scripts share: a reference server in a process of its own, and the verdict table."""

from __future__ import annotations

import json
import secrets
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """`bench/<script> --auth-key KEY ARGS...`, started at once; it prints `READY {json}` when serving."""

    def __init__(self, script: str, *args: str) -> None:
        self.auth_key = secrets.token_urlsafe(18)
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / script), "--auth-key", self.auth_key, *args],
            stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def wait_ready(self, limit: float) -> dict[str, Any]:
        """The READY line's JSON; RuntimeError if the process exits or stays silent for `limit` s."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the server process exited ({self.proc.poll()})")
            if line.startswith("READY "):
                info: dict[str, Any] = json.loads(line[6:])
                return info
        raise RuntimeError(f"the server did not get ready within {limit:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def verdict_table(rows: list[tuple[str, str, str, bool]]) -> list[str]:
    """Print `| target | wanted | measured | verdict |`; return the names of the missed targets."""
    print("\n| target | wanted | measured | verdict |\n|---|---|---|---|")
    for name, wanted, got, ok in rows:
        print(f"| {name} | {wanted} | {got} | {'met' if ok else 'MISSED'} |")
    return [name for name, _, _, ok in rows if not ok]


async def serve_control(nursery: Any, handler: Any, server_url: str, **ready: Any) -> None:
    """Serve the control WebSocket (`handler` per connection) on a free loopback port in
    `nursery`, then print the `READY {json}` line that `ServerProcess.wait_ready` waits for."""
    import trio_websocket

    control = await nursery.start(lambda task_status: trio_websocket.serve_websocket(
        handler, "127.0.0.1", 0, ssl_context=None, max_message_size=64 * 1024 * 1024,
        task_status=task_status))
    print("READY " + json.dumps({"url": server_url, "control": f"ws://127.0.0.1:{control.port}", **ready}),
          flush=True)


def exit_status(missed: list[str]) -> int:
    """1 (after naming them) if targets were missed, else 0."""
    if missed:
        print(f"missed: {'; '.join(missed)}")
        return 1
    return 0
