"""`cometchat-fsm demo`: the documented lifecycle, shown live on real loopback sockets.

Two users go through a scripted day against the reference server, run in-process on
127.0.0.1: alice in auto mode, bob in manual mode, each with its own session store and its own
fault proxy (its phone's network) in front of the server. Every call, notification, fault and
delivered message prints one timeline row as it happens, and every documented behaviour is
checked when it should happen (`expect`, `hold`, `check`): the demo is also an end-to-end test,
and a status not reached in its documented time ends it at once with the reason and exit 1.

Time is trio's MockClock with autojump: once every task has waited AUTOJUMP seconds of wall
time, the clock jumps to the next deadline, so 30 s windows and 15 s keep-alives pass in
milliseconds. The threshold must exceed loopback latency (with 0 the clock would jump while
bytes are still in flight); 0.01 s is ample for sockets in one process.

The parts: demo_timeline (the printed rows), demo_actor (one user's app), demo_checks (the
checks), demo_day (the scripted day); this module sets up the server, proxies and apps and runs it.
"""

from __future__ import annotations

import random
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TextIO

import trio
import trio.testing

from cometchat_fsm.cli.demo_actor import Actor
from cometchat_fsm.cli.demo_day import AUTO, MANUAL, Demo
from cometchat_fsm.cli.demo_timeline import DemoFailure, Timeline
from cometchat_fsm.server.faultproxy import open_fault_proxy
from cometchat_fsm.server.reference import serve_reference
from cometchat_fsm.trio.groups import leaves

#: Wall seconds every task must have waited before the mock clock jumps (see the module doc).
AUTOJUMP = 0.01
#: Virtual seconds for the whole day; the script needs about 600. A bound, so nothing hangs.
BUDGET = 1800.0


async def _day(out: TextIO, seed: int) -> None:
    timeline = Timeline(out)
    with tempfile.TemporaryDirectory(prefix="cometchat-demo-") as tmp:
        async with serve_reference("127.0.0.1", users=("alice", "bob"), clock=trio.current_time) as server, \
                open_fault_proxy(server.host, server.port) as net_a, \
                open_fault_proxy(server.host, server.port) as net_b, \
                trio.open_nursery() as tasks:
            alice = Actor("alice", AUTO, Path(tmp, "alice"), net_a.url(), random.Random(seed).random,
                          timeline)
            bob = Actor("bob", MANUAL, Path(tmp, "bob"), net_b.url(), random.Random(seed + 1).random,
                        timeline)
            timeline.print("cometchat-fsm demo: a scripted day of two apps on real loopback sockets, "
                           "in virtual time")
            timeline.print(f"  server  {server.url}  (reference server; users alice, bob)")
            for actor, net in ((alice, net_a), (bob, net_b)):
                timeline.print(f"  {actor.name:<6}  {actor.mode} mode (auto_establish_socket_connection="
                               f"{actor.settings.auto_establish_socket_connection}), through fault proxy "
                               f"{net.url()}")
            s = AUTO
            timeline.print(f"  timers  background window {s.background_window:g} s, keep-alive "
                           f"{s.keepalive_interval:g} s + {s.pong_timeout:g} s, backoff {s.backoff_base:g} s "
                           f"to {s.backoff_cap:g} s with full jitter (seed {seed})")
            timeline.print()
            timeline.header()
            await Demo(timeline, server, alice, bob, {"alice": net_a, "bob": net_b}, tasks).run()
            tasks.cancel_scope.cancel()


async def run_demo(out: TextIO | None = None, seed: int = 0) -> int:
    """Run the day under the caller's clock; print it to `out`; return the exit status."""
    stream = out if out is not None else sys.stdout
    started = trio.current_time()
    try:
        with trio.fail_after(BUDGET):
            await _day(stream, seed)
    except Exception as exc:  # a group of them, too: report, never a bare traceback
        found = leaves(exc)
        failures = [e for e in found if isinstance(e, DemoFailure)]
        if failures:
            reason = str(failures[0])
        elif all(isinstance(e, trio.TooSlowError) for e in found):
            reason = f"the script overran its budget of {BUDGET:g} virtual seconds"
        else:
            traceback.print_exception(exc, file=sys.stderr)
            reason = "unexpected " + "; ".join(f"{type(e).__name__}: {e}" for e in found)
        print(f"\ndemo FAILED: {reason}", file=stream, flush=True)
        return 1
    print(f"\ndemo ok ({trio.current_time() - started:.1f} virtual seconds)", file=stream, flush=True)
    return 0


def main(out: TextIO | None = None, seed: int = 0) -> int:
    """Run the demo in virtual time (see the module doc); return the exit status."""
    clock = trio.testing.MockClock(autojump_threshold=AUTOJUMP)
    return trio.run(run_demo, out, seed, clock=clock)
