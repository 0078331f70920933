"""Where the output cannot go: a file in the way, a read-only disk, a full disk while the corpus
draws its plots. Each is one ``distill: error:`` line naming the path, exit 2, and what was
finished before is kept. Also: filtering a generate run that did not finish, a template
prompt that is not a template, and temp files a killed corpus write left behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distill.cli import main
from distill.record import Record
from distill.shards import ShardStore

PAIRS = [
    ("The city council approved the new budget on Tuesday.", "On Tuesday, the council of the city passed the new budget."),
    ("Heavy rain forced the organisers to delay the concert.", "The organisers had to postpone the concert because of heavy rain."),
    ("The company reported a sharp rise in profits this year.", "This year the firm said its profits had risen sharply."),
    ("Police closed the main road after the accident.", "Following the crash, officers shut down the main street."),
]


def one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("distill: error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def gen_run(tmp_path) -> Path:
    """A finished generate folder (two shards of paraphrase pairs, as `distill generate` leaves it)."""
    root = tmp_path / "run"
    store = ShardStore(root / "shards")
    recs = [Record(id=f"ctx{c:06d}-000-001", task="paraphrase", input=x, output=y, teacher="fake:v1",
                   metadata={"context_id": f"ctx{c:06d}"}) for c, (x, y) in enumerate(PAIRS)]
    store.write(0, recs[:2], {"counts": {"pairs": 2}})
    store.write(1, recs[2:], {"counts": {"pairs": 2}})
    (root / "manifest.json").write_text(json.dumps({"status": "complete", "shards_total": 2,
                                                    "teacher_model_id": "fake:v1", "command": ["distill", "generate"],
                                                    "resolved_task": {"name": "paraphrase_pairs", "k": 4}}))
    (root / "generate_stats.json").write_text(json.dumps({"counts": {"pairs": 4}}))
    return root


def corpus_args(run: Path, *sets: str) -> list[str]:
    return ["corpus", "-o", str(run), "--no-progress", "-s", "corpus.plots=false", *sum((["-s", s] for s in sets), [])]


# ---- a file in the way -----------------------------------------------------------------

def test_generate_output_under_a_file(tmp_path, capsys):
    (tmp_path / "seeds.txt").write_text("The cat sat on the mat.\n")
    (tmp_path / "afile").write_text("mine")
    for out, words in ((tmp_path / "afile" / "out", ("output_dir", "afile/out", "is a file, not a folder")),
                       (tmp_path / "afile", ("output_dir", "afile", "a file of that name is in the way"))):
        code = main(["generate", "--no-progress", "-s", "task.name=paraphrase_instruct",
                     "-s", f"task.inputs={tmp_path / 'seeds.txt'}", "-s", "teacher.backend=openai",
                     "-s", "teacher.model=x", "-s", "teacher.openai.base_url=http://127.0.0.1:9/v1", "-o", str(out)])
        assert code == 2
        one_error_line(capsys, *words)
    assert (tmp_path / "afile").read_text() == "mine"


def test_filter_and_corpus_output_under_a_file(gen_run, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    assert main(["filter", "-o", str(gen_run), "--no-progress", "-s", f"filter.output_dir={tmp_path / 'afile' / 'f'}"]) == 2
    one_error_line(capsys, "filter.output_dir", "afile/f", "not a folder")
    assert main(["filter", "-o", str(gen_run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(corpus_args(gen_run, f"corpus.output_dir={tmp_path / 'afile' / 'c'}")) == 2
    one_error_line(capsys, "corpus.output_dir", "afile/c", "not a folder")
    assert main(corpus_args(gen_run)) == 0  # the filter output was untouched


# ---- a read-only disk ------------------------------------------------------------------

def _readonly_mount_works(tmp_path: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    d = tmp_path / "probe"
    d.mkdir()
    p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                        f"mount -t tmpfs -o ro tmpfs {d} && ! touch {d}/x 2>/dev/null"], capture_output=True)
    return p.returncode == 0


def test_read_only_disk_for_real(gen_run, tmp_path):
    """Each stage's output on a real read-only tmpfs (a user + mount namespace): one line, exit 2."""
    if not _readonly_mount_works(tmp_path):
        pytest.skip("no user namespaces here (unshare --user --mount) to mount a read-only file system")
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "seeds.txt").write_text("The cat sat on the mat.\n")
    py = f"{sys.executable} -m distill.cli"
    steps = {
        "generate": f"{py} generate --no-progress -s task.name=paraphrase_instruct -s task.inputs={tmp_path}/seeds.txt "
                    f"-s teacher.backend=openai -s teacher.model=x -s teacher.openai.base_url=http://127.0.0.1:9/v1 "
                    f"-o {ro}/gen",
        "filter": f"{py} filter --no-progress -o {gen_run} -s filter.output_dir={ro}/filtered",
        "corpus": f"{py} corpus --no-progress -o {gen_run} -s corpus.input_dir={gen_run}/filtered "
                  f"-s corpus.output_dir={ro}/corpus -s corpus.plots=false",
    }
    assert main(["filter", "-o", str(gen_run), "--no-progress"]) == 0
    for name, cmd in steps.items():
        p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o ro tmpfs {ro} && exec {cmd}"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
        lines = [x for x in p.stderr.splitlines() if x.strip()]
        assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, (name, p.stderr[-2000:])
        assert "read-only" in lines[0] and str(ro) in lines[0], (name, lines[0])


