"""The one retry policy for remote calls: exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetryableError(Exception):
    """A failure worth another try (429, 5xx, timeout, connection reset, garbage or empty answer).

    `input_tokens` / `output_tokens`: what the server billed for this attempt (an empty answer is still
    paid for), so the tokens and cost of failed attempts are never lost from the usage ledger."""

    def __init__(
        self, message: str, retry_after: float | None = None, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens


class FatalError(Exception):
    """A failure another try will not fix (400, 401, 404 ...): the row fails at once."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay_s)
        # Full jitter (AWS architecture blog): spreads retries of many concurrent rows.
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """Run `call`; on RetryableError sleep and retry up to policy.max_retries times, then re-raise."""
    attempt = 0
    while True:
        try:
            return await call()
        except RetryableError as exc:
            if attempt >= policy.max_retries:
                raise
            wait = policy.delay(attempt, exc.retry_after)
            log.debug("%s: %s; retry %d/%d in %.2fs", what, exc, attempt + 1, policy.max_retries, wait)
            attempt += 1
            await asyncio.sleep(wait)
