"""Hypothesis stateful run: random inputs and faults into a Simulation and the oracle side by
side; after every step their observables must agree.

Time steps are drawn around the documented edges (30 s window, 15 s keep-alive, 3 s pong
timeout, 10 s attempt timeout) as well as at random. On a disagreement the assertion names the
rule the oracle applied and carries the whole input sequence as a `simulate` script.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import hypothesis
import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, reject, settings
from hypothesis.reporting import with_reporter
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, initialize, invariant, rule
from transitions import Machine

from cometchat_fsm.conformance.oracle import Expected, Oracle
from cometchat_fsm.conformance.specs import Specs
from cometchat_fsm.conformance.stateful_server import PAUSES, WAITS, ServerFaultRules
from cometchat_fsm.conformance.steering import (
    Scenario,
    crash_rule,
    fmt,
    notification_rule,
    outcome,
    same_notes,
    status_rule,
)
from cometchat_fsm.conformance.subject import Subject, SubjectFactory, simulation_subject
from cometchat_fsm.core.effects import StoreSession
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.settings import AppSettings
from cometchat_fsm.sim.script import Step


class Divergence(AssertionError):
    """The machine and the documented behaviour disagree; `rule` is the broken rule's ID."""

    def __init__(self, rule: str, what: str, script: str, mode: str, seed: int,
                 max_reconnect_attempts: int | None = None) -> None:
        self.rule, self.what, self.script, self.mode, self.seed = rule, what, script, mode, seed
        self.max_reconnect_attempts = max_reconnect_attempts
        super().__init__(f"rule {rule} broken: {what}\nreplay: {self.command}")

    @property
    def command(self) -> str:
        """The `simulate` command line that replays the failing input sequence."""
        limit = "" if self.max_reconnect_attempts is None else \
            f" --max-reconnect-attempts {self.max_reconnect_attempts}"
        return f"cometchat-fsm simulate --{self.mode} --seed {self.seed}{limit} \"{self.script}\""


@dataclass
class RunContext:
    """Shared by every example of one run: the specs, the machine under test, rule hits."""

    specs: Specs
    machine: Machine | None = None
    hits: Counter[str] = field(default_factory=Counter)
    examples: int = 0
    steps: int = 0
    progress: Callable[[int], None] | None = None
    #: The system under test for each example (default: an in-process Simulation); a driver
    #: subprocess plugs in here (conformance/driver.py).
    subject: SubjectFactory = simulation_subject
    #: Rules whose divergence is already known in this run: an example that breaks one again is
    #: abandoned (a wrong answer alone is noted and the example goes on), so that the search
    #: looks for the others.
    known: frozenset[str] = frozenset()
    #: Every divergence of a known rule seen (rule -> count), answers and states alike.
    known_seen: Counter[str] = field(default_factory=Counter)
    #: Whether the system under test has the max_reconnect_attempts setting (else always unlimited).
    retry_limit: bool = True
    #: How far (microseconds) a notification's time may be from the oracle's: a driver's clock may
    #: sleep exact floats where the oracle rounds each random delay to a whole microsecond.
    tolerance_us: int = 0
    #: Prefixes an example may start from (steering, see `Scenario`); empty: none.
    scenarios: tuple[Scenario, ...] = ()


