"""Backend.score and the likelihood critic.

The transformers scorer against a direct forward pass of a tiny random model; the OpenAI echo
path against a loopback server; the critic's decision with a fake backend; vLLM and the real
SmolLM2 (slow)."""

from __future__ import annotations

import math
import re

import pytest

from distill.critics.likelihood import LikelihoodCritic
from distill.errors import DistillError, TeacherError
from distill.generator.backends.base import Backend
from distill.record import Record

try:
    from fault_server import FaultServer
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer

PAIRS = [("The bridge was closed for repairs.", "Repairs closed the bridge."),
         ("She bought three apples and a pear.", "She bought three apples."),
         ("Prices rose in March.", "Bananas are yellow.")]


# --- the transformers scorer, exactly ---------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer Llama with the SmolLM2 tokenizer (and its chat template), saved to disk."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from distill.generator.models import resolve_model
    from distill.generator.backends.transformers_backend import TransformersBackend

    try:
        tok_dir = resolve_model(None)
    except DistillError as e:
        pytest.skip(str(e))
    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    b = TransformersBackend(model=str(out), device="cpu", batch_size=3)
    yield b
    b.close()


def direct_logprobs(backend, prompt, cont) -> list[float]:
    """One unpadded forward pass over prompt + continuation ids; log-softmax read at each
    continuation token."""
    import torch

    chat = isinstance(prompt, list)
    p = backend.tok(backend.render(prompt), add_special_tokens=not chat)["input_ids"]
    c = backend.tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([p + c])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return [lp[len(p) + k - 1, t].item() for k, t in enumerate(c)]


def test_transformers_score_is_exact_with_padding_and_batches(tiny):
    chat = [{"role": "user", "content": "Paraphrase: The cat sat on the mat."}]
    reqs = [(chat, "A cat was sitting on the mat."), ("Once upon a time", " there was a very long story to tell"),
            (chat, "Mat."), ("Hi", " there"), ("A much longer text prompt that needs padding in a batch", " ok"),
            ("Empty continuation", "")]
    got = tiny.score(reqs)  # batch_size 3: two batches, rows of several lengths padded together
    assert got[-1] == []
    for (prompt, cont), row in zip(reqs[:-1], got):
        ref = direct_logprobs(tiny, prompt, cont)
        assert len(row) == len(ref) > 0
        assert row == pytest.approx(ref, abs=1e-4)
    assert tiny.score(reqs[1:2])[0] == pytest.approx(got[1], abs=1e-4)  # alone = in a batch


def test_transformers_score_refuses_an_empty_prompt(tiny):
    with pytest.raises(DistillError, match="empty prompt"):
        tiny.score([("", "text")])


# --- the OpenAI echo path -----------------------------------------------------------------

_TOKEN = re.compile(r"\s*\S+")


def token_logprob(token: str) -> float:
    return -len(token.strip()) / 10


class EchoServer(FaultServer):
    """Answers ``echo`` completions requests with a word-level tokenization of the prompt and
    made-up log-probabilities (-len(word)/10; None for the first token, as real servers)."""

    def answer(self, path: str, body: dict) -> dict:
        if not body.get("echo"):
            return super().answer(path, body)
        toks = _TOKEN.findall(body["prompt"])
        lps = [None] + [token_logprob(t) for t in toks[1:]]
        offsets = [sum(map(len, toks[:i])) for i in range(len(toks))]
        choice = {"index": 0, "text": body["prompt"], "finish_reason": "length",
                  "logprobs": {"tokens": toks, "token_logprobs": lps, "text_offset": offsets,
                               "top_logprobs": [None] + [{t: v} for t, v in zip(toks[1:], lps[1:])]}}
        return {"id": "cmpl-echo", "object": "text_completion", "created": 0, "model": body["model"],
                "choices": [choice], "usage": {"prompt_tokens": len(toks), "completion_tokens": 0,
                                               "total_tokens": len(toks)}}


def openai_backend(server, **kw):
    from distill.generator.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(**{"model": "fake", "base_url": server.url, "backoff_base": 0.01, "backoff_max": 0.05,
                            "timeout": 2.0, **kw})


def test_openai_score_reads_the_continuation_from_the_echo():
    with EchoServer() as server, openai_backend(server) as b:
        server.script("503")  # retried like any other call
        got = b.score([("Paraphrase: the dog barked.\nParaphrase:", " A dog was barking."), ("Hello", ""),
                       ("One two", " three")])
    assert got == [[-0.1, -0.3, -0.3, -0.8], [], [-0.5]]
    bodies = [body for _, body in server.requests]
    assert len(bodies) == 3  # one 503 + two pairs; the empty continuation is not sent
    assert {(b_["echo"], b_["logprobs"], b_["max_tokens"]) for b_ in bodies} == {(True, 1, 0)}
    assert "return_token_ids" not in bodies[-1]
    assert sorted(b_["prompt"] for b_ in bodies[1:]) == ["One two three",
                                                          "Paraphrase: the dog barked.\nParaphrase: A dog was barking."]


