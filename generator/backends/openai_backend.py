"""Teacher backend for any OpenAI-compatible endpoint: OpenAI itself or a ``vllm serve`` server.

Requests run concurrently (at most ``concurrency`` in flight) on an event loop the backend
owns, so the sync caller just calls :meth:`OpenAIBackend.generate_requests` repeatedly.
The openai client's own retries are off: this module retries 429 / 5xx / timeouts /
dropped connections itself with full-jitter backoff, and raises
:class:`~distill.errors.TeacherError` for anything it cannot recover from.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from distill.errors import DistillError, TeacherError
from distill.generator.backends.ratelimit import RateLimiter
from distill.generator.backends.base import (
    Backend, Completion, Deliver, Gate, GateFull, OpenGate, Prompt, Request, Result, SamplingParams, apply_stop, prompt_text,
    request_seed, sample_seed,
)

log = logging.getLogger(__name__)

OPENAI_HOST = "api.openai.com"
MAX_API_STOPS = 4  # OpenAI (and vLLM's server) reject more than four stop strings
RETRY_STATUS = {408, 409, 429}  # plus every 5xx
_N_WORD = re.compile(r"(?<![\w.-])['\"`]?n['\"`]?(?![\w.-])")


def openai_ids(model: str, base_url: str | None) -> tuple[str, tuple[str, ...]]:
    """(model id, older ids still read from the cache). The id names the model, not where it is
    served: replicas of one model share a cache and records. The alias is the id runs cached
    under before it left out the URL."""
    return f"openai:{model}", (f"openai:{base_url or OPENAI_HOST}:{model}",)


class _NRefused(Exception):
    """The endpoint will not sample n > 1 completions in one request."""


class _Halted(Exception):
    """Not sent: an earlier request of the same call failed or the budget is spent."""


class _Batch:
    """One generate_requests call: its concurrency limit, where samples go as they arrive, the
    budget gate, and the first failure (after which nothing new is sent, nothing is retried,
    and the requests already on the wire are waited for so that what they bring is kept)."""

    def __init__(self, concurrency: int, deliver: Deliver | None = None, gate: Gate | None = None) -> None:
        self.sem = asyncio.Semaphore(concurrency)
        self.deliver = deliver
        self.gate = gate or OpenGate()
        self.failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._returned = asyncio.Event()  # set (and renewed) each time a call comes back

    def fail(self, e: BaseException) -> None:
        if self.failure is None:
            self.failure = e
            self._failed.set()

    def halt_if_failed(self) -> None:
        if self.failure is not None:
            raise _Halted()

    def returned(self) -> None:
        self._returned.set()
        self._returned = asyncio.Event()

    async def wait_for_a_return(self) -> None:
        """Until a call in flight comes back, or the batch fails."""
        returned, failed = asyncio.ensure_future(self._returned.wait()), asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait([returned, failed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            returned.cancel()
            failed.cancel()

    async def sleep(self, seconds: float) -> None:
        """A retry's backoff, cut short when the batch fails."""
        try:
            await asyncio.wait_for(self._failed.wait(), seconds)
        except asyncio.TimeoutError:
            pass


