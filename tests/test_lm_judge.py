"""LMJudgeCritic and Backend.next_token_logprobs.

Plumbing and the decision with a fake backend; the OpenAI backend against a tiny
logprob-capable fake server; the real transformers backend (SmolLM2) and the real vLLM
engine on a few hand-made pairs (slow)."""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


from distill.critics.lm_judge import CHAT_TEMPLATE, NO, YES, LMJudgeCritic, p_yes
from distill.errors import DistillError, TeacherError
from distill.generator.backends.base import Backend
from distill.record import Record

# (premise, hypothesis) -> P(yes) the fake judges answer
TABLE = {
    ("The bridge was closed for repairs.", "Repairs closed the bridge."): 0.9,
    ("Repairs closed the bridge.", "The bridge was closed for repairs."): 0.8,
    ("She bought three apples and a pear.", "She bought three apples."): 0.9,
    ("She bought three apples.", "She bought three apples and a pear."): 0.1,  # y dropped the pear
    ("Prices rose in March.", "Prices fell in March."): 0.2,
    ("Prices fell in March.", "Prices rose in March."): 0.05,
}
PAIRS = [("The bridge was closed for repairs.", "Repairs closed the bridge."),
         ("She bought three apples and a pear.", "She bought three apples."),
         ("Prices rose in March.", "Prices fell in March.")]
_PAIR = re.compile(r"Premise: (.*?)\nHypothesis: (.*?)\n")


def last_pair(text: str) -> tuple[str, str]:
    """The pair a judge prompt asks about (after any few-shot examples)."""
    return _PAIR.findall(text + "\n")[-1]


def fake_logprobs(p: float, candidates) -> dict[str, float]:
    """P(yes)=p split over two spellings; the other spellings nearly impossible."""
    out = {c: -60.0 for c in candidates}
    out.update({"Yes": math.log(p * 0.75), " yes": math.log(p * 0.25), " No": math.log((1 - p) * 0.6),
                "no": math.log((1 - p) * 0.4)})
    return {c: out[c] for c in candidates}


def prompt_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


class FakeJudge(Backend):
    name = "fake-judge"

    def __init__(self) -> None:
        self.calls: list[list] = []
        self.closed = 0

    @property
    def model_id(self) -> str:
        return "fake-judge"

    def next_token_logprobs(self, prompts, candidates):
        self.calls.append(list(prompts))
        return [fake_logprobs(TABLE[last_pair(prompt_text(p))], candidates) for p in prompts]

    def close(self) -> None:
        self.closed += 1


def records():
    return [Record(id=f"r{i}", task="paraphrase", input=x, output=y) for i, (x, y) in enumerate(PAIRS)]


def test_p_yes_sums_spellings_and_renormalises_over_yes_and_no():
    lp = {"Yes": math.log(0.3), " yes": math.log(0.1), "No": math.log(0.2), " no": math.log(0.2)}
    assert p_yes(lp, ("Yes", " yes"), ("No", " no")) == pytest.approx(0.5)
    lp = {"Yes": math.log(0.06), "No": math.log(0.02)}  # most mass elsewhere: only the ratio counts
    assert p_yes(lp, ("Yes",), ("No",)) == pytest.approx(0.75)
    assert p_yes({"Yes": -math.inf, "No": -math.inf}, ("Yes",), ("No",)) == 0.5
    assert p_yes({"Yes": -2000.0, "No": 0.0}, ("Yes",), ("No",)) == pytest.approx(0.0)


def test_judges_both_directions_in_one_call_with_exact_reasons():
    backend = FakeJudge()
    critic = LMJudgeCritic(backend=backend, min_forward=0.5, min_backward=0.5)
    kept = list(critic.run(records()))
    assert [r.id for r in kept] == ["r0"]
    assert [(r.id, reason) for r, reason in critic.drain_rejects()] == [
        ("r1", "lm_entail_backward<0.5"), ("r2", "lm_entail_forward<0.5")]
    assert critic.stats() == {"name": "lm_judge", "total": 3, "kept": 1,
                              "dropped": {"lm_entail_backward<0.5": 1, "lm_entail_forward<0.5": 1}}
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 6  # 3 forward, then 3 backward
    assert [last_pair(p) for p in backend.calls[0]] == PAIRS + [(y, x) for x, y in PAIRS]
    assert kept[0].scores == pytest.approx({"lm_entail_forward": 0.9, "lm_entail_backward": 0.8})
    assert critic.score_values["lm_entail_backward"] == pytest.approx([0.8, 0.1, 0.05])
    critic.close()
    assert backend.closed == 0  # a backend passed in stays the caller's


def test_thresholds_and_direction_are_config():
    critic = LMJudgeCritic(backend=FakeJudge(), direction="forward", min_forward=0.15)
    recs = records()
    assert critic.judge_batch(recs) == [True, True, True]
    assert all(set(r.scores) == {"lm_entail_forward"} for r in recs)
    critic = LMJudgeCritic(backend=FakeJudge(), direction="backward", min_backward=0.85)
    assert critic.judge_batch(records()) == [(False, "lm_entail_backward<0.85")] * 3