class LifecycleConformance(ServerFaultRules, RuleBasedStateMachine):
    """Rules are the Simulation's inputs and server faults; the invariant is agreement."""

    context: RunContext  # set by `make_machine`

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Step] = []
        self.sim: Subject | None = None
        self.oracle: Oracle | None = None
        self.mode = "auto"
        #: A known rule whose wrong answer was looked past at the last input, until the states are
        #: next compared: a difference then follows from that answer and is that rule's, not the
        #: one the oracle applied after it (the JS SDK's connect() answering nothing and connecting).
        self.looked_past: str | None = None
        self.seed = 0
        self.limit: int | None = None

    @initialize(auto=st.booleans(), seed=st.integers(0, 2**16),
                limit=st.sampled_from((None, None, None, 0, 2)),
                prelude=st.sampled_from(("", "login", "login+connect", "login+connect")), late=st.booleans(),
                data=st.data())
    def start(self, auto: bool, seed: int, limit: int | None, prelude: str, late: bool,
              data: st.DataObject) -> None:
        """A fresh client; most examples start logged in and connected, where most rules live; a
        third start from one of the specs' examples (`Scenario`)."""
        ctx = self.context
        scenario = None
        if ctx.scenarios and data.draw(st.integers(0, 2), label="from an example") == 2:
            scenario = data.draw(st.sampled_from(ctx.scenarios), label="scenario")
            auto, limit, prelude = scenario.mode == "auto", scenario.limit, ""
        ctx.examples += 1
        if ctx.progress is not None:
            ctx.progress(ctx.examples)
        self.mode = "auto" if auto else "manual"
        self.seed = seed
        if not ctx.retry_limit:
            limit = None  # the system under test has no such setting
        app = AppSettings(region="eu", auto_establish_socket_connection=auto, max_reconnect_attempts=limit)
        self.limit = limit
        self.sim = ctx.subject(app, seed, ctx.machine)
        self.oracle = Oracle(ctx.specs, auto=auto, seed=seed, max_reconnect_attempts=limit)
        if late and hasattr(self.sim, "deliver_late"):  # a real event loop's late deliveries
            self._do(0.0, Step("late", True), lambda s: s.deliver_late(True), lambda o: None)  # type: ignore[attr-defined]
        if prelude:
            self.login("alice", 0.0)
        if prelude == "login+connect":
            self.connect(0.0)
        for step in scenario.steps if scenario is not None else ():
            self._replay(step)
            self.agrees_with_the_rules()

    def _replay(self, step: Step) -> None:
        """One step of a scenario, as the rule of the same word would take it."""
        word, arg = step.word, step.arg
        if word == "wait":
            self.wait(float(arg or 0.0))
        elif word == "login":
            self.login(str(arg), 0.0)
        elif word in ("reject", "throttle", "refuse"):
            getattr(self, word)(bool(arg), 0.0)
        elif word == "latency":
            self.latency(float(arg or 0.0), 0.0)
        elif word in ("overload", "flap", "busy"):
            getattr(self, word)(None if arg is None else float(arg), 0.0)
        else:
            getattr(self, word)(0.0)

    # --- Driving both sides ---------------------------------------------------------------------
    def _do(self, pause: float, step: Step, on_sim: Callable[[Subject], object],
            on_oracle: Callable[[Oracle], Expected | None]) -> None:
        assert self.sim is not None and self.oracle is not None
        self.steps.append(step)
        self.context.steps += 1
        self.looked_past = None
        before = len(self.oracle.rules_hit)
        got_result: object = None
        got_error: CometChatException | None = None
        crash: Exception | None = None
        try:
            got_result = on_sim(self.sim)
        except CometChatException as exc:
            got_error = exc
        except Exception as exc:  # the core's own assert: a verdict, not a traceback
            crash = exc
        expected = on_oracle(self.oracle) or Expected()
        self.oracle.advance(0)  # like the Simulation: what is due at this instant happens now
        rules = self.oracle.rules_hit[before:]
        self.context.hits.update(rules)
        if crash is not None:
            self._fail(crash_rule(crash, rules), f"{step} crashed the client: "
                                                             f"{type(crash).__name__}: {crash}")
        # The rule that gives the expected answer (E2, D3, D4, ...), else the last one applied.
        blame = expected.rule if (expected.result is not None or expected.error_code is not None) else \
            (rules[-1] if rules else self._rule_of_call(step.word))
        if expected.error_code is not None:
            if got_error is None or (got_error.code, got_error.details) != (expected.error_code,
                                                                             expected.error_details):
                self._fail(blame, f"{step} should fail with {expected.error_code} "
                                  f"({expected.error_details!r}), got {got_error or got_result!r}",
                           answer=True)
        elif got_error is not None:
            self._fail(blame, f"{step} should succeed, raised {got_error!r}", answer=True)
        elif expected.result is not None and got_result != expected.result and \
                "results" not in getattr(self.sim, "unobserved", ()):
            self._fail("E2", f"{step} should return {expected.result!r}, returned {got_result!r}",
                       answer=True)
        if pause:
            self.agrees_with_the_rules()  # compare at the instant of the input, then let time pass
            self._do(0.0, Step("wait", float(pause)), lambda s: s.advance(pause), lambda o: o.advance(pause))

    def _rule_of_call(self, word: str) -> str:
        """The first rule specs/api.toml gives for an API call (the blame when the oracle applied none)."""
        try:
            return self.context.specs.call(word).rules[0]
        except (KeyError, IndexError):
            return "D11"

    def _fail(self, rule: str, what: str, *, answer: bool = False) -> None:
        if not answer and self.looked_past is not None:
            rule = self.looked_past  # a consequence of the wrong answer just looked past
        if rule in self.context.known:
            self.context.known_seen[rule] += 1
            if answer:
                self.looked_past = rule
                return  # the state may still agree: go on and look for other rules
            reject()  # states differ already: this example can tell nothing more
        script = "; ".join(str(s) for s in self.steps)
        raise Divergence(rule, what, script, self.mode, self.seed, self.limit)

    # --- Rules: app calls -----------------------------------------------------------------------
    @rule(uid=st.sampled_from(("alice", "bob")), pause=PAUSES)
    def login(self, uid: str, pause: float) -> None:
        self._do(pause, Step("login", uid), lambda s: s.login(uid), lambda o: o.login(uid))

    @rule(pause=PAUSES)
    def logout(self, pause: float) -> None:
        self._do(pause, Step("logout"), lambda s: s.logout(), lambda o: o.logout())

    @rule(pause=PAUSES)
    def connect(self, pause: float) -> None:
        self._do(pause, Step("connect"), lambda s: s.connect(), lambda o: o.connect())

    @rule(pause=PAUSES)
    def disconnect(self, pause: float) -> None:
        self._do(pause, Step("disconnect"), lambda s: s.disconnect(), lambda o: o.disconnect())

    @rule(pause=PAUSES)
    def ping(self, pause: float) -> None:
        self._do(pause, Step("ping"), lambda s: s.ping(), lambda o: o.ping())

    # --- Rules: platform ------------------------------------------------------------------------
    @rule(pause=PAUSES)
    def background(self, pause: float) -> None:
        self._do(pause, Step("background"), lambda s: s.enter_background(),
                 lambda o: o.enter_background())

    @rule(pause=PAUSES)
    def foreground(self, pause: float) -> None:
        self._do(pause, Step("foreground"), lambda s: s.enter_foreground(),
                 lambda o: o.enter_foreground())

    @rule(pause=PAUSES)
    def offline(self, pause: float) -> None:
        self._do(pause, Step("offline"), lambda s: s.network_lost(), lambda o: o.network_lost())

    @rule(pause=PAUSES)
    def online(self, pause: float) -> None:
        self._do(pause, Step("online"), lambda s: s.network_restored(), lambda o: o.network_restored())

    @rule(pause=PAUSES)
    def restart(self, pause: float) -> None:
        self._do(pause, Step("restart"), lambda s: s.restart(), lambda o: o.restart())

    @rule(seconds=WAITS)
    def wait(self, seconds: float) -> None:
        self._do(0.0, Step("wait", float(seconds)), lambda s: s.advance(seconds),
                 lambda o: o.advance(seconds))

    # --- Rules: server faults -------------------------------------------------------------------
    def _same_traffic(self, sim: Subject, oracle: Oracle) -> None:
        """What the server receives (app pings, keep-alives) and how each attempt ended, where the
        system under test can tell."""
        server = getattr(sim, "server", None)
        pings, keepalives = getattr(server, "pings", None), getattr(server, "keepalives", None)
        if pings is not None and pings != oracle.pings:
            self._fail("M3" if not oracle.auto else "D3",
                       f"the server should have received {oracle.pings} app pings, received {pings}")
        if keepalives is not None and keepalives != oracle.keepalives:
            self._fail("D7", f"the server should have received {oracle.keepalives} keep-alives, "
                             f"received {keepalives}")
        log = getattr(sim, "effects_log", None)
        writes = None if log is None else sum(isinstance(e, StoreSession) for _, e in log)
        if writes is not None and writes != oracle.session_writes:
            self._fail(oracle.session_rule, f"the session should have been stored {oracle.session_writes} "
                                            f"times, was stored {writes} times")
        attempts = getattr(sim, "attempts", None)
        if attempts is None:
            return
        got = [("" if error is None else error.code) for _, error in attempts]
        want = [code for code, _ in oracle.attempts]
        if got != want:
            i = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                     min(len(got), len(want)))
            rule = oracle.attempts[i][1] if i < len(want) else oracle.socket_rule
            self._fail(rule, f"attempt #{i + 1} should end {outcome(want, i)}, ended {outcome(got, i)}")

    # --- The invariant --------------------------------------------------------------------------
    @invariant()
    def agrees_with_the_rules(self) -> None:
        sim, oracle = self.sim, self.oracle
        if sim is None or oracle is None:
            return
        got = [(round(t * 1_000_000), name) for t, name in sim.notifications]
        want = [(n.time_us, n.name) for n in oracle.notes]
        tol = self.context.tolerance_us
        if not same_notes(got, want, tol):
            pairs = enumerate(zip(got, want, strict=False))
            i = next((i for i, (a, b) in pairs if not same_notes([a], [b], tol)),
                     min(len(got), len(want)))
            rule_id = notification_rule(oracle, got, i)
            self._fail(rule_id, f"notifications differ from #{i}: expected {fmt(want[i:i + 3])}, "
                                f"got {fmt(got[i:i + 3])}")
        if sim.status.value != oracle.status:
            self._fail(status_rule(oracle, sim.status.value),
                       f"status should be {oracle.status}, is {sim.status.value}")
        if sim.open_sockets is not None and sim.open_sockets != oracle.open_sockets:
            second = sim.open_sockets > max(1, oracle.open_sockets)  # D4: never a second socket
            self._fail("D4" if second else oracle.socket_rule,
                       f"open sockets should be {oracle.open_sockets}, are {sim.open_sockets}")
        self._same_traffic(sim, oracle)
        unobserved: frozenset[str] = getattr(sim, "unobserved", frozenset())  # what a driver lacks
        if "user" not in unobserved and sim.logged_in_user != oracle.logged_in:
            self._fail("D9" if oracle.logged_in is None else "L1",
                       f"logged-in user should be {oracle.logged_in}, is {sim.logged_in_user}")
        if "stored" not in unobserved and sim.stored_user != oracle.stored:
            self._fail("L1", f"stored session should be {oracle.stored}, is {sim.stored_user}")
        self.looked_past = None  # the states agree after the wrong answer: what differs later is new


