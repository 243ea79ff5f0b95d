# The two quickstart commands, `make demo` and `make test`, set up .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check mutation bench soak diagrams lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cometchat-fsm check --profile demo
	$(BIN)/cometchat-fsm demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict cometchat_fsm
	$(BIN)/lint-imports
	sh tools/ensure_chromium.sh
	$(BIN)/pytest
	$(BIN)/python tools/check_wheel.py

check: $(STAMP)
	$(BIN)/cometchat-fsm check

# Every systematic mutant of the core against `check` (quick, then ci), two processes at a time,
# each bounded in time and memory; prints the score and every survivor (docs/mutation.md).
mutation: $(STAMP)
	$(BIN)/python -m cometchat_fsm.conformance.mutation --jobs 2 --doc docs/mutation.md

bench: $(STAMP)
	$(BIN)/python bench/run.py; core=$$?; \
	$(BIN)/python bench/live.py; live=$$?; \
	$(BIN)/python bench/replay.py; replay=$$?; \
	$(BIN)/python bench/live_asyncio.py; aio=$$?; \
	worst=$$core; for r in $$live $$replay $$aio; do [ $$r -gt $$worst ] && worst=$$r; done; exit $$worst

soak: $(STAMP)
	$(BIN)/python bench/soak.py

diagrams: $(STAMP)
	$(BIN)/cometchat-fsm diagram

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis .import_linter_cache *.egg-info
