"""Blind human-judgment sheets (distill eval --sheet / --score-sheet): hidden and shuffled
systems, identical outputs shown once, exact rates and Wilson intervals, bad labels as one
line; the meaning-aware round comparison; and a custom critic's stated threshold reaching
stats.json and the dataset card."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from distill.cli import main
from distill.config import load_config
from distill.critics.base import Critic
from distill.errors import DistillError
from distill.trainers import sheet as S
from distill.trainers.compare import beats, round_lines

X = ["The storm closed three schools on Monday.", "Officials said the bridge would reopen next week.",
     "The team won its first match of the season.", "Farmers are worried about the dry winter.",
     "The mayor opened the new library on Friday."]
OUT = {  # zeta and omega agree on input 0: one item, credited to both
    "zeta-alpha": ["On Monday the storm shut three schools.", "The bridge will reopen next week, officials said.",
                   "The team won its first match, said the coach Bob.", "Yes yes yes yes yes.",
                   "On Friday the mayor opened the new library."],
    "omega-beta": ["On Monday the storm shut three schools.", "Officials said the bridge would reopen next week!",
                   "The team won its first match of the season.", "The dry winter worries the farmers' sons.",
                   "The new library was opened by the mayor on Friday."],
    "copy": X,
}
# the labels a person gives each system's output, per input (None: left empty)
LABELS = {"zeta-alpha": ["P", "P", ("M", ["added", "time"]), "D", None],
          "omega-beta": ["P", "C", "C", ("M", ["role"]), "P"]}


def fake_eval(root: Path) -> dict:
    """An eval folder as run_eval leaves it: generations/<name>.jsonl and results rows."""
    (root / "generations").mkdir(parents=True)
    rows = []
    for name, ys in OUT.items():
        (root / "generations" / f"{name}.jsonl").write_text(
            "".join(json.dumps({"i": i, "input": x, "output": y}) + "\n" for i, (x, y) in enumerate(zip(X, ys))))
        rows.append({"name": name, "spec": {"kind": "copy" if name == "copy" else "model"},
                     "fingerprint": f"fp-{name}", "metrics": {"accepted": 0.5, "bert_ibleu": 0.4}})
    return {"models": rows}


def fill(root: Path, labels=LABELS, bad: str | None = None) -> list[dict]:
    """Label sheet.jsonl's items through the key, as a person would by reading y."""
    key = json.loads((root / "sheet" / "key.json").read_text())["items"]
    items = [json.loads(line) for line in (root / "sheet" / "sheet.jsonl").read_text().splitlines()]
    for it in items:
        k = key[it["id"]]
        lab = labels[k["systems"][0]][k["input_index"]]
        if lab is not None:
            it["label"], it["kinds"] = (lab, []) if isinstance(lab, str) else lab
    if bad:
        items[-1]["label"] = bad
    return items


def test_sheet_hides_and_shuffles_systems_and_shows_shared_outputs_once(tmp_path):
    res = fake_eval(tmp_path)
    info = S.write_sheet(res, tmp_path, n=4, seed=3)
    assert info == {"dir": str(tmp_path / "sheet"), "items": 7, "inputs": 4, "systems": ["zeta-alpha", "omega-beta"]}
    text = (tmp_path / "sheet" / "sheet.jsonl").read_text() + (tmp_path / "sheet" / "sheet.csv").read_text()
    assert not any(n in text for n in ("zeta", "omega", "copy", "fp-"))  # names hidden; copy skipped
    items = [json.loads(line) for line in (tmp_path / "sheet" / "sheet.jsonl").read_text().splitlines()]
    assert all(list(it) == list(S.FIELDS) and it["label"] == "" and it["kinds"] == [] for it in items)
    assert all(re.fullmatch(r"\d{4}-[0-9a-f]{8}", it["id"]) for it in items) and len({it["id"] for it in items}) == 7
    key = json.loads((tmp_path / "sheet" / "key.json").read_text())
    assert key["systems"] == {"zeta-alpha": "fp-zeta-alpha", "omega-beta": "fp-omega-beta"}
    by_input = {}
    for it in items:
        k = key["items"][it["id"]]
        assert it["x"] == X[k["input_index"]] and all(OUT[s][k["input_index"]] == it["y"] for s in k["systems"])
        by_input.setdefault(k["input_index"], []).append(k["systems"])
    assert by_input[0] == [["zeta-alpha", "omega-beta"]]  # identical outputs: one item for both
    firsts = {v[0][0] for i, v in by_input.items() if i > 0}
    assert firsts == {"zeta-alpha", "omega-beta"}  # the order changes from input to input
    rows = list(csv.DictReader((tmp_path / "sheet" / "sheet.csv").open()))
    assert [r["id"] for r in rows] == [it["id"] for it in items] and rows[0]["x"] == X[0]
    again = tmp_path / "again"
    S.write_sheet(fake_eval(again), again, n=4, seed=3)  # seeded: the same sheet
    assert (again / "sheet" / "sheet.jsonl").read_text() == (tmp_path / "sheet" / "sheet.jsonl").read_text()
    other = tmp_path / "other"
    S.write_sheet(fake_eval(other), other, n=4, seed=4)
    assert (other / "sheet" / "sheet.jsonl").read_text() != (tmp_path / "sheet" / "sheet.jsonl").read_text()
    S.write_sheet(res, tmp_path, n=2, seed=0, include_copy=True)
    assert "copy" in json.loads((tmp_path / "sheet" / "key.json").read_text())["systems"]