def run_machine(machine: type[LifecycleConformance], given: settings, seed: int) -> Divergence | None:
    """One seeded Hypothesis run of `machine`, its reports silenced: the shrunk divergence, or None.
    Anything else the run raises (Unsatisfiable, a broken driver) is the caller's to handle."""
    test = hypothesis.seed(seed)(get_state_machine_test(machine, settings=given))
    try:
        with with_reporter(lambda _text: None):
            test()
    except Divergence as exc:
        return exc
    return None


def make_machine(context: RunContext, without: frozenset[str] = frozenset()) -> type[LifecycleConformance]:
    """A subclass bound to one run's context (Hypothesis builds the class itself per example);
    the rules named in `without` (inputs the system under test lacks) are never drawn."""
    hidden: dict[str, object] = {name: None for name in without}
    return type("LifecycleConformanceRun", (LifecycleConformance,), {"context": context, **hidden})


PROFILES: dict[str, tuple[int, int]] = {  # name -> (examples, max steps per example)
    "quick": (100, 20),
    "demo": (300, 30),
    "ci": (1000, 50),
    "thorough": (5000, 100),
}


def hypothesis_settings(profile: str, *, shrink: bool = True) -> settings:
    """The profile's settings; no example database, so a seed alone determines the run. Without
    `shrink` a divergence is reported as found (the mutation run only needs to know there is one)."""
    examples, steps = PROFILES[profile]
    phases = tuple(p for p in Phase if shrink or p not in (Phase.shrink, Phase.explain))
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False, phases=phases)