class OpenAIBackend(Backend):
    """Teacher behind an OpenAI-compatible HTTP API.

    ``mode="completion"`` needs text prompts (``/v1/completions``); ``mode="chat"`` sends
    chat messages (``/v1/chat/completions``) and wraps a text prompt as one user message.
    ``vllm_extensions`` (default: on unless the host is api.openai.com) sends vLLM's
    ``include_stop_str_in_output``, ``top_k`` and ``return_token_ids`` (exact per-sample token
    counts); without them counts are the billed total shared out by text length.
    Reproducibility is best-effort: a request for several samples is sent once with ``n`` and
    the ``request_seed`` (vLLM gives its sample j the seed + j); single samples, greedy ones, and
    all samples once the endpoint has refused ``n > 1`` go one request each with ``sample_seed``.
    """

    name = "openai"
    streams = True
    supports_json_schema = True  # response_format json_schema (chat), vLLM's structured_outputs (completions)

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 mode: str = "completion", concurrency: int = 8, timeout: float = 60.0,
                 max_retries: int = 6, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 vllm_extensions: bool | None = None, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, batch: bool = False, batch_poll_s: float = 30.0) -> None:
        from openai import AsyncOpenAI

        if mode not in ("completion", "chat"):
            raise DistillError(f"teacher.mode must be 'completion' or 'chat', got {mode!r}")
        if concurrency < 1 or timeout <= 0 or max_retries < 0:
            raise DistillError("teacher: concurrency >= 1, timeout > 0 and max_retries >= 0 are required")
        is_openai = (urlparse(base_url).hostname if base_url else OPENAI_HOST) == OPENAI_HOST
        api_key = os.environ.get(api_key_env)
        if not api_key:
            if is_openai:
                raise DistillError(f"The OpenAI API needs a key: set the {api_key_env} environment variable.")
            api_key = "EMPTY"  # local servers (vllm serve) accept any key unless started with --api-key
        self.model, self.base_url, self.mode = model, base_url, mode
        self.endpoint = base_url or f"https://{OPENAI_HOST}/v1"
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.vllm_extensions = (not is_openai) if vllm_extensions is None else vllm_extensions
        self.chunk_size = concurrency * 4
        # Batch jobs: one per generate call (a task phase of a shard), recorded under state_dir
        # (the run's output folder, set by the runner) so that a rerun resumes instead of resubmitting
        self.batch, self.batch_poll_s, self.state_dir = batch, batch_poll_s, None
        if batch:
            self.chunk_size = None
        self.n_supported = True  # set False for good once the endpoint refuses n > 1
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self._loop = asyncio.new_event_loop()
        # Our hard timeout (asyncio.wait_for) ends a request; httpx's is a backstop.
        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout + 5)
        self._closed = False

    @property
    def model_id(self) -> str:
        return openai_ids(self.model, self.base_url)[0]

    @property
    def cache_aliases(self) -> tuple[str, ...]:
        return openai_ids(self.model, self.base_url)[1]

    def generate_requests(self, requests: list[Request], deliver: Deliver | None = None,
                          gate: Gate | None = None) -> list[Result]:
        """One :class:`Result` per request, in order; raises TeacherError if any request fails.

        Samples go to ``deliver`` as each API call returns. ``gate.hold`` is entered before a
        call is sent and left once it is delivered (BudgetExhausted there stops the sending).
        After a failure nothing new is sent, but the calls already sent are waited for and
        delivered before the error is raised, so nothing the endpoint answered is lost.
        """
        if self._closed:
            raise DistillError("OpenAIBackend.generate_requests called after close()")
        self.refuse_constraints(r.constraints for r in requests)  # logit_bias holds 300 tokens: too few
        if self.mode == "completion" and any(not isinstance(r.prompt, str) for r in requests):
            raise DistillError("teacher.mode 'completion' needs text prompts; use mode 'chat' for chat messages")
        if self.batch:
            from distill.generator.backends.openai_batch import BatchJobs

            jobs = BatchJobs(self, Path(self.state_dir) if self.state_dir else None, self.batch_poll_s, self.max_retries)
            return self._run(jobs.run(requests, deliver, gate))
        return self._run(self._generate_all(requests, _Batch(self.concurrency, deliver, gate)))

    def _parse_batch_body(self, body: dict[str, Any], params: SamplingParams, k: int) -> tuple[list[Completion], int]:
        """A batch output line's response body as completions, and the prompt tokens it billed."""
        if self.mode == "chat":
            from openai.types.chat import ChatCompletion as Parsed
        else:
            from openai.types import Completion as Parsed
        resp = Parsed.model_validate(body)
        return self._completions(resp, params, k), _usage(resp, "prompt_tokens")

    def cancel_batches(self, batch_ids: list[str]) -> list[str]:
        """Cancel these batches (``distill cancel``); returns the status each reports."""
        async def go():
            return [(await self._client.batches.cancel(b)).status for b in batch_ids]

        return self._run(go())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._client.close())
        finally:
            self._loop.close()

    def _run(self, coro: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._loop.run_until_complete(coro)
        # Called from async code (a notebook): our loop cannot nest in that one, so drive it
        # on a helper thread while the caller waits.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(self._loop.run_until_complete, coro).result()

    async def _generate_all(self, requests: list[Request], batch: _Batch) -> list[Result]:
        return await _gather_draining([self._one(i, r, batch) for i, r in enumerate(requests)], batch)

    async def _one(self, i: int, req: Request, batch: _Batch) -> Result:
        k = len(req.indices)
        # Greedy samples go one by one: vLLM refuses n > 1 with temperature 0.
        if k > 1 and self.n_supported and req.params.temperature > 0:
            try:
                resp = await self._call(req.prompt, req.params, k, request_seed(req.prompt, req.params), batch)
                if len(resp.choices) >= k:
                    comps, billed = self._completions(resp, req.params, k), _usage(resp, "prompt_tokens")
                    if batch.deliver is not None:
                        batch.deliver(i, req.indices, comps, billed)
                    return Result(comps, billed)
                reason = f"returned {len(resp.choices)} choices for n={k}"
            except _NRefused as e:
                reason = str(e)
            if self.n_supported:
                log.warning("%s does not sample n > 1 (%s); sending one request per sample", self.endpoint, reason)
            self.n_supported = False

        async def single(idx: int) -> tuple[Completion, int]:
            resp = await self._call(req.prompt, req.params, 1, sample_seed(req.prompt, req.params, idx), batch)
            comp, billed = self._completions(resp, req.params, 1)[0], _usage(resp, "prompt_tokens")
            if batch.deliver is not None:  # each request bills the prompt again
                batch.deliver(i, (idx,), [comp], billed)
            return comp, billed

        got = await _gather_draining([single(idx) for idx in req.indices], batch)
        return Result([c for c, _ in got], sum(b for _, b in got))

    def _body(self, prompt: Prompt, params: SamplingParams, n: int, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "n": n, "seed": seed,
                                "temperature": params.temperature, "top_p": params.top_p}
        if self.mode == "chat":
            body["messages"] = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            body["max_completion_tokens"] = params.max_tokens
        else:
            body["prompt"], body["max_tokens"] = prompt, params.max_tokens
        # Server-side stops only where the server can honour them exactly; else cut here.
        if params.stop and len(params.stop) <= MAX_API_STOPS and (self.vllm_extensions or not params.include_stop):
            body["stop"] = list(params.stop)
        if self.vllm_extensions:
            body["extra_body"] = {"include_stop_str_in_output": params.include_stop,
                                  "top_k": params.top_k or -1, "return_token_ids": True}
        if params.json_schema is not None:
            schema = json.loads(params.json_schema)
            if self.mode == "chat":
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "output", "schema": schema, "strict": True}}
            else:  # the legacy completions endpoint has no response_format: vLLM's own field
                body.setdefault("extra_body", {})["structured_outputs"] = {"json": schema}
        return body

    async def _call(self, prompt: Prompt, params: SamplingParams, n: int, seed: int, batch: _Batch,
                    extra: dict[str, Any] | None = None) -> Any:
        """One API call with retries; raises _NRefused, _Halted once the batch has failed, or
        TeacherError when it gives up. ``extra`` fields are added to the request body. The
        budget is held from the first send until the caller has delivered the answer (the
        caller delivers before its next await, so the held tokens become spent at once)."""
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        api = self._client.chat.completions if self.mode == "chat" else self._client.completions
        create = api.with_raw_response.create  # the headers carry the provider's rate-limit state
        body = {**self._body(prompt, params, n, seed), **(extra or {})}
        reserve = _prompt_estimate(prompt) + n * body.get("max_tokens", params.max_tokens)
        held = None
        last = ""
        try:
            for attempt in range(self.max_retries + 1):
                wait = None
                async with batch.sem:
                    while held is None:
                        batch.halt_if_failed()
                        hold = batch.gate.hold(n * body.get("max_tokens", params.max_tokens), _prompt_estimate(prompt))
                        try:
                            hold.__enter__()  # raises BudgetExhausted when the budget is spent
                            held = hold
                        except GateFull:  # room only if the calls in flight come back short
                            await batch.wait_for_a_return()
                    try:
                        await self.limiter.wait(reserve)
                        raw = await asyncio.wait_for(create(**body), self.timeout)
                        self.limiter.read_headers(raw.headers)
                        return raw.parse()
                    except (asyncio.TimeoutError, APITimeoutError):
                        last = f"no answer within {self.timeout:g} s"
                    except APIConnectionError as e:
                        last = f"connection failed ({e.__cause__ or e})"
                    except APIStatusError as e:
                        status, msg = e.status_code, _server_message(e)
                        if status == 400 and n > 1 and (e.param == "n" or _N_WORD.search(msg)):
                            raise _NRefused(f"HTTP 400: {msg}") from None
                        if status not in RETRY_STATUS and status < 500:
                            raise TeacherError(f"Teacher endpoint {self.endpoint} refused the request "
                                               f"(HTTP {status}): {msg}") from None
                        last, wait = f"HTTP {status}: {msg}", _retry_after(e.response.headers)
                        if status == 429:  # the limit is the endpoint's, not this request's: everyone waits
                            self.limiter.read_headers(e.response.headers)
                            if wait is not None:
                                self.limiter.pause(min(wait, self.backoff_max))
                if attempt == self.max_retries:
                    break
                batch.halt_if_failed()
                cap = min(self.backoff_max, self.backoff_base * 2**attempt)
                delay = min(wait, self.backoff_max) if wait is not None else random.uniform(0, cap)
                log.info("%s: %s; retry %d/%d in %.2f s", self.endpoint, last, attempt + 1, self.max_retries, delay)
                await batch.sleep(delay)
        finally:
            if held is not None:
                held.__exit__(None, None, None)
                batch.returned()  # waiters run after the caller has delivered (no await in between)
        raise TeacherError(f"Teacher endpoint {self.endpoint} failed {self.max_retries + 1} times; last error: "
                           f"{last}. Every sample it answered is kept: rerun the same command to resume.")

    def next_token_logprobs(self, prompts: Sequence[Prompt], candidates: Sequence[str],
                            top_logprobs: int | None = None) -> list[dict[str, float]]:
        """One greedy one-token request per prompt, with the top ``top_logprobs`` alternatives
        (default 20, the most OpenAI and vLLM's server give; 5 for api.openai.com's legacy
        completions). Candidates are matched to the returned token strings exactly, so pass
        single tokens with their leading space (``" yes"``). A candidate outside the list gets
        the lowest value listed: an upper bound on its own, and equal values for two absent
        candidates, so a yes/no ratio of two absent ones is 1:1, never a division by zero.
        """
        if self._closed:
            raise DistillError("OpenAIBackend.next_token_logprobs called after close()")
        if self.mode == "completion" and any(not isinstance(p, str) for p in prompts):
            raise DistillError("teacher.mode 'completion' needs text prompts; use mode 'chat' for chat messages")
        if top_logprobs is None:
            on_openai = (urlparse(self.base_url).hostname if self.base_url else OPENAI_HOST) == OPENAI_HOST
            top_logprobs = 5 if on_openai and self.mode == "completion" else 20
        extra: dict[str, Any] = ({"logprobs": True, "top_logprobs": top_logprobs} if self.mode == "chat"
                                 else {"logprobs": top_logprobs})
        return self._run(self._logprobs_all(list(prompts), list(candidates), extra))

    async def _logprobs_all(self, prompts: list[Prompt], candidates: list[str],
                            extra: dict[str, Any]) -> list[dict[str, float]]:
        batch = _Batch(self.concurrency)
        greedy = SamplingParams(max_tokens=1, temperature=0.0)
        tasks = [asyncio.ensure_future(self._call(p, greedy, 1, sample_seed(p, greedy, 0), batch, extra))
                 for p in prompts]
        resps = await _gather_or_cancel(tasks)
        return [self._listed_logprobs(r, candidates) for r in resps]

    def score(self, requests: Sequence[tuple[Prompt, str]]) -> list[list[float]]:
        """Log-probabilities of each continuation's tokens (see :meth:`Backend.score`) from one
        completions request per pair with ``echo=True, logprobs=1, max_tokens=0`` (vLLM's server;
        OpenAI's legacy completion models). The server tokenizes prompt + continuation as one
        text; the continuation's tokens are those that end in its last ``len(continuation)``
        characters, counted back from the end with the returned token strings."""
        if self._closed:
            raise DistillError("OpenAIBackend.score called after close()")
        if self.mode != "completion" or any(not isinstance(p, str) for p, _ in requests):
            raise DistillError("scoring over the openai backend needs teacher.openai.mode 'completion' and text "
                               "prompts (it reads the completions endpoint's echo)")
        if any(not p for p, _ in requests):
            raise DistillError("empty prompt: scoring needs at least one prompt token")
        return self._run(self._score_all([(str(p), c) for p, c in requests]))

    async def _score_all(self, requests: list[tuple[str, str]]) -> list[list[float]]:
        batch = _Batch(self.concurrency)
        greedy = SamplingParams(max_tokens=1, temperature=0.0)
        extra = {"echo": True, "logprobs": 1, "max_tokens": 0, "extra_body": {}}  # no vLLM extensions needed
        jobs = [(i, p + c, len(c)) for i, (p, c) in enumerate(requests) if c]
        tasks = [asyncio.ensure_future(self._call(text, greedy, 1, 0, batch, extra)) for _, text, _ in jobs]
        resps = await _gather_or_cancel(tasks)
        out: list[list[float]] = [[] for _ in requests]
        for (i, _, n), r in zip(jobs, resps):
            out[i] = self._echoed_tail(r, n)
        return out

    def _echoed_tail(self, resp: Any, n: int) -> list[float]:
        lp = resp.choices[0].logprobs if resp.choices else None
        if lp is None or not lp.tokens or not lp.token_logprobs:
            raise TeacherError(f"Teacher endpoint {self.endpoint} echoed no token log-probabilities "
                               f"(does it support echo with logprobs?)")
        out, covered = [], 0
        for tok, val in zip(reversed(lp.tokens), reversed(lp.token_logprobs)):
            if covered >= n:
                break
            if val is None:  # only the text's first token has none: the tokens do not add up to the text
                raise TeacherError(f"Teacher endpoint {self.endpoint} echoed tokens that do not spell the text")
            out.append(float(val))
            covered += len(tok)
        return out[::-1]

    def _listed_logprobs(self, resp: Any, candidates: list[str]) -> dict[str, float]:
        lp = resp.choices[0].logprobs if resp.choices else None
        listed: dict[str, float] = {}
        if lp is not None and self.mode == "chat" and lp.content:
            first = lp.content[0]
            listed = {t.token: float(t.logprob) for t in (first.top_logprobs or [])}
            listed.setdefault(first.token, float(first.logprob))
        elif lp is not None and self.mode == "completion" and lp.top_logprobs:
            listed = {t: float(v) for t, v in (lp.top_logprobs[0] or {}).items()}
            if lp.tokens and lp.token_logprobs and lp.token_logprobs[0] is not None:
                listed.setdefault(lp.tokens[0], float(lp.token_logprobs[0]))
        if not listed:
            raise TeacherError(f"Teacher endpoint {self.endpoint} returned no token log-probabilities "
                               f"(does it support logprobs?)")
        floor = min(listed.values())
        return {c: listed.get(c, floor) for c in candidates}

    def _completions(self, resp: Any, params: SamplingParams, k: int) -> list[Completion]:
        choices = sorted(resp.choices, key=lambda c: c.index)[:k]
        if len(choices) < k:
            raise TeacherError(f"Teacher endpoint {self.endpoint} returned {len(choices)} choices, expected {k}")
        texts = [(c.message.content or "") if self.mode == "chat" else c.text for c in choices]
        ids = [getattr(c, "token_ids", None) for c in choices]
        if all(isinstance(t, list) for t in ids):
            counts = [len(t) for t in ids]
        else:  # the usage total is all we have (and all the same choices of a request share it)
            counts = _split(_usage(resp, "completion_tokens"), texts)
        out = []
        for c, text, count in zip(choices, texts, counts):
            text, cut = apply_stop(text, params.stop, params.include_stop)
            finish = "length" if c.finish_reason == "length" and not cut else "stop"
            out.append(Completion(text, count, finish))
        return out


