"""Drive a live client (against the reference server) and a `Simulation` with the same steps.

Why a harness of its own: Hypothesis rules are synchronous and trio is not, so an example is a
whole list of steps (`Step`s of the `simulate` language) run inside one `trio.run` under a
`MockClock`. After every step the live client's status, listener notifications (names and
virtual times), logged-in user and stored session, and the realtime sockets the *server*
counts must equal the Simulation's; a watcher task also notes any instant the server counts
two sockets (D4). A difference raises `LiveDivergence`, carrying a replayable command.

Pairing: the same settings and seed, one `random.Random(seed)` stream for the live client's
backoff draws across restarts (the Simulation keeps one stream too), server latency 0 until a
`latency` step sets one.

Time is driven explicitly rather than with `trio.sleep`: a wait jumps the clock from one trio
deadline to the next and lets every task settle in between, until the target instant. Timers
due at the target itself fire before the next input, as in `Simulation.advance`; a tolerance
of half a microsecond absorbs the float rounding of deadlines the Simulation keeps exactly
(with `trio.sleep`, a timer due "at" 30 s but 1e-15 s late would fire after the next input).
Notification times may differ by 2 µs, plus half a µs per random backoff delay drawn so far:
the Simulation rounds each one to a whole microsecond.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import hypothesis.strategies as st
import trio
import trio.testing
from transitions import Machine

from cometchat_fsm import AppSettings, CometChatException, Simulation
from cometchat_fsm.conformance.stateful_server import FLAPS, HINTS, LATENCIES, PAUSES, WAITS
from cometchat_fsm.core import errors as catalogue
from cometchat_fsm.core.effects import StartTimer
from cometchat_fsm.core.events import Timer
from cometchat_fsm.core.states import LIVE, ConnectionStatus, Network, Phase
from cometchat_fsm.server.reference import ReferenceServer, serve_reference
from cometchat_fsm.session.store import SessionStore
from cometchat_fsm.sim.ideal_server import LOGIN_REFUSED
from cometchat_fsm.sim.script import Step, apply
from cometchat_fsm.testing import ListenerRecorder, memory_connector
from cometchat_fsm.trio.client import Client, Connector, open_client
from cometchat_fsm.trio.groups import single_exception

US = 1_000_000
USERS = ("alice", "bob")
APP_ID = "app"
#: How far past a target instant a deadline may fall and still count as due at it (float rounding).
TOLERANCE = 0.5 / US
#: How far apart (microseconds) a live notification and the Simulation's may be, plus half a
#: microsecond per backoff delay drawn so far: see `_same_notes`.
SLACK_US = 2
#: After the run, with every fault lifted: keep-alive + pong timeout + backoff cap + attempt timeout.
RECOVERY = 15.0 + 3.0 + 30.0 + 10.0
Transport = Literal["memory", "loopback"]
#: Which front end the live client is: cometchat_fsm.trio, or cometchat_fsm.asyncio run by
#: trio_asyncio on the same (virtual) clock (tests/asyncio_bridge.py).
Front = Literal["trio", "asyncio"]


class LiveDivergence(AssertionError):
    """The live client and the Simulation disagree; the message replays the steps in `simulate`."""

    def __init__(self, what: str, steps: list[Step], settings: AppSettings, seed: int,
                 transport: str) -> None:
        self.what, self.steps = what, list(steps)
        mode = "auto" if settings.auto_establish_socket_connection else "manual"
        limit = settings.max_reconnect_attempts
        extra = "" if limit is None else f" --max-reconnect-attempts {limit}"
        self.script = "; ".join(str(s) for s in steps)
        self.command = f'cometchat-fsm simulate --{mode} --seed {seed}{extra} "{self.script}"'
        super().__init__(f"live client ({transport}) diverges after `{steps[-1] if steps else ''}`: "
                         f"{what}\nreplay: {self.command}")


# --- Strategies -------------------------------------------------------------------------------------

#: Every word of the `simulate` language but `late` (a driver mode of the Simulation, not a server
#: fault), those of the interleavings the issue names twice, to weigh them.
WORDS = ("login", "logout", "connect", "connect", "disconnect", "ping", "restart", "wait", "wait",
         "background", "background", "foreground", "foreground", "offline", "offline", "online", "online",
         "drop", "drop", "silent", "silent", "reject", "reject", "throttle", "throttle",
         "overload", "overload", "flap", "refuse", "busy", "latency")


#: The stateful check's latencies below connect_timeout: the live login gives up after it
#: (ERR_LOGIN_FAILED), the specs and the Simulation have no login timeout, a known divergence
#: (test_live_conformance.test_a_login_answered_after_connect_timeout). A socket unanswered for
#: connect_timeout (P2) is replayed live by the P2 vectors (tests/test_vectors_live.py).
LIVE_LATENCIES = LATENCIES.filter(lambda s: s < AppSettings(region="eu").connect_timeout)
#: The stateful check's busy links shorter than the keep-alive interval (15 s). A longer one
#: leaves two keep-alives unanswered, and the late pong of the first re-arms the keep-alive
#: timer for the very instant the pong of the second arrives: at that tie the Simulation takes
#: the pong first and the live client its timer (a known tie,
#: test_live_conformance.test_a_late_pong_due_with_the_keepalive_timer). Below 15 s no pong
#: arrives at a timer's instant; 4 s and 12 s still outlast the 3 s pong timeout (D17).
LIVE_BUSY = st.sampled_from((None, None, 2.0, 4.0, 12.0))


def inputs(*, waits: st.SearchStrategy[float] = WAITS) -> st.SearchStrategy[Step]:
    """One input, with its argument drawn like the stateful check's rules draw theirs."""
    arguments: dict[str, st.SearchStrategy[Step]] = {
        "login": st.sampled_from(USERS).map(lambda uid: Step("login", uid)),
        "reject": st.booleans().map(lambda f: Step("reject", f)),
        "throttle": st.booleans().map(lambda f: Step("throttle", f)),
        "overload": HINTS.map(lambda h: Step("overload", h)),
        "flap": FLAPS.map(lambda f: Step("flap", f)),
        "refuse": st.booleans().map(lambda f: Step("refuse", f)),
        "busy": LIVE_BUSY.map(lambda b: Step("busy", b)),
        "latency": LIVE_LATENCIES.map(lambda s: Step("latency", s)),
        "wait": waits.map(lambda s: Step("wait", float(s))),
    }
    return st.sampled_from(WORDS).flatmap(lambda w: arguments.get(w, st.just(Step(w))))


