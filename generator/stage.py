"""The teacher stage: seed records in, generated records out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from distill.generator.tasks.base import Task
from distill.generator.teacher import Teacher
from distill.record import Record
from distill.stage import Stage


class TeacherStage(Stage):
    """Runs a task over a batch of seed records with a (cached, budgeted) teacher.

    The whole input is read first: a task generates in phases (contexts, then their
    continuations) and a backend like vLLM is fastest with everything in one call, so
    the caller bounds memory by handing over one shard of seeds at a time.
    """

    name = "teacher"

    def __init__(self, task: Task, teacher: Teacher) -> None:
        self.task = task
        self.teacher = teacher

    def run(self, records: Iterable[Record], rank: int = 0, world_size: int = 1) -> Iterator[Record]:
        seeds = [r for i, r in enumerate(records) if i % world_size == rank]
        if seeds:
            yield from self.task.generate(seeds, self.teacher)

    def stats(self) -> dict:
        return {"task": dict(self.task.counts), "usage": self.teacher.usage.as_dict(),
                "cached_samples": self.teacher.cached_samples}
