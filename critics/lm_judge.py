"""LM-judge entailment critic: asks a teacher backend "does A imply B?" and reads P(yes)
from the next-token log-probabilities, so entailment can be judged with whatever causal
LM is at hand (any of the three backends; on a CPU machine, the embedded SmolLM2).

P(yes) = sum of P over the "yes" spellings / sum over the "yes" and "no" spellings, i.e. a
softmax restricted to the two answers; the rest of the vocabulary does not count. Scores:
``lm_entail_forward`` (input => output) and ``lm_entail_backward`` (output => input).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from distill.critics.base import Critic, Threshold, Verdict
from distill.critics.nli import directions_of, threshold_verdict
from distill.errors import DistillError
from distill.record import Record

CHAT_TEMPLATE = ("Premise: {premise}\nHypothesis: {hypothesis}\n\n"
                 "Does the premise imply the hypothesis? Answer with Yes or No.")
# Few-shot: on SmolLM2-135M-Instruct it separated paraphrases from contradictions and
# unrelated pairs far better than any zero-shot or chat prompt tried (see the module tests).
_SHOTS = (
    ("The cat is sleeping on the sofa.", "A cat is asleep on the couch.", "Yes"),
    ("The shop closes at five.", "The shop is open all night.", "No"),
    ("He went to the bank to get cash.", "The weather was sunny in Paris.", "No"),
    ("The road was blocked by snow for two days.", "Snow blocked the road for two days.", "Yes"),
    ("The singer cancelled her concert.", "The singer did not cancel her concert.", "No"),
    ("The team won the final match.", "The team was victorious in the final.", "Yes"),
)
TEXT_TEMPLATE = "".join(f"Premise: {p}\nHypothesis: {h}\nAnswer: {a}\n\n" for p, h, a in _SHOTS) + (
    "Premise: {premise}\nHypothesis: {hypothesis}\nAnswer:")
YES = ("Yes", " Yes", "yes", " yes")
NO = ("No", " No", "no", " no")
STYLES = ("chat", "text")


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return m
    return m + math.log(sum(math.exp(x - m) for x in xs))


def p_yes(logprobs: Mapping[str, float], yes: Sequence[str] = YES, no: Sequence[str] = NO) -> float:
    """P(yes | the answer is yes or no), summing each answer over its spellings."""
    ly = _logsumexp([logprobs[t] for t in yes])
    ln = _logsumexp([logprobs[t] for t in no])
    if ly == ln == -math.inf:
        return 0.5
    return 1.0 / (1.0 + math.exp(min(ln - ly, 700.0)))


class LMJudgeCritic(Critic):
    """Keeps a pair when P(yes) to "does the input imply the output?" reaches ``min_forward``
    and/or P(yes) to "does the output imply the input?" reaches ``min_backward``, as
    ``direction`` ("both", "forward", "backward") says.

    The default thresholds suit the CPU default judge (SmolLM2-135M-Instruct) with the
    default few-shot "text" prompt, whose P(yes) stays low even for true paraphrases (about
    0.3 on hand-made pairs, against 0.2 for contradictions and unrelated pairs); a stronger
    judge answers with confident probabilities, and 0.5 is the natural threshold there.

    The judge is ``backend`` (any :class:`~distill.generator.backends.Backend`; the caller
    keeps ownership) or one built from ``teacher`` (a ``TeacherConfig`` or its dict; closed
    by :meth:`close`). ``prompt_style`` "text" sends a few-shot plain-text prompt ending in
    "Answer:" (base models, and the small instruct default, which judges better this way);
    "chat" sends one zero-shot user message (instruct models that follow instructions). ``template`` replaces the
    question; it has ``{premise}`` and ``{hypothesis}`` fields. ``yes``/``no`` are the answer
    spellings summed, each one token of the judge's vocabulary and all different.
    """

    name = "lm_judge"
    score_names = ("lm_entail_forward", "lm_entail_backward")

    def __init__(self, backend: Any = None, teacher: Any = None, prompt_style: str = "text",
                 direction: str = "both", min_forward: float = 0.25, min_backward: float = 0.25,
                 template: str | None = None, yes: Sequence[str] = YES, no: Sequence[str] = NO,
                 records_per_call: int = 64, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects=keep_rejects)
        if prompt_style not in STYLES:
            raise DistillError(f"prompt_style must be 'chat' or 'text', not {prompt_style!r}")
        self.dirs = directions_of(direction)
        self.direction, self.prompt_style = direction, prompt_style
        self.minimums = {"lm_entail_forward": float(min_forward), "lm_entail_backward": float(min_backward)}
        self.template = template or (CHAT_TEMPLATE if prompt_style == "chat" else TEXT_TEMPLATE)
        try:
            self.template.format(premise="", hypothesis="")
        except (KeyError, IndexError) as e:
            raise DistillError(f"LM judge template may only use {{premise}} and {{hypothesis}}: {e}") from None
        self.yes, self.no = tuple(yes), tuple(no)
        if not self.yes or not self.no or len(set(self.yes + self.no)) != len(self.yes) + len(self.no):
            raise DistillError("LM judge: yes and no need at least one spelling each, all different")
        if records_per_call < 1:
            raise DistillError("LM judge: records_per_call must be >= 1")
        self.batch_size = records_per_call
        if (backend is None) == (teacher is None):
            raise DistillError("LM judge: pass exactly one of backend (a Backend) or teacher (a teacher config)")
        self._owns_backend = backend is None
        if backend is None:
            from distill.config import TeacherConfig
            from distill.generator.backends import make_backend

            backend = make_backend(teacher if isinstance(teacher, TeacherConfig) else TeacherConfig(**dict(teacher)))
        self.backend = backend

    def thresholds(self) -> list[Threshold]:
        return [(f"lm_entail_{d}", ">=", self.minimums[f"lm_entail_{d}"]) for d in self.dirs]

    def prompt(self, premise: str, hypothesis: str) -> Any:
        text = self.template.format(premise=premise, hypothesis=hypothesis)
        return [{"role": "user", "content": text}] if self.prompt_style == "chat" else text

    def entail_probs(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list[float]:
        """P(yes) that each premise implies its hypothesis."""
        prompts = [self.prompt(p, h) for p, h in zip(premises, hypotheses)]
        rows = self.backend.next_token_logprobs(prompts, list(self.yes + self.no))
        return [p_yes(r, self.yes, self.no) for r in rows]

    def judge_batch(self, records: list[Record]) -> list[Verdict]:
        xs, ys = [r.input for r in records], [r.output for r in records]
        premises: list[str] = []
        hypotheses: list[str] = []
        for d in self.dirs:  # forward: x => y; backward: y => x. One backend call for both.
            premises += xs if d == "forward" else ys
            hypotheses += ys if d == "forward" else xs
        flat = self.entail_probs(premises, hypotheses)
        n = len(records)
        verdicts: list[Verdict] = []
        for i, r in enumerate(records):
            scores = {f"lm_entail_{d}": flat[k * n + i] for k, d in enumerate(self.dirs)}
            r.scores.update(scores)
            verdicts.append(threshold_verdict(scores, self.minimums))
        return verdicts

    def close(self) -> None:
        """Close the backend if this critic built it."""
        if self._owns_backend and self.backend is not None:
            self.backend.close()
            self.backend = None
