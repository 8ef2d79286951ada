"""The README is the user's manual: its metric table and commands must match the code."""

from __future__ import annotations

import argparse
import re

from exporter import metrics
from exporter.cli import build_parser
from tests.processes import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_metric_table_matches_definitions() -> None:
    rows = re.findall(
        r"^\| `(cloudvod_concat_\w+)` \| (\w+) \| ([^|]*) \| ([^|]*) \|$", README, re.M
    )
    documented = {name: (type_, labels, meaning.strip()) for name, type_, labels, meaning in rows}
    assert list(documented) == [d.name for d in metrics.ALL]
    for d in metrics.ALL:
        type_, labels, meaning = documented[d.name]
        assert type_ == d.type, d.name
        assert re.findall(r"`(\w+)`", labels) == list(d.labels), d.name
        assert ("user labels" in labels) == d.per_task, d.name
        assert meaning == d.help, d.name


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert "make demo" in README and "--demo" in README
    assert "make test" in README
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_every_documented_flag_exists() -> None:
    # Every parser's flags, the sub-commands' included: a flag in the README's synopsis must
    # exist in one of them.
    parser = build_parser()
    parsers = [parser] + [
        child
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for child in action.choices.values()
    ]
    known = {opt for p in parsers for action in p._actions for opt in action.option_strings}
    flags = set(re.findall(r"\[(--[a-z0-9.\-]+)", README))
    assert {"--api.endpoint", "--format", "--listen", "--config"} <= flags
    for flag in flags:
        assert flag in known, flag


def test_every_config_key_in_the_reference_is_in_the_example() -> None:
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    reference = README.split("## Configuration reference")[1].split("\n### ")[0]
    keys = re.findall(r"^\| `([a-z_]+(?:\.[a-z_]+)*)`", reference, re.M)
    assert "api.rate_limit.requests" in keys and "refresh.error_max" in keys
    for key in keys:
        leaf = key.split(".")[-1]
        assert re.search(rf"^\s*#?\s*-?\s*{leaf}:", example, re.M), key
