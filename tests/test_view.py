"""``distill view``'s server on a real uvicorn on 127.0.0.1: every endpoint, what it refuses
(paths outside the run folder, the blind sheet's key, the cache), and that what it writes is
what ``distill critic train`` and ``distill eval --score-sheet`` read."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from distill.critics.labels import read_labels

try:
    from view_run import make_run, make_sheet
except ImportError:  # tests/ is a package
    from tests.view_run import make_run, make_sheet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The app on a real uvicorn, in a thread, on 127.0.0.1."""

    def __init__(self, root: Path, **kw) -> None:
        import uvicorn

        from distill.view.app import make_app

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(make_app(root, **kw), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        req = urllib.request.Request(self.url(path), data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("view") / "run"
    make_run(root)
    make_sheet(root)
    return root


@pytest.fixture
def run(built, tmp_path) -> Path:
    shutil.copytree(built, tmp_path / "run")
    return tmp_path / "run"


def test_summary_and_records_with_filters(run):
    with Server(run) as s:
        info = s.json("/api/run")
        assert info["rounds"] == [""] and info["per_round"][""]["shards_done"] == 4
        assert info["sheets"] == ["eval/sheet/sheet.jsonl"]
        everything = s.json("/api/records?limit=500")
        stats = json.loads((run / "filtered" / "stats.json").read_text())
        assert everything["total"] == stats["funnel"][0]["count"] == 80
        assert everything["facets"]["verdict"]["kept"] == stats["funnel"][-1]["count"]
        rej = s.json("/api/records?verdict=rejected&limit=500")
        assert rej["total"] == 80 - everything["facets"]["verdict"]["kept"]
        assert all(r["reason"] and r["stage"] for r in rej["rows"])
        copies = s.json("/api/records?reason=copy&limit=500")
        assert copies["total"] > 0 and all("copy" in r["reason"] for r in copies["rows"])
        word = "Afghanistan"
        hits = s.json(f"/api/records?q={word.lower()}&limit=500")
        assert hits["total"] > 0 and all(word in r["input"] + r["output"] for r in hits["rows"])
        ranged = s.json("/api/records?score=length_ratio&lo=0.9&hi=1.1&limit=500")
        assert ranged["total"] > 0 and all(0.9 <= r["scores"]["length_ratio"] <= 1.1 for r in ranged["rows"])
        page = s.json("/api/records?offset=10&limit=5")
        assert [r["id"] for r in page["rows"]] == [r["id"] for r in everything["rows"][10:15]]


def test_a_half_written_shard_is_shown_not_a_crash(run):
    kept = sorted((run / "filtered" / "kept").glob("shard-*.jsonl"))[0]
    kept.write_bytes(kept.read_bytes() + b'{"id": "half", "inp')
    (run / "filtered" / "rejects" / "critics-00009.jsonl").write_bytes(b"\x00\x01 not json\n")
    with Server(run) as s:
        res = s.json("/api/records")
        assert res["error_count"] == 2
        assert any("half-written" in e and kept.name in e for e in res["errors"])
        assert res["total"] == 80
        assert s.json("/api/label/next")["item"] is not None
        assert s.get("/")[0] == 200


def test_files_are_served_only_from_the_run_folder(run, tmp_path):
    (tmp_path / "secret.txt").write_text("outside")
    (run / "link.txt").symlink_to(tmp_path / "secret.txt")
    with Server(run) as s:
        status, body = s.get("/files/corpus/plots/funnel.png")
        assert status == 200 and body[:4] == b"\x89PNG"
        assert s.get("/files/corpus/README.md")[0] == 200
        for bad in ("/files/%2e%2e/secret.txt", "/files/..%2fsecret.txt", "/files/link.txt",
                    "/files/%2fetc%2fpasswd", "/files/eval/sheet/key.json", "/files/cache.sqlite",
                    "/files/shards/.shard-00000.jsonl.tmp-1"):
            status, _ = s.get(bad)
            assert status in (403, 404), (bad, status)
        assert s.get("/files/%2e%2e/secret.txt")[0] == 403
        assert s.get("/files/eval/sheet/key.json")[0] == 403
        assert s.get("/static/..%2f..%2fapp.py")[0] == 404
        assert s.get("/files/nothing.png")[0] == 404


def test_labels_go_to_the_file_critic_train_reads_and_resume(run):
    with Server(run) as s:
        first = s.json("/api/label/next")
        assert first["pool"] == 80 and first["labelled"] == 0
        # stratified: the first pairs come from different verdicts
        seen, verdicts = [], set()
        for letter, kinds in (("P", []), ("C", []), ("M", ["added", "time"]), ("D", []), ("P", [])):
            item = s.json("/api/label/next")["item"]
            status, res = s.post("/api/label", {"id": item["id"], "label": letter, "kinds": kinds})
            assert status == 200 and res["ok"]
            seen.append(item["id"])
            verdicts.add(res["row"]["verdict"].split(":")[0])
        assert len(verdicts) >= 3
        rows = read_labels(run / "labels.jsonl")
        assert [r.id for r in rows] == seen and [r.letter for r in rows] == ["P", "C", "M", "D", "P"]
        assert rows[2].kinds == ("added", "time") and all(r.split in ("train", "dev", "test") for r in rows)
        after = s.json("/api/label/next")
        assert after["labelled"] == 5 and after["item"]["id"] not in seen and after["counts"]["P"] == 2
        # a correction rewrites that row, nothing is duplicated
        assert s.post("/api/label", {"id": seen[1], "label": "D"})[0] == 200
        rows = read_labels(run / "labels.jsonl")
        assert len(rows) == 5 and rows[1].letter == "D"
        for bad, code in (({"id": seen[0], "label": "X"}, 422), ({"id": seen[0], "label": "M"}, 422),
                          ({"id": seen[0], "label": "M", "kinds": ["bogus"]}, 422), ({"id": "nope", "label": "P"}, 404)):
            assert s.post("/api/label", bad)[0] == code, bad
    with Server(run) as s:  # a new server resumes where the file stopped
        assert s.json("/api/label/next")["labelled"] == 5


def test_judging_writes_the_sheet_score_sheet_reads(run):
    from distill.trainers.sheet import score_sheet

    sheet = "eval/sheet/sheet.jsonl"
    with Server(run) as s:
        items = s.json(f"/api/judge?sheet={sheet}")["items"]
        assert items and all(set(it) == {"id", "x", "y", "label", "kinds", "note"} for it in items)  # blind
        for it, (label, kinds) in zip(items, [("P", []), ("M", ["dropped"]), ("C", [])]):
            assert s.post("/api/judge", {"sheet": sheet, "id": it["id"], "label": label, "kinds": kinds})[0] == 200
        assert s.json(f"/api/judge?sheet={sheet}")["judged"] == 3
        assert s.get("/api/judge?sheet=eval/sheet/key.json")[0] == 404
        assert s.post("/api/judge", {"sheet": "../x.jsonl", "id": "a", "label": "P"})[0] == 404
    key = json.loads((run / "eval" / "sheet" / "key.json").read_text())
    scores = score_sheet(run / "eval" / "sheet" / "sheet.jsonl", key)["systems"]
    want = {name: {"P": 0, "C": 0, "M": 0, "D": 0} for name in key["systems"]}
    for it, label in zip(items, "PMC"):
        for name in key["items"][it["id"]]["systems"]:
            want[name][label] += 1
    assert {name: v["counts"] for name, v in scores.items()} == want
    assert sum(v["m_kinds"].get("dropped", 0) for v in scores.values()) >= 1


def test_live_state_counts_the_cache_and_the_stream_sends_events(run):
    db = sqlite3.connect(run / "cache.sqlite")
    db.execute("CREATE TABLE completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, completion_tokens INTEGER NOT NULL, "
               "finish_reason TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, created REAL NOT NULL)")
    db.executemany("INSERT INTO completions VALUES (?, ?, ?, 'stop', ?, ?)",
                   [(f"k{i}", f"sample {i}", 7, 3, 1000.0 + i) for i in range(12)])
    db.commit()
    db.close()
    with Server(run) as s:
        state = s.json("/api/live")
        assert (state["samples"], state["completion_tokens"], state["prompt_tokens"]) == (12, 84, 36)
        assert state["newest"][0]["text"] == "sample 11" and state["shards_done"] == 4
        with urllib.request.urlopen(s.url("/api/live/stream?once=true"), timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            line = r.read().decode().strip()
        assert line.startswith("data: ") and json.loads(line[6:])["samples"] == 12


def test_live_state_adds_a_cluster_runs_shard_caches(run, tmp_path):
    """With executor.type=ray each replica writes cache/shard-NNNNN.sqlite until the driver merges
    them: the live view counts those too."""
    from distill.generator.backends.base import Completion
    from distill.generator.cache import RequestCache
    from distill.view.data import live_state

    d = tmp_path / "r"
    shutil.copytree(run, d)
    RequestCache(d / "cache.sqlite").put_many([("a", Completion("main one", 5, "stop"), 2)])
    for i in range(2):
        c = RequestCache(d / "cache" / f"shard-{i:05d}.sqlite")
        c.put_many([(f"s{i}", Completion(f"from shard {i}", 4, "stop"), 3)])
        c.close()
    state = live_state(d)
    assert (state["samples"], state["completion_tokens"], state["prompt_tokens"]) == (3, 13, 8)
    assert state["newest"][0]["text"] == "from shard 1"


def test_rounds_of_a_distill_run_folder(run, tmp_path):
    loop = tmp_path / "loop"
    loop.mkdir()
    shutil.copytree(run, loop / "round-1")
    shutil.copytree(run, loop / "round-2")
    with Server(loop) as s:
        assert s.json("/api/run")["rounds"] == ["round-1", "round-2"]
        assert s.json("/api/records?round=round-1")["total"] == 80
        assert s.get("/api/records?round=round-9")[0] == 404
        item = s.json("/api/label/next?round=round-1")["item"]
        assert s.post("/api/label", {"id": item["id"], "label": "P", "round": "round-1"})[0] == 200
    assert read_labels(loop / "labels.jsonl")[0].id == f"round-1/{item['id']}"


def test_cli_refuses_a_folder_that_is_not_a_run(tmp_path):
    p = subprocess.run([sys.executable, "-m", "distill.cli", "view", str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "is not a run folder" in p.stderr and "Traceback" not in p.stderr


def test_cli_binds_loopback_by_default(run):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "distill.cli", "view", str(run), "--port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = p.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/run", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and p.poll() is None
                time.sleep(0.1)
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
        if listening:
            assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        p.terminate()
        p.wait(10)


def test_records_are_reread_when_a_shard_changes(run):
    with Server(run) as s:
        before = s.json("/api/records")["total"]
        assert s.json("/api/records")["total"] == before  # served from memory: nothing changed
        row = {"stage": "copy", "reason": "copy", "record": {"id": "new-1", "task": "paraphrase", "input": "A b c.",
                                                              "output": "A b c.", "scores": {}}}
        (run / "filtered" / "rejects" / "critics-00042.jsonl").write_text(json.dumps(row) + "\n")
        after = s.json("/api/records")
        assert after["total"] == before + 1 and after["facets"]["verdict"]["rejected"] >= 1