def test_prompt_styles():
    chat = LMJudgeCritic(backend=FakeJudge(), prompt_style="chat").prompt("A cat sat.", "A cat sits.")
    assert chat == [{"role": "user", "content": CHAT_TEMPLATE.format(premise="A cat sat.", hypothesis="A cat sits.")}]
    text = LMJudgeCritic(backend=FakeJudge()).prompt("A cat sat.", "A cat sits.")
    assert isinstance(text, str) and text.endswith("Premise: A cat sat.\nHypothesis: A cat sits.\nAnswer:")
    assert text.count("Answer: Yes") == 3 and text.count("Answer: No") == 3  # the few-shot examples
    own = LMJudgeCritic(backend=FakeJudge(), template="Q: {premise} => {hypothesis}?\nA:").prompt("a", "b")
    assert own == "Q: a => b?\nA:"


def test_bad_settings_fail_clearly():
    with pytest.raises(DistillError, match="exactly one of backend"):
        LMJudgeCritic()
    with pytest.raises(DistillError, match="exactly one of backend"):
        LMJudgeCritic(backend=FakeJudge(), teacher={"backend": "transformers"})
    with pytest.raises(DistillError, match=r"only use \{premise\} and \{hypothesis\}"):
        LMJudgeCritic(backend=FakeJudge(), template="{premise} {answer}")
    with pytest.raises(DistillError, match="all different"):
        LMJudgeCritic(backend=FakeJudge(), yes=("Yes",), no=("Yes",))
    with pytest.raises(DistillError, match="prompt_style"):
        LMJudgeCritic(backend=FakeJudge(), prompt_style="json")
    with pytest.raises(DistillError, match="direction"):
        LMJudgeCritic(backend=FakeJudge(), direction="up")


# --- OpenAI backend against a tiny logprob-capable fake server ---------------------------