def scripts(*, max_inputs: int, waits: st.SearchStrategy[float] = WAITS,
            pauses: st.SearchStrategy[float] = PAUSES) -> st.SearchStrategy[list[Step]]:
    """A prelude (most examples start logged in and connected, where most rules live), then
    inputs each followed by a pause drawn around the 3/10/15/30 s edges (half of them none)."""
    prelude = st.sampled_from(((), ("login",), ("login", "connect"), ("login", "connect")))

    def build(parts: tuple[tuple[str, ...], list[tuple[Step, float]]]) -> list[Step]:
        first, rest = parts
        steps = [Step("login", "alice") if w == "login" else Step(w) for w in first]
        for step, pause in rest:
            steps.append(step)
            if pause:
                steps.append(Step("wait", float(pause)))
        return steps

    # The length is drawn first (uniform, shrinking to 0): a plain `st.lists` averages ~5 inputs.
    body = st.integers(0, max_inputs).flatmap(
        lambda n: st.lists(st.tuples(inputs(waits=waits), pauses), min_size=n, max_size=n))
    return st.tuples(prelude, body).map(build)


def app_settings() -> st.SearchStrategy[AppSettings]:
    return st.builds(lambda auto, limit: AppSettings(region="eu", auto_establish_socket_connection=auto,
                                                     max_reconnect_attempts=limit),
                     st.booleans(), st.sampled_from((None, None, None, 0, 2)))


