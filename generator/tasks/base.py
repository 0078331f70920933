"""The task interface."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from distill.record import Record


class Task:
    """A task turns seed records (a dateline, an input sentence, a row of a seed file)
    into generated records, using the teacher it is handed. ``counts`` accumulates the
    task's own funnel (contexts written, samples kept, ...)."""

    name: str = "task"

    def __init__(self, cfg, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed
        self.counts: Counter[str] = Counter()

    def seeds(self) -> list[Record]:
        """All seed items, in a fixed order (shard i holds a fixed slice of them)."""
        raise NotImplementedError

    def generate(self, seeds: list[Record], teacher) -> Iterator[Record]:
        raise NotImplementedError

    def resolve_defaults(self, backend) -> None:
        """Fill settings whose default depends on the backend (e.g. k on CPU vs GPU)."""

    def samples_per_seed(self) -> int:
        """Completions asked of the teacher per seed item (for progress bars)."""
        return getattr(self.cfg, "k", None) or 1

    def two_stage(self) -> bool:
        """True when a second prompt is built from the teacher's first answer (a written
        context), so a dry run cannot know the second prompts exactly."""
        return False
