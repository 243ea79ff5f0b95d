"""Exhaustive exploration: the real table keeps every invariant, and each invariant catches the
kind of broken table it is there for."""

from __future__ import annotations

import dataclasses

import pytest

from cometchat_fsm.conformance.explore import INVARIANTS, explore
from cometchat_fsm.core.lifecycle import TABLE, Row, build_machine
from cometchat_fsm.core.states import Phase


def test_the_real_table_keeps_every_invariant() -> None:
    for limit in (None, 2):
        result = explore(max_reconnect_attempts=limit)
        assert result.ok, "\n".join(map(str, result.violations))
        assert result.states > 50 and result.transitions > result.states
    # Every phase is reachable.
    assert result.states >= len(Phase)


def mutate(predicate: object, change: object) -> list[Row]:
    rows = []
    for r in TABLE:
        if predicate(r):  # type: ignore[operator]
            new = change(r)  # type: ignore[operator]
            if new is not None:
                rows.append(new)
        else:
            rows.append(r)
    assert len(rows) != len(TABLE) or rows != list(TABLE), "the mutation must change something"
    return rows


MUTANTS = {
    "manual background connection has its window armed": mutate(
        lambda r: r.trigger == "went_background" and "arm_window" in r.do,
        lambda r: dataclasses.replace(r, do=())),
    "auto mode never connected in background": mutate(
        lambda r: r.trigger == "went_background" and "auto" in r.when, lambda r: None),
    "no stuck connecting": mutate(
        lambda r: r.trigger == "retry_due", lambda r: dataclasses.replace(r, dest=r.source[0], do=())),
    "no timer survives logout or disconnect": mutate(
        lambda r: r.trigger == "disconnect_called",
        lambda r: dataclasses.replace(r, do=("close_socket",))),
    "at most one socket": mutate(
        lambda r: r.trigger == "network_lost" and r.dest is Phase.OFFLINE and "close_socket" in r.do,
        lambda r: dataclasses.replace(r, do=("cancel_socket_timers",))),
    # D16: returning to the foreground forgets that the credentials were rejected.
    "no socket is opened while credentials are rejected": mutate(
        lambda r: r.trigger == "went_foreground" and "not credentials_rejected" in r.when,
        lambda r: dataclasses.replace(r, when=tuple(c for c in r.when if c != "not credentials_rejected"))),
    # D14: the old rule, the count reset by every accepted authentication.
    "the retry count never resets before a connection has held for stable_after": mutate(
        lambda r: r.trigger == "auth_accepted",
        lambda r: dataclasses.replace(r, do=(*r.do, "reset_retries"))),
    # D15: giving up silently.
    "exhausting the attempts ends in disconnected with exactly one on_connection_error": mutate(
        lambda r: "give_up" in r.do,
        lambda r: dataclasses.replace(r, do=tuple(d for d in r.do if d != "give_up"))),
}
#: The attempt limit under which each invariant's mutant shows (None: unlimited).
LIMITS = {"exhausting the attempts ends in disconnected with exactly one on_connection_error": 2}


@pytest.mark.parametrize("invariant", sorted(MUTANTS))
def test_each_invariant_catches_its_mutant(invariant: str) -> None:
    assert invariant in INVARIANTS
    result = explore(machine=build_machine(MUTANTS[invariant]), max_reconnect_attempts=LIMITS.get(invariant))
    assert not result.ok
    found = {v.invariant for v in result.violations}
    if invariant == "at most one socket":
        # The model's own guard (one socket, D4) fires before the invariant can: a verdict naming
        # D4, not a traceback.
        crash = next(v for v in result.violations if v.invariant == "the core never fails its own checks")
        assert "D4" in crash.rules and "at most one socket" in crash.event
        return
    assert invariant in found, [str(v) for v in result.violations]


def test_the_exploration_stops_at_the_first_broken_invariant_and_stays_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cometchat_fsm.core.model import ClientModel

    def forget_socket(self: ClientModel) -> None:  # the socket is forgotten, never closed
        self.socket = None
    monkeypatch.setattr(ClientModel, "close_socket", forget_socket)
    # Every reconnect opens one more socket: without a bound the state space grows forever.
    result = explore(first_violation=False, max_states=300)
    assert "the state space stays bounded" in {v.invariant for v in result.violations}
    assert len(result.violations) <= 51 and result.states <= 310
    first = explore()
    assert len({v.state for v in first.violations}) == 1  # one state's violations, then it stopped
    assert "at most one socket" in {v.invariant for v in first.violations}


def test_late_outcomes_and_cancelled_timers_change_nothing() -> None:
    from cometchat_fsm.conformance.mutants import applied, by_id

    for mutant_id in ("R-late-outcomes", "R-cancelled-timers"):
        with applied(by_id()[mutant_id]):
            result = explore()
        assert "a late outcome of a closed socket or a cancelled timer changes nothing" in \
            {v.invariant for v in result.violations}, mutant_id
