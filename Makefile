# The two commands of the README: `make up` and `make test`. Each sets up .venv first,
# from the lock files in requirements/ (exact versions with hashes), so a fresh machine
# installs what CI tested. `make lock` refreshes them on purpose; nothing else does.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.txt
EDGE_LOCK := requirements/edge.txt
# One set of compile flags for both locks: every platform and Python the project supports,
# each file with its hashes.
COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes --no-header

.PHONY: up test lock upgrade bench clean

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/mahavishnu up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n auto -q

# `make lock` re-resolves both locks after pyproject.toml changed, keeping every pin that
# still fits; `make upgrade` moves them all to the newest versions pyproject.toml allows,
# `make upgrade PACKAGE=asyncssh` only that one. Run `make test` before committing them.
lock: $(STAMP)
	$(COMPILE) $(UPGRADING) pyproject.toml requirements/build.in --extra dev -o $(LOCK)
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["edge"], sep="\n")' \
		| $(COMPILE) $(UPGRADING) - -o $(EDGE_LOCK)

upgrade: UPGRADING = $(if $(PACKAGE),--upgrade-package $(PACKAGE),--upgrade)
upgrade: lock

bench: $(STAMP)
	$(BIN)/python bench/append.py
	$(BIN)/python bench/rebuild.py
	$(BIN)/python bench/rebuild_budget.py
	$(BIN)/python bench/query.py
	$(BIN)/python bench/http_query.py
	$(BIN)/python bench/lag.py
	$(BIN)/python bench/index.py
	$(BIN)/python bench/poll.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/commands.py
	$(BIN)/python bench/enrol.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/reconnect.py
	$(BIN)/python bench/consumers.py
	$(BIN)/python bench/consumers.py --nodes 1 --replicas 1
	$(BIN)/python bench/agent_footprint.py
	$(BIN)/python bench/ota.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
