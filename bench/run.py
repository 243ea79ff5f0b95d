"""Benchmark of the lifecycle core against bare `transitions` with the same table.

Checks the two performance targets of the issue, side by side in one run:

1. dispatch: `ClientModel.handle(event)` costs at most 1.2x a bare `transitions.Machine` built
   from the same table (`machine_config(TABLE)`) and fed the same triggers;
2. memory: at most 12 KiB per client model, with 10,000 models sharing one Machine.

Run `make bench` (or `.venv/bin/python bench/run.py`); `--quick` is a short run for tests that
prints the same figures from fewer rounds and smaller counts and never fails on a target.
Exit status: 0 all targets met, 1 a target missed (full run only), 2 the baseline does not do
the same work as the core (the comparison would be meaningless). No network is used.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import transitions
from common import exit_status, verdict_table
from transitions import Machine

from cometchat_fsm.core import errors
from cometchat_fsm.core.effects import Notify
from cometchat_fsm.core.events import (
    AuthAccepted,
    AuthRejected,
    Connect,
    Disconnect,
    EnterBackground,
    EnterForeground,
    Event,
    Login,
    LoginFailed,
    LoginVerified,
    Logout,
    NetworkLost,
    NetworkRestored,
    Ping,
    PongReceived,
    SessionRestored,
    SocketClosed,
    ThrottleLifted,
    ThrottleStarted,
    Timer,
    TimerFired,
)
from cometchat_fsm.core.lifecycle import ROUTES, TABLE, build_machine, machine_config, row_index
from cometchat_fsm.core.model import ClientModel
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.core.states import Phase

DISPATCH_TARGET = 1.2  # core / bare transitions, at most
MEMORY_TARGET_KIB = 12.0  # per client model, 10,000 models sharing one Machine
MEMORY_MODELS = 10_000

AUTO = AppSettings("us")
MANUAL = AppSettings("us", auto_establish_socket_connection=False)


def bare_machine() -> Machine:
    """A bare `transitions.Machine` with the same table; written out here on purpose (it is
    what `build_machine` does, but the baseline should not depend on the code under test)."""
    return Machine(model=None, states=Phase, initial=Phase.LOGGED_OUT,
                   transitions=machine_config(TABLE), auto_transitions=False,
                   ignore_invalid_triggers=True, send_event=False)


# --- The event cycle -----------------------------------------------------------------------------
# Two clients, one per mode, each through a full session: login, keep-alive, app state, network,
# server closes and retries, throttling, pings, attempt timeout, disconnect, logout. Entries are
# events, or functions of the client for events that name its current socket.

Step = Event | Callable[[ClientModel], Event]


def _sock(cls: Callable[[int], Event]) -> Callable[[ClientModel], Event]:
    def make(m: ClientModel) -> Event:
        assert m.socket is not None
        return cls(m.socket)
    return make


_FAILED = LoginFailed(errors.AUTH_REJECTED.exception())

AUTO_CYCLE: tuple[Step, ...] = (
    Login("alice"), _FAILED,  # a failed login
    Login("alice"), LoginVerified(), _sock(AuthAccepted),
    TimerFired(Timer.KEEPALIVE), _sock(PongReceived), Ping(),
    EnterBackground(), EnterForeground(), _sock(AuthAccepted),  # A2 closes, A1 reopens
    NetworkLost(), NetworkRestored(), _sock(AuthAccepted),
    _sock(SocketClosed), TimerFired(Timer.RETRY), _sock(SocketClosed), TimerFired(Timer.RETRY),
    _sock(AuthAccepted),
    _sock(ThrottleStarted), _sock(ThrottleLifted),
    TimerFired(Timer.KEEPALIVE), TimerFired(Timer.PONG),  # dead link
    NetworkLost(), NetworkRestored(), _sock(AuthAccepted),  # offline while waiting
    Disconnect(), Connect(), _sock(AuthAccepted),
    TimerFired(Timer.KEEPALIVE), _sock(PongReceived),
    Logout(),
    SessionRestored("alice"), _sock(AuthRejected), Logout(),
)

MANUAL_CYCLE: tuple[Step, ...] = (
    Login("bob"), LoginVerified(), Connect(), _sock(AuthAccepted),
    TimerFired(Timer.KEEPALIVE), _sock(PongReceived),
    EnterBackground(), Ping(), EnterForeground(),  # M2 window, M3 ping renews it, D2 cancels
    NetworkLost(), NetworkRestored(), _sock(AuthAccepted),
    EnterBackground(), TimerFired(Timer.WINDOW),  # the window runs out
    EnterForeground(),  # manual, idle: stays disconnected (matches no row)
    EnterBackground(), Connect(), _sock(AuthAccepted), EnterForeground(),
    _sock(SocketClosed), Connect(), _sock(AuthAccepted),  # connect() cuts the wait short
    _sock(ThrottleStarted), Ping(), _sock(ThrottleLifted),
    NetworkLost(), NetworkRestored(), TimerFired(Timer.ATTEMPT), TimerFired(Timer.RETRY),
    _sock(AuthAccepted),
    TimerFired(Timer.KEEPALIVE), _sock(PongReceived),
    Disconnect(), Logout(),
)


def new_clients(machine: Machine) -> list[ClientModel]:
    """Fresh clients (a seeded random source, so that every round does exactly the same)."""
    return [ClientModel(AUTO, machine=machine, random=random.Random(1).random),
            ClientModel(MANUAL, machine=machine, random=random.Random(2).random)]


def event_sequence(cycles: int) -> list[tuple[int, Event]]:
    """`cycles` rounds of both cycles, the two clients' events interleaved one by one."""
    scratch = new_clients(build_machine(TABLE))
    streams = [AUTO_CYCLE * cycles, MANUAL_CYCLE * cycles]
    seq: list[tuple[int, Event]] = []
    for k in range(max(map(len, streams))):
        for i, stream in enumerate(streams):
            if k < len(stream):
                step = stream[k]
                event = step if not callable(step) else step(scratch[i])
                scratch[i].handle(event)
                seq.append((i, event))
    return seq


