"""Structured outputs (``task.output_schema``): the schema reaches each backend the way it takes
one (response_format for a chat API, vLLM's structured_outputs for completions, xgrammar for
transformers, vLLM's engine), outputs are validated, and one that does not follow the schema is
a counted drop with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distill.config import load_config
from distill.errors import ConfigError
from distill.generator.backends.base import SamplingParams
from distill.generator.schema import OutputSchema

try:
    from fault_server import FaultServer
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer

SCHEMA = {"type": "object", "properties": {"xIntent": {"type": "string"}, "xWant": {"type": "string"}},
          "required": ["xIntent", "xWant"], "additionalProperties": False}


@pytest.fixture
def schema_file(tmp_path) -> Path:
    p = tmp_path / "if_then.json"
    p.write_text(json.dumps(SCHEMA))
    return p


def run_template(tmp_path: Path, url: str, schema: Path, *extra: str) -> subprocess.CompletedProcess:
    seeds = tmp_path / "events.txt"
    seeds.write_text("PersonX buys a new car\nPersonX forgets the keys\nPersonX wins the race\n")
    return subprocess.run([sys.executable, "-m", "distill.cli", "generate", "--no-progress",
                           "--set", "task.name=template", "--set", f"task.inputs={seeds}",
                           "--set", "task.prompt=Event: {text}. As JSON: what PersonX intended, what PersonX wants next.",
                           "--set", f"task.output_schema={schema}", "--set", "task.k=2",
                           "--set", "teacher.backend=openai", "--set", "teacher.model=fake",
                           "--set", f"teacher.openai.base_url={url}", *extra, "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)


def records(out: Path) -> list[dict]:
    return [json.loads(x) for f in sorted((out / "shards").glob("*.jsonl")) for x in f.read_text().splitlines()]


def test_chat_api_gets_response_format_and_bad_outputs_are_counted_drops(tmp_path, schema_file):
    with FaultServer() as server:
        server.bad_json_every = 3
        p = run_template(tmp_path, server.url, schema_file, "--set", "teacher.openai.mode=chat")
        assert p.returncode == 0, p.stderr[-2000:]
        bodies = [b for _, b in server.requests]
    assert all(b["response_format"]["type"] == "json_schema" and b["response_format"]["json_schema"]["schema"] == SCHEMA
               and b["response_format"]["json_schema"]["strict"] for b in bodies)
    recs = records(tmp_path / "out")
    stats = json.loads((tmp_path / "out" / "generate_stats.json").read_text())
    dropped = stats["counts"]["samples_dropped_schema"]
    assert dropped >= 1 and len(recs) == 6 - dropped and stats["counts"]["schema_failed:not JSON"] == dropped
    for r in recs:
        assert set(r["metadata"]["structured"]) == {"xIntent", "xWant"} == set(json.loads(r["output"]))


def test_completions_mode_sends_vllm_structured_outputs(tmp_path, schema_file):
    with FaultServer() as server:
        p = run_template(tmp_path, server.url, schema_file, "--set", "teacher.openai.mode=completion",
                         "--set", "task.chat=false")
        assert p.returncode == 0, p.stderr[-2000:]
        bodies = [b for _, b in server.requests]
    assert bodies and all(b["structured_outputs"] == {"json": SCHEMA} and "response_format" not in b for b in bodies)
    assert len(records(tmp_path / "out")) == 6


def test_schema_checks_and_reasons(schema_file):
    s = OutputSchema(str(schema_file))
    assert s.check('{"xIntent": "to drive", "xWant": "to go"}')[1] is None
    assert s.check('{"xIntent": "to drive"')[1].startswith("not JSON")
    assert "'xWant' is a required property" in s.check('{"xIntent": "a"}')[1]
    assert s.check('{"xIntent": 3, "xWant": "b"}')[1].startswith("schema: xIntent:")
    assert OutputSchema("tests.test_structured:IfThen").schema["required"] == ["xIntent", "xWant"]


try:
    from pydantic import BaseModel

    class IfThen(BaseModel):
        xIntent: str
        xWant: str
except ImportError:  # pragma: no cover
    pass


@pytest.mark.parametrize("spec, words", [("missing.json", "schema file not found"), ("nomodule:Thing", "cannot import"),
                                         ("justtext", "expected a .json schema file")])
def test_bad_schema_specs_are_config_errors(spec, words):
    with pytest.raises(ConfigError, match=words):
        OutputSchema(spec)


def test_broken_schema_file_names_the_field(tmp_path, capsys):
    from distill.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "objekt"}')
    (tmp_path / "in.txt").write_text("x\n")
    assert main(["generate", "--no-progress", "-s", "task.name=template", "-s", f"task.inputs={tmp_path / 'in.txt'}",
                 "-s", "task.prompt='Say: {text}'", "-s", f"task.output_schema={bad}", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "task.output_schema" in err and "not a valid JSON schema" in err and not (tmp_path / "o").exists()


def test_unstructured_cache_keys_are_unchanged():
    assert "json_schema" not in SamplingParams().key() and "json_schema" not in SamplingParams().distribution_key()
    assert SamplingParams(json_schema="{}").key()["json_schema"] == "{}"
    cfg = load_config(None, ["task.name=template", "task.inputs=x.txt", "task.prompt='Say: {text}'"])
    assert "output_schema" not in cfg.task.model_dump()  # template runs made before keep their fingerprint


@pytest.mark.slow
def test_transformers_decodes_under_the_schema():
    """The real default model under xgrammar: every sample is JSON that follows the schema."""
    from distill.generator.backends.transformers_backend import TransformersBackend

    schema = {"type": "object", "properties": {"xWant": {"type": "string", "maxLength": 40}},
              "required": ["xWant"], "additionalProperties": False}
    text = json.dumps(schema)
    b = TransformersBackend(batch_size=4)
    try:
        out = b.generate([[{"role": "user", "content": "PersonX buys a new car. What does PersonX want next? JSON."}]],
                         2, SamplingParams(max_tokens=48, temperature=0.7, top_p=0.9, json_schema=text))
    finally:
        b.close()
    import jsonschema

    for c in out[0]:
        assert c.finish_reason == "stop", c.text
        jsonschema.validate(json.loads(c.text), schema)
