"""The soak run's short version (bench/soak.py, `make soak` for the full one): 40 clients doing
random lifecycle inputs, messages (with user switches, resends and slow readers: D19-D21) and
server faults for four virtual minutes, in-process over
in-memory streams (MockClock), then the same audit as the full run: nothing acknowledged lost,
nothing delivered twice, altered or to a user not logged in, every client connected again once
the faults are lifted,
and once all are closed no socket, connection, task or descriptor left over. Memory is not
measured here (one process, virtual time): the full run does that.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

from cometchat_fsm import serve_reference
from cometchat_fsm.server.history import IN_MEMORY
from cometchat_fsm.testing import memory_connector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import soak
from soak_server import SOAK_RETENTION, ServerOps, soak_users

BOUND = 900  # virtual seconds; the run itself takes ~250 (setup, 240 s of chaos, heal, close)
WALL = 120.0  # real seconds (it takes ~10 of CPU): virtual time stands still while a task spins, so a
# livelock would never reach BOUND; a thread cancels the run then instead.
PLAN = soak.Plan(clients=60, seconds=240.0, seed=5, act_every=2.0, fault_every=1.0)


async def run_in_memory(plan: soak.Plan, store: Path) -> dict[str, Any]:
    uids = soak_users(plan.clients)
    async with serve_reference(users=uids, clock=trio.current_time, retention=SOAK_RETENTION,
                               history=IN_MEMORY) as server, trio.open_nursery() as nursery:
        ops = ServerOps(server, nursery)
        run = soak.Soak(plan, url=server.url, auth_key=server.auth_key, store=store,
                        control=soak.LocalControl(ops), connector=memory_connector(server),
                        measure_memory=False)
        out = await run.run()
        nursery.cancel_scope.cancel()
    return out


async def test_short_soak_loses_nothing_and_leaks_nothing(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    wall = time.monotonic()
    watchdog = trio.CancelScope()
    timer = threading.Timer(WALL, trio.lowlevel.current_trio_token().run_sync_soon, (watchdog.cancel,))
    timer.start()
    try:
        with watchdog, trio.fail_after(BOUND):
            out = await run_in_memory(PLAN, tmp_path / "sessions")
    finally:
        timer.cancel()
    assert not watchdog.cancelled_caught, f"still running after {WALL:.0f} s of real time (a livelock?)"
    rows = soak.verdicts(out, memory=False)
    soak.print_report(out, rows)
    print(f"({time.monotonic() - wall:.1f} s wall, {out['elapsed']:.0f} s virtual)")
    assert [row for row in rows if not row[3]] == []
    # The run did what it says: messages, replays after reconnects, every kind of fault.
    assert out["acked"] > 500 and out["server_end"]["replayed"] > 0
    assert set(out["faults"]) == {"drop", "silence", "throttle", "overload", "restart"}
    assert set(out["inputs"]) >= set(soak.INPUTS)
    # D19-D21 happened: user switches, resends, inbox pauses (server-side resend hits: the full run).
    assert out["inputs"]["switch"] > 0 and out["inputs"]["resend"] > 0 and out["server_end"]["pauses"] > 0
    assert soak.summary(out) == {"lost": 0, "duplicated": 0, "misdelivered": 0, "leaked": 0}
