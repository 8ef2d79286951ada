"""The account budget: a sliding window that is never exceeded, paced, with throttling pauses."""

from __future__ import annotations

import random

from exporter.ratelimit import RateLimiter
from tests.fakes import FakeClock


def max_in_any_window(times: list[float], period: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_never_more_than_requests_in_any_window_under_greedy_use() -> None:
    clock = FakeClock()
    limiter = RateLimiter(300, 300.0, clock=clock)
    sent: list[float] = []
    for _ in range(36_000):  # ten hours of trying ten times a second
        while limiter.try_acquire():
            sent.append(clock())
        clock.advance(0.1)
    assert max_in_any_window(sent, 300.0) <= 300
    # ... and the budget is actually used: close to 1 request/s over ten hours.
    assert len(sent) >= 0.97 * 36_000 / 10 * 1


def test_token_bucket_double_burst_is_impossible_at_window_boundary() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 60.0, burst=10, clock=clock)
    first = sum(limiter.try_acquire() for _ in range(20))
    clock.advance(59.0)  # a token bucket would have refilled nearly 10 by now
    second = sum(limiter.try_acquire() for _ in range(20))
    assert first == 10
    assert second == 0
    clock.advance(1.0)
    assert limiter.try_acquire()


def test_pacing_spreads_the_budget_over_the_period() -> None:
    clock = FakeClock()
    limiter = RateLimiter(300, 300.0, clock=clock)  # burst of 30, then 1/s
    assert sum(limiter.try_acquire() for _ in range(100)) == 30
    clock.advance(10.0)
    assert sum(limiter.try_acquire() for _ in range(100)) == 10
    assert limiter.remaining() == 260


def test_margin_keeps_sends_longer() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 10.0, burst=5, margin=2.0, clock=clock)
    assert sum(limiter.try_acquire() for _ in range(5)) == 5
    clock.advance(10.5)
    assert not limiter.try_acquire()
    clock.advance(1.6)
    assert limiter.try_acquire()


def test_throttling_pauses_and_backs_off_exponentially() -> None:
    clock = FakeClock()
    limiter = RateLimiter(300, 300.0, clock=clock)
    first = limiter.throttled()
    assert not limiter.try_acquire()
    assert limiter.available() == 0
    clock.advance(first + 0.01)
    second = limiter.throttled()
    assert second == 2 * first
    third = limiter.throttled(retry_after=120.0)
    assert third == 120.0
    limiter.succeeded()
    clock.advance(200.0)
    assert limiter.throttled() == first


def test_reconfigure_keeps_recent_sends() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 300.0, burst=100, clock=clock)
    for _ in range(80):
        assert limiter.try_acquire()
    limiter.reconfigure(90, 300.0, burst=90)
    assert limiter.remaining() == 10
    clock.advance(100.0)  # pacing has refilled, the window still holds the 80 sends
    assert sum(limiter.try_acquire() for _ in range(50)) == 10
    clock.advance(200.1)
    assert limiter.remaining() == 80


def test_random_bursty_use_never_exceeds() -> None:
    rng = random.Random(7)
    clock = FakeClock()
    limiter = RateLimiter(50, 60.0, burst=25, margin=1.0, clock=clock)
    sent: list[float] = []
    for _ in range(20_000):
        for _ in range(rng.randint(0, 5)):
            if limiter.try_acquire():
                sent.append(clock())
        if rng.random() < 0.01:
            limiter.throttled()
        clock.advance(rng.random() * 0.5)
    assert max_in_any_window(sent, 61.0) <= 50
