"""Summarization, the second task of Impossible Distillation (Jung et al., NAACL 2024), two ways.

``SummarizePairs`` is the paper's plain-LM pair generator: a context (a given document, or
one the LM writes from a dateline as :class:`~distill.generator.tasks.paraphrase.ParaphrasePairs`
does) followed by a cue that makes its continuation restate it briefly ("TL;DR:", "In
summary,"); the first sentence of each of the k samples per cue is a candidate summary of the
context. Critics (compression, the summary's support in the document, coverage, dedup)
decide which are summaries.

``SummarizeInstruct`` asks an instruction-following teacher (a chat model, an API, or a
student trained on the corpus) to summarise given documents, k samples each.

Both write records with ``input`` = the document and ``output`` = the summary, and carry
the seed row's other fields (an id, human ``references``) in ``metadata``; ``source_id``
groups a document's samples, so the corpus splits by document.
"""

from __future__ import annotations

from collections.abc import Iterator

from distill.generator.backends.base import SamplingParams
from distill.generator.seeds import read_rows
from distill.generator.tasks.base import Task
from distill.generator.tasks.paraphrase import SENTENCE_END, ParaphrasePairs, clean_answer, split_sentences
from distill.record import Record

#: the instruction of summarize_instruct, and what `distill train` teaches a summarization student
INSTRUCTION = "Summarize the following text in one sentence."


def seed_records(path: str, field: str, limit: int | None) -> list[Record]:
    """Documents of a seed file as seed records; the row's other fields ride along."""
    rows = read_rows(path, field)[:limit]
    return [Record(id=f"in{i:06d}", task="summarization.seed", input=" ".join(str(r[field]).split()), output="",
                   metadata={"line": r["_line"], **{k: v for k, v in r.items() if k not in (field, "_line")}})
            for i, r in enumerate(rows)]


def first_sentences(text: str, n: int, cut: bool) -> str | None:
    """The first ``n`` whole sentences of ``text`` (all of it when ``n`` is 0); None when there
    is no whole sentence. ``cut``: the text stopped at max_tokens, so its last piece may be
    unfinished and is dropped."""
    sents = split_sentences(text)
    if cut and sents and not sents[-1].endswith(SENTENCE_END):
        sents = sents[:-1]
    sents = sents[:n] if n else sents
    if not sents or not sents[-1].endswith(SENTENCE_END):
        return None
    return " ".join(sents)


def source_metadata(seed: Record) -> dict:
    return {**{k: v for k, v in seed.metadata.items() if k != "line"}, "source_id": seed.id}


class SummarizeInstruct(Task):
    """Summarise each document of ``task.inputs`` with an instruction teacher."""

    name = "summarization"

    def seeds(self) -> list[Record]:
        return seed_records(self.cfg.inputs, self.cfg.field, self.cfg.limit)

    def params(self) -> SamplingParams:
        s = self.cfg.sampling
        return SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                              seed=self.seed)

    def prompt(self, document: str):
        """Chat messages (``task.chat``) or the plain prompt for one document, after the few-shot
        exchanges."""
        c = self.cfg
        if c.chat:
            msgs = []
            for doc, summary in c.few_shot:
                msgs += [{"role": "user", "content": f"{c.instruction}\n\n{doc}"},
                         {"role": "assistant", "content": summary}]
            return msgs + [{"role": "user", "content": f"{c.instruction}\n\n{document}"}]
        shots = "".join(f"{c.instruction}\n\n{doc}\nSummary: {summary}\n\n" for doc, summary in c.few_shot)
        return f"{shots}{c.instruction}\n\n{document}\nSummary:"

    def summary(self, text: str, finish_reason: str | None) -> str | None:
        """The answer as a summary (its first ``task.sentences`` sentences), or None."""
        y = clean_answer(text)
        if self.cfg.sentences == 0 and finish_reason != "length":
            return y or None
        return first_sentences(y, self.cfg.sentences, finish_reason == "length") if y else None

    def generate(self, seeds: list[Record], teacher) -> Iterator[Record]:
        outs = teacher.generate([self.prompt(r.input) for r in seeds], self.cfg.k, self.params())
        for seed, comps in zip(seeds, outs):
            for i, c in enumerate(comps):
                self.counts["samples"] += 1
                if not c.text.strip():
                    self.counts["samples_dropped_empty"] += 1
                    continue
                y = self.summary(c.text, c.finish_reason)
                if y is None:
                    self.counts["samples_dropped_no_whole_sentence"] += 1
                    continue
                yield Record(id=f"{seed.id}-s{i:03d}", task="summarization", input=seed.input, output=y,
                             teacher=teacher.model_id,
                             metadata={**source_metadata(seed), "sample": i, "finish_reason": c.finish_reason})