def test_scores_are_exact_with_wilson_intervals_from_jsonl_and_csv(tmp_path):
    S.write_sheet(fake_eval(tmp_path), tmp_path, n=5, seed=3)
    items = fill(tmp_path)
    filled = tmp_path / "filled.jsonl"
    filled.write_text("".join(json.dumps(it) + "\n" for it in items))
    got = S.score_sheet(filled, S.load_key(tmp_path))["systems"]
    z = got["zeta-alpha"]  # P P M D and one left empty: 4 judged, not 5
    assert (z["on_sheet"], z["judged"], z["counts"]) == (5, 4, {"P": 2, "C": 0, "M": 1, "D": 1})
    assert z["m_kinds"] == {"added": 1, "time": 1}
    # Wilson, z = 1.959964: 2/4 -> center 0.5, half-width z * sqrt(0.25 / 4 + z^2 / 64) / (1 + z^2 / 4) = 0.349961;
    # 0/4 -> [0, z^2 / (4 + z^2)] = [0, 0.489891]
    assert z["rates"]["P"] == pytest.approx({"rate": 0.5, "low": 0.150039, "high": 0.849961}, abs=1e-6)
    assert z["rates"]["M"] == pytest.approx({"rate": 0.25, "low": 0.045587, "high": 0.699358}, abs=1e-6)
    assert z["rates"]["C"] == {"rate": 0.0, "low": 0.0, "high": pytest.approx(0.489891, abs=1e-6)}
    o = got["omega-beta"]  # P (shared with zeta) C C M P: 5 judged
    assert (o["judged"], o["counts"], o["m_kinds"]) == (5, {"P": 2, "C": 2, "M": 1, "D": 0}, {"role": 1})
    assert o["rates"]["P"] == pytest.approx({"rate": 0.4, "low": 0.117621, "high": 0.769276}, abs=1e-6)
    assert o["rates"]["D"] == {"rate": 0.0, "low": 0.0, "high": pytest.approx(0.434482, abs=1e-6)}
    assert S.wilson(0, 0) is None
    as_csv = tmp_path / "filled.csv"
    with as_csv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=S.FIELDS)
        w.writeheader()
        w.writerows({**it, "label": it["label"].lower(), "kinds": ";".join(it["kinds"])} for it in items)
    assert S.score_sheet(as_csv, S.load_key(tmp_path))["systems"] == got


@pytest.mark.parametrize("bad, message", [
    ("X", r"filled\.jsonl:7: label 'X' is not one of P, C, M, D \(leave it empty if not judged\)$"),
    ("PC", r"filled\.jsonl:7: label 'PC' is not one of P, C, M, D"),
])
def test_bad_label_is_one_line_with_file_and_line(tmp_path, bad, message):
    S.write_sheet(fake_eval(tmp_path), tmp_path, n=4, seed=0)
    filled = tmp_path / "filled.jsonl"
    filled.write_text("".join(json.dumps(it) + "\n" for it in fill(tmp_path, bad=bad)))
    with pytest.raises(DistillError, match=message) as e:
        S.score_sheet(filled, S.load_key(tmp_path))
    assert "\n" not in str(e.value)
    items = fill(tmp_path)
    items[0]["kinds"] = ["color"]
    items[0]["label"] = "M"
    filled.write_text("".join(json.dumps(it) + "\n" for it in items))
    with pytest.raises(DistillError, match=r"filled\.jsonl:1: kind 'color' is not one of added, dropped"):
        S.score_sheet(filled, S.load_key(tmp_path))
    filled.write_text(json.dumps({**items[1], "id": "0001-deadbeef"}) + "\n")
    with pytest.raises(DistillError, match=r"filled\.jsonl:1: item id '0001-deadbeef' is not in the sheet's key"):
        S.score_sheet(filled, S.load_key(tmp_path))