# --- The baseline: the same triggers, fired at a bare Machine -----------------------------------
# What a program on bare `transitions` would do for each event: set the platform fact it reports
# (app state, network), note the user being logged in, forget a timer that fired, fire the
# trigger. Kinds: 0 nothing, 1 app, 2 network, 3 timer, 4 requested user, 5 pending user.

@dataclass
class Recording:
    steps: list[tuple[int, str, int, Any]]
    rows_hit: set[int]
    no_row: int  # triggers that matched no row (a signal that does not concern the phase)


def record(seq: Sequence[tuple[int, Event]]) -> Recording:
    machine = bare_machine()
    clients = new_clients(machine)
    steps: list[tuple[int, str, int, Any]] = []
    rows: set[int] = set()
    no_row = 0
    for i, event in seq:
        m = clients[i]
        app, net, armed = m.app, m.network, set(m.armed)
        requested, pending = m.requested_user, m.pending_user
        triggers = ROUTES[type(event)](m, event)
        kind: int = 0
        value: Any = None
        if m.app is not app:
            kind, value = 1, m.app
        elif m.network is not net:
            kind, value = 2, m.network
        elif isinstance(event, TimerFired) and triggers:
            kind, value = 3, event.timer
            assert armed - m.armed == {event.timer}
        elif m.requested_user != requested:
            kind, value = 4, m.requested_user
        elif m.pending_user != pending:
            kind, value = 5, m.pending_user
        for t in triggers:
            hit = row_index(m, t)
            if hit is None:
                no_row += 1
            else:
                rows.add(hit)
            if hit is not None:
                fired = machine.events[t].trigger(m)
                assert fired, (t, m.state)
            # A trigger with no row in the phase is skipped on both paths (the core checks the
            # phase first; transitions would log a warning for it): "" keeps the bookkeeping only.
            steps.append((i, t if hit is not None else "", kind, value))
            kind, value = 0, None
        m.retry_after = m.error = None
    return Recording(steps, rows, no_row)


