"""The critic interface: critics only judge; this base counts and keeps the rejects.

A critic implements :meth:`Critic.judge_batch` (or :meth:`Critic.judge` for one record),
returning per record ``True`` (keep) or ``(False, reason)``. The reason names the
threshold that failed, as ``"<score name><op><threshold>"`` (``"nli_backward<0.75"``,
``"length_ratio>1.5"``), so the funnel in stats.json and the dataset card says exactly
why a sample went. Critics write the numbers they computed into ``record.scores``, and
state the bounds they keep by in :meth:`Critic.thresholds`; the filter writes those into
stats.json, where the dataset card and its score plots read them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Union

from distill.record import Record
from distill.stage import Stage

Verdict = Union[bool, tuple[bool, str]]
#: a kept record satisfies ``score <op> value``
Threshold = tuple[str, str, float]
OPS = (">=", ">", "<=", "<")


def below(name: str, threshold: float) -> str:
    """The reason for a score under its minimum."""
    return f"{name}<{threshold:g}"


def above(name: str, threshold: float) -> str:
    """The reason for a score over its maximum."""
    return f"{name}>{threshold:g}"


def batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Critic(Stage):
    """Base of every critic. Subclasses set ``name`` and implement ``judge`` or
    ``judge_batch``; ``run`` streams records through in batches of ``batch_size``.

    ``counts`` holds ``total``, ``kept`` and ``dropped_<reason>``; ``rejected`` buffers
    ``(record, reason)`` pairs until the caller drains it (the filter runner writes them
    to a side file per shard); ``score_values`` collects every score this critic wrote,
    for the distributions in stats.json.
    """

    name: str = "critic"
    batch_size: int = 64
    #: keys of record.scores this critic writes (for score distributions)
    score_names: tuple[str, ...] = ()

    def __init__(self, keep_rejects: bool = True) -> None:
        self.counts: Counter[str] = Counter()
        self.keep_rejects = keep_rejects
        self.rejected: list[tuple[Record, str]] = []
        self.score_values: dict[str, list[float]] = {}

    def judge(self, record: Record) -> Verdict:
        raise NotImplementedError

    def thresholds(self) -> list[Threshold]:
        """``(score name, op, value)`` per bound this critic keeps by: a kept record has
        ``record.scores[name] <op> value``, op one of ``>=``, ``>``, ``<=``, ``<``. Checks that
        are not a bound on a written score (a regex, a set difference) are not listed."""
        return []

    def judge_batch(self, records: list[Record]) -> list[Verdict]:
        return [self.judge(r) for r in records]

    def run(self, records: Iterable[Record], rank: int = 0, world_size: int = 1) -> Iterator[Record]:
        for batch in batched(records, self.batch_size):
            verdicts = self.judge_batch(batch)
            if len(verdicts) != len(batch):
                raise RuntimeError(f"critic {self.name} returned {len(verdicts)} verdicts for {len(batch)} records")
            for r, v in zip(batch, verdicts):
                self.counts["total"] += 1
                for k in self.score_names:
                    if k in r.scores:
                        self.score_values.setdefault(k, []).append(float(r.scores[k]))
                if v is True:
                    self.counts["kept"] += 1
                    yield r
                    continue
                reason = v[1] if isinstance(v, tuple) and len(v) > 1 else "rejected"
                self.counts[f"dropped_{reason}"] += 1
                if self.keep_rejects:
                    self.rejected.append((r, reason))

    def drain_rejects(self) -> list[tuple[Record, str]]:
        out, self.rejected = self.rejected, []
        return out

    def stats(self) -> dict[str, Any]:
        dropped = {k[len("dropped_"):]: v for k, v in sorted(self.counts.items()) if k.startswith("dropped_")}
        return {"name": self.name, "total": self.counts["total"], "kept": self.counts["kept"], "dropped": dropped}


def threshold_dicts(critic: Critic) -> list[dict[str, Any]]:
    """``critic.thresholds()`` as JSON objects ``{"score", "op", "value"}``, checked."""
    out = []
    for t in critic.thresholds():
        score, op, value = t
        if op not in OPS:
            raise ValueError(f"critic {critic.name}: threshold op {op!r} is not one of {', '.join(OPS)}")
        out.append({"score": str(score), "op": op, "value": float(value)})
    return out
