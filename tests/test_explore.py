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
    try:
        result = explore(machine=build_machine(MUTANTS[invariant]),
                         max_reconnect_attempts=LIMITS.get(invariant))
    except AssertionError:
        # The model's own guard (at most one socket) fired before the invariant could.
        assert invariant == "at most one socket"
        return
    assert not result.ok
    assert invariant in {v.invariant for v in result.violations}, [str(v) for v in result.violations]
