"""Numbered, atomically written shards with completion markers.

``shard-00003.jsonl`` (or ``.parquet``) holds the records; ``shard-00003.done.json`` is
written after it, last, and is the only proof a shard is finished. Both are written to a
temporary file and renamed, so a reader never sees half a shard and a killed writer
leaves nothing a rerun would trust.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from distill.errors import DistillError
from distill.record import Record


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` via a temporary file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DistillError(
                f"disk full while writing {path}. Finished shards and the request cache are intact; "
                f"free some space and rerun the same command to resume.") from e
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(*directories: Path) -> int:
    """Delete temporary files left by writers that died mid-write (``kill -9``); a live
    writer's temp files (another rank still running) are left alone."""
    removed = 0
    for d in directories:
        for p in Path(d).glob(".*.tmp-*"):
            pid = p.name.rsplit(".tmp-", 1)[1]
            if pid.isdigit() and not _alive(int(pid)):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def atomic_write_json(path: Path, obj: Any) -> None:
    data = json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode()  # first: a failure leaves no temp file
    atomic_write(path, lambda f: f.write(data))


class ShardStore:
    def __init__(self, directory: str | Path, fmt: str = "jsonl", prefix: str = "shard") -> None:
        if fmt not in ("jsonl", "parquet"):
            raise ValueError(f"shard format must be jsonl or parquet, not {fmt!r}")
        self.dir = Path(directory)
        self.fmt = fmt
        self.prefix = prefix

    def data_path(self, i: int) -> Path:
        return self.dir / f"{self.prefix}-{i:05d}.{self.fmt}"

    def marker_path(self, i: int) -> Path:
        return self.dir / f"{self.prefix}-{i:05d}.done.json"

    def is_done(self, i: int) -> bool:
        return self.marker_path(i).is_file() and self.data_path(i).is_file()

    def done_indices(self) -> list[int]:
        out = []
        for m in self.dir.glob(f"{self.prefix}-*.done.json"):
            i = int(m.name[len(self.prefix) + 1 :].split(".")[0])
            if self.data_path(i).is_file():
                out.append(i)
        return sorted(out)

    def marker(self, i: int) -> dict[str, Any]:
        return json.loads(self.marker_path(i).read_text())

    def write(self, i: int, records: list[Record], info: dict[str, Any] | None = None) -> None:
        if self.fmt == "jsonl":
            def w(f: BinaryIO) -> None:
                for r in records:
                    f.write(json.dumps(r.to_dict(), ensure_ascii=False).encode() + b"\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = [{**r.to_dict(), "scores": json.dumps(r.scores), "metadata": json.dumps(r.metadata, ensure_ascii=False)}
                    for r in records]
            schema = pa.schema([("id", pa.string()), ("task", pa.string()), ("input", pa.string()),
                                ("output", pa.string()), ("teacher", pa.string()), ("round", pa.int64()),
                                ("scores", pa.string()), ("metadata", pa.string())])
            table = pa.Table.from_pylist(rows, schema=schema)

            def w(f: BinaryIO) -> None:
                pq.write_table(table, f)
        atomic_write(self.data_path(i), w)
        try:
            atomic_write_json(self.marker_path(i), {"shard": i, "records": len(records), **(info or {})})
        except BaseException:
            self.data_path(i).unlink(missing_ok=True)  # no data without its marker when the marker fails
            raise

    def read(self, i: int) -> list[Record]:
        path = self.data_path(i)
        if self.fmt == "jsonl":
            out = []
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        out.append(Record.from_dict(json.loads(line)))
                    except (json.JSONDecodeError, ValueError, TypeError) as e:
                        raise DistillError(f"{path} line {n}: not a valid record ({e})") from None
            return out
        import pyarrow.parquet as pq

        return [Record.from_dict({**row, "scores": json.loads(row["scores"]), "metadata": json.loads(row["metadata"])})
                for row in pq.read_table(path).to_pylist()]

    def iter_records(self) -> Iterator[Record]:
        for i in self.done_indices():
            yield from self.read(i)


def merge_sqlite(main: Path, folder: Path, table: str, create: str) -> int:
    """Move the rows of ``table`` from the SQLite files ``folder/shard-*.sqlite`` (written by
    cluster workers, one writer each) into ``main`` (made with the ``create`` statement if new),
    in shard order; a row whose key ``main`` already holds is kept as it is (the first one wins,
    as in a local run). A part is deleted only after its rows are committed, so a kill loses
    nothing and merging again is a no-op; the emptied folder goes too. Returns rows added."""
    parts = sorted(Path(folder).glob("shard-*.sqlite"))
    if not parts:
        return 0
    main.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(main)
    added = 0
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(create)
        db.commit()
        for part in parts:
            db.execute("ATTACH DATABASE ? AS part", (str(part),))
            try:
                with db:
                    added += db.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM part.{table}").rowcount
            finally:
                db.execute("DETACH DATABASE part")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{part}{suffix}").unlink(missing_ok=True)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    if not any(Path(folder).iterdir()):
        Path(folder).rmdir()
    return added
