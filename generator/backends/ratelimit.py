"""Client-side rate limits for API teachers: requests and tokens per minute, and the pauses
the provider asks for (``Retry-After``, ``x-ratelimit-*`` headers).

Pacing, not a bucket that refills once a minute: each call is given the next free slot (the
generic cell rate algorithm), so the rate holds over any window longer than a call or two
and there is no burst at the start of each minute for the provider to refuse. Hand-written
(about 40 lines) because the maintained limiter we looked at, aiolimiter, is a leaky bucket
whose capacity is the whole per-period budget (a burst of a minute's worth at once, or no
call larger than its capacity) and it has no notion of a pause a server asks for.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class RateLimiter:
    """``requests_per_minute`` / ``tokens_per_minute`` (None: no limit). A call counts its
    prompt plus n x max_tokens when it is sent, whatever it then uses: that is how providers
    count a request against a token limit (OpenAI: the larger of max_tokens and an estimate
    from the request's characters), so counting less would run into their 429s."""

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None) -> None:
        self.req_s = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.tok_s = 60.0 / tokens_per_minute if tokens_per_minute else 0.0
        self.next_req = self.next_tok = self.paused_until = 0.0

    @property
    def active(self) -> bool:
        return bool(self.req_s or self.tok_s)

    async def wait(self, tokens: int) -> None:
        """Until this call may be sent; its slot is reserved on return."""
        while True:
            now = time.monotonic()
            start = max(now, self.next_req, self.next_tok, self.paused_until)
            if start <= now:
                self.next_req = max(self.next_req, now) + self.req_s
                self.next_tok = max(self.next_tok, now) + tokens * self.tok_s
                return
            await asyncio.sleep(start - now)

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a 429's Retry-After, a limit the headers say is spent)."""
        self.paused_until = max(self.paused_until, time.monotonic() + max(0.0, seconds))

    def read_headers(self, headers: Any) -> None:
        """Pause until the reset the provider states once ``x-ratelimit-remaining-*`` is 0."""
        if headers is None:
            return
        for what in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{what}")
            reset = headers.get(f"x-ratelimit-reset-{what}")
            if remaining is not None and reset is not None and _int(remaining) == 0:
                self.pause(parse_duration(reset))


def _int(v: str) -> int | None:
    try:
        return int(float(v))
    except ValueError:
        return None


def parse_duration(text: str) -> float:
    """OpenAI's reset durations ("1s", "6m0s", "20ms", "0.5s", or plain seconds) in seconds."""
    text = str(text).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * unit[u] for n, u in _DURATION.findall(text))