def test_eval_cli_sheet_round_trip_meaning_column_and_exit_2(tmp_path, capsys):
    from distill.generator.backends.base import Completion, Result
    from distill.trainers.evaluate import run_eval
    from fake_backend import FakeBackend

    class Answers(FakeBackend):
        def __init__(self, answers):
            super().__init__(chunk_size=None)
            self.answers = answers

        def generate_requests(self, requests):
            return [Result([Completion(self.answers[r.prompt[-1]["content"].split("\n\n")[-1]], 5)]) for r in requests]

    (tmp_path / "in.txt").write_text("\n".join(X) + "\n")
    for name in ("zeta-alpha", "omega-beta"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(name.encode())
    models = [{"name": "copy", "kind": "copy"}] + [{"name": n, "model": str(tmp_path / n)} for n in ("zeta-alpha",
                                                                                                     "omega-beta")]
    sets = [f"output_dir={tmp_path / 'run'}", f"eval.inputs={tmp_path / 'in.txt'}", f"eval.models={json.dumps(models)}",
            "eval.critics=[{type: copy}, {type: wellformed}]", "eval.meaning_critics=[{type: numbers}]"]
    cfg = load_config(None, sets)
    res = run_eval(cfg, progress=False, backend_factory=lambda spec: Answers(dict(zip(X, OUT[spec.name]))))
    md = (tmp_path / "run/eval/results.md").read_text()
    assert "| accepted (eval.critics) | meaning-accepted |" in md and "Meaning critics" in md
    assert res["models"][0]["metrics"]["meaning_accepted"] == 1.0  # a copy keeps every number...
    assert res["models"][0]["metrics"]["accepted_and_meaning"] == 0.0  # ...and is no paraphrase
    cli = [x for s in sets for x in ("--set", s)]
    assert main(["eval", *cli, "--sheet", "5"]) == 0  # reads results.json: no model is run
    filled = tmp_path / "filled.jsonl"
    filled.write_text("".join(json.dumps(it) + "\n" for it in fill(tmp_path / "run/eval")))
    capsys.readouterr()
    assert main(["eval", *cli, "--score-sheet", str(filled)]) == 0
    assert "| zeta-alpha | 4 / 5 | 50.0% [15.0, 85.0] | 0.0% [0.0, 49.0] | 25.0% [4.6, 69.9] | 25.0% [4.6, 69.9] " \
           "| added 1, time 1 |" in capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads((tmp_path / "run/eval/results.json").read_text())["models"]}
    assert rows["omega-beta"]["human"]["counts"] == {"P": 2, "C": 2, "M": 1, "D": 0} and "human" not in rows["copy"]
    assert "## Human judgment" in (tmp_path / "run/eval/results.md").read_text()
    again = run_eval(cfg, progress=False, backend_factory=lambda spec: pytest.fail("cached"))
    assert again["models"][1]["human"]["judged"] == 4  # a later eval keeps the human rates
    filled.write_text("".join(json.dumps(it) + "\n" for it in fill(tmp_path / "run/eval", bad="maybe")))
    assert main(["eval", *cli, "--score-sheet", str(filled)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.fullmatch(r"distill: error: .*filled\.jsonl:\d+: label 'maybe' is not one of P, C, M, "
                                            r"D \(leave it empty if not judged\)", err)


def _row(name, human_p=None, judged=0, both=None):
    m = {"bert_ibleu": 0.9, "accepted": 0.8}
    if both is not None:
        m["accepted_and_meaning"] = both
    h = {"judged": judged, "rates": {"P": human_p}} if human_p else None
    return {"name": name, "metrics": m, **({"human": h} if h else {})}


def test_round_comparison_uses_meaning_aware_numbers_and_says_which():
    p = lambda r, lo, hi: {"rate": r, "low": lo, "high": hi}  # noqa: E731
    v = beats(_row("b", p(0.6, 0.45, 0.73), 40, both=0.1), _row("a", p(0.3, 0.18, 0.45), 40, both=0.5))
    assert v["met"] is True and v["basis"] == "human P rate (blind sheet)"  # the sheet wins over the critics
    assert "60.0% [45.0, 73.0] vs 30.0% [18.0, 45.0] (+30.0 points) -> met (the 95% intervals overlap" in v["line"]
    v = beats(_row("b", both=0.10), _row("a", p(0.3, 0.18, 0.45), 40, both=0.25))
    assert v["met"] is False and v["basis"] == "kept by the critic chain and the meaning critics"
    assert "10.0% vs 25.0% (-15.0 points) -> MISSED" in v["line"]
    v = beats(_row("b"), _row("a"))  # BERT-iBLEU alone never decides
    assert v["met"] is None and "UNDECIDED" in v["line"] and "BERT-iBLEU 0.900 vs 0.900" in v["line"]
    rows = {"models": [_row(f"student-round{k}", both=k / 100) for k in (10, 9, 2, 1)] + [_row("copy", both=0)]}
    assert [ln.split(",")[0] for ln in round_lines(rows)] == [
        "student-round2 vs student-round1", "student-round9 vs student-round2", "student-round10 vs student-round9"]



def test_round_comparison_of_summaries_uses_the_g_rate_and_per_set_numbers():
    g = lambda r: {"judged": 30, "rates": {"G": {"rate": r, "low": r - 0.1, "high": r + 0.1}}}  # noqa: E731
    per_set = lambda acc: {"aclsum-test": {"accepted": acc, "rouge": None}, "lee-docs-heldout": {"accepted": acc}}  # noqa: E731
    res = {"sheet_labels": {"G": "good", "E": "", "U": "", "O": ""},
           "models": [{"name": "student-round1", "metrics": per_set(0.2), "human": g(0.3)},
                      {"name": "student-round2", "metrics": per_set(0.4), "human": g(0.2)}]}
    (line,) = round_lines(res)
    assert line.startswith("student-round2 vs student-round1, human G rate (blind sheet), 30 and 30 judged: "
                           "20.0% [10.0, 30.0] vs 30.0% [20.0, 40.0]") and "MISSED" in line
    for r in res["models"]:
        del r["human"]
    (line,) = round_lines(res)
    assert "UNDECIDED" in line and "accepted on aclsum-test 0.400 vs 0.200" in line


class WordCap(Critic):
    """A critic from outside the package, with its own threshold."""

    name = "word_cap"
    score_names = ("n_words",)

    def judge(self, record):
        n = record.scores["n_words"] = float(len(record.output.split()))
        return True if n <= 9 else (False, "n_words>9")

    def thresholds(self):
        return [("n_words", "<=", 9.0)]


def test_a_custom_critics_threshold_reaches_stats_and_card(tmp_path, monkeypatch):
    from distill.corpus.build import run_corpus
    from distill.corpus.card import thresholds
    from distill.critics import registry
    from distill.critics.pipeline import run_filter
    from distill.record import Record
    from distill.shards import ShardStore

    monkeypatch.setitem(registry.CRITICS, "word_cap", f"{__name__}:WordCap")
    recs = [Record(id=f"c{i}-0-1", task="paraphrase", input=x, output=y, teacher="fake:v1",
                   metadata={"context_id": f"c{i}"}) for i, (x, y) in enumerate(zip(X, OUT["zeta-alpha"]))]
    ShardStore(tmp_path / "shards").write(0, recs, {"counts": {"pairs": len(recs)}})
    cfg = load_config(None, [f"output_dir={tmp_path}", "filter.critics=[{type: word_cap}, {type: length_ratio}]",
                             "corpus.plots=false"])
    stats = run_filter(cfg, progress=False)
    assert stats["critics"][0]["thresholds"] == [{"score": "n_words", "op": "<=", "value": 9.0}]
    assert stats["funnel"][1] == {"stage": "critic:word_cap", "count": 4, "dropped": {"n_words>9": 1}}
    assert thresholds(stats) == {"n_words": [("<=", 9.0)], "length_ratio": [(">=", 0.8), ("<=", 1.5)]}
    run_corpus(cfg, progress=False)
    text = (tmp_path / "corpus" / "README.md").read_text()
    assert "| `word_cap` | defaults | n_words <= 9 |" in text
    assert "| `length_ratio` | min_ratio=0.8, max_ratio=1.5 | length_ratio >= 0.8, length_ratio <= 1.5 |" in text


def test_loop_summary_says_which_number_decided_and_refreshes_after_scoring(tmp_path):
    from distill.loop import refresh_summary, write_summary

    cfg = load_config(None, [f"output_dir={tmp_path}"])
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.md").write_text("# Evaluation\n")
    rounds = [{"round": k, "generated": 9, "kept": 3, "corpus": {}, "train": {}, "seconds": {}} for k in (1, 2)]
    res = {"output_dir": str(tmp_path / "eval"), "models": [_row("student-round1", both=0.2),
                                                            _row("student-round2", both=0.3)]}
    write_summary(cfg, rounds, res)
    md = (tmp_path / "results.md").read_text()
    assert ("## Does round k+1 beat round k?\n\n- student-round2 vs student-round1, kept by the critic chain and the "
            "meaning critics: 30.0% vs 20.0% (+10.0 points) -> met") in md
    p = {"rate": 0.5, "low": 0.3, "high": 0.7}
    res["models"] = [_row("student-round1", p, 20, 0.2), _row("student-round2", {**p, "rate": 0.25}, 20, 0.3)]
    refresh_summary(cfg, res)  # a scored sheet overrides the critics' verdict
    md = (tmp_path / "results.md").read_text()
    assert "- student-round2 vs student-round1, human P rate (blind sheet), 20 and 20 judged: 25.0%" in md
    assert json.loads((tmp_path / "run_summary.json").read_text())["eval"]["models"][1]["human"]["judged"] == 20
