"""A fake OpenAI-compatible server for tests, with scripted faults.

Speaks just enough of ``/v1/completions`` and ``/v1/chat/completions`` to return
deterministic completions with ``usage``. Each incoming request takes the next entry of
``faults`` (or ``default_fault`` once the script is used up):

- ``None``/``"ok"``: answer normally;
- ``"429"``, ``"429:0.3"`` (with ``Retry-After: 0.3``), ``"500"``, ``"503"``, ``"401"``, ``"400"``:
  an error response with an OpenAI-style JSON error body;
- ``"hang"``: wait ``hang_s`` (longer than the client's timeout), then answer;
- ``"drop"``: close the connection without a response;
- ``"drop_mid_body"``: send headers and half the body, then close.

Once the script is used up, ``mix`` (fault -> probability, drawn from ``random.Random(rng_seed)``)
picks faults at random; ``default_fault`` is the rest. Independent of the script, ``refuse_n``
answers every n > 1 with HTTP 400 "n must be 1", and ``max_choices`` caps the choices
returned. The server records every request (path and JSON body), the most requests it had in
flight at once, and a payment ``ledger``: one :class:`Paid` per successful answer it wrote in
full (what a provider bills), with the time it was written and whether the client had already
given up on it (a "hang" longer than the client's timeout).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Paid:
    """One billed answer: what was asked (path, prompt, seed, n), what it cost, when it was sent."""

    path: str
    prompt: str
    seed: int
    n: int
    prompt_tokens: int
    completion_tokens: int
    t: float  # time.time() once the whole answer was written
    late: bool  # sent after a "hang": the client had timed out and never read it

    @property
    def key(self) -> tuple[str, str, int, int]:
        return self.path, self.prompt, self.seed, self.n


def instance(schema: dict, tag: str):
    """A value following a (simple) JSON schema: objects, arrays, strings, numbers, enums."""
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if t == "object" or "properties" in schema:
        return {k: instance(v, f"{tag}.{k}") for k, v in (schema.get("properties") or {}).items()}
    if t == "array":
        return [instance(schema.get("items") or {"type": "string"}, tag)]
    if t == "integer":
        return len(tag)
    if t == "number":
        return len(tag) / 2
    if t == "boolean":
        return True
    return f"value {tag}"


def fake_text(prompt: str, seed: int, i: int, tag: str = "") -> str:
    """The completion the server gives for sample ``i`` of a request (deterministic)."""
    return f"{tag}{prompt[-12:]}|s{seed % 1000}|{i} alpha beta END gamma delta"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # broken pipes after a client timeout or a dropped connection are the point


class FaultServer:
    def __init__(self, delay: float = 0.0, hang_s: float = 2.0) -> None:
        self.faults: list[str | None] = []
        self.default_fault: str | None = None
        self.refuse_n = False
        self.max_choices: int | None = None
        self.delay = delay  # seconds each normal answer takes (lets requests overlap)
        self.jitter = False  # each answer takes a random time in [0, delay) instead
        self.tokenizer = None  # a transformers tokenizer: count prompt tokens as a vLLM server of that model would
        self.fill = False  # every sample runs to max_tokens (usage and token_ids say so)
        self.structured: list[dict] = []  # the JSON schemas requests asked their answers to follow
        self.bad_json_every: int | None = None  # every k-th structured answer cut in half (not JSON)
        self.hang_s = hang_s
        self.requests: list[tuple[str, dict]] = []
        self.mix: dict[str, float] = {}
        self.rng = random.Random(0)
        self.ledger: list[Paid] = []
        self.ok_headers: list[dict[str, str]] = []  # headers for the next normal answers, one dict each
        try:
            from batch_api import BatchAPI
        except ImportError:  # tests/ is a package
            from tests.batch_api import BatchAPI
        self.batch = BatchAPI(self)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def script(self, *faults: str | None) -> "FaultServer":
        self.faults = list(faults)
        return self

    def start(self) -> "FaultServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_fault(self, path: str, body: dict) -> str | None:
        with self._lock:
            self.requests.append((path, body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self.faults.pop(0) if self.faults else self._draw()
        if self.refuse_n and body.get("n", 1) > 1:
            return "400:n"
        return fault

    def _draw(self) -> str | None:
        x = self.rng.random()
        for fault, p in self.mix.items():
            if x < p:
                return fault
            x -= p
        return self.default_fault

    def pay(self, path: str, body: dict, answer: dict, late: bool) -> None:
        chat = path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        u = answer["usage"]
        with self._lock:
            self.ledger.append(Paid(path, str(prompt), int(body.get("seed") or 0), len(answer["choices"]),
                                    u["prompt_tokens"], u["completion_tokens"], time.time(), late))

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def answer(self, path: str, body: dict) -> dict:
        """A normal response body for a request."""
        chat = path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        n = body.get("n", 1)
        if self.max_choices is not None:
            n = min(n, self.max_choices)
        texts = [fake_text(prompt, body.get("seed") or 0, i, "chat:" if chat else "") for i in range(n)]
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") \
            or (body.get("structured_outputs") or {}).get("json")
        if schema is not None:  # structured outputs: an instance of the schema (every bad_json_every-th broken)
            self.structured.append(schema)
            texts = [json.dumps(instance(schema, f"{prompt[-8:]}|{body.get('seed') or 0}|{i}")) for i in range(n)]
            if self.bad_json_every:
                texts = [t[: len(t) // 2] if (len(self.structured) + i) % self.bad_json_every == 0 else t
                         for i, t in enumerate(texts)]
        stops = body.get("stop") or []
        finish = []
        for j, t in enumerate(texts):  # stop strings, vLLM-style (include_stop_str_in_output)
            hits = [(t.find(s), s) for s in stops if s in t]
            if hits:
                pos, s = min(hits)
                texts[j] = t[: pos + len(s)] if body.get("include_stop_str_in_output") else t[:pos]
            finish.append("stop" if hits else "length")
        tokens = [len(t.split()) for t in texts]
        if self.fill:
            limit = body.get("max_tokens") or body.get("max_completion_tokens") or 16
            tokens, finish = [limit] * len(texts), ["length"] * len(texts)
        choices = []
        for i, (t, f, k) in enumerate(zip(texts, finish, tokens)):
            c: dict = {"index": i, "finish_reason": f, "logprobs": None}
            if chat:
                c["message"] = {"role": "assistant", "content": t}
            else:
                c["text"] = t
            if body.get("return_token_ids"):
                c["token_ids"] = list(range(k))
            choices.append(c)
        return {"id": "cmpl-fake", "object": "chat.completion" if chat else "text_completion",
                "created": 0, "model": body.get("model", "fake"), "choices": choices,
                "usage": {"prompt_tokens": self.prompt_tokens(body, chat), "completion_tokens": sum(tokens),
                          "total_tokens": self.prompt_tokens(body, chat) + sum(tokens)}}

    def prompt_tokens(self, body: dict, chat: bool) -> int:
        if self.tokenizer is None:
            prompt = body["messages"][-1]["content"] if chat else body["prompt"]
            return len(str(prompt).split())
        if chat:
            ids = self.tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=True)
            return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
        return len(self.tokenizer(body["prompt"])["input_ids"])


def _make_handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, headers: dict | None = None, param: str | None = None) -> None:
            self._json(status, {"error": {"message": message, "type": "fake_error", "param": param,
                                          "code": status}}, headers)

        def do_GET(self) -> None:
            if server.batch.handles(self.path):
                return self._raw(*server.batch.get(self.path))
            self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

        def _raw(self, status: int, payload: Any) -> None:
            if isinstance(payload, bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self._json(status, payload)

        def do_POST(self) -> None:
            if server.batch.handles(self.path):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                return self._raw(*server.batch.post(self.path, self.headers, raw))
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            fault = server._next_fault(self.path, body)
            try:
                self._serve(fault, body)
            finally:
                server._done()

        def _serve(self, fault: str | None, body: dict) -> None:
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                return self._error(404, f"no route {self.path}")
            if fault in (None, "ok"):
                if server.delay:
                    server._stop.wait(server.delay * (server.rng.random() if server.jitter else 1.0))
                answer = server.answer(self.path, body)
                with server._lock:
                    extra = server.ok_headers.pop(0) if server.ok_headers else None
                self._json(200, answer, extra)
                return server.pay(self.path, body, answer, late=False)
            if fault == "hang":
                server._stop.wait(server.hang_s)
                answer = server.answer(self.path, body)
                self._json(200, answer)
                return server.pay(self.path, body, answer, late=True)
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            if fault == "drop_mid_body":
                data = json.dumps(server.answer(self.path, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            if fault == "400:n":
                return self._error(400, "n must be 1 for this model")
            status, _, retry_after = fault.partition(":")
            headers = {"Retry-After": retry_after} if retry_after else None
            messages = {"400": "invalid request: temperature is weird", "401": "Incorrect API key provided",
                        "429": "Rate limit reached", "500": "internal error", "503": "overloaded"}
            return self._error(int(status), messages.get(status, "fault"), headers)

    return Handler
