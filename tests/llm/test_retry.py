"""RetryPolicy and with_retries: the one retry policy for remote calls."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from jalign.llm.retry import FatalError, RetryableError, RetryPolicy, with_retries


def test_delay_honours_retry_after():
    policy = RetryPolicy(base_delay_s=10.0, max_delay_s=60.0)
    assert policy.delay(0, 2.5) == 2.5
    assert policy.delay(4, 0.0) == 0.0  # "retry now" is obeyed, not replaced by backoff
    assert policy.delay(0, 3600.0) == 60.0  # a huge Retry-After is capped


def test_negative_retry_after_falls_back_to_backoff():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=60.0)
    random.seed(0)
    delays = [policy.delay(1, -1.0) for _ in range(200)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert max(delays) > 0.5


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5])
def test_full_jitter_within_bounds(attempt):
    policy = RetryPolicy(base_delay_s=0.25, max_delay_s=60.0)
    bound = 0.25 * 2**attempt
    random.seed(attempt)
    delays = [policy.delay(attempt, None) for _ in range(500)]
    assert all(0 <= d <= bound for d in delays)
    # jitter actually spreads over the whole range (not a constant, not stuck near one end)
    assert min(delays) < 0.1 * bound
    assert max(delays) > 0.9 * bound


def test_backoff_capped_at_max_delay():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0)
    random.seed(1)
    delays = [policy.delay(30, None) for _ in range(500)]
    assert all(0 <= d <= 5.0 for d in delays)
    assert max(delays) > 4.5


class Flaky:
    """A call that fails `failures` times with `error`, then returns `value`."""

    def __init__(self, failures: int, error: Exception, value: str = "done") -> None:
        self.failures = failures
        self.error = error
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.value


FAST = RetryPolicy(max_retries=3, base_delay_s=0.001, max_delay_s=0.01)


def test_succeeds_after_retryable_failures():
    call = Flaky(3, RetryableError("HTTP 503"))
    assert asyncio.run(with_retries(call, FAST, "test")) == "done"
    assert call.calls == 4


def test_gives_up_after_max_retries_and_reraises():
    call = Flaky(100, RetryableError("HTTP 500: still down"))
    with pytest.raises(RetryableError, match="still down"):
        asyncio.run(with_retries(call, FAST, "test"))
    assert call.calls == FAST.max_retries + 1


def test_zero_retries_means_one_attempt():
    call = Flaky(1, RetryableError("HTTP 429"))
    with pytest.raises(RetryableError):
        asyncio.run(with_retries(call, RetryPolicy(max_retries=0), "test"))
    assert call.calls == 1


def test_fatal_error_is_not_retried():
    call = Flaky(1, FatalError("HTTP 400: bad request"))
    with pytest.raises(FatalError, match="bad request"):
        asyncio.run(with_retries(call, FAST, "test"))
    assert call.calls == 1


def test_unexpected_errors_propagate_without_retry():
    call = Flaky(1, ZeroDivisionError("bug"))
    with pytest.raises(ZeroDivisionError):
        asyncio.run(with_retries(call, FAST, "test"))
    assert call.calls == 1


def test_sleeps_for_retry_after():
    call = Flaky(2, RetryableError("HTTP 429", retry_after=0.1))
    policy = RetryPolicy(max_retries=5, base_delay_s=0.0, max_delay_s=60.0)
    start = time.monotonic()
    assert asyncio.run(with_retries(call, policy, "test")) == "done"
    assert time.monotonic() - start >= 0.19  # two waits of Retry-After, not the (zero) backoff
    assert call.calls == 3
