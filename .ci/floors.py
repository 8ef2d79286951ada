"""The declared lower bounds of the runtime dependencies, as exact pins (make test-floors).

    python3 .ci/floors.py pyproject.toml           prints one `name==floor` line per dependency
    python3 .ci/floors.py --check pyproject.toml   exit 1 unless each is installed at its floor

Every runtime dependency must declare a floor (`>=X`): one without is an error, so a new
dependency cannot escape the floors job.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?"
    r"\s*(?P<specifiers>[^;]*?)\s*(?:;\s*(?P<marker>.*))?$"
)


def floors(pyproject: Path) -> list[tuple[str, str, str]]:
    """(name, floor, environment marker) of each runtime dependency."""
    with pyproject.open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    result, problems = [], []
    for requirement in dependencies:
        match = REQUIREMENT.match(requirement)
        if match is None:
            problems.append(f"{requirement!r}: cannot parse")
            continue
        specifiers = [s.strip() for s in match["specifiers"].split(",") if s.strip()]
        lower = [s[2:].strip() for s in specifiers if s.startswith(">=")]
        if len(lower) != 1:
            problems.append(f"{requirement!r}: needs exactly one floor (>=X)")
            continue
        result.append((match["name"], lower[0], (match["marker"] or "").strip()))
    if problems:
        raise SystemExit("pyproject.toml dependencies:\n  " + "\n  ".join(problems))
    return result


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def same_version(a: str, b: str) -> bool:
    """1.2 and 1.2.0 are the same release."""
    return re.sub(r"(\.0)+$", "", a) == re.sub(r"(\.0)+$", "", b)


def main(argv: list[str] | None = None) -> int:
    """Print the pins, or check that the installed versions are the floors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with what is installed")
    parser.add_argument("pyproject", type=Path, nargs="?", default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    pins = floors(args.pyproject)
    if not args.check:
        for name, floor, marker in pins:
            print(f"{name}=={floor}" + (f" ; {marker}" if marker else ""))
        return 0
    wrong = 0
    for name, floor, _ in pins:
        try:
            installed = metadata.version(normalized(name))
        except metadata.PackageNotFoundError:
            installed = "not installed"
        ok = same_version(installed, floor)
        wrong += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: floor {floor}, installed {installed}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
