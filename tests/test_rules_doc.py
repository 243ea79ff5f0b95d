"""docs/rules.md is generated from specs/ and the checks, and kept fresh like the diagrams."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import shutil
import sys
from pathlib import Path

import pytest

from cometchat_fsm.cli import rules_doc
from cometchat_fsm.cli.main import main
from cometchat_fsm.conformance import oracle
from cometchat_fsm.conformance.explore import INVARIANT_RULES, INVARIANTS
from cometchat_fsm.conformance.specs import ENV_VAR, Specs, load_specs
from cometchat_fsm.core.lifecycle import TABLE

Capsys = pytest.CaptureFixture[str]

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / rules_doc.NAME
SPECS = load_specs(REPO / "specs")
CHANGED_THEN = "then = \"the SDK reconnects without any call from the app as soon as it can\""


def _copy_repo_parts(tmp_path: Path, *, with_doc: bool = True) -> Path:
    """specs/ (and docs/rules.md) in a scratch directory, as the CLI finds them via $COMETCHAT_FSM_SPECS."""
    shutil.copytree(REPO / "specs", tmp_path / "specs")
    if with_doc:
        (tmp_path / "docs").mkdir()
        shutil.copy(DOC, tmp_path / "docs" / rules_doc.NAME)
    return tmp_path / "specs"


def _section(text: str, rule_id: str) -> str:
    start = text.index(f"\n### {rule_id}\n")
    end = text.find("\n### ", start + 1)
    return text[start:] if end < 0 else text[start:end]


# --- Freshness -----------------------------------------------------------------------------------

def test_committed_rules_doc_is_fresh() -> None:
    assert rules_doc.problem(DOC, rules_doc.render(SPECS)) is None, "run `cometchat-fsm rules`"


def test_cli_check_passes_on_the_repo(capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert main(["rules", "--check"]) == 0
    assert "docs/rules.md is up to date" in capsys.readouterr().out


def test_a_changed_rule_text_makes_the_doc_stale(tmp_path: Path, capsys: Capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    specs_dir = _copy_repo_parts(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(specs_dir))
    assert main(["rules", "--check"]) == 0
    rules = specs_dir / "rules.toml"
    text = rules.read_text(encoding="utf-8")
    assert text.count(CHANGED_THEN) == 1
    rules.write_text(text.replace(CHANGED_THEN, CHANGED_THEN[:-1] + ', and says so"'), encoding="utf-8")
    capsys.readouterr()
    assert main(["rules", "--check"]) == 1
    assert capsys.readouterr().out.strip() == (
        f"{tmp_path / 'docs' / rules_doc.NAME}: stale; run `cometchat-fsm rules`")
    assert main(["rules"]) == 0
    assert "as soon as it can, and says so." in (tmp_path / "docs" / rules_doc.NAME).read_text()
    assert main(["rules", "--check"]) == 0


def test_a_missing_doc_is_named(tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(_copy_repo_parts(tmp_path, with_doc=False)))
    assert main(["rules", "--check"]) == 1
    assert capsys.readouterr().out.strip() == (
        f"{tmp_path / 'docs' / rules_doc.NAME}: missing; run `cometchat-fsm rules`")


def test_out_writes_the_file_named(tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    out = tmp_path / "elsewhere" / "rules.md"
    assert main(["rules", "--check", "--out", str(out)]) == 1
    assert main(["rules", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
    assert main(["rules", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{out}: already up to date"


def test_a_changed_table_makes_the_doc_stale() -> None:
    """"Where it is checked" follows the table: dropping a rule's rows changes the document."""
    real = rules_doc.gather(SPECS)
    fewer = dataclasses.replace(real, table=tuple(r for r in TABLE if "D8" not in r.rules))
    assert rules_doc.render(SPECS, fewer) != rules_doc.render(SPECS, real)
    assert "of the transition table" in _section(rules_doc.render(SPECS, real), "D8")
    assert "of the transition table" not in _section(rules_doc.render(SPECS, fewer), "D8")


# --- Content -------------------------------------------------------------------------------------

def test_first_line_is_the_banner() -> None:
    first = rules_doc.render(SPECS).splitlines()[0]
    assert first == f"<!-- {rules_doc.BANNER} -->"
    assert "from specs/rules.toml" in first and "Do not edit; run `cometchat-fsm rules`" in first


def test_every_rule_has_its_section_with_its_full_text() -> None:
    text = rules_doc.render(SPECS)
    for r in SPECS.rules:
        assert f"| [{r.id}](#{r.id.lower()}) |" in text
        section = _section(text, r.id)
        for part in (r.title, r.given, r.when, r.then, f"Examples: {len(r.examples)}.",
                     rules_doc.SOURCE_TEXT[r.source], rules_doc.STATUS_TEXT[r.status]):
            assert part in section, (r.id, part)
        assert "Where it is checked:" in section


def test_where_it_is_checked_comes_from_the_data() -> None:
    text = rules_doc.render(SPECS)
    l1_rows = sum("L1" in r.rules for r in TABLE)
    assert f"{l1_rows} rows of the transition table" in _section(text, "L1")
    assert '"at most one socket"' in _section(text, "D4")
    assert "`specs/constants.toml`: `background_window` = 30 s" in _section(text, "M2")
    assert "`connect()` fails with `ERR_APP_IN_BACKGROUND`" in _section(text, "P1")
    assert "`L3-*.jsonl`" in _section(text, "L3")
    d13 = _section(text, "D13")
    assert "tests/test_replay.py" in d13 and "transition table" not in d13 and "oracle" not in d13


def test_a_rule_nothing_checks_says_so() -> None:
    later = dataclasses.replace(SPECS.rule("D13"), id="D99", status="later", checked_by="")
    specs = Specs(SPECS.directory, (*SPECS.rules, later), SPECS.api, SPECS.constants)
    assert "- nowhere yet" in _section(rules_doc.render(specs), "D99")


# --- The data the document is derived from -------------------------------------------------------

def test_every_rule_id_the_checks_cite_is_in_the_specs() -> None:
    ids = {r.id for r in SPECS.rules}
    assert {i for r in TABLE for i in r.rules} <= ids
    assert {i for rules in INVARIANT_RULES.values() for i in rules} <= ids
    assert oracle.APPLIED_RULES <= ids


def test_every_invariant_names_its_rules() -> None:
    assert list(INVARIANT_RULES) == list(INVARIANTS)


def _oracle_sources() -> list[Path]:
    """The files of oracle.py and of every module defining one of `Oracle`'s bases (its rule groups)."""
    modules = {cls.__module__ for cls in oracle.Oracle.__mro__} | {oracle.__name__}
    return sorted(Path(inspect.getfile(sys.modules[m])) for m in modules if m.startswith("cometchat_fsm."))


def test_the_oracle_sources_are_its_modules() -> None:
    names = {path.name for path in _oracle_sources()}
    assert {"oracle.py", "oracle_state.py", "oracle_attempts.py", "oracle_server.py",
            "oracle_background.py"} <= names


def test_oracle_applied_rules_are_the_ids_written_in_it() -> None:
    ids = {r.id for r in SPECS.rules}
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in _oracle_sources()]
    written = {n.value for tree in trees for n in ast.walk(tree)
               if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in ids}
    assert written == oracle.APPLIED_RULES
