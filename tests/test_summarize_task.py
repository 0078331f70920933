"""The summarization tasks: instruction mode (a teacher asked to summarise documents) and
Impossible Distillation's plain-LM mode (a context, then a cue such as "TL;DR:")."""

from __future__ import annotations

import json

import pytest

from distill.config import load_config
from distill.errors import ConfigError
from distill.generator.backends.base import Backend, Completion, Result, prompt_text
from distill.generator.tasks import build_task
from distill.generator.tasks.summarize import first_sentences
from distill.generator.teacher import Teacher

DOC_A = ("Six midwives have been suspended at Wollongong Hospital for misuse of nitrous oxide. "
         "The health service says an inquiry will report next week.")
DOC_B = "Storms cut power to thousands of homes in Queensland. Crews worked through the night."


class ScriptBackend(Backend):
    """Answers sample i of every prompt with answers[i % len(answers)], and records the prompts."""

    name = "script-fake"

    def __init__(self, answers: list[tuple[str, str]]) -> None:
        self.answers = answers
        self.prompts: list = []

    @property
    def model_id(self) -> str:
        return "fake:script"

    def generate_requests(self, requests):
        out = []
        for r in requests:
            self.prompts.append(r.prompt)
            out.append(Result([Completion(self.answers[i % len(self.answers)][0], 12,
                                          self.answers[i % len(self.answers)][1]) for i in r.indices], 30))
        return out


def docs_file(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text(json.dumps({"text": DOC_A, "id": "a", "references": ["Midwives suspended."]}) + "\n"
                 + json.dumps({"text": DOC_B, "id": "b"}) + "\n")
    return p


def make(tmp_path, name, *sets):
    cfg = load_config(None, [f"task.name={name}", f"task.inputs={docs_file(tmp_path)}", *sets])
    return build_task(cfg.task, cfg.seed)


def test_first_sentences():
    assert first_sentences("One here. Two there. Three", 1, cut=True) == "One here."
    assert first_sentences("One here. Two there.", 2, cut=False) == "One here. Two there."
    assert first_sentences("One here. Two there.", 0, cut=False) == "One here. Two there."
    assert first_sentences("No end in sight", 1, cut=True) is None
    assert first_sentences("No end in sight", 1, cut=False) is None


def test_instruct_one_record_per_sample_first_sentence_kept(tmp_path):
    t = make(tmp_path, "summarize_instruct", "task.k=4")
    backend = ScriptBackend([("Midwives were suspended for gas misuse. An inquiry follows.", "stop"),
                             ('"Six midwives were suspended."', "stop"),
                             ("The hospital has suspended six midwives and the", "length"),
                             ("   ", "stop")])
    seeds = t.seeds()
    assert [s.input for s in seeds] == [DOC_A, DOC_B]
    recs = list(t.generate(seeds, Teacher(backend)))
    a = [r for r in recs if r.metadata["source_id"] == seeds[0].id]
    assert [r.output for r in a] == ["Midwives were suspended for gas misuse.", "Six midwives were suspended."]
    assert all(r.input == DOC_A and r.task == "summarization" for r in a)
    assert a[0].metadata["references"] == ["Midwives suspended."] and a[0].metadata["id"] == "a"
    assert [r.id for r in a] == [f"{seeds[0].id}-s000", f"{seeds[0].id}-s001"]
    assert t.counts["samples"] == 8
    assert t.counts["samples_dropped_no_whole_sentence"] == 2 and t.counts["samples_dropped_empty"] == 2
    # the prompt: the instruction and the document as one chat message
    assert backend.prompts[0][-1]["content"] == f"Summarize the following text in one sentence.\n\n{DOC_A}"


def test_instruct_few_shot_and_plain_prompt(tmp_path):
    t = make(tmp_path, "summarize_instruct", "task.chat=false", 'task.few_shot=[["Doc one.", "Sum one."]]')
    assert t.prompt("Doc two.") == ("Summarize the following text in one sentence.\n\nDoc one.\nSummary: Sum one.\n\n"
                                    "Summarize the following text in one sentence.\n\nDoc two.\nSummary:")
    t = make(tmp_path, "summarize_instruct", 'task.few_shot=[["Doc one.", "Sum one."]]')
    assert [m["role"] for m in t.prompt("Doc two.")] == ["user", "assistant", "user"]


def test_pairs_from_documents_cue_continuations(tmp_path):
    t = make(tmp_path, "summarize_pairs", "task.k=3", 'task.cues=["TL;DR:", "In summary,"]')
    backend = ScriptBackend([(" the hospital suspended six midwives over gas misuse. More", "length"),
                             (" the hospital suspended six midwives over gas misuse.", "stop"),
                             (" too short.", "stop")])
    seeds = t.seeds()
    recs = list(t.generate(seeds, Teacher(backend)))
    # per (document, cue): the repeat and the too-short sample go; the first letter is capitalised
    assert [r.output for r in recs] == ["The hospital suspended six midwives over gas misuse."] * 4
    assert [r.metadata["cue"] for r in recs] == ["TL;DR:", "In summary,"] * 2
    assert recs[0].id == f"{seeds[0].id}-c0-s000" and recs[0].input == DOC_A
    assert t.counts["continuations"] == 12 and t.counts["continuations_dropped_repeat"] == 4
    assert t.counts["continuations_dropped_too_short"] == 4
    assert prompt_text(backend.prompts[0]) == f"{DOC_A}\n\nTL;DR:"
    assert t.samples_per_seed() == 6 and not t.two_stage()


def test_pairs_write_contexts_from_datelines():
    cfg = load_config(None, ["task.name=summarize_pairs", "task.num_contexts=2", "task.k=2", 'task.cues=["TL;DR:"]',
                             "task.context_sentences=[1, 3]"])
    t = build_task(cfg.task, cfg.seed)
    assert t.two_stage() and t.samples_per_seed() == 3
    backend = ScriptBackend([(" Police said the fire was out. Crews stayed on site.", "stop")])
    seeds = t.seeds()
    recs = list(t.generate(seeds, Teacher(backend)))
    assert len(recs) == 2 and recs[0].metadata["dateline"] == seeds[0].input
    assert recs[0].input.startswith(seeds[0].input) and recs[0].output == "Police said the fire was out."


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="task.sentences"):
        load_config(None, ["task.name=summarize_instruct", "task.sentences=-1"])
    with pytest.raises(ConfigError, match="task.cues"):
        load_config(None, ["task.name=summarize_pairs", "task.cues=[]"])


@pytest.mark.slow
def test_instruct_on_the_real_default_model(tmp_path):
    """SmolLM2-135M-Instruct summarises two short documents: every record is one whole
    sentence about its own document."""
    from distill.config import TeacherConfig
    from distill.generator.backends import make_backend

    t = make(tmp_path, "summarize_instruct", "task.k=2", "task.sampling.temperature=0")
    with make_backend(TeacherConfig(batch_size=4)) as backend:
        recs = list(t.generate(t.seeds(), Teacher(backend)))
    assert recs, dict(t.counts)
    for r in recs:
        assert r.output.endswith((".", "!", "?")) and len(first_sentences(r.output, 0, False).split(". ")) == 1
        assert r.input in (DOC_A, DOC_B)
    assert any(w in " ".join(r.output for r in recs).lower() for w in ("midwives", "power", "storm", "hospital"))