def check_same_work(seq: Sequence[tuple[int, Event]], rec: Recording) -> str:
    """The core and the baseline must end in the same phases having produced the same effects
    (the core adds only Notify effects, and is the only one to hand the effects out)."""
    core = new_clients(build_machine(TABLE))
    core_out: list[list[object]] = [[], []]
    notifies = 0
    for i, e in seq:
        for eff in core[i].handle(e):
            if isinstance(eff, Notify) and eff.error is None:
                notifies += 1
            else:
                core_out[i].append(eff)
    bare = new_clients(bare_machine())
    events = bare[0].machine.events
    for i, t, kind, value in rec.steps:
        m = bare[i]
        if kind == 1:
            m.app = value
        elif kind == 2:
            m.network = value
        elif kind == 3:
            m.armed.discard(value)
        elif kind == 4:
            m.requested_user = value
        elif kind == 5:
            m.pending_user = value
        if t:
            events[t].trigger(m)
    for i in (0, 1):
        if [c.state for c in core] != [b.state for b in bare] or core_out[i] != bare[i].outbox:
            raise SystemExit(f"bench: the baseline does not do the core's work (client {i})")
    return (f"same final phases and the same {sum(map(len, core_out))} effects; the core adds "
            f"{notifies} status notifications")


# --- Timed paths -----------------------------------------------------------------------------------

def run_core(seq: Sequence[tuple[int, Event]], clients: list[ClientModel]) -> int:
    handles = [c.handle for c in clients]
    t0 = time.perf_counter_ns()
    for i, event in seq:
        handles[i](event)
    return time.perf_counter_ns() - t0


def run_bare(steps: Sequence[tuple[int, str, int, Any]], clients: list[ClientModel]) -> int:
    events = clients[0].machine.events
    t0 = time.perf_counter_ns()
    for i, trigger, kind, value in steps:
        m = clients[i]
        if kind:
            if kind == 1:
                m.app = value
            elif kind == 2:
                m.network = value
            elif kind == 3:
                m.armed.discard(value)
            elif kind == 4:
                m.requested_user = value
            else:
                m.pending_user = value
        if trigger:
            events[trigger].trigger(m)
    return time.perf_counter_ns() - t0


def run_add_model(steps: Sequence[tuple[int, str, int, Any]], clients: list[ClientModel]) -> int:
    """transitions' own way: the clients added to the Machine, triggers fired by name."""
    fire = [c.trigger for c in clients]  # type: ignore[attr-defined]
    t0 = time.perf_counter_ns()
    for i, trigger, kind, value in steps:
        if kind:
            m = clients[i]
            if kind == 1:
                m.app = value
            elif kind == 2:
                m.network = value
            elif kind == 3:
                m.armed.discard(value)
            elif kind == 4:
                m.requested_user = value
            else:
                m.pending_user = value
        if trigger:
            fire[i](trigger)
    return time.perf_counter_ns() - t0


def measure_dispatch(cycles: int, rounds: int) -> dict[str, Any]:
    seq = event_sequence(cycles)
    rec = record(seq)
    same = check_same_work(seq, rec)
    core_m, bare_m, add_m = build_machine(TABLE), bare_machine(), bare_machine()

    def core() -> int:
        return run_core(seq, new_clients(core_m))

    def bare() -> int:
        clients = new_clients(bare_m)
        return run_bare(rec.steps, clients)

    def added() -> int:
        clients = new_clients(add_m)
        add_m.add_model(clients)
        try:
            return run_add_model(rec.steps, clients)
        finally:
            add_m.remove_model(clients)

    paths = {"core": core, "bare": bare, "add_model": added}
    times: dict[str, list[int]] = {k: [] for k in paths}
    order = list(paths)
    for k in order:  # warm-up
        paths[k]()
    for r in range(rounds):
        for k in (order if r % 2 == 0 else order[::-1]):  # alternate, so drift hits all alike
            gc.collect()
            times[k].append(paths[k]())
    n = len(seq)
    us = {k: statistics.median(v) / n / 1000 for k, v in times.items()}
    # Ratio per round pair too: its median is robust to a slow stretch of the machine.
    pair = [c / b for c, b in zip(times["core"], times["bare"], strict=True)]
    return {
        "events": n, "triggers": len(rec.steps), "rounds": rounds, "us": us,
        "ratio": us["core"] / us["bare"], "pair_ratio": statistics.median(pair),
        "pair_min": min(pair), "pair_max": max(pair),
        "rows": len(rec.rows_hit), "no_row": rec.no_row, "same": same,
        "spread": {k: (min(v) / n / 1000, max(v) / n / 1000) for k, v in times.items()},
    }


# --- Memory --------------------------------------------------------------------------------------

def _login(m: ClientModel, i: int) -> None:
    m.handle(Login(f"user{i:05d}"))
    m.handle(LoginVerified())
    assert m.socket is not None
    m.handle(AuthAccepted(m.socket))
    assert m.state is Phase.CONNECTED