# --- Live side ----------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a live API call (run in a task of its own) ended with, once it ended."""

    done: bool = False
    result: object = None
    error: CometChatException | None = None

    def show(self) -> str:
        if not self.done:
            return "still waiting"
        return f"{self.error.code}" if self.error is not None else repr(self.result)


@dataclass
class Stats:
    """What a run did: for the report, and to check that a run exercised what it claims."""

    examples: int = 0
    steps: int = 0  # every step compared, the recovery's included
    connected_examples: int = 0  # examples connected after some input (before the recovery)
    recoveries: int = 0  # liveness checks passed after lifting every fault
    max_sockets: int = 0  # the most realtime sockets the server counted after a step
    words: Counter[str] = field(default_factory=Counter)  # inputs drawn (the recovery's excluded)
    outcomes: Counter[str] = field(default_factory=Counter)  # live API results: "connect ERR_..."


class Pair:
    """One live client against the reference server, and the Simulation it must match."""

    def __init__(self, settings: AppSettings, seed: int, server: ReferenceServer, store: Path,
                 connector: Connector | None, nursery: trio.Nursery, clock: trio.testing.MockClock,
                 transport: Transport, cushion: float, *,
                 machine: Machine | None = None, stats: Stats | None = None, front: Front = "trio") -> None:
        self.settings, self.seed, self.server, self.store = settings, seed, server, store
        self.connector, self.nursery, self.clock = connector, nursery, clock
        self.transport, self.cushion, self.front = transport, cushion, front
        self.stats = stats if stats is not None else Stats()
        self.sim = Simulation(settings, seed=seed, app_id=APP_ID, machine=machine)
        #: One stream of backoff draws for every process, as the Simulation keeps one across restarts.
        self.random = random.Random(seed)
        self.t0 = trio.current_time()
        self.recorder = ListenerRecorder()
        self.steps: list[Step] = []
        self.client: Client | Any | None = None
        self._process: AsyncExitStack | None = None
        self.double_sockets: list[float] = []  # instants the server counted two sockets at once
        self.connected_once = False
        self.recovering = False

    # --- Process lifetime ----------------------------------------------------------------------
    async def launch(self) -> None:
        """Start the app process: open the client with the listener (so that it hears L2's
        restore) and the platform's network state (the Simulation's restart keeps it)."""
        offline = self.sim.model.network is Network.OFFLINE
        stack = AsyncExitStack()
        if self.front == "asyncio":
            import trio_asyncio
            from asyncio_bridge import TrioView, socketpair_connector

            from cometchat_fsm.asyncio.client import open_client as open_asyncio_client

            opened = await stack.enter_async_context(trio_asyncio.aio_as_trio(open_asyncio_client(
                APP_ID, self.settings, url=self.server.url, store=self.store,
                connector=socketpair_connector(self.server) if self.transport == "memory" else None,
                random=self.random.random, listeners={"rec": self.recorder}, online=not offline)))
            self.client, self._process = TrioView(opened), stack
            return
        client = await stack.enter_async_context(open_client(
            APP_ID, self.settings, url=self.server.url, store=self.store, connector=self.connector,
            random=self.random.random, listeners={"rec": self.recorder}, online=not offline))
        self.client, self._process = client, stack

    async def kill(self) -> None:
        if self._process is not None:
            await self._process.aclose()
        self._process = self.client = None

    # --- Settling and time ---------------------------------------------------------------------
    async def settle(self) -> None:
        """Let every task run until all are blocked (the clock stands still meanwhile)."""
        await trio.testing.wait_all_tasks_blocked(self.cushion)

    def now_us(self) -> int:
        return round((trio.current_time() - self.t0) * US)

    async def advance_to(self, target_us: int) -> None:
        """Jump from deadline to deadline up to `target_us`, settling after each, so every timer
        due at or before the target has fired (in deadline order) when this returns."""
        target = self.t0 + target_us / US
        while True:
            await self.settle()
            gap = trio.lowlevel.current_statistics().seconds_to_next_deadline
            now = trio.current_time()
            if now + gap <= target + TOLERANCE:
                self.clock.jump(max(gap, 0.0))
                continue
            if target > now:
                self.clock.jump(target - now)
            await self.settle()
            return

    async def call(self, fn: Callable[[], Awaitable[object]]) -> Outcome:
        """Run a live API call in a task of its own (so a `connect()` that waits cannot block the
        step), settle, and return its outcome so far."""
        out = Outcome()

        async def run() -> None:
            try:
                out.result = await fn()
            except CometChatException as exc:
                out.error = exc
            out.done = True

        self.nursery.start_soon(run)
        await self.settle()
        return out

    async def watch_sockets(self) -> None:
        """Note every instant the server counts two realtime sockets (D4: never)."""
        while True:
            await self.server.wait_open_sockets(2)
            self.double_sockets.append(trio.current_time() - self.t0)
            await self.server.wait_open_sockets(1)

    # --- Steps ---------------------------------------------------------------------------------
    async def step(self, step: Step) -> None:
        """Apply `step` to both sides, settle, and compare (raise `LiveDivergence`)."""
        self.steps.append(step)
        self.stats.steps += 1
        if not self.recovering:
            self.stats.words[step.word] += 1
        sim = self.sim
        attempts_before = len(sim.attempts)
        sim_result: object = None
        sim_error: CometChatException | None = None
        try:
            sim_result = apply(sim, step)
        except CometChatException as exc:
            sim_error = exc
        live = await self._live(step)
        # Over loopback a frame may still be in the kernel after a settle on a busy machine: give
        # it more real time (the clock stands still meanwhile) before calling it a divergence.
        for patience in ((0.05, 0.5, None) if self.transport == "loopback" else (None,)):
            try:
                if live is not None:
                    self._compare_call(step, sim_result, sim_error, live, sim.attempts[attempts_before:])
                self.compare()
                break
            except LiveDivergence:
                if patience is None:
                    raise
                await trio.testing.wait_all_tasks_blocked(patience)
        if live is not None:
            self.stats.outcomes[f"{step.word} {live.show()}"] += 1

    async def _live(self, step: Step) -> Outcome | None:
        c, server = self.client, self.server
        assert c is not None
        match step.word:
            case "login":
                uid = str(step.arg)
                return await self.call(lambda: c.login(uid, auth_key=server.auth_key))
            case "logout":
                return await self.call(c.logout)
            case "connect":
                return await self.call(c.connect)
            case "disconnect":
                return await self.call(c.disconnect)
            case "ping":
                return await self.call(c.ping)
            case "background":
                c.enter_background()
            case "foreground":
                c.enter_foreground()
            case "offline":
                c.network_lost()
            case "online":
                c.network_restored()
            case "wait":
                await self.advance_to(round(self.sim.now * US))
            case "restart":
                await self.kill()
                await self.launch()
            case "drop":
                for uid in USERS:
                    server.drop(uid)
            case "silent":
                for uid in USERS:
                    server.silence(uid)
            case "reject":
                server.reject_auth(bool(step.arg))
            case "throttle":
                for uid in USERS:  # the Simulation's switch is for every user
                    server.throttle(uid, bool(step.arg))
            case "overload":
                server.overload(None if step.arg is None else float(step.arg))
            case "flap":
                server.flap(None if step.arg is None else float(step.arg))
            case "refuse":
                server.refuse_login(bool(step.arg))
            case "busy":
                server.busy(None if step.arg is None else float(step.arg))
            case "latency":
                server.latency(float(step.arg or 0.0))
            case word:
                raise ValueError(f"no live mapping for {word!r}")
        await self.settle()
        return None

    def _compare_call(self, step: Step, sim_result: object, sim_error: CometChatException | None,
                      live: Outcome, attempts: list[tuple[float, CometChatException | None]]) -> None:
        """An API call: the same error where the Simulation raises; otherwise the same success,
        except `connect()`, which on the live client answers for the attempt it waited for."""
        want: Outcome
        if sim_error is not None:
            want = Outcome(True, None, sim_error)
        elif step.word == "connect":
            if attempts:
                error = attempts[0][1]
                want = Outcome(True, None if error else sim_result, error)
            elif self.sim.phase in LIVE:
                want = Outcome(True, sim_result)
            elif self.sim.phase is Phase.OFFLINE:
                want = Outcome(True, None, catalogue.CONNECT_OFFLINE.exception())
            else:
                want = Outcome()  # the attempt is still in flight in the Simulation too
        elif step.word == "login":  # the Simulation's answer comes after its latency (D16: refused)
            if self.sim.server.latency_us:
                want = Outcome()
            elif self.sim.server.refuse_login:
                want = Outcome(True, None, LOGIN_REFUSED.exception())
            else:
                want = Outcome(True, None)  # the live login returns a User: only its success counts
                if live.done and live.error is None:
                    return
        else:
            want = Outcome(True, sim_result)
        same = live.done == want.done and (not live.done or (
            (live.error is None and want.error is None and live.result == want.result)
            or (live.error is not None and want.error is not None and live.error.code == want.error.code)))
        if not same:
            self.fail(f"{step} should end with {want.show()}, live ended with {live.show()}")

    def compare(self) -> None:
        sim, c = self.sim, self.client
        assert c is not None
        want = [(round(t * US), n) for t, n in sim.notifications]
        got = [(round(t * US), n) for t, n in self.recorder.calls]
        # ~57 retries of a flapping server over 600 s (vectors D14-6, D14-7) drift 3 us apart.
        draws = sum(1 for _, e in sim.effects_log if isinstance(e, StartTimer) and e.timer is Timer.RETRY)
        slack = SLACK_US + draws // 2
        if not _same_notes(got, want, slack):
            pairs = enumerate(zip(got, want, strict=False))
            i = next((i for i, (a, b) in pairs if not _same_notes([a], [b], slack)), min(len(got), len(want)))
            self.fail(f"notifications differ from #{i}: Simulation {_fmt(want[i:i + 3])}, "
                      f"live {_fmt(got[i:i + 3])}")
        if self.recorder.untyped_errors:
            self.fail(f"D11: on_connection_error got {self.recorder.untyped_errors[0]!r}, "
                      "not a CometChatException")
        if c.get_connection_status() is not sim.status:
            self.fail(f"status: Simulation {sim.status.value}, live {c.get_connection_status().value}")
        self.connected_once |= sim.status is ConnectionStatus.CONNECTED and not self.recovering
        counted = self.server.open_sockets()
        self.stats.max_sockets = max(self.stats.max_sockets, counted)
        if counted != sim.open_sockets:
            self.fail(f"open sockets: Simulation {sim.open_sockets}, server counts {counted}")
        user = c.get_logged_in_user()
        if (user.uid if user else None) != sim.logged_in_user:
            self.fail(f"logged-in user: Simulation {sim.logged_in_user}, live {user}")
        stored = SessionStore(self.store).load(APP_ID)
        if (stored.uid if stored else None) != sim.stored_user:
            self.fail(f"stored session: Simulation {sim.stored_user}, live {stored}")
        if self.double_sockets:
            self.fail(f"the server counted two sockets at t={self.double_sockets[0]:g} (D4)")
        if self.now_us() != round(sim.now * US):
            self.fail(f"clock: Simulation {sim.now:g}, live {self.now_us() / US:g}")

    def fail(self, what: str) -> None:
        raise LiveDivergence(what, self.steps, self.settings, self.seed, f"{self.front}, {self.transport}")

    # --- The liveness check --------------------------------------------------------------------
    async def recover(self) -> None:
        """Lift every fault, go online and to the foreground, be logged in and want a connection:
        the client must then be connected within RECOVERY seconds, never stuck connecting. With
        `max_reconnect_attempts` it may instead have given up (a half-open link still costs one
        loss); then one `connect()` must get it connected within RECOVERY seconds."""
        self.recovering = True
        for step in (Step("reject", False), Step("throttle", False), Step("overload", None),
                     Step("flap", None), Step("refuse", False), Step("busy", None), Step("latency", 0.0),
                     Step("online"), Step("foreground")):
            await self.step(step)
        if self.sim.phase is Phase.LOGGING_IN:  # a login asked before the latency was lifted
            await self.step(Step("wait", self.settings.connect_timeout))  # is answered by then
        if self.sim.logged_in_user is None or self.sim.model.credentials_rejected():
            await self.step(Step("login", self.sim.logged_in_user or "alice"))  # D16: a fresh login
        for round_ in (1, 2):
            if self.sim.phase is Phase.IDLE:  # wants no connection (M5, D1, D5, retries exhausted)
                await self.step(Step("connect"))
            await self.step(Step("wait", RECOVERY))
            assert self.client is not None
            status = self.client.get_connection_status()
            if status is ConnectionStatus.CONNECTED:
                self.stats.recoveries += 1
                return
            gave_up = self.settings.max_reconnect_attempts is not None and self.client.phase is Phase.IDLE
            if round_ == 2 or not gave_up:
                self.fail(f"not connected {RECOVERY:g} s after every fault was lifted "
                          f"(status {status.value})")