def test_read_only_disk_message(tmp_path, monkeypatch, capsys):
    """The same error as the kernel gives it (EROFS from mkdir), wherever user namespaces are off."""
    (tmp_path / "seeds.txt").write_text("The cat sat on the mat.\n")
    real = os.mkdir

    def mkdir(path, *a, **k):
        if "ro-out" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code = main(["generate", "--no-progress", "-s", "task.name=paraphrase_instruct",
                 "-s", f"task.inputs={tmp_path / 'seeds.txt'}", "-s", "teacher.backend=openai", "-s", "teacher.model=x",
                 "-s", "teacher.openai.base_url=http://127.0.0.1:9/v1", "-o", str(tmp_path / "ro-out")])
    assert code == 2
    one_error_line(capsys, "output_dir", "ro-out", "read-only")


# ---- a full disk while the corpus draws its plots -------------------------------------

def test_corpus_full_disk_while_saving_a_plot_keeps_the_old_corpus(gen_run, monkeypatch, capsys):
    assert main(["filter", "-o", str(gen_run), "--no-progress"]) == 0
    assert main(corpus_args(gen_run)) == 0
    corpus = gen_run / "corpus"
    before = {p.relative_to(corpus): p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
    capsys.readouterr()
    from matplotlib.figure import Figure

    def savefig(self, *a, **k):  # what PIL's write() raises on a full disk: no file name
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", savefig)
    assert main(["corpus", "-o", str(gen_run), "--no-progress", "-s", "corpus.plots=true", "-s", "seed=1"]) == 2
    one_error_line(capsys, "disk full while writing", str(corpus), "rerun")
    after = {p.relative_to(corpus): p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
    assert after == before  # the finished corpus is as it was; no half-built folder is left
    assert not list(corpus.glob(".build-*"))


def test_corpus_rerun_removes_a_killed_writers_temp_file(gen_run, capsys):
    assert main(["filter", "-o", str(gen_run), "--no-progress"]) == 0
    corpus = gen_run / "corpus"
    corpus.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = corpus / f".corpus_stats.json.tmp-{dead.pid}"
    stale.write_text('{"half": ')
    assert main(corpus_args(gen_run)) == 0
    assert not stale.exists() and (corpus / "corpus_stats.json").is_file()


# ---- filtering a generate run that did not finish -------------------------------------

@pytest.mark.parametrize("status", ["budget_exhausted", "failed", "running"])
def test_filter_refuses_an_unfinished_generate_run_unless_allowed(gen_run, capsys, status):
    m = json.loads((gen_run / "manifest.json").read_text())
    m.update(status=status, shards_total=5)
    (gen_run / "manifest.json").write_text(json.dumps(m))
    assert main(["filter", "-o", str(gen_run), "--no-progress"]) == 2
    one_error_line(capsys, str(gen_run), status, "2/5 shards", "--allow-partial")
    assert not (gen_run / "filtered").exists()
    assert main(["filter", "-o", str(gen_run), "--no-progress", "--allow-partial"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "2 finished shard(s) only" in err
    assert (gen_run / "filtered" / "stats.json").is_file()
    # the flag is not part of what the filter output is: a rerun with it off reuses nothing wrongly
    assert main(["filter", "-o", str(gen_run), "--no-progress", "--allow-partial"]) == 0


# ---- a template that is not one --------------------------------------------------------

@pytest.mark.parametrize("prompt, words", [
    ("Summarize: {text", ("task.prompt", "not a valid str.format template", "expected '}'")),
    ("Summarize: text}", ("task.prompt", "not a valid str.format template")),
    ("Summarize: {}", ("task.prompt", "fields must be named")),
])
def test_template_prompt_that_is_not_a_template(tmp_path, capsys, prompt, words):
    (tmp_path / "seeds.txt").write_text("Some text.\n")
    out = tmp_path / "out"
    assert main(["generate", "--no-progress", "-s", "task.name=template", "-s", f"task.inputs={tmp_path / 'seeds.txt'}",
                 "-s", f"task.prompt={prompt}", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distill: error: ") and "Traceback" not in err
    for w in words:
        assert w in err, err
    assert not out.exists()
