"""The release: one version everywhere, the licence, the changelog, the dependency floors.

The version lives in exporter/__init__.py; pyproject.toml reads it, --version and build_info
show it, and the image tag of the Dockerfile, the compose file and the Kubernetes manifests
must say the same. `.ci/floors.py` turns pyproject's `>=` floors into the exact pins that
`make test-floors` installs; the redis-py floor is exercised against a real redis-server.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from exporter import __version__
from exporter.cli import main
from exporter.service import Exporter
from exporter.webapp import make_app
from tests.helpers import make_config, parse_exposition, require_tool, wsgi_call
from tests.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CHANGELOG = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
IMAGE = "cloudvod-concat-exporter"


def load_yaml_documents(path: Path) -> list[Any]:
    """Every YAML document of a file."""
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --- one version ---------------------------------------------------------------------------


def test_the_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_pyproject_takes_the_version_from_the_package() -> None:
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "exporter.__version__"


def test_dockerfile_labels_the_package_version() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.findall(r"^ARG VERSION=(\S+)$", dockerfile, re.M) == [__version__]
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    assert set(re.findall(rf"\b{IMAGE}:(\d[\w.]*)", dockerfile)) == {__version__}


def image_tags(document: Any) -> Iterator[str]:
    """Every tag of the exporter's image named in a parsed manifest or compose file."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "image" and isinstance(value, str) and value.split(":")[0] == IMAGE:
                yield value.partition(":")[2]
            else:
                yield from image_tags(value)
    elif isinstance(document, list):
        for value in document:
            yield from image_tags(value)


def test_compose_runs_the_image_of_this_version() -> None:
    (compose,) = load_yaml_documents(ROOT / "docker-compose.yml")
    ours = [name for name, s in compose["services"].items() if s.get("build") == "."]
    assert set(ours) == {"simulator", "exporter", "exporter-2"}
    for name in ours:
        assert compose["services"][name]["image"] == f"{IMAGE}:{__version__}", name


def test_kubernetes_pins_the_image_of_this_version() -> None:
    kubernetes = ROOT / "deploy" / "kubernetes"
    (kustomization,) = load_yaml_documents(kubernetes / "kustomization.yaml")
    (image,) = [i for i in kustomization["images"] if i["name"] == IMAGE]
    assert image["newTag"] == __version__
    tags = [
        tag for path in kubernetes.glob("*.yaml") for tag in image_tags(load_yaml_documents(path))
    ]
    assert tags == [__version__]  # the Deployment's container


def test_readme_names_the_image_of_this_version() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tags = re.findall(rf"\b{IMAGE}:(\d[\w.]*)", readme)
    assert tags
    assert set(tags) == {__version__}


def changelog_sections() -> list[tuple[str, str, str]]:
    """(version or Unreleased, date, body) of each `## [...]` section, in order."""
    parts = re.split(r"^## \[([^\]]+)\](?: - (\S+))?\n", CHANGELOG, flags=re.M)
    return [(parts[i], parts[i + 1] or "", parts[i + 2]) for i in range(1, len(parts), 3)]


def test_changelog_names_this_version() -> None:
    sections = changelog_sections()
    released = [(v, d) for v, d, _ in sections if v != "Unreleased"]
    if sections[0][0] == "Unreleased":
        # Not released yet: the section says what it will become.
        assert f"To be released as {__version__}." in sections[0][2]
        assert __version__ not in [v for v, _ in released]
    else:
        assert released[0][0] == __version__


def test_changelog_keeps_a_changelog() -> None:
    assert CHANGELOG.startswith("# Changelog\n")
    assert "[Keep a Changelog](https://keepachangelog.com/en/1.1.0/)" in CHANGELOG
    sections = changelog_sections()
    assert [v for v, _, _ in sections].count("Unreleased") <= 1
    released = [(v, d) for v, d, _ in sections if v != "Unreleased"]
    assert released[-1][0] == "0.1.0"
    numbers = [tuple(int(n) for n in v.split(".")) for v, _ in released]
    assert numbers == sorted(numbers, reverse=True), "newest first"
    for version, date in released:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date), version
    kinds = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    for version, _, body in sections:
        headings = re.findall(r"^### (.+)$", body, re.M)
        assert headings, version
        assert set(headings) <= kinds, version


def test_version_flag_shows_the_exporter_python_and_client_versions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cloudvod-concat-exporter {__version__}"
    fields = dict(line.strip().split(":", 1) for line in lines[1:])
    assert fields["python"].split()[0] == f"{sys.version_info[0]}.{sys.version_info[1]}." + str(
        sys.version_info[2]
    )
    assert fields["prometheus_client"].strip() == metadata.version("prometheus-client")


def test_build_info_carries_the_version(make_exporter: Callable[..., Exporter]) -> None:
    exporter = make_exporter(make_config("http://127.0.0.1:9", []))
    code, _, body = wsgi_call(make_app(exporter), "/metrics")
    assert code == 200
    series = parse_exposition(body.decode())
    versions = [
        dict(labels)["version"]
        for name, labels in series
        if name == "cloudvod_concat_exporter_build_info"
    ]
    assert versions == [__version__]


