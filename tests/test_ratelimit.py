"""Client-side rate limits against the loopback server: the rate the server sees holds within
10% of the limit, a 429's Retry-After pauses every request, and ``x-ratelimit-*`` headers
saying a limit is spent pause until the reset they state."""

from __future__ import annotations

import time

import pytest

from distill.generator.backends.base import SamplingParams
from distill.generator.backends.openai_backend import OpenAIBackend
from distill.generator.backends.ratelimit import parse_duration

try:
    from fault_server import FaultServer
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer

P = SamplingParams(max_tokens=16, temperature=0.7, top_p=0.9)


def rate(times: list[float]) -> float:
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0])


def test_requests_per_minute_hold_within_ten_percent():
    with FaultServer(delay=0.02) as server:
        b = OpenAIBackend("fake", base_url=server.url, concurrency=8, requests_per_minute=900)  # 15 / s
        b.generate([f"Prompt {i}" for i in range(60)], 1, P)
        b.close()
        got = rate([e.t for e in server.ledger])
    assert got == pytest.approx(15.0, rel=0.10), got


def test_tokens_per_minute_hold_within_ten_percent():
    """Counted as providers count them: prompt + n x max_tokens per request."""
    params = SamplingParams(max_tokens=200, temperature=0.7, top_p=0.9)
    with FaultServer(delay=0.02) as server:
        b = OpenAIBackend("fake", base_url=server.url, concurrency=8, tokens_per_minute=600000)  # 10,000 / s
        b.generate([f"A prompt of some words, number {i}" for i in range(40)], 2, params)
        b.close()
        led = sorted(server.ledger, key=lambda e: e.t)
    counted = sum(e.prompt_tokens + e.n * params.max_tokens for e in led[1:])  # after the first answer
    got = counted / (led[-1].t - led[0].t)
    assert got == pytest.approx(10000.0, rel=0.10), got


def test_retry_after_on_429_pauses_every_request():
    with FaultServer(delay=0.01) as server:
        server.script("429:1")
        b = OpenAIBackend("fake", base_url=server.url, concurrency=4, backoff_max=5)
        refused_at = time.time()
        b.generate([f"Prompt {i}" for i in range(8)], 1, P)
        b.close()
        times = sorted(e.t for e in server.ledger)
    assert len(times) == 8 and server.count == 9
    # only the three sent alongside the refused one were answered before its Retry-After had passed
    early = [t for t in times if t - refused_at < 0.95]
    assert len(early) <= 3 and len(times) - len(early) >= 5

def test_ratelimit_headers_pause_until_the_stated_reset():
    with FaultServer() as server:
        server.ok_headers = [{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "600ms"}]
        b = OpenAIBackend("fake", base_url=server.url, concurrency=1)
        b.generate([f"Prompt {i}" for i in range(3)], 1, P)
        b.close()
        t = sorted(e.t for e in server.ledger)
    assert t[1] - t[0] >= 0.55 and t[2] - t[1] < 0.5


@pytest.mark.parametrize("text, seconds", [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("0.5", 0.5),
                                           ("1m30.5s", 90.5), ("2h", 7200.0)])
def test_reset_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