def kib_per_model(make: Callable[[int], object], n: int) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = [make(i) for i in range(n)]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return (after - before) / n / 1024


def measure_memory(n_shared: int, n_own: int) -> dict[str, float]:
    shared = build_machine(TABLE)
    _login(ClientModel(AUTO, machine=shared), 0)  # warm: nothing lazy left in the Machine
    one_random = random.Random(3).random

    def shared_model(i: int) -> ClientModel:
        m = ClientModel(AUTO, machine=shared)
        _login(m, i)
        return m

    def shared_model_one_random(i: int) -> ClientModel:
        m = ClientModel(AUTO, machine=shared, random=one_random)
        _login(m, i)
        return m

    def own_machine(i: int) -> ClientModel:
        m = ClientModel(AUTO, machine=build_machine(TABLE))
        _login(m, i)
        return m

    def own_machine_bound(i: int) -> ClientModel:
        m = ClientModel(AUTO, machine=shared)
        m.machine = Machine(model=m, states=Phase, initial=Phase.LOGGED_OUT,
                            transitions=machine_config(TABLE), auto_transitions=False,
                            ignore_invalid_triggers=True, send_event=False)
        _login(m, i)
        return m

    added = bare_machine()

    def add_model(i: int) -> ClientModel:
        m = ClientModel(AUTO, machine=added)
        added.add_model(m)
        _login(m, i)
        return m

    return {
        "shared": kib_per_model(shared_model, n_shared),
        "shared_one_random": kib_per_model(shared_model_one_random, n_shared),
        "add_model": kib_per_model(add_model, n_shared),
        "own": kib_per_model(own_machine, n_own),
        "own_bound": kib_per_model(own_machine_bound, n_own),
    }


# --- Build times ----------------------------------------------------------------------------------

def median_us(fn: Callable[[], object], reps: int) -> float:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def measure_build(reps: int) -> dict[str, float]:
    shared = build_machine(TABLE)
    added = bare_machine()
    models: list[ClientModel] = []

    def add() -> None:
        m = ClientModel(AUTO, machine=added)
        added.add_model(m)
        models.append(m)

    out = {
        "build_machine": median_us(lambda: build_machine(TABLE), reps),
        "client_model": median_us(lambda: ClientModel(AUTO, machine=shared), reps * 10),
        "add_model": median_us(add, reps * 10),
    }
    added.remove_model(models)
    return out


# --- Profile (on request) --------------------------------------------------------------------------

def profile(cycles: int) -> None:
    import cProfile
    import pstats

    seq = event_sequence(cycles)
    clients = new_clients(build_machine(TABLE))
    prof = cProfile.Profile()
    prof.runcall(run_core, seq, clients)
    print(f"\ncProfile of ClientModel.handle over {len(seq)} events (tottime, top 25):")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)


# --- Main ----------------------------------------------------------------------------------------

def pin_cpus(limit: int = 2) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpus = sorted(os.sched_getaffinity(0))[:limit]
    os.sched_setaffinity(0, cpus)
    return f"pinned to CPU {', '.join(map(str, cpus))} of {os.cpu_count()}"