def _same_notes(got: list[tuple[int, str]], want: list[tuple[int, str]], slack: int = SLACK_US) -> bool:
    """Same names in the same order at the same instants, up to `slack` microseconds: the
    Simulation rounds each random backoff delay to a whole microsecond, the live client sleeps
    the exact float, so the two drift apart by up to half a microsecond per delay drawn."""
    return len(got) == len(want) and all(
        a[1] == b[1] and abs(a[0] - b[0]) <= slack for a, b in zip(got, want, strict=True))


def _fmt(notes: list[tuple[int, str]]) -> str:
    return ", ".join(f"{name}@{t / US:g}" for t, name in notes) or "nothing"


# --- Running one example -------------------------------------------------------------------------

@asynccontextmanager
async def _server() -> AsyncIterator[ReferenceServer]:
    async with serve_reference(users=USERS) as server:
        yield server


@asynccontextmanager
async def _event_loop(front: Front) -> AsyncIterator[None]:
    """For the asyncio front end, an asyncio loop on top of this trio run (trio_asyncio)."""
    if front == "trio":
        yield
        return
    import trio_asyncio

    async with trio_asyncio.open_loop():
        yield


def run_example(settings: AppSettings, seed: int, steps: list[Step], *, transport: Transport = "memory",
                recover: bool = True, machine: Machine | None = None,
                stats: Stats | None = None, front: Front = "trio") -> None:
    """Run `steps` on a live client and a Simulation side by side (then, with `recover`, the
    liveness check); raise `LiveDivergence` at the first difference.

    In memory the clock may jump whenever every task is blocked. Over loopback it may only
    after 10 ms of real idleness (threshold 0 would race real I/O), and a settle waits for 5 ms
    of real quiet so that frames in flight in the kernel arrive. `machine` replaces the
    Simulation's transition table (to check that the comparison catches a broken one).
    `front="asyncio"` drives the asyncio front end instead, in the same virtual time
    (tests/asyncio_bridge.py; in memory its sockets are socketpairs, served by the trio server).
    """
    threshold, cushion = (0.0, 0.0) if transport == "memory" else (0.01, 0.005)
    clock = trio.testing.MockClock(autojump_threshold=threshold)
    stats = stats if stats is not None else Stats()

    async def main() -> None:
        with trio.fail_after(10_000), tempfile.TemporaryDirectory() as store:  # virtual seconds
            async with _server() as server, _event_loop(front), trio.open_nursery() as nursery:
                connector = memory_connector(server) if transport == "memory" and front == "trio" else None
                pair = Pair(settings, seed, server, Path(store), connector, nursery, clock, transport,
                            cushion, machine=machine, stats=stats, front=front)
                nursery.start_soon(pair.watch_sockets)
                try:
                    await pair.launch()
                    for step in steps:
                        await pair.step(step)
                    stats.connected_examples += pair.connected_once
                    if recover:
                        await pair.recover()
                finally:
                    stats.examples += 1
                    await pair.kill()
                    nursery.cancel_scope.cancel()

    try:
        trio.run(main, clock=clock)
    except BaseExceptionGroup as group:
        raise single_exception(group) from None