class LogprobServer:
    """Answers /v1/chat/completions and /v1/completions with one token and its top
    ``top`` alternatives (OpenAI's two logprob formats), from TABLE; the first ``fail``
    requests get HTTP 503; ``no_logprobs`` leaves the logprobs out. Records (path, body) of every request."""

    def __init__(self, fail: int = 0, top: int = 3, no_logprobs: bool = False) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.fail, self.top, self.no_logprobs = fail, top, no_logprobs
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                if len(server.requests) <= server.fail:
                    return self._send(503, {"error": {"message": "busy", "type": "server_error"}})
                chat = self.path.endswith("/chat/completions")
                text = body["messages"][-1]["content"] if chat else body["prompt"]
                lps = fake_logprobs(TABLE[last_pair(text)], ["Yes", " yes", " No", "no", "Maybe"])
                lps["Maybe"] = -0.01  # the top token is neither answer
                top = sorted(lps.items(), key=lambda kv: -kv[1])[: server.top]
                if chat:
                    content = [{"token": top[0][0], "logprob": top[0][1], "bytes": None,
                                "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top]}]
                    choice = {"index": 0, "message": {"role": "assistant", "content": top[0][0]},
                              "finish_reason": "length", "logprobs": {"content": content}}
                else:
                    choice = {"index": 0, "text": top[0][0], "finish_reason": "length",
                              "logprobs": {"tokens": [top[0][0]], "token_logprobs": [top[0][1]],
                                           "top_logprobs": [dict(top)], "text_offset": [0]}}
                if server.no_logprobs:  # an endpoint that ignores the logprobs fields
                    choice["logprobs"] = None
                self._send(200, {"id": "x", "object": "chat.completion" if chat else "text_completion",
                                 "created": 0, "model": body["model"], "choices": [choice],
                                 "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


FAST = dict(backoff_base=0.01, backoff_max=0.05, timeout=5.0)


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_openai_next_token_logprobs_reads_top_list_with_floor(mode):
    from distill.generator.backends.openai_backend import OpenAIBackend

    x, y = PAIRS[0]
    with LogprobServer(fail=1) as server, OpenAIBackend("fake", base_url=server.url, mode=mode, **FAST) as b:
        prompt = f"Premise: {x}\nHypothesis: {y}\nAnswer:"
        [row] = b.next_token_logprobs([prompt], ["Yes", " yes", " No", "no"])
    assert len(server.requests) == 2  # one 503, retried
    path, body = server.requests[-1]
    assert body["temperature"] == 0.0
    if mode == "chat":
        assert path == "/v1/chat/completions"
        assert (body["logprobs"], body["top_logprobs"], body["max_completion_tokens"]) == (True, 20, 1)
    else:
        assert path == "/v1/completions"
        assert (body["logprobs"], body["max_tokens"]) == (20, 1)
    # top 3 listed: Maybe, Yes, " yes" (0.9 * 0.25); " No" and "no" absent -> the lowest listed
    assert row["Yes"] == pytest.approx(math.log(0.9 * 0.75))
    assert row[" yes"] == pytest.approx(math.log(0.9 * 0.25))
    assert row[" No"] == row["no"] == pytest.approx(math.log(0.9 * 0.25))


def test_lm_judge_built_from_a_teacher_config_over_openai():
    with LogprobServer(top=5) as server:
        critic = LMJudgeCritic(teacher={"backend": "openai", "model": "fake",
                                        "openai": {"base_url": server.url, "mode": "chat", "max_retries": 0}},
                               prompt_style="chat", min_forward=0.5, min_backward=0.5, yes=("Yes", " yes"),
                               no=(" No", "no"))
        verdicts = critic.judge_batch(recs := records())
        critic.close()
    assert verdicts == [True, (False, "lm_entail_backward<0.5"), (False, "lm_entail_forward<0.5")]
    assert recs[1].scores == pytest.approx({"lm_entail_forward": 0.9, "lm_entail_backward": 0.1})
    assert len(server.requests) == 6 and all(b["messages"][0]["role"] == "user" for _, b in server.requests)
    assert critic.backend is None  # closed: the critic built it


def test_openai_endpoint_without_logprobs_is_a_clear_error():
    from distill.generator.backends.openai_backend import OpenAIBackend

    x, y = PAIRS[0]
    with LogprobServer(no_logprobs=True) as server, OpenAIBackend("fake", base_url=server.url, mode="chat",
                                                                 **FAST) as b:
        with pytest.raises(TeacherError, match="returned no token log-probabilities"):
            b.next_token_logprobs([f"Premise: {x}\nHypothesis: {y}\n"], ["Yes", "No"])


# --- the real CPU default judge ---------------------------------------------------------

HAND_MADE = [  # (x, paraphrase, contradiction, unrelated), written for these tests
    ("The meeting was postponed until next Tuesday because the manager was ill.",
     "Because the manager was sick, the meeting was moved to next Tuesday.",
     "The meeting went ahead as planned on Monday.",
     "Penguins live mostly in the Southern Hemisphere."),
    ("She bought three apples at the market this morning.",
     "This morning she purchased three apples at the market.",
     "She did not buy anything at the market this morning.",
     "The train to Boston leaves at noon."),
]


@pytest.mark.slow
def test_transformers_logprobs_match_an_unpadded_forward_and_do_not_depend_on_batching(smollm2):
    import torch

    prompts = ["Premise: It rained.\nHypothesis: It was wet.\nAnswer:", "Is the sky blue? Answer:",
               [{"role": "user", "content": "Is water wet? Answer Yes or No."}]]
    cands = list(YES + NO)
    batched = smollm2.next_token_logprobs(prompts, cands)
    smollm2.batch_size = 1
    try:
        alone = smollm2.next_token_logprobs(prompts, cands)
    finally:
        smollm2.batch_size = 4
    for p, row_b, row_a in zip(prompts, batched, alone):
        assert row_b == pytest.approx(row_a, abs=2e-3)
        text = smollm2.render(p)
        ids = smollm2.tok(text, add_special_tokens=isinstance(p, str), return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            ref = torch.log_softmax(smollm2.model(ids).logits[0, -1].float(), -1)
        for c, v in row_a.items():
            assert v == pytest.approx(ref[smollm2.tok(c, add_special_tokens=False)["input_ids"][0]].item(), abs=1e-3)
    assert all(v < 0 for row in batched for v in row.values())


@pytest.mark.slow
def test_real_judge_ranks_paraphrases_above_contradictions_and_unrelated(smollm2):
    # SmolLM2-135M is a weak judge (P(yes) about 0.3 for a paraphrase, 0.2 otherwise); this
    # checks the real path end to end and the ordering on two clear cases, not its accuracy.
    critic = LMJudgeCritic(backend=smollm2)
    recs = [Record(id=f"{i}-{k}", task="paraphrase", input=row[0], output=row[k])
            for i, row in enumerate(HAND_MADE) for k in (1, 2, 3)]
    verdicts = critic.judge_batch(recs)
    both = [min(r.scores["lm_entail_forward"], r.scores["lm_entail_backward"]) for r in recs]
    for i in range(len(HAND_MADE)):
        para, contra, unrel = both[3 * i : 3 * i + 3]
        assert para > contra and para > unrel, both
        assert verdicts[3 * i] is True  # the paraphrases pass the default thresholds


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_logprobs_agree_with_transformers(vllm_backend, smollm2):
    x, para, contra, _ = HAND_MADE[0]
    critic = LMJudgeCritic(backend=smollm2)
    prompts = [critic.prompt(x, para), critic.prompt(x, contra),
               [{"role": "user", "content": "Is water wet? Answer Yes or No."}]]
    cands = list(YES + NO)
    ours = vllm_backend.next_token_logprobs(prompts, cands)
    ref = smollm2.next_token_logprobs(prompts, cands)
    for a, b in zip(ours, ref):
        assert set(a) == set(cands)
        for c in cands:
            assert a[c] == pytest.approx(b[c], abs=0.05)
    vcritic = LMJudgeCritic(backend=vllm_backend)
    assert vcritic.entail_probs([x, x], [para, contra]) == pytest.approx(critic.entail_probs([x, x], [para, contra]),
                                                                         abs=0.01)
