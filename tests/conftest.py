"""Shared fixtures: the simulator on loopback and exporters wired to it."""

from __future__ import annotations

import inspect
import json
import logging
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.config import Config
from exporter.service import Exporter
from exporter.simulator import SimTask, SimulatorServer
from tests import vendor_signer
from tests.helpers import ACCESS_KEY_ID, SECRET


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every test leaves the root logger as it found it: an in-process `main()` installs a
    handler on the stream pytest captured for that test, which later tests must not write to."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def start_simulator() -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators on 127.0.0.1 with the test credentials; stopped after the test.

    They verify signatures with tests/vendor_signer.py, not the exporter's own signing code.
    """
    started: list[SimulatorServer] = []

    def start(tasks: list[SimTask] | tuple[SimTask, ...] = (), **kwargs: Any) -> SimulatorServer:
        kwargs.setdefault("credentials", {ACCESS_KEY_ID: SECRET})
        kwargs.setdefault("verifier", vendor_signer.verify)
        sim = SimulatorServer(tasks, **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def make_exporter() -> Iterator[Callable[..., Exporter]]:
    """Build exporters (closed after the test)."""
    made: list[Exporter] = []

    def make(config: Config, **kwargs: Any) -> Exporter:
        exporter = Exporter(config, **kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.close()


# --- test tiers ------------------------------------------------------------------------------
#
# `make test` runs every test. `make test-fast` (pytest --tier=fast) is the edit-test loop: tests
# that run inside the pytest process only. A test that starts a process (prometheus,
# alertmanager, redis-server, chromium, promtool, the console script, pip) is marked `e2e` here,
# found by reading the test, its fixtures and the test helpers they use; `slow` marks in-process
# tests that take seconds by design. `make test-floors` (--tier=floors) is the fast tier plus the
# tests marked `floors`, run against the declared lower bounds of the dependencies.

TIERS = ("all", "fast", "floors")
SPAWNS = re.compile(
    r"\bsubprocess\.(?:run|Popen|call|check_call|check_output)\b"
    r"|\bos\.(?:fork|system|posix_spawnp?|exec[lv]p?e?|spawn[lv]p?e?)\b"
    r"|\brequire_tool\("  # an external binary
)
SLOW = {
    # In-process, but seconds each by design: a simulated hour of real HTTP, twenty scrapers,
    # the full fault matrix and deadlines that must really pass.
    "tests/test_budget.py::test_default_budget_is_never_throttled",
    "tests/test_resources.py::test_twenty_concurrent_scrapers_share_refresh_rounds",
    "tests/test_resources.py::test_a_trickled_answer_times_out_at_the_timeout",
    "tests/test_faults.py::test_fault_beside_five_healthy_tasks",
    "tests/test_faults.py::test_hostile_scrape_timeout_header",
    "tests/test_faults.py::test_hang_past_the_scrape_deadline",
    # Half a second or more each, waiting for a real timeout or socket to close.
    "tests/test_httpserver.py::test_concurrent_clients",
    "tests/test_httpserver.py::test_shutdown_frees_the_port_and_is_idempotent",
    "tests/test_httpserver.py::test_all_interfaces_and_ipv6",
    "tests/test_httpserver.py::test_client_allowed_sans",
    "tests/test_simulator.py::test_client_disconnect_is_quiet",
    "tests/test_scheduler.py::test_deadline_returns_in_time_and_round_finishes_in_background",
    # Long runs with real latency and threads: a second or more each.
    "tests/test_scheduler.py::test_budget_never_exceeded_over_long_runs",
    "tests/test_scheduler.py::test_resizing_the_pool_during_rounds_never_strands_a_task",
    "tests/test_budget_window.py::test_arrivals_never_exceed_the_window_whatever_the_latency",
    "tests/test_faults.py::test_throttling_pauses_every_following_request",
    # Real bcrypt at the configured cost, on purpose.
    "tests/test_webconfig.py::test_real_bcrypt_attack_over_http_does_not_delay_a_valid_user",
    "tests/test_webconfig.py::test_unknown_user_pays_the_fixed_decoy_cost_not_the_highest",
    "tests/test_webconfig.py::test_valid_user_is_not_queued_behind_anonymous_requests",
    "tests/test_webconfig.py::test_identical_credentials_share_one_check",
    "tests/test_webconfig.py::test_start_up_does_not_hash",
    "tests/test_webconfig.py::test_anonymous_flood_takes_at_most_two_bcrypt_slots",
    # Real TLS servers and handshakes, half a second each.
    "tests/test_webconfig.py::test_prefer_server_cipher_suites",
    "tests/test_webconfig.py::test_inline_cert_key_and_client_ca",
    "tests/test_webconfig.py::test_default_versions_refuse_tls11_and_serve_tls13",
    "tests/test_webconfig.py::test_verify_client_cert_if_given_without_ca",
    "tests/test_budget.py::test_two_replicas_scraping_together_share_rounds",
}


DURATIONS = Path(__file__).with_name("durations.json")
"""Seconds each test took in the last `make test-durations` (tests of 0.05 s or more)."""
SLOW_SECONDS = 0.25
"""A test that took this long there is `slow` too: the fast tier stays fast as tests are added."""
RECORDED: dict[str, float] = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}

FLOORS_MODULES = {
    # The Redis backend against redis-py at its floor (a real redis-server, about 5 s).
    "tests/test_redis_store.py",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """--tier: which tests to run (all, fast, floors)."""
    parser.addoption(
        "--tier",
        choices=TIERS,
        default="all",
        help="all: every test; fast: no process started, no slow test; floors: fast + `floors`",
    )
    parser.addoption(
        "--record-durations",
        action="store_true",
        help=f"write each test's seconds to {DURATIONS.name} (make test-durations)",
    )


def _is_test_code(obj: object) -> bool:
    module = (obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)) or ""
    return module in {"tests", "benchmarks"} or module.startswith(
        ("tests.", "benchmarks.", "test_", "conftest")
    )


def _code_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _code_names(const)
    return names


_SPAWN_CACHE: dict[object, bool] = {}


def starts_a_process(obj: Any) -> bool:
    """Whether a test function, fixture, helper or helper class (transitively) starts one."""
    if obj in _SPAWN_CACHE:
        return _SPAWN_CACHE[obj]
    _SPAWN_CACHE[obj] = False  # cycles
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return False
    found = bool(SPAWNS.search(source))
    functions = [obj] if inspect.isfunction(obj) else []
    if inspect.isclass(obj):
        functions = [f for f in vars(obj).values() if inspect.isfunction(f)]
    for function in functions:
        if found:
            break
        names = _code_names(function.__code__)
        targets = [function.__globals__.get(name) for name in names]
        for module in [t for t in targets if inspect.ismodule(t) and _is_test_code(t)]:
            targets += [getattr(module, name, None) for name in names]  # module.helper()
        for target in targets:
            if (
                (inspect.isfunction(target) or inspect.isclass(target))
                and _is_test_code(target)
                and starts_a_process(target)
            ):
                found = True
                break
    _SPAWN_CACHE[obj] = found
    return found


def _item_starts_a_process(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    if function is not None and starts_a_process(function):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        for definition in definitions:
            func = getattr(definition, "func", None)
            if definition.argname == "_fast_tier_starts_no_process":
                continue
            if func is not None and _is_test_code(func) and starts_a_process(func):
                return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark e2e and slow tests, then keep only the chosen tier."""
    for item in items:
        if item.get_closest_marker("e2e") is None and _item_starts_a_process(item):
            item.add_marker(pytest.mark.e2e)
        if item.nodeid.split("[")[0] in SLOW or RECORDED.get(item.nodeid, 0.0) >= SLOW_SECONDS:
            item.add_marker(pytest.mark.slow)
        if item.nodeid.split("::")[0] in FLOORS_MODULES:
            item.add_marker(pytest.mark.floors)
    tier = config.getoption("tier")
    if tier == "all":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        outside = item.get_closest_marker("e2e") or item.get_closest_marker("slow")
        wanted = tier == "floors" and item.get_closest_marker("floors") is not None
        (dropped if outside and not wanted else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def _fast_tier_starts_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the fast tier, a test that starts a process fails and says how to mark it."""
    if request.config.getoption("tier") == "all" or request.node.get_closest_marker("e2e"):
        return
    nodeid = request.node.nodeid

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        pytest.fail(
            f"{nodeid} starts a process ({args!r}) in the fast tier: "
            "mark it @pytest.mark.e2e (see the tiers in tests/conftest.py)",
            pytrace=False,
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


FAST_TIER_BUDGET = 30.0
"""Seconds the fast tier may take (the edit-test loop); over it, the summary says so."""
_STARTED: list[float] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note when the session started (for the fast tier's budget)."""
    _STARTED.append(time.monotonic())


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """After the fast tier: its wall time against its budget."""
    if config.getoption("tier") != "fast":
        return
    elapsed = time.monotonic() - _STARTED[0]
    verdict = "within" if elapsed <= FAST_TIER_BUDGET else "OVER"
    terminalreporter.write_line(
        f"fast tier: {elapsed:.1f}s, {verdict} its {FAST_TIER_BUDGET:g}s budget"
        + ("" if elapsed <= FAST_TIER_BUDGET else ": add the slowest tests to SLOW in conftest")
    )
    if elapsed > FAST_TIER_BUDGET:
        reports = [r for r in terminalreporter.stats.get("passed", []) if r.when == "call"]
        for report in sorted(reports, key=lambda r: -r.duration)[:10]:
            terminalreporter.write_line(f"  {report.duration:5.2f}s {report.nodeid}")


_DURATIONS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With --record-durations: add up setup, call and teardown of each test."""
    _DURATIONS[report.nodeid] = _DURATIONS.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With --record-durations: write the tests that took 0.05 s or more."""
    if session.config.getoption("record_durations") and _DURATIONS:
        kept = {k: round(v, 2) for k, v in sorted(_DURATIONS.items()) if v >= 0.05}
        DURATIONS.write_text(json.dumps(kept, indent=0, ensure_ascii=False) + "\n")