class SummarizePairs(Task):
    """Contexts (given documents, or written from datelines) + a summary cue, k continuations
    per cue; the first sentence of each is a candidate summary."""

    name = "summarization"

    def _contexts_writer(self) -> ParaphrasePairs:
        from distill.config import ParaphrasePairsTask

        c = self.cfg
        return ParaphrasePairs(ParaphrasePairsTask(num_contexts=c.num_contexts, datelines=c.datelines,
                                                   context_sentences=c.context_sentences, context=c.context,
                                                   k=2), self.seed)

    def samples_per_seed(self) -> int:
        return self.cfg.k * len(self.cfg.cues) + self.two_stage()

    def two_stage(self) -> bool:
        return self.cfg.inputs is None  # contexts written first

    def seeds(self) -> list[Record]:
        if self.cfg.inputs is not None:
            return seed_records(self.cfg.inputs, self.cfg.field, self.cfg.limit)
        return self._contexts_writer().seeds()

    def contexts(self, seeds: list[Record], teacher) -> list[tuple[Record, str, dict]]:
        """(seed, document, metadata) per usable seed: given documents as they are; datelines
        continued by the teacher into a news context of whole sentences."""
        if self.cfg.inputs is not None:
            return [(s, s.input, source_metadata(s)) for s in seeds]
        writer = self._contexts_writer()
        out = [(s, ctx, {"source_id": s.id, "dateline": s.input}) for s, ctx in writer.contexts(seeds, teacher)]
        self.counts.update(writer.counts)
        return out

    def prompt(self, document: str, cue: str) -> str:
        return f"{document}\n\n{cue}"

    def generate(self, seeds: list[Record], teacher) -> Iterator[Record]:
        c = self.cfg
        ctxs = self.contexts(seeds, teacher)
        s = c.continuation
        params = SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                seed=self.seed)
        jobs = [(j, cue) for j in range(len(ctxs)) for cue in c.cues]
        outs = teacher.generate([self.prompt(ctxs[j][1], cue) for j, cue in jobs], c.k, params)
        for (j, cue), comps in zip(jobs, outs):
            seed, doc, meta = ctxs[j]
            kept: set[str] = set()
            for i, comp in enumerate(comps):
                self.counts["continuations"] += 1
                y = first_sentences(comp.text.strip(), 1, comp.finish_reason == "length")
                if y is None:
                    self.counts["continuations_dropped_no_whole_sentence"] += 1
                    continue
                y = y[0].upper() + y[1:]  # "In summary, the ..." continues mid-sentence
                if len(y.split()) < c.min_words:
                    self.counts["continuations_dropped_too_short"] += 1
                elif y in kept:
                    self.counts["continuations_dropped_repeat"] += 1
                else:
                    kept.add(y)
                    self.counts["continuations_kept"] += 1
                    yield Record(id=f"{seed.id}-c{c.cues.index(cue)}-s{i:03d}", task="summarization", input=doc,
                                 output=y, teacher=teacher.model_id,
                                 metadata={**meta, "cue": cue, "sample": i, "finish_reason": comp.finish_reason})