def measure_conformance(profile: str) -> dict[str, float]:
    """Wall time of the exploration (both retry settings) and of one Hypothesis profile."""
    import hypothesis
    from hypothesis.stateful import get_state_machine_test

    from cometchat_fsm.conformance.explore import explore
    from cometchat_fsm.conformance.specs import load_specs
    from cometchat_fsm.conformance.stateful import RunContext, hypothesis_settings, make_machine

    t0 = time.perf_counter()
    states = sum(explore(max_reconnect_attempts=limit).states for limit in (None, 2))
    explored = time.perf_counter() - t0
    context = RunContext(specs=load_specs())
    test = hypothesis.seed(0)(get_state_machine_test(make_machine(context),
                                                     settings=hypothesis_settings(profile)))
    t0 = time.perf_counter()
    test()
    return {"explore_s": explored, "states": states, "hypothesis_s": time.perf_counter() - t0,
            "examples": context.examples, "steps": context.steps}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="short run (for tests): fewer rounds and models; never fails on a target")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of handle()")
    args = ap.parse_args(argv)

    quick = args.quick
    started = time.perf_counter()
    cycles, rounds = (3, 5) if quick else (40, 21)
    n_shared, n_own = (1_000, 100) if quick else (MEMORY_MODELS, 1_000)
    build_reps = 5 if quick else 50

    print(f"cometchat-fsm bench{' (quick)' if quick else ''}: Python {platform.python_version()}, "
          f"transitions {transitions.__version__}, {pin_cpus()}")

    d = measure_dispatch(cycles, rounds)
    us = d["us"]
    print(f"\nDispatch: {d['events']} events per round ({d['triggers']} triggers, {len(TABLE)} rows "
          f"in the table, {d['rows']} of them exercised, {d['no_row']} triggers matching no row), "
          f"{d['rounds']} rounds per path, interleaved, GC on (collected between rounds); medians:")
    rows = [
        ("core", "ClientModel.handle(event)"),
        ("bare", "bare Machine(machine_config(TABLE)): machine.events[t].trigger(model)"),
        ("add_model", "shared Machine + add_model: model.trigger(t)   (context)"),
    ]
    for key, what in rows:
        lo, hi = d["spread"][key]
        print(f"  {key:<10} {us[key]:6.2f} us/event  (rounds {lo:5.2f} .. {hi:5.2f})  {what}")
    print("  bare and add_model fire the triggers the core's routing chose, at ClientModel objects"
          " (same\n  conditions, same actions, same effects); handle() is not called")
    print(f"  core / bare: {d['ratio']:.3f}x (medians); per round pair median {d['pair_ratio']:.3f}x, "
          f"range {d['pair_min']:.3f} .. {d['pair_max']:.3f}")
    print(f"  core adds {us['core'] - us['bare']:.2f} us/event (routing, preconditions, status "
          f"notifications, handing out the effect list)")
    print(f"  check: {d['same']}")

    mem = measure_memory(n_shared, n_own)
    print("\nMemory (tracemalloc; each client logged in and connected; KiB per client):")
    print(f"  {n_shared:>6} ClientModels, one shared Machine (the core's way)   {mem['shared']:6.2f}")
    print(f"  {n_shared:>6} same, one random source passed to all          {mem['shared_one_random']:6.2f}"
          "   (context)")
    print(f"  {n_shared:>6} one shared Machine with add_model              {mem['add_model']:6.2f}"
          "   (context: transitions' own way)")
    print(f"  {n_own:>6} a Machine per client (build_machine)            {mem['own']:6.2f}   (context)")
    print(f"  {n_own:>6} a Machine per client, Machine(model=client)     {mem['own_bound']:6.2f}"
          "   (context)")

    b = measure_build(build_reps)
    print("\nBuild times (medians):")
    print(f"  build_machine(TABLE)             {b['build_machine'] / 1000:6.3f} ms")
    print(f"  ClientModel(settings)            {b['client_model']:6.1f} us")
    print(f"  ClientModel + add_model          {b['add_model']:6.1f} us   (context)")

    if args.profile:
        profile(cycles)

    profile_name = "quick" if quick else "ci"
    conf = measure_conformance(profile_name)
    print(f"\nConformance: exploration of {conf['states']:.0f} abstract states (two retry settings) "
          f"{conf['explore_s'] * 1000:.0f} ms; Hypothesis '{profile_name}' profile {conf['examples']:.0f} "
          f"examples, {conf['steps']:.0f} steps in {conf['hypothesis_s']:.1f} s "
          f"({conf['steps'] / conf['hypothesis_s']:.0f} steps/s)")

    results = [
        ("dispatch: core / bare transitions", f"<= {DISPATCH_TARGET:.2f}x", f"{d['ratio']:.3f}x",
         d["ratio"] <= DISPATCH_TARGET),
        (f"memory per client, {n_shared} sharing a Machine", f"<= {MEMORY_TARGET_KIB:.0f} KiB",
         f"{mem['shared']:.2f} KiB", mem["shared"] <= MEMORY_TARGET_KIB),
        ("exhaustive exploration", "< 1 s", f"{conf['explore_s']:.3f} s", conf["explore_s"] < 1.0),
        (f"Hypothesis '{profile_name}' profile", "< 60 s", f"{conf['hypothesis_s']:.1f} s",
         conf["hypothesis_s"] < 60.0),
    ]
    missed = verdict_table(results)
    print(f"({time.perf_counter() - started:.1f} s)")
    if quick:
        print("(quick run: figures only, no verdict on the exit status)")
        return 0
    return exit_status(missed)


if __name__ == "__main__":
    sys.exit(main())
