"""The one record type that flows through every stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Record:
    """One task sample.

    ``input``/``output`` are the pair a student learns (x -> y). ``scores`` holds numbers
    critics write (name -> float); ``metadata`` holds everything else a stage wants to
    pass downstream (context id, token counts, sample index, ...). Both must stay
    JSON-serialisable: records are written to JSONL/Parquet shards between stages.
    """

    id: str
    task: str
    input: str
    output: str
    teacher: str = ""
    round: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"id", "task", "input", "output"} - d.keys()
        if missing:
            raise ValueError(f"record is missing field(s) {sorted(missing)}")
        unknown = d.keys() - names
        if unknown:
            raise ValueError(f"record has unknown field(s) {sorted(unknown)}")
        return cls(**d)
