"""The Files and Batches endpoints of an OpenAI-compatible server, for :class:`FaultServer`.

Enough of the real API for the openai client: upload a JSONL file (multipart, purpose
``batch``), create a batch from it, retrieve, list, cancel, download the output and error
files. A batch stays ``in_progress`` for ``delay_s`` seconds after it is created, then is
answered when next retrieved: each line through the server's normal answer (and its payment
ledger), except every ``fail_every``-th line, which goes to the error file, and, for the next
``expire`` batches created, the second half of the lines, left unanswered by an expired batch.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from typing import Any


class BatchAPI:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []  # batch ids in the order they were created
        self.delay_s = 0.3
        self.fail_every: int | None = None
        self.expire = 0
        self._lock = threading.Lock()
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n:05d}"

    # -- routing ------------------------------------------------------------------------
    def handles(self, path: str) -> bool:
        return path.split("?")[0].startswith(("/v1/files", "/v1/batches"))

    def get(self, path: str) -> tuple[int, Any]:
        p = path.split("?")[0].rstrip("/")
        with self._lock:
            if p == "/v1/batches":
                data = [self._view(b) for b in reversed(list(self.batches.values()))]
                return 200, {"object": "list", "data": data, "has_more": False,
                             "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
            if p.startswith("/v1/batches/"):
                b = self.batches.get(p.rsplit("/", 1)[1])
                if b is None:
                    return 404, {"error": {"message": "no such batch", "type": "invalid_request_error"}}
                self._advance(b)
                return 200, self._view(b)
            if p.startswith("/v1/files/") and p.endswith("/content"):
                fid = p.split("/")[3]
                return (200, self.files[fid]) if fid in self.files else (404, {"error": {"message": "no such file"}})
        return 404, {"error": {"message": f"no route {path}"}}

    def post(self, path: str, headers: Any, raw: bytes) -> tuple[int, Any]:
        p = path.split("?")[0].rstrip("/")
        with self._lock:
            if p == "/v1/files":
                msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(
                    b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
                content, name = b"", "upload.jsonl"
                for part in msg.iter_parts():
                    if part.get_param("name", header="content-disposition") == "file":
                        content, name = part.get_payload(decode=True), part.get_filename() or name
                fid = self._id("file")
                self.files[fid] = content
                return 200, {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                             "filename": name, "purpose": "batch", "status": "processed"}
            if p == "/v1/batches":
                body = json.loads(raw or b"{}")
                if body.get("input_file_id") not in self.files:
                    return 400, {"error": {"message": "input file not found", "type": "invalid_request_error"}}
                bid = self._id("batch")
                lines = [json.loads(x) for x in self.files[body["input_file_id"]].splitlines() if x.strip()]
                self.batches[bid] = {"id": bid, "input_file_id": body["input_file_id"], "endpoint": body["endpoint"],
                                     "completion_window": body.get("completion_window", "24h"),
                                     "metadata": body.get("metadata"), "status": "in_progress",
                                     "created_at": time.time(), "lines": lines, "output_file_id": None,
                                     "error_file_id": None, "completed": 0, "failed": 0, "expire": self.expire > 0}
                self.expire = max(0, self.expire - 1)
                self.created.append(bid)
                return 200, self._view(self.batches[bid])
            if p.startswith("/v1/batches/") and p.endswith("/cancel"):
                b = self.batches.get(p.split("/")[3])
                if b is None:
                    return 404, {"error": {"message": "no such batch"}}
                if b["status"] not in ("completed", "failed", "expired"):
                    b["status"] = "cancelled"
                return 200, self._view(b)
        return 404, {"error": {"message": f"no route {path}"}}

    # -- processing ---------------------------------------------------------------------
    def _advance(self, b: dict[str, Any]) -> None:
        if b["status"] != "in_progress" or time.time() < b["created_at"] + self.delay_s:
            return
        out, err = [], []
        lines = b["lines"]
        answered = lines[: len(lines) // 2] if b["expire"] else lines
        for k, line in enumerate(answered, 1):
            if self.fail_every and k % self.fail_every == 0:
                err.append({"id": f"req-{k}", "custom_id": line["custom_id"], "response": None,
                            "error": {"code": "server_error", "message": "the model failed on this request"}})
                continue
            answer = self.server.answer(line["url"], line["body"])
            self.server.pay(line["url"], line["body"], answer, late=False)
            out.append({"id": f"req-{k}", "custom_id": line["custom_id"],
                        "response": {"status_code": 200, "request_id": f"r{k}", "body": answer}, "error": None})
        if out:
            b["output_file_id"] = self._id("file")
            self.files[b["output_file_id"]] = "".join(json.dumps(x) + "\n" for x in out).encode()
        if err:
            b["error_file_id"] = self._id("file")
            self.files[b["error_file_id"]] = "".join(json.dumps(x) + "\n" for x in err).encode()
        b["completed"], b["failed"] = len(out), len(err)
        b["status"] = "expired" if b["expire"] else "completed"

    def _view(self, b: dict[str, Any]) -> dict[str, Any]:
        return {"id": b["id"], "object": "batch", "endpoint": b["endpoint"], "errors": None,
                "input_file_id": b["input_file_id"], "completion_window": b["completion_window"],
                "status": b["status"], "output_file_id": b["output_file_id"], "error_file_id": b["error_file_id"],
                "created_at": int(b["created_at"]), "metadata": b["metadata"],
                "request_counts": {"total": len(b["lines"]), "completed": b["completed"], "failed": b["failed"]}}
