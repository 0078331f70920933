"""The stage interface: a generator of records in, a generator of records out.

As in datatrove, a pipeline is a plain list of stages; ``rank``/``world_size`` let a
stage take its share of the work when several processes run the same pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from distill.record import Record


class Stage:
    name: str = "stage"

    def run(self, records: Iterable[Record], rank: int = 0, world_size: int = 1) -> Iterator[Record]:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters for the run's funnel (written to stats.json)."""
        return {}


def run_pipeline(stages: list[Stage], records: Iterable[Record] = (), rank: int = 0,
                 world_size: int = 1) -> Iterator[Record]:
    """Chain stages lazily: each stage consumes the previous one's generator."""
    stream: Iterable[Record] = records
    for stage in stages:
        stream = stage.run(stream, rank=rank, world_size=world_size)
    yield from stream