# --- licence ---------------------------------------------------------------------------------


def test_apache_license_in_full() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    for section in range(1, 10):
        assert re.search(rf"^   {section}\. \w", text, re.M), section
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text


def test_licence_is_declared_for_pip_and_the_image() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    # PEP 639 license expressions need setuptools 77.
    (backend,) = PYPROJECT["build-system"]["requires"]
    assert re.fullmatch(r"setuptools>=(\d+)", backend)
    assert int(backend.split(">=")[1]) >= 77
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in dockerfile


# --- dependency floors -----------------------------------------------------------------------


def floors_module() -> ModuleType:
    """.ci/floors.py, imported from its path."""
    spec = importlib.util.spec_from_file_location("floors", ROOT / ".ci" / "floors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_runtime_dependency_is_pinned_at_its_floor() -> None:
    floors = floors_module()
    pins = floors.floors(ROOT / "pyproject.toml")
    declared = PYPROJECT["project"]["dependencies"]
    assert len(pins) == len(declared)
    for (name, floor, _), requirement in zip(pins, declared, strict=True):
        assert requirement.replace(" ", "").startswith(f"{name}>={floor}")
    names = {name.lower() for name, _, _ in pins}
    assert {"prometheus-client", "requests", "pyyaml", "urllib3", "bcrypt", "redis"} <= names
    # collector.py needs openmetrics.UNDERSCORES (0.23; 0.23.0 was yanked).
    assert dict((n, f) for n, f, _ in pins)["prometheus-client"] == "0.23.1"


def test_a_dependency_without_a_floor_is_refused(tmp_path: Path) -> None:
    floors = floors_module()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["requests>=2.31,<3", "PyYAML", "redis[hiredis]>=4.2"]\n',
        encoding="utf-8",
    )
    with pytest.raises(SystemExit, match=r"'PyYAML': needs exactly one floor"):
        floors.floors(pyproject)
    pyproject.write_text(
        "[project]\ndependencies = ["
        '"requests>=2.31,<3", "redis[hiredis]>=4.2 ; os_name == \'posix\'"]\n',
        encoding="utf-8",
    )
    assert floors.floors(pyproject) == [
        ("requests", "2.31", ""),
        ("redis", "4.2", "os_name == 'posix'"),
    ]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port with a password; stopped after the test."""
    port = free_port()
    proc = subprocess.Popen(
        [
            require_tool("redis-server", "apt-get install redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--requirepass",
            "floor-pw",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:floor-pw@127.0.0.1:{port}/0"
    try:
        import redis

        def answers() -> bool:
            try:
                return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
            except redis.exceptions.ConnectionError:  # not listening yet
                return False

        wait_until(answers, timeout=10, what="redis-server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# A sliding-window admission like the one a shared budget needs: atomically drop old sends,
# count, and admit if under the limit.
ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(ARGV[2] * 1000))
  return 1
end
return 0
"""


@pytest.mark.floors
def test_redis_client_commands_at_the_installed_version(redis_url: str) -> None:
    # make test-floors runs this with redis-py at its declared floor.
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2, decode_responses=True)
    assert client.ping() is True
    admit = client.register_script(ADMIT)
    admitted = [admit(keys=["budget"], args=[100.0 + i, 10, 3, f"send-{i}"]) for i in range(5)]
    assert admitted == [1, 1, 1, 0, 0]
    assert admit(keys=["budget"], args=[111.0, 10, 3, "later"]) == 1  # the first ones expired

    assert client.set("claim:t1", "replica-a", nx=True, px=5000) is True
    assert client.set("claim:t1", "replica-b", nx=True, px=5000) is None
    assert client.get("claim:t1") == "replica-a"
    pipe = client.pipeline(transaction=True)
    pipe.hset("task:t1", mapping={"status": "2", "answered": "1700000000.5"})
    pipe.hgetall("task:t1")
    pipe.expire("task:t1", 60)
    _, fields, _ = pipe.execute()
    assert fields == {"status": "2", "answered": "1700000000.5"}
    assert sorted(client.scan_iter(match="task:*")) == ["task:t1"]

    wrong = redis.Redis.from_url(redis_url.replace("floor-pw", "wrong"), socket_timeout=2)
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()
    closed = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    with pytest.raises(redis.exceptions.ConnectionError):
        closed.ping()
    client.close()


# --- test tiers ------------------------------------------------------------------------------


def test_every_slow_entry_names_an_existing_test() -> None:
    from tests.conftest import FLOORS_MODULES, RECORDED, SLOW

    assert RECORDED, "tests/durations.json: run make test-durations"
    assert all(nodeid.startswith("tests/test_") and "::" in nodeid for nodeid in RECORDED)

    for path in FLOORS_MODULES:
        assert (ROOT / path).exists(), path
    for nodeid in SLOW:
        path, name = nodeid.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), nodeid