def _usage(resp: Any, field: str) -> int:
    return int(getattr(resp.usage, field, 0) or 0) if resp.usage else 0


def _split(total: int, texts: list[str]) -> list[int]:
    """Share ``total`` out in proportion to text length; the parts sum to ``total``."""
    weights = [len(t) + 1 for t in texts]
    exact = [total * w / sum(weights) for w in weights]
    parts = [int(x) for x in exact]
    for i in sorted(range(len(texts)), key=lambda i: parts[i] - exact[i])[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _prompt_estimate(prompt: Prompt) -> int:
    """Prompt tokens a request will be billed, guessed before sending (about 3 characters a
    token: on the high side for English, so a cost cap errs towards stopping early)."""
    return len(prompt_text(prompt)) // 3 + 1


async def _gather_draining(coros: list, batch: _Batch) -> list:
    """All results, in order. The first failure marks the batch failed at once (nothing new is
    sent, nothing retried) while the others are awaited, so answers already on the way are
    delivered; then it is raised. Cancelled or interrupted: everything is cancelled."""
    async def guarded(c):
        try:
            return await c
        except _Halted:
            raise
        except Exception as e:
            batch.fail(e)
            raise

    tasks = [asyncio.ensure_future(guarded(c)) for c in coros]
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    except BaseException:  # leave nothing running on our loop between calls
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if batch.failure is not None:
        raise batch.failure
    return [t.result() for t in tasks]


def _server_message(e: Any) -> str:
    body = e.body
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body) if body else e.message


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from a Retry-After header (a number or an HTTP date), if any."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


async def _gather_or_cancel(tasks: list) -> list:
    """All results, in order; if one fails, the others are cancelled (and awaited) first."""
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
