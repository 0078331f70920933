"""The commonsense task (Symbolic Knowledge Distillation): events in, one JSON object of ATOMIC
inferences per sample, one record per (event, relation, sample)."""

from __future__ import annotations

import json

import pytest

from distill.config import load_config
from distill.errors import ConfigError
from distill.generator.backends.base import Backend, Completion, Result, prompt_text
from distill.generator.tasks import build_task
from distill.generator.tasks.commonsense import RELATIONS, parse_input, record_input, schema
from distill.generator.teacher import Teacher


class JsonBackend(Backend):
    """Answers each sample with a fixed JSON object (or a broken one for sample 2)."""

    name = "json-fake"
    supports_json_schema = True

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.prompts: list[str] = []
        self.params = []

    @property
    def model_id(self) -> str:
        return "fake:json"

    def generate_requests(self, requests):
        out = []
        for r in requests:
            self.prompts.append(prompt_text(r.prompt))
            self.params.append(r.params)
            out.append(Result([Completion(self.answers[i % len(self.answers)], 20, "stop") for i in r.indices], 30))
        return out


GOOD = json.dumps({"xIntent": "to relax", "xNeed": "to drive there", "xReact": "happy"})
HALF = json.dumps({"xIntent": "to buy shoes", "xNeed": " ", "xReact": "tired"})


def task(tmp_path, **extra):
    events = tmp_path / "events.txt"
    events.write_text("PersonX goes to the mall.\nPersonX loses PersonX's keys\n")
    sets = [f"task.events={events}", "task.relations=[xIntent, xNeed, xReact]", "task.k=3",
            *(f"task.{k}={v}" for k, v in extra.items())]
    cfg = load_config(None, ["task.name=commonsense", *sets])
    return build_task(cfg.task, cfg.seed)


def test_one_record_per_event_relation_and_sample(tmp_path):
    t = task(tmp_path)
    backend = JsonBackend([GOOD, HALF, "{not json"])
    seeds = t.seeds()
    assert [s.input for s in seeds] == ["PersonX goes to the mall", "PersonX loses PersonX's keys"]
    recs = list(t.generate(seeds, Teacher(backend)))
    # per event: sample 0 gives 3 inferences, sample 1 two (xNeed empty), sample 2 is not JSON
    assert len(recs) == 2 * (3 + 2)
    r = recs[0]
    assert (r.input, r.output, r.id) == ("PersonX goes to the mall | xIntent", "to relax", "ev000000-s000-xIntent")
    assert r.metadata["event"] == "PersonX goes to the mall" and r.metadata["relation"] == "xIntent"
    assert r.metadata["source_id"] == "ev000000" and r.task == "commonsense"
    assert t.counts["samples"] == 6 and t.counts["samples_dropped_schema"] == 2
    assert t.counts["schema_failed:not JSON"] == 2 and t.counts["inferences_dropped_empty"] == 2
    assert t.counts["inferences"] == 12
    # the prompt: few-shot completion ending with the event; decoded under the relations' schema
    assert backend.prompts[0].endswith("Event: PersonX goes to the mall\n")
    assert '"xIntent": "to celebrate a birthday"' in backend.prompts[0] and "oReact" not in backend.prompts[0]
    assert json.loads(backend.params[0].json_schema) == schema(["xIntent", "xNeed", "xReact"], 60)


def test_schema_violations_are_counted_drops(tmp_path):
    t = task(tmp_path, max_chars=16)
    long = json.dumps({"xIntent": "to do something far too long", "xNeed": "to go", "xReact": "ok"})
    extra = json.dumps({"xIntent": "to go", "xNeed": "to go", "xReact": "ok", "xWant": "more"})
    recs = list(t.generate(t.seeds()[:1], Teacher(JsonBackend([long, extra, GOOD]))))
    assert len(recs) == 3 and t.counts["schema_failed:schema"] == 2


def test_input_round_trip_and_bad_config(tmp_path):
    assert parse_input(record_input("PersonX eats | lunch", "xWant")) == ("PersonX eats | lunch", "xWant")
    with pytest.raises(ValueError):
        parse_input("PersonX eats | sideways")
    with pytest.raises(ConfigError, match="relations must be distinct ATOMIC relations"):
        load_config(None, ["task.name=commonsense", "task.relations=[xIntent, xWhatever]"])
    with pytest.raises(ConfigError, match="relations"):
        load_config(None, ["task.name=commonsense", "task.relations=[xIntent, xIntent]"])
    assert set(RELATIONS) >= {"xIntent", "xNeed", "xWant", "xEffect", "xReact", "oReact"}


def test_a_backend_without_json_schema_is_refused(tmp_path):
    class Plain(JsonBackend):
        supports_json_schema = False

    with pytest.raises(ConfigError, match="cannot decode under a JSON schema"):
        task(tmp_path).resolve_defaults(Plain([GOOD]))


def test_distill_run_refuses_a_second_commonsense_round(tmp_path):
    from distill.loop import run_all

    cfg = load_config(None, ["task.name=commonsense", "loop.rounds=2", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="loop.rounds: the commonsense task runs one round"):
        run_all(cfg, progress=False)