def test_openai_score_needs_completion_mode_and_echo_support():
    with EchoServer() as server:
        with openai_backend(server, mode="chat") as b, pytest.raises(DistillError, match="mode 'completion'"):
            b.score([("x", " y")])
        server.answer = lambda path, body: FaultServer.answer(server, path, body)  # ignores echo
        with openai_backend(server) as b, pytest.raises(TeacherError, match="echoed no token log-probabilities"):
            b.score([("x", " y")])


# --- the critic's decision, with fixed log-probabilities ----------------------------------

# mean log p(answer | P(source)) the fake scorer gives, per (source, answer); BASE: given the
# baseline prompt (neutral, or the answer itself)
MEANS = {("The bridge was closed for repairs.", "Repairs closed the bridge."): -0.9,
         ("Repairs closed the bridge.", "The bridge was closed for repairs."): -1.0,
         ("She bought three apples and a pear.", "She bought three apples."): -0.5,  # easy: a copy of part of x
         ("She bought three apples.", "She bought three apples and a pear."): -2.6,  # the pear is not in y
         ("Prices rose in March.", "Bananas are yellow."): -5.0,
         ("Bananas are yellow.", "Prices rose in March."): -4.8}
BASE = {"The bridge was closed for repairs.": -0.2, "Repairs closed the bridge.": -0.4,
        "She bought three apples and a pear.": -0.2, "She bought three apples.": -0.2,
        "Prices rose in March.": -0.4, "Bananas are yellow.": -0.4}
SOURCE = re.compile(r"\n\n(.*)$", re.S)
NEUTRAL = [{"role": "user", "content": "Write a sentence."}]


class FakeScorer(Backend):
    """Scores each answer as three tokens whose mean is the table's value."""

    name = "fake-scorer"

    def __init__(self) -> None:
        self.calls: list[list] = []
        self.closed = 0

    @property
    def model_id(self) -> str:
        return "fake-scorer"

    def score(self, requests):
        self.calls.append(list(requests))
        out = []
        for prompt, answer in requests:
            if not answer:
                out.append([])
                continue
            source = None if prompt == NEUTRAL else SOURCE.search(prompt[-1]["content"]).group(1)
            m = BASE[answer] if source in (None, answer) else MEANS[(source, answer)]
            out.append([m - 0.1, m, m + 0.1])
        return out

    def close(self) -> None:
        self.closed += 1


def records():
    return [Record(id=f"r{i}", task="paraphrase", input=x, output=y) for i, (x, y) in enumerate(PAIRS)]


def test_critic_scores_against_the_baseline_and_names_the_failed_threshold():
    fake = FakeScorer()
    critic = LikelihoodCritic(backend=fake, min_forward=-1.0, min_backward=-1.0)
    verdicts = critic.judge_batch(recs := records())
    assert verdicts == [True, (False, "lik_backward<-1"), (False, "lik_forward<-1")]
    assert recs[0].scores == pytest.approx({"lik_forward_raw": -0.9, "lik_forward": -0.5,
                                            "lik_backward_raw": -1.0, "lik_backward": -0.8})
    assert recs[1].scores == pytest.approx({"lik_forward_raw": -0.5, "lik_forward": -0.3,
                                            "lik_backward_raw": -2.6, "lik_backward": -2.4})
    assert len(fake.calls) == 1 and len(fake.calls[0]) == 12  # 6 cross + 6 baselines, one call
    assert sum(p == NEUTRAL for p, _ in fake.calls[0]) == 6
    prompt, answer = fake.calls[0][0]
    assert prompt == [{"role": "user", "content": "Paraphrase the following sentence. Keep its full meaning but "
                       "change the wording. Answer with the paraphrase only.\n\nThe bridge was closed for repairs."}]
    assert answer == "Repairs closed the bridge."
    assert critic.thresholds() == [("lik_forward", ">=", -1.0), ("lik_backward", ">=", -1.0)]
    critic.close()
    assert fake.closed == 0  # the caller owns it


