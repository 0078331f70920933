"""``distill generate --estimate`` against what a run then pays: a loopback server that counts
prompt tokens with the model's real tokenizer (as a vLLM server of it would) and bills every
sample at max_tokens. Requests match exactly and tokens within 5%; nothing is sent or written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distill.config import load_config
from distill.generator.estimate import estimate_generate
from distill.generator.models import resolve_model

try:
    from fault_server import FaultServer
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer


@pytest.fixture(scope="module")
def tokenizer_path() -> str:
    return resolve_model(None)  # the default model's folder: its tokenizer, no weights loaded


def sets(seeds: Path, url: str, tok: str, *extra: str) -> list[str]:
    return ["task.name=paraphrase_instruct", f"task.inputs={seeds}", "task.k=3", "shards.items_per_shard=5",
            "teacher.backend=openai", "teacher.model=fake", "teacher.openai.mode=chat", f"teacher.openai.base_url={url}",
            f"teacher.openai.tokenizer={tok}", "budget.price_per_million_prompt_tokens=1.0",
            "budget.price_per_million_completion_tokens=2.0", *extra]


def generate(out: Path, s: list[str], code: int = 0) -> dict:
    cmd = [sys.executable, "-m", "distill.cli", "generate", "--no-progress", *sum((["--set", x] for x in s), []),
           "-o", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == code, p.stderr[-3000:]
    return json.loads((out / "generate_stats.json").read_text())


def test_estimate_matches_what_the_run_pays_then_what_is_left(tmp_path, tokenizer_path):
    from transformers import AutoTokenizer

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("".join(f"On day {i} the council of the town voted to build {i + 2} new bridges.\n"
                             for i in range(20)))
    out = tmp_path / "out"
    with FaultServer() as server:
        server.tokenizer, server.fill = AutoTokenizer.from_pretrained(tokenizer_path), True
        s = sets(seeds, server.url, tokenizer_path)
        est = estimate_generate(load_config(None, [*s, f"output_dir={out}"]))
        assert server.count == 0 and not out.exists()  # nothing sent, nothing written
        assert (est.shards_todo, est.requests, est.samples, est.cached_samples) == (4, 20, 60, 0)
        assert est.tokenizer.startswith("the tokenizer of")

        # a first run stopped by its budget, then the estimate of what is left
        stats = generate(out, [*s, "budget.max_completion_tokens=1000"], code=3)
        paid_p, paid_c = stats["prompt_tokens_paid"], stats["completion_tokens_paid"]
        first = server.count
        left = estimate_generate(load_config(None, [*s, f"output_dir={out}"]))
        assert left.cached_samples > 0 and left.requests == 20 - first
        stats = generate(out, s)
    assert server.count == 20
    total_p, total_c = stats["prompt_tokens_paid"], stats["completion_tokens_paid"]
    assert est.prompt_tokens == pytest.approx(total_p, rel=0.05)
    assert est.max_completion_tokens == pytest.approx(total_c, rel=0.05)
    assert left.prompt_tokens == pytest.approx(total_p - paid_p, rel=0.05)
    assert left.max_completion_tokens == pytest.approx(total_c - paid_c, rel=0.05)
    assert est.cost_high == pytest.approx((total_p * 1.0 + total_c * 2.0) / 1e6, rel=0.05)


def test_estimate_cli_prints_and_writes_nothing(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("The cat sat on the mat.\nRain fell all day.\n")
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "distill.cli", "generate", "--estimate", "--set", "task.name=paraphrase_instruct",
                        "--set", f"task.inputs={seeds}", "--set", "teacher.backend=openai", "--set", "teacher.model=x",
                        "--set", "teacher.openai.base_url=http://127.0.0.1:9/v1", "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "requests: 2" in p.stdout and "samples: 8" in p.stdout and "about 4 characters a token" in p.stdout
    assert "no prices configured" in p.stdout and not out.exists()


def test_estimate_of_the_pair_task_counts_both_phases(tmp_path):
    est = estimate_generate(load_config(None, ["task.num_contexts=3", "task.k=5", f"output_dir={tmp_path / 'o'}"]))
    assert est.requests == 6 and est.samples == 3 + 3 * 5 and not est.exact_prompts
    assert est.max_completion_tokens == 3 * 96 + 15 * 48
