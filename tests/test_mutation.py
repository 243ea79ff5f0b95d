"""The systematic mutants of the core (conformance/mutants.py) and `check`'s verdict on them: a
fixed sample here (in-process, about 20 s); all of them with `make mutation` (docs/mutation.md)."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from collections import Counter
from contextlib import redirect_stdout

import pytest

from cometchat_fsm.conformance.mutants import all_mutants, applied, by_id
from cometchat_fsm.conformance.mutation import SAMPLE, equivalence, main, run_mutant
from cometchat_fsm.conformance.specs import Specs, load_specs
from cometchat_fsm.core import lifecycle, model, model_timers
from cometchat_fsm.core.model import ClientModel


@pytest.fixture(scope="module")
def specs() -> Specs:
    return load_specs()


#: The rule each of these must be blamed on: the audit's faults that only deep sequences show.
AUDIT_FAULTS = {
    "ping_called.1-dest:connected": "D12",  # ping in the background leaves featureThrottled
    "went_foreground.2-delete": "A1",  # back in the foreground while offline: stays disconnected
    "network_lost.3-delete": "D6a",  # a retry pending when the network goes: online waits for it
    "disconnect_called.1-drop:reset_retries": "D1",  # disconnect() keeps the retry count
    "went_background.1-drop:reset_retries": "A2",  # auto-mode background keeps the retry count
    "A-ping-unsent": "D3 M3",  # ping() reports success and sends nothing (M3 in manual mode)
    "A-close-attempt-unended": "D15",  # a cancelled attempt is never reported ended
    "R-late-outcomes": "D4",  # a closed socket's late outcome taken as the current one's
    "R-cancelled-timers": "D4",  # a cancelled timer's late firing acted on
}

#: Survivors of the first full run, now killed: the session-store writes compared (D16 renewal), a
#: settled client's retry count (blamed on the row that settled it), a socket the core still holds.
FORMER_SURVIVORS = {
    "session_renewed.1-drop:store_session": "D16",
    "went_background.3-drop:reset_retries": "D8",
    "pong_overdue.2-drop:reset_retries": "D15",
    "socket_closed.6-drop:close_socket": "D4",
}


def test_every_kind_of_mutant_is_made_and_applied_in_memory_only() -> None:
    mutants = all_mutants()
    assert len({m.id for m in mutants}) == len(mutants) > 300
    kinds = Counter(m.kind for m in mutants)
    assert set(kinds) == {"table", "constant", "backoff", "route", "action"}
    table_kinds = Counter(m.id.split("-", 1)[1].split(":")[0] for m in mutants if m.kind == "table")
    assert {"delete", "dest", "drop", "unless", "negate", "swap"} <= set(table_kinds)
    assert table_kinds["delete"] == len(lifecycle.TABLE)
    def core() -> tuple[dict[object, object], ...]:
        return (dict(lifecycle.ROUTES), dict(vars(ClientModel)), dict(vars(model)),
                dict(vars(model_timers.TimerActions)), dict(vars(model_timers)))
    before = core()
    for m in mutants:
        if m.patches:
            with applied(m):
                assert core() != before, m.id
    assert core() == before  # every patch undone


@pytest.mark.parametrize("mutant_id", SAMPLE)
def test_the_sample_of_mutants_fails_check_naming_the_rule(specs: Specs, mutant_id: str) -> None:
    verdict = run_mutant(by_id()[mutant_id], "quick", specs=specs)
    assert verdict.killed and verdict.rules, verdict
    if mutant_id in AUDIT_FAULTS:
        assert set(AUDIT_FAULTS[mutant_id].split()) & set(verdict.rules), verdict


@pytest.mark.parametrize(("mutant_id", "rule"), sorted(FORMER_SURVIVORS.items()))
def test_former_survivors_fail_check_naming_the_rule(specs: Specs, mutant_id: str, rule: str) -> None:
    verdict = run_mutant(by_id()[mutant_id], "quick", specs=specs)
    assert verdict.killed and rule in verdict.rules, verdict


def test_only_a_mutant_that_changes_nothing_is_shown_equivalent() -> None:
    table = by_id()
    # Rows of one trigger from different phases never compete: swapping them changes nothing.
    assert equivalence(table["login_started.1-swap"])
    assert not equivalence(table["disconnect_called.1-delete"])
    assert not equivalence(table["C-max_retry_after"])  # shows only with a hint over 300 s (D18)
    assert not equivalence(table["R-late-pong"])  # shows only with a late outcome
    # Bookkeeping nobody observes may differ: a pending user left set after a failed login.
    assert equivalence(table["login_failed.1-drop:forget_user"])


def test_a_seed_determines_the_run_whatever_ran_before(specs: Specs) -> None:
    # Pollute what a process may carry: the random module, a Hypothesis run, another mutant.
    random.seed(12345)
    random.random()
    run_mutant(by_id()["disconnect_called.1-delete"], "quick", seed=7, specs=specs)
    here = run_mutant(by_id()["A-ping-unsent"], "quick", seed=7, specs=specs)
    out = subprocess.run([sys.executable, "-m", "cometchat_fsm.conformance.mutation", "--one",
                          "A-ping-unsent", "--seed", "7"], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    fresh = json.loads(out.splitlines()[-1])
    assert (here.how, here.rules, here.detail) == (fresh["how"], fresh["rules"], fresh["detail"])
    assert "replay" not in here.detail and "simulate" in here.detail  # the replay command itself


def test_the_mutation_command_prints_the_score() -> None:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status = main(["--only", "login_started.1-swap", "A-ping-unsent", "--jobs", "1"])
    text = buffer.getvalue()
    assert status == 0, text
    assert "mutation score: 1/1 non-equivalent mutants killed by check (100.0%)" in text
    assert "equivalent login_started.1-swap" in text
