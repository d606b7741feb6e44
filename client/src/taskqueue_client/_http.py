"""One HTTP request with retries: exponential backoff with full jitter, honouring Retry-After.

Which failures are retried depends on whether repeating the request is safe, a property of
the route (see `client.ROUTES`): a request that never reached the server (connection refused,
429 from API Gateway's throttling) is always repeated; one that may have been processed (a 5xx,
a timeout while reading the answer) only when the route is repeatable.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from taskqueue_client.errors import ApiError, TransportError, api_error

# Answers that say "not processed, try again later" and those that may hide a processed request.
NOT_PROCESSED = frozenset({429})
MAYBE_PROCESSED = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. `attempts` counts the first try."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    # A Retry-After longer than this is not waited for: the error is raised with `retry_after`.
    max_retry_after: float = 120.0

    def backoff(self, retry: int, jitter: Callable[[], float] = random.random) -> float:
        """Seconds before retry number `retry` (0 for the first): full jitter, capped."""
        return min(self.max_delay, self.base_delay * 2**retry) * jitter()


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now())


@dataclass
class Sender:
    """Sends requests through one httpx client and retries them as the policy says."""

    http: httpx.Client
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random

    def send(
        self,
        method: str,
        url: str,
        *,
        repeatable: bool,
        headers: dict[str, str] | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
        content: Callable[[], bytes | Iterator[bytes]] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """The answer of a 2xx (or 3xx); raises the ApiError of the last answer otherwise.

        `content` is a function giving the body afresh for each attempt (a file read again).
        With `stream`, the answer's body is not read: the caller reads and closes it."""
        retry = 0
        while True:
            try:
                request = self.http.build_request(
                    method,
                    url,
                    headers=headers,
                    json=json,
                    params=params,
                    content=content() if content else None,
                )
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                # A refused connection never reached the server; a timeout may have.
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if (never_sent or repeatable) and retry + 1 < self.policy.attempts:
                    self.sleep(self.policy.backoff(retry, self.jitter))
                    retry += 1
                    continue
                raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
            if response.status_code < 400:
                return response
            error = self._error(response, method, url)
            wait = self._wait_before_retry(response.status_code, error, repeatable, retry)
            if wait is None:
                raise error
            self.sleep(wait)
            retry += 1

    def _error(self, response: httpx.Response, method: str, url: str) -> ApiError:
        body = response.read()
        response.close()
        return api_error(
            response.status_code,
            body,
            method=method,
            url=url,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )

    def _wait_before_retry(
        self, status: int, error: ApiError, repeatable: bool, retry: int
    ) -> float | None:
        """Seconds to wait before trying again, or None to give up with `error`."""
        retried = status in NOT_PROCESSED or (repeatable and status in MAYBE_PROCESSED)
        if not retried or retry + 1 >= self.policy.attempts:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.policy.max_retry_after else None
        return self.policy.backoff(retry, self.jitter)
