"""The configuration keys of the budget's shares and of the shared state store."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, RedisConfig, load_config

ENV = {"CLOUDVOD_ACCESS_KEY_ID": "AK", "CLOUDVOD_ACCESS_KEY_SECRET": "a-long-enough-secret"}


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.yaml"
    path.write_text(text + "tasks: [t1]\n", encoding="utf-8")
    return load_config(path, ENV)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_shares_and_redis_are_read(tmp_path: Path) -> None:
    (tmp_path / "redis.pw").write_text("s3cret-redis-pw\n")
    config = load(
        tmp_path,
        "api: {rate_limit: {probe_share: 0.2}}\nrefresh: {final_share: 0.25}\n"
        "storage: {redis: {url: 'rediss://r:6380/2', password_file: redis.pw, key_prefix: 'x:'}}\n",
    )
    assert config.api.rate_limit.probe_share == 0.2  # type: ignore[attr-defined]
    assert config.refresh.final_share == 0.25  # type: ignore[attr-defined]
    redis = config.storage.redis  # type: ignore[attr-defined]
    assert redis == RedisConfig("rediss://r:6380/2", "s3cret-redis-pw", "x:", 1.0)
    assert "s3cret" not in repr(config)


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.api.rate_limit.probe_share == 0.05  # type: ignore[attr-defined]
    assert config.refresh.final_share == 0.1  # type: ignore[attr-defined]
    assert config.storage.redis is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "refresh: {final_share: 1.5}\n",
            "refresh.final_share: must be a number from 0 to 1, got 1.5",
        ),
        (
            "refresh: {final_share: '10%'}\n",
            'refresh.final_share: must be a number from 0 to 1, got "10%"',
        ),
        (
            "api: {rate_limit: {probe_share: -1}}\n",
            "api.rate_limit.probe_share: must be a number from 0 to 1, got -1",
        ),
        ("storage: {redis: {}}\n", "storage.redis.url: is required"),
        (
            "storage: {redis: {url: 'http://r:6379'}}\n",
            "storage.redis.url: must be a redis:// or rediss:// URL with a host",
        ),
        (
            "storage: {redis: {url: 'redis://r:6379/db'}}\n",
            "storage.redis.url: the path must be a database number",
        ),
        ("storage: {redis: {url: 'redis://r:99999'}}\n", "storage.redis.url: has an invalid port"),
        (
            "storage: {redis: {url: 'redis://r', key_prefix: 'a b'}}\n",
            "storage.redis.key_prefix: must be a non-empty string",
        ),
        (
            "storage: {redis: {url: 'redis://r', password_file: nowhere}}\n",
            "storage.redis.password_file: cannot read",
        ),
        (
            "storage: {redis: {urll: 'redis://r'}}\n",
            "storage.redis.urll: unknown key (did you mean url?)",
        ),
        ("storage: {sqlite: {}}\n", "storage.sqlite: unknown key"),
    ],
)
def test_bad_values_are_named_by_their_path(tmp_path: Path, text: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(tmp_path, text)), problems(tmp_path, text)


def test_a_redis_password_in_the_url_is_never_echoed(tmp_path: Path) -> None:
    found = problems(tmp_path, "storage: {redis: {url: 'redis://:Pw9secretXYZ@r:bad/0'}}\n")
    assert found and not any("Pw9secretXYZ" in p for p in found)
