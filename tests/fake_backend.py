"""A deterministic stand-in backend, for tests about plumbing (cache, budget, shards).
Anything about real generation uses the real default model instead."""

from __future__ import annotations

from distill.generator.backends.base import Backend, Completion, Request, Result, prompt_text


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, chunk_size: int | None = 2, words: int = 6) -> None:
        self.chunk_size = chunk_size
        self.words = words
        self.calls: list[list[Request]] = []
        self.closed = 0

    @property
    def model_id(self) -> str:
        return "fake:v1"

    def generate_requests(self, requests):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            base = abs(hash(prompt_text(r.prompt))) % 1000
            comps = [Completion(text=f" Sample {i} of prompt {base} says things well{'.' if i % 3 else ''} ",
                                completion_tokens=self.words, finish_reason="stop") for i in r.indices]
            out.append(Result(comps, prompt_tokens=len(prompt_text(r.prompt).split())))
        return out

    def close(self) -> None:
        self.closed += 1