def test_critic_remembers_copy_baselines_and_judges_one_direction():
    fake = FakeScorer()
    critic = LikelihoodCritic(backend=fake, baseline="copy", direction="forward", min_forward=-1.0)
    assert critic.judge_batch(records()) == [True, True, (False, "lik_forward<-1")]
    assert critic.judge_batch(records()[:2]) == [True, True]
    assert [len(c) for c in fake.calls] == [6, 2]  # 3 cross + 3 copies of y; then the copies are known
    assert (PAIRS[0][1], PAIRS[0][1]) in {(SOURCE.search(p[-1]["content"]).group(1), a) for p, a in fake.calls[0]}
    assert set(records()[0].scores) == set()  # fresh records: nothing written before judging
    assert critic.thresholds() == [("lik_forward", ">=", -1.0)]
    empty = Record(id="e", task="paraphrase", input=PAIRS[0][0], output="")
    assert critic.judge_batch([empty]) == [(False, "lik_forward<-1")]
    assert empty.scores == {"lik_forward_raw": -math.inf, "lik_forward": -math.inf}


def test_critic_without_baseline_thresholds_the_raw_means_and_pays_no_baseline_pass():
    fake = FakeScorer()
    critic = LikelihoodCritic(backend=fake, baseline="none", direction="backward", min_backward=-1.5)
    recs = records()
    assert critic.judge_batch(recs) == [True, (False, "lik_backward<-1.5"), (False, "lik_backward<-1.5")]
    assert recs[0].scores == pytest.approx({"lik_backward_raw": -1.0, "lik_backward": -1.0})
    assert [len(c) for c in fake.calls] == [3]  # the three backward passes, no baseline prompts


def test_critic_config_errors():
    with pytest.raises(DistillError, match="direction"):
        LikelihoodCritic(backend=FakeScorer(), direction="sideways")
    with pytest.raises(DistillError, match="baseline"):
        LikelihoodCritic(backend=FakeScorer(), baseline="zero")
    with pytest.raises(DistillError, match="prompt_style"):
        LikelihoodCritic(backend=FakeScorer(), prompt_style="poem")
    with pytest.raises(DistillError, match="not both"):
        LikelihoodCritic(backend=FakeScorer(), model="some/model")


def test_critic_from_a_filter_config_over_openai_text_prompts():
    from distill.critics.registry import build_critic
    from distill.config import TeacherConfig

    teacher = TeacherConfig(backend="openai", model="fake", openai={"max_retries": 0})
    with EchoServer() as server:
        teacher = teacher.model_copy(update={"openai": teacher.openai.model_copy(update={"base_url": server.url})})
        critic = build_critic("likelihood", {"prompt_style": "text", "direction": "backward", "min_backward": -0.3},
                              teacher=teacher)
        rec = Record(id="a", task="paraphrase", input="Dogs bark.", output="A dog barks.")
        verdicts = critic.judge_batch([rec])
        critic.close()
    # the fake server's words score -len/10 whatever comes before: x = " Dogs" " bark." scores
    # the same given y as given the neutral prompt
    assert rec.scores == pytest.approx({"lik_backward_raw": -0.45, "lik_backward": 0.0})
    assert verdicts == [True] and len(server.requests) == 2
    prompts = sorted(body["prompt"] for _, body in server.requests)
    assert prompts[0].endswith("Sentence: A dog barks.\nParaphrase: Dogs bark.")
    assert prompts[1] == "Write a sentence.\nSentence: Dogs bark."
    assert critic.backend is None


# --- real models -----------------------------------------------------------------------------

HAND_MADE = [  # (x, paraphrase, unrelated), written for these tests
    ("The meeting was postponed until next Tuesday because the manager was ill.",
     "Because the manager was sick, the meeting was moved to next Tuesday.",
     "Penguins live mostly in the Southern Hemisphere."),
    ("She bought three apples at the market this morning.",
     "This morning she purchased three apples at the market.",
     "The train to Boston leaves at noon."),
]


@pytest.mark.slow
def test_smollm2_scores_a_paraphrase_above_an_unrelated_sentence(smollm2):
    critic = LikelihoodCritic(backend=smollm2)
    recs = [Record(id=f"{i}-{k}", task="paraphrase", input=row[0], output=row[k])
            for i, row in enumerate(HAND_MADE) for k in (1, 2)]
    verdicts = critic.judge_batch(recs)
    for i in range(len(HAND_MADE)):
        para, unrel = recs[2 * i].scores, recs[2 * i + 1].scores
        assert para["lik_forward"] > unrel["lik_forward"] and para["lik_backward"] > unrel["lik_backward"]
        assert verdicts[2 * i] is True and verdicts[2 * i + 1] is not True, (para, unrel)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_score_agrees_with_transformers(vllm_backend, smollm2):
    x, para, _ = HAND_MADE[0]
    critic = LikelihoodCritic(backend=smollm2)
    reqs = [(critic.prompt(x), para), (critic.prompt(para), x), ("Once upon a time", " there was a king."),
            ("Hello", "")]
    ours, ref = vllm_backend.score(reqs), smollm2.score(reqs)
    assert [len(r) for r in ours] == [len(r) for r in ref] and ours[-1] == []
    for a, b in zip(ours, ref):
        assert a == pytest.approx(b, abs=0.05)
