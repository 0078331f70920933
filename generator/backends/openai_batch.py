"""OpenAI-style Batch jobs for the openai backend (``teacher.openai.batch: true``): half the price,
answers within the completion window instead of at once.

Every ``generate_requests`` call (one task phase of one shard) becomes one Batch job: the
requests are written as a JSONL file (``custom_id``, ``method``, ``url``, ``body``), uploaded
(Files API, purpose ``batch``), submitted (Batches API) and polled; the output file's answers
are delivered into the request cache, and the requests in the error file, or left over by an
expired batch, go again as a new batch (up to ``max_retries`` times).

Exactly once. A job is named by the sha256 of its JSONL (the fingerprint) and recorded in
``<output_dir>/batches/<fingerprint>.json`` the moment it is created; its ``metadata`` carries
the fingerprint too, so a run killed between creating a batch and recording it finds the batch
on the server (Batches list) instead of creating another. A rerun resumes polling the recorded
batch; a finished one is never resubmitted (its answers are in the cache). ``distill cancel
RUN`` cancels the batches of a run that are still open.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from distill.errors import TeacherError
from distill.generator.backends.base import (
    Completion, Deliver, Gate, OpenGate, Request, Result, request_seed, sample_seed,
)
from distill.shards import atomic_write_json

log = logging.getLogger(__name__)

TERMINAL = {"completed", "failed", "expired", "cancelled"}
OPEN = {"validating", "in_progress", "finalizing", "cancelling"}


def record_path(state_dir: Path, fingerprint: str) -> Path:
    return Path(state_dir) / "batches" / f"{fingerprint}.json"


def open_batches(state_dir: Path) -> list[str]:
    """Ids of the recorded batches that were not collected yet (for ``distill cancel``)."""
    out = []
    for p in sorted((Path(state_dir) / "batches").glob("*.json")):
        rec = json.loads(p.read_text())
        last = rec["batches"][-1] if rec.get("batches") else None
        if last and not last.get("collected"):
            out.append(last["id"])
    return out


class BatchJobs:
    """Runs requests as Batch jobs for an :class:`OpenAIBackend` (its client, body and parsing)."""

    def __init__(self, backend: Any, state_dir: Path | None, poll_s: float, max_rounds: int) -> None:
        self.b, self.state_dir, self.poll_s, self.max_rounds = backend, state_dir, poll_s, max_rounds
        self._mem: dict[str, dict[str, Any]] = {}  # the records, when there is no state_dir to keep them in

    # -- the items of a job -------------------------------------------------------------
    def items(self, requests: list[Request]) -> list[tuple[str, int, tuple[int, ...], dict[str, Any]]]:
        """(custom_id, request position, sample indices, body) for each line. A request for
        several samples is one line with ``n`` and the request seed (as the direct path sends
        it), greedy or single samples one line each with their sample seed."""
        out = []
        for i, r in enumerate(requests):
            if len(r.indices) > 1 and r.params.temperature > 0:
                groups = [(r.indices, len(r.indices), request_seed(r.prompt, r.params))]
            else:
                groups = [((idx,), 1, sample_seed(r.prompt, r.params, idx)) for idx in r.indices]
            for indices, n, seed in groups:
                body = self.b._body(r.prompt, r.params, n, seed)
                body.update(body.pop("extra_body", None) or {})  # a batch line is the raw request body
                body["model"] = self.b.model
                cid = hashlib.sha256(json.dumps([body, list(indices)], sort_keys=True).encode()).hexdigest()[:24]
                out.append((cid, i, indices, body))
        return out

    def url(self) -> str:
        return "/v1/chat/completions" if self.b.mode == "chat" else "/v1/completions"

    # -- the run ------------------------------------------------------------------------
    async def run(self, requests: list[Request], deliver: Deliver | None, gate: Gate | None) -> list[Result]:
        gate = gate or OpenGate()
        got: dict[int, dict[int, Completion]] = {i: {} for i in range(len(requests))}
        billed: dict[int, int] = {i: 0 for i in range(len(requests))}
        pending = self.items(requests)
        for attempt in range(self.max_rounds + 1):
            if not pending:
                break
            lines = "".join(json.dumps({"custom_id": cid, "method": "POST", "url": self.url(), "body": body},
                                       sort_keys=True) + "\n" for cid, _, _, body in pending)
            fp = hashlib.sha256(lines.encode()).hexdigest()[:32]
            batch = await self._resume(fp)
            # cancelled before this run started (`distill cancel`, then a rerun): keep what it
            # answered and send the rest; cancelled while this run polls it: stop
            cancelled_before = batch is not None and batch.status in ("cancelled", "cancelling")
            most = sum((body.get("max_tokens") or body.get("max_completion_tokens") or 0) * body.get("n", 1)
                       for *_, body in pending)
            # a new job asks the budget once for all of it; one already submitted is paid for
            hold = gate.hold(most, sum(len(json.dumps(b)) // 3 for *_, b in pending)) if batch is None else nullcontext()
            with hold:
                if batch is None:
                    batch = await self._submit(fp, lines, len(pending))
                batch = await self._poll(fp, batch)
                done = await self._collect(fp, batch, pending, requests, got, billed, deliver)
            pending = [p for p in pending if p[0] not in done]
            if batch.status == "cancelled" and not cancelled_before:
                raise TeacherError(f"batch {batch.id} was cancelled; its {len(done)} finished answers are kept. "
                                   f"Rerun the same command to send the other {len(pending)} as a new batch.")
            if pending:
                log.warning("batch %s %s: %d of its requests did not succeed; sending them again as a new batch",
                            batch.id, batch.status, len(pending))
        if pending:
            raise TeacherError(f"{len(pending)} requests did not succeed in {self.max_rounds + 1} batch jobs at "
                               f"{self.b.endpoint}; every answer received is kept: rerun the same command to resume.")
        return [Result([got[i][idx] for idx in r.indices], billed[i]) for i, r in enumerate(requests)]

    async def _resume(self, fp: str):
        """The open (or finished, uncollected) batch of this job, if one was submitted."""
        rec = self._record(fp)
        if rec and rec["batches"] and not rec["batches"][-1].get("collected"):
            return await self.b._client.batches.retrieve(rec["batches"][-1]["id"])
        attempt = str(len(rec["batches"]) if rec else 0)
        async for b in self.b._client.batches.list(limit=100):  # created, then killed before it was recorded?
            meta = b.metadata or {}
            if meta.get("distill_job") == fp and meta.get("distill_attempt") == attempt and b.status != "cancelled":
                self._remember(fp, b, rec)
                return b
        return None

    async def _submit(self, fp: str, lines: str, n: int):
        f = await self.b._client.files.create(file=(f"distill-{fp}.jsonl", lines.encode(), "application/jsonl"),
                                              purpose="batch")
        rec = self._record(fp)
        attempt = str(len(rec["batches"]) if rec else 0)
        batch = await self.b._client.batches.create(input_file_id=f.id, endpoint=self.url(), completion_window="24h",
                                                    metadata={"distill_job": fp, "distill_attempt": attempt})
        self._remember(fp, batch, rec, requests=n)
        log.info("submitted batch %s (%d requests) to %s", batch.id, n, self.b.endpoint)
        return batch

    async def _poll(self, fp: str, batch):
        while batch.status not in TERMINAL:
            await asyncio.sleep(self.poll_s)
            batch = await self.b._client.batches.retrieve(batch.id)
            c = batch.request_counts
            if c is not None:
                log.info("batch %s %s: %s of %s done, %s failed", batch.id, batch.status, c.completed, c.total, c.failed)
        return batch

    async def _collect(self, fp: str, batch, pending, requests, got, billed, deliver) -> set[str]:
        """Deliver every successful answer of a finished batch; the custom ids delivered."""
        want = {cid: (i, indices) for cid, i, indices, _ in pending}
        done: set[str] = set()
        if batch.output_file_id:
            text = (await self.b._client.files.content(batch.output_file_id)).text
            for line in text.splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                cid, resp = row.get("custom_id"), row.get("response") or {}
                if cid not in want or cid in done or row.get("error") or resp.get("status_code") != 200:
                    continue
                i, indices = want[cid]
                comps, prompt_tokens = self.b._parse_batch_body(resp["body"], requests[i].params, len(indices))
                for idx, c in zip(indices, comps):
                    got[i][idx] = c
                billed[i] += prompt_tokens
                if deliver is not None:
                    deliver(i, indices, comps, prompt_tokens)
                done.add(cid)
        rec = self._record(fp)
        rec["batches"][-1].update(collected=True, status=batch.status, answered=len(done), at=time.time())
        if self.state_dir is not None:
            atomic_write_json(record_path(self.state_dir, fp), rec)
        return done

    # -- the record -----------------------------------------------------------------------
    def _record(self, fp: str) -> dict[str, Any] | None:
        if self.state_dir is None:
            return self._mem.get(fp)
        p = record_path(self.state_dir, fp)
        return json.loads(p.read_text()) if p.is_file() else None

    def _remember(self, fp: str, batch, rec: dict[str, Any] | None, requests: int | None = None) -> None:
        rec = rec or {"job": fp, "endpoint": self.b.endpoint, "model": self.b.model, "batches": []}
        if requests is not None:
            rec["requests"] = requests
        rec["batches"].append({"id": batch.id, "input_file_id": batch.input_file_id, "submitted": time.time()})
        if self.state_dir is None:
            self._mem[fp] = rec
        else:
            atomic_write_json(record_path(self.state_dir, fp), rec)
