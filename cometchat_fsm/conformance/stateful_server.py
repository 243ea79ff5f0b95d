"""The server faults of the Hypothesis run (`check`, `conform`): each a rule that sets the same
fault on the system under test and on the oracle, after `pause` seconds.

A mixin of `stateful.LifecycleConformance`, which gives `_do` (drive both sides, compare).
"""

from __future__ import annotations

from collections.abc import Callable

import hypothesis.strategies as st
from hypothesis.stateful import rule

from cometchat_fsm.conformance.oracle import Expected, Oracle
from cometchat_fsm.conformance.subject import Subject
from cometchat_fsm.sim.script import Step

EDGES = (0.0, 0.001, 0.5, 1.0, 2.999, 3.0, 3.001, 9.999, 10.0, 14.999, 15.0, 15.001, 18.0,
         29.999, 30.0, 30.001, 45.0)
WAITS = st.one_of(st.sampled_from(EDGES),
                  st.floats(min_value=0.0, max_value=60.0, allow_nan=False).map(lambda x: round(x, 3)))
#: Time after an input: half the steps let none pass, so that bursts of inputs at one instant
#: are tried too; the rest wait around an edge. (Swarm testing may switch the `wait` rule off
#: for a whole example; pauses keep time moving there.)
PAUSES = st.one_of(st.just(0.0), WAITS)
LATENCIES = st.sampled_from((0.0, 0.0, 0.25, 1.0, 2.0, 4.0, 12.0))
HINTS = st.sampled_from((None, None, 0.5, 5.0, 40.0))
#: ... and, in the oracle run only, a hint far over max_retry_after (D18).
ORACLE_HINTS = st.one_of(HINTS, st.just(1_000_000.0))
#: How long a flapping server keeps each accepted socket: either side of stable_after (D14).
FLAPS = st.sampled_from((None, None, 0.05, 1.0, 9.999, 10.0))
#: How late a busy link brings a keep-alive's answer: either side of the 3 s pong timeout (D17).
BUSY = st.sampled_from((None, None, 2.0, 4.0, 20.0))


class ServerFaultRules:
    """The rules that script the ideal server's faults (D4-D18)."""

    def _do(self, pause: float, step: Step, on_sim: Callable[[Subject], object],
            on_oracle: Callable[[Oracle], Expected | None]) -> None:
        raise NotImplementedError  # given by LifecycleConformance

    @rule(pause=PAUSES)
    def drop(self, pause: float) -> None:
        self._do(pause, Step("drop"), lambda s: s.server_drop(), lambda o: o.server_drop())

    @rule(pause=PAUSES)
    def silent(self, pause: float) -> None:
        self._do(pause, Step("silent"), lambda s: s.server_silent(), lambda o: o.server_silent())

    @rule(flag=st.booleans(), pause=PAUSES)
    def reject(self, flag: bool, pause: float) -> None:
        self._do(pause, Step("reject", flag), lambda s: s.server_reject_auth(flag),
                 lambda o: o.server_reject_auth(flag))

    @rule(flag=st.booleans(), pause=PAUSES)
    def throttle(self, flag: bool, pause: float) -> None:
        self._do(pause, Step("throttle", flag), lambda s: s.server_throttle(flag),
                 lambda o: o.server_throttle(flag))

    @rule(seconds=LATENCIES, pause=PAUSES)
    def latency(self, seconds: float, pause: float) -> None:
        self._do(pause, Step("latency", seconds), lambda s: s.server_latency(seconds),
                 lambda o: o.server_latency(seconds))

    @rule(hint=ORACLE_HINTS, pause=PAUSES)
    def overload(self, hint: float | None, pause: float) -> None:
        self._do(pause, Step("overload", hint), lambda s: s.server_overloaded(hint),
                 lambda o: o.server_overloaded(hint))

    @rule(seconds=FLAPS, pause=PAUSES)
    def flap(self, seconds: float | None, pause: float) -> None:
        self._do(pause, Step("flap", seconds), lambda s: s.server_flap(seconds),
                 lambda o: o.server_flap(seconds))

    @rule(seconds=BUSY, pause=PAUSES)
    def busy(self, seconds: float | None, pause: float) -> None:
        self._do(pause, Step("busy", seconds), lambda s: s.server_busy(seconds),
                 lambda o: o.server_busy(seconds))

    @rule(flag=st.booleans(), pause=PAUSES)
    def refuse(self, flag: bool, pause: float) -> None:
        self._do(pause, Step("refuse", flag), lambda s: s.server_refuse_login(flag),
                 lambda o: o.server_refuse_login(flag))
