"""``distill view``: a local web app over a run folder (FastAPI + uvicorn, one static page).

FastAPI, not Gradio: the page needs its own keyboard handling for labelling, server-sent
events for the live view and strict control of what is served, and FastAPI + uvicorn add a
few MB where Gradio adds a front-end toolchain. Safe by default: it binds 127.0.0.1, serves
only files under the run folder (never the blind sheet's key, the request cache or anything
outside), and writes only its labels file and the judged sheets.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from distill.critics.labels import LETTERS, M_KINDS
from distill.errors import DistillError
from distill.shards import atomic_write
from distill.view import data as V

STATIC = Path(__file__).parent / "static"
#: what /files serves: the card, plots, configs and stats; not the cache, not a sheet's key
SERVED = {".png", ".svg", ".md", ".json", ".yaml", ".yml", ".txt", ".csv", ".jsonl"}
HIDDEN = {"key.json", "cache.sqlite"}


# Request bodies live at module level: FastAPI resolves these (postponed) annotations here.
class LabelIn(BaseModel):
    id: str
    label: str
    kinds: list[str] = []
    note: str = ""
    round: str | None = None


class JudgeIn(BaseModel):
    sheet: str
    id: str
    label: str
    kinds: list[str] = []
    note: str = ""


def make_app(root: str | Path, labels: str | Path | None = None, poll_s: float = 1.0, seed: int = 0):
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse

    run = V.RunFolder(root)
    labels_path = Path(labels).resolve() if labels else run.root / "labels.jsonl"
    lock = threading.Lock()
    app = FastAPI(title="distill view", docs_url=None, redoc_url=None, openapi_url=None)

    memo: dict[Path, tuple[tuple, list[dict[str, Any]], list[dict[str, Any]]]] = {}

    def read_round(d: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The round's records and its label pool, made again only when a shard file changed (a
        keypress while labelling must not reread or reshuffle a large run)."""
        sig = V.files_signature(d)
        hit = memo.get(d)
        if hit is None or hit[0] != sig:
            rows = V.records(d)
            memo[d] = (sig, rows, V.label_pool(rows, seed))
        return memo[d][1], memo[d][2]

    def rows_of(d: Path) -> list[dict[str, Any]]:
        return read_round(d)[0]

    def rdir(round_: str | None) -> Path:
        try:
            return run.round_dir(round_)
        except KeyError as e:
            raise HTTPException(404, str(e)) from None

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/static/{name}")
    def static(name: str):
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()}:
            raise HTTPException(404, "no such file")
        return FileResponse(path)

    @app.get("/api/run")
    def summary() -> dict[str, Any]:
        return {**run.summary(), "labels_file": str(labels_path)}

    @app.get("/api/live")
    def live_once(round: str | None = None) -> dict[str, Any]:
        return V.live_state(rdir(round))

    @app.get("/api/live/stream")
    async def live_stream(round: str | None = None, once: bool = False):
        d = rdir(round)

        async def events():
            last: tuple[float, int] | None = None
            while True:
                state = await asyncio.to_thread(V.live_state, d)
                now = time.monotonic()
                if last is not None and now > last[0]:
                    state["samples_per_s"] = round_(max(0.0, (state["samples"] - last[1]) / (now - last[0])))
                last = (now, state["samples"])
                yield f"data: {json.dumps(state, ensure_ascii=False)}\n\n"
                if once:
                    return
                await asyncio.sleep(poll_s)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/records")
    def records(round: str | None = None, verdict: str = "", stage: str = "", reason: str = "", q: str = "",
                score: str = "", lo: float | None = None, hi: float | None = None,
                offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        return V.query(rows_of(rdir(round)), verdict, stage, reason, q, score, lo, hi, offset, limit)

    @app.get("/api/corpus")
    def corpus(round: str | None = None) -> dict[str, Any]:
        return {"corpus": V.corpus_info(rdir(round), run.root)}

    @app.get("/files/{rel:path}")
    def files(rel: str):
        path = (run.root / rel).resolve()
        try:
            path.relative_to(run.root)
        except ValueError:
            raise HTTPException(403, "only files under the run folder are served") from None
        if path.name in HIDDEN or path.suffix.lower() not in SERVED or any(p.startswith(".") for p in path.parts):
            raise HTTPException(403, "this file is not served")
        if not path.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(path)

    # -- label ---------------------------------------------------------------------------
    def labelled() -> dict[str, dict[str, Any]]:
        if not labels_path.is_file():
            return {}
        return {r["id"]: r for r in V.read_jsonl(labels_path) if "id" in r}

    def pool(round_name: str) -> list[dict[str, Any]]:
        return read_round(rdir(round_name))[1]

    @app.get("/api/label/next")
    def label_next(round: str | None = None) -> dict[str, Any]:
        name = run.rounds[-1] if round in (None, "") else round
        items = pool(name)
        done = labelled()
        prefix = f"{name}/" if name else ""
        todo = [it for it in items if prefix + it["id"] not in done]
        counts = {k: sum(1 for r in done.values() if r.get("label") == k) for k in LETTERS}
        return {"item": todo[0] if todo else None, "labelled": len(items) - len(todo), "pool": len(items),
                "counts": counts, "kinds": list(M_KINDS), "file": str(labels_path)}

    @app.post("/api/label")
    def label(body: LabelIn) -> dict[str, Any]:
        name = run.rounds[-1] if body.round in (None, "") else body.round
        check_label(body.label, body.kinds)
        item = next((it for it in pool(name) if it["id"] == body.id), None)
        if item is None:
            raise HTTPException(404, f"no pair {body.id!r} in this run")
        row = V.label_row(item, name, body.label, body.kinds, body.note)
        with lock:
            done = labelled()
            if row["id"] in done:  # a correction: rewrite the file with the new row in place
                rows = [row if r.get("id") == row["id"] else r for r in V.read_jsonl(labels_path) if "id" in r]
                atomic_write(labels_path, lambda f: f.write(
                    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()))
            else:
                append_line(labels_path, row)
        return {"ok": True, "row": row}

    # -- judge ---------------------------------------------------------------------------
    def sheet_path(rel: str) -> Path:
        path = (run.root / rel).resolve()
        if path not in [p.resolve() for p in V.find_sheets(run.root)]:
            raise HTTPException(404, f"no sheet {rel!r} in this run (distill eval --sheet N writes one)")
        return path

    @app.get("/api/judge")
    def judge(sheet: str) -> dict[str, Any]:
        rows = V.read_jsonl(sheet_path(sheet))
        items = [{k: r.get(k, "") for k in ("id", "x", "y", "label", "kinds", "note")} for r in rows if "id" in r]
        return {"sheet": sheet, "items": items, "judged": sum(1 for r in items if r["label"]),
                "kinds": list(M_KINDS)}

    @app.post("/api/judge")
    def judge_one(body: JudgeIn) -> dict[str, Any]:
        path = sheet_path(body.sheet)
        check_label(body.label, body.kinds)
        with lock:
            rows = V.read_jsonl(path)
            if any("error" in r for r in rows):
                raise HTTPException(409, f"{body.sheet} has a line that is not JSON; fix it before judging")
            hit = [r for r in rows if r.get("id") == body.id]
            if not hit:
                raise HTTPException(404, f"no item {body.id!r} on {body.sheet}")
            hit[0].update(label=body.label, kinds=body.kinds if body.label == "M" else [], note=body.note)
            atomic_write(path, lambda f: f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()))
        return {"ok": True}

    def check_label(label_: str, kinds: list[str]) -> None:
        if label_ not in LETTERS:
            raise HTTPException(422, f"label must be one of {', '.join(LETTERS)}")
        bad = [k for k in kinds if k not in M_KINDS]
        if bad:
            raise HTTPException(422, f"unknown kind(s) {bad}; kinds are {', '.join(M_KINDS)}")
        if label_ == "M" and not kinds:
            raise HTTPException(422, "an M label needs at least one kind")

    return app


def round_(x: float) -> float:
    return round(x, 2)


def append_line(path: Path, row: dict[str, Any]) -> None:
    """One JSON line, on disk (fsync) before this returns: the page shows the next pair after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(row, ensure_ascii=False) + "\n").encode()
    with open(path, "ab") as f:
        if f.tell() > 0:  # a file cut off mid-line by a kill: start on a fresh line
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    data = b"\n" + data
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8765, labels: str | None = None) -> int:
    """Run the app until Ctrl-C."""
    try:
        import uvicorn
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise DistillError(f"distill view needs uvicorn and fastapi ({e}); pip install fastapi uvicorn") from None
    app = make_app(root, labels)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"distill: warning: serving on {host}: anyone who can reach it can read this run and write labels")
    print(f"distill view: http://{host}:{port}/  (run folder {Path(root).resolve()}; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as e:
        raise DistillError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return 0
