"""Blind human-judgment sheets for ``distill eval``: write one, score it once filled.

``distill eval CONFIG --sheet N`` puts, for each of the first N eval inputs, the output of
every evaluated system (the copy baseline only with ``--sheet-copy``) on a sheet, shuffled
per input by a seeded RNG, system names hidden, each item under an opaque id:

- ``<eval out>/sheet/sheet.jsonl`` and ``sheet.csv``: ``id, x, y, label, kinds, note`` with
  ``label`` / ``kinds`` / ``note`` empty, for a person to fill (``README.md`` beside them
  says how);
- ``<eval out>/sheet/key.json``: item id -> the systems that wrote it and the input index,
  plus each system's result fingerprint. **Identical outputs** of several systems for one
  input are shown once; the key lists every system that wrote them and the label counts
  for each (a judge is never asked the same question twice, and cannot tell that two
  systems agreed).

``distill eval CONFIG --score-sheet FILE`` reads the filled sheet (JSONL or CSV) with the
key and writes ``sheet/scores.json``: per system, items on the sheet, items judged, and
P / C / M / D rates over the judged ones with 95% Wilson intervals (scipy), M kinds
counted. Unlabelled items are not judged (not failures). :func:`attach` puts these into
every later ``results.json`` whose rows still have the fingerprint the sheet was made
from (a retrained student's new outputs were never judged, so it gets no human row).

P / C / M / D are the paraphrase labels; an evaluation whose results carry
``sheet_labels`` (the commonsense one: A / R; the summarization one: G / E / U / O, where U
takes the M kinds) is labelled and scored with those instead (key.json and scores.json
record which).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.jsonl import read_objects
from distill.shards import atomic_write, atomic_write_json

LABELS = {"P": "same meaning, visibly reworded (the only class a critic should keep)",
          "C": "a copy or a trivial edit (one word swapped, punctuation)",
          "M": "the meaning changed (say how in kinds)",
          "D": "degenerate or off task (a wrapper, a loop, another language, an unrelated sentence)"}
KINDS = ("added", "dropped", "fact", "role", "number", "time", "negation", "attribution")
#: the kinds of a commonsense reject (R), as data/commonsense/LABELS.md names them
R_KINDS = ("wrong_relation", "implausible", "unrelated", "contradicts", "malformed", "vague")
#: the label whose kinds are counted, and the kinds it takes, per label set (U: an unfaithful summary)
KIND_OF = {"M": KINDS, "R": R_KINDS, "U": KINDS}
#: the labels whose kinds the README asks for and results.md shows (a commonsense sheet's R
#: kinds stay in scores.json)
KINDS_SHOWN = ("M", "U")
FIELDS = ("id", "x", "y", "label", "kinds", "note")
CONFIDENCE = 0.95


def sheet_dir(eval_out: Path) -> Path:
    return Path(eval_out) / "sheet"


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval of k successes in n (scipy's binomtest); None when n = 0."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


# ---- writing ----------------------------------------------------------------------------

def _outputs(eval_out: Path, name: str) -> list[dict[str, Any]]:
    path = Path(eval_out) / "generations" / f"{name}.jsonl"
    if not path.is_file():
        raise DistillError(f"{path} is missing: run `distill eval` (or `distill run`) again before writing a sheet")
    return [obj for _, obj in read_objects(path)]


def _has_labels(folder: Path) -> bool:
    for f in ("sheet.jsonl", "sheet.csv"):
        p = folder / f
        if p.is_file():
            try:
                rows = [r for _, r in read_filled(p)]
            except DistillError:
                return True  # something a person edited and broke is still their work
            if any(str(r.get("label") or "").strip() for r in rows):
                return True
    return False


def write_sheet(results: dict[str, Any], eval_out: Path, n: int, seed: int, include_copy: bool = False) -> dict[str, Any]:
    """Write the blind sheet for the first ``n`` inputs of ``results`` (what run_eval
    returned or results.json holds), in the order ``results["sheet_order"]`` gives when it is
    there (input indices); returns ``{"dir", "items", "inputs", "systems"}``."""
    if n < 1:
        raise DistillError(f"--sheet needs at least 1 input, got {n}")
    rows = [r for r in results["models"] if include_copy or r["spec"].get("kind") != "copy"]
    if not rows:
        raise DistillError("no system to put on a sheet: every evaluated system is the copy baseline "
                           "(add --sheet-copy to judge it anyway)")
    folder = sheet_dir(eval_out)
    if _has_labels(folder):
        raise DistillError(f"{folder} holds a sheet with labels; score it (--score-sheet) and move it away "
                           f"before writing a new one")
    labels = results.get("sheet_labels") or LABELS
    outs = {r["name"]: _outputs(eval_out, r["name"]) for r in rows}
    total = min(len(v) for v in outs.values())
    order = [i for i in results.get("sheet_order") or range(total) if i < total]
    count = min(n, len(order))
    items, key = [], {}
    for i in order[:count]:
        x = outs[rows[0]["name"]][i]["input"]
        groups: dict[str, list[str]] = {}
        for r in rows:  # one item per distinct output; every system that wrote it is credited
            groups.setdefault(outs[r["name"]][i]["output"].strip(), []).append(r["name"])
        order = list(groups.items())
        rng = random.Random(f"{seed}:sheet:{i}")
        rng.shuffle(order)
        for y, names in order:
            item_id = f"{i + 1:04d}-{rng.getrandbits(32):08x}"
            while item_id in key:
                item_id = f"{i + 1:04d}-{rng.getrandbits(32):08x}"
            key[item_id] = {"systems": names, "input_index": i}
            items.append({"id": item_id, "x": x, "y": y, "label": "", "kinds": [], "note": ""})
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "sheet.jsonl", lambda f: f.write(
        "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items).encode()))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS)
    w.writeheader()
    w.writerows({**it, "kinds": ""} for it in items)
    atomic_write(folder / "sheet.csv", lambda f: f.write(buf.getvalue().encode()))
    atomic_write_json(folder / "key.json", {
        "seed": seed, "inputs": count, "include_copy": include_copy,
        "systems": {r["name"]: r["fingerprint"] for r in rows}, "labels": labels,
        "shared_outputs": "an item listing several systems is their identical output, shown once; its label counts "
                          "for each of them", "items": key})
    atomic_write(folder / "README.md", lambda f: f.write(instructions(len(items), count, labels).encode()))
    return {"dir": str(folder), "items": len(items), "inputs": count, "systems": [r["name"] for r in rows]}


def _kinds_shown(labels: dict[str, str]) -> str | None:
    return next((k for k in KINDS_SHOWN if k in labels), None)


def instructions(items: int, inputs: int, labels: dict[str, str] = LABELS) -> str:
    listed = "\n".join(f"- `{k}`: {v}" for k, v in labels.items())
    shown = _kinds_shown(labels)
    kinds = (f"For `{shown}`, `kinds` may name how (several allowed; in the CSV separated by `;`): "
             f"{', '.join(f'`{k}`' for k in KIND_OF[shown])}. " if shown else "")
    return (f"# Blind judgment sheet\n\n{items} items for {inputs} inputs. Each row is an input `x` and one system's "
            f"output `y`; which system wrote it is in `key.json` (do not open it while labelling). Fill `label` with "
            f"one of:\n\n{listed}\n\n{kinds}`note` is free text. Leave `label` empty to skip an item: it "
            f"counts as not judged. Then: `distill eval CONFIG --score-sheet sheet.jsonl` (or the CSV).\n")


# ---- reading and scoring ------------------------------------------------------------------

def read_filled(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a filled sheet, ``.jsonl`` or ``.csv``."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"sheet not found: {path}")
    text = path.read_text(encoding="utf-8-sig")  # spreadsheets often save a BOM
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = [f for f in ("id", "label") if f not in (reader.fieldnames or [])]
        if missing:
            raise DistillError(f"{path}:1: the header lacks column(s) {', '.join(missing)}")
        return [(reader.line_num, row) for row in reader]
    if path.suffix.lower() != ".jsonl":
        raise DistillError(f"{path}: a sheet is a .jsonl or .csv file")
    return read_objects(path)


def _kinds(value: Any, where: str, allowed: tuple[str, ...] = KINDS) -> list[str]:
    kinds = value if isinstance(value, list) else [k for k in re.split(r"[;,\s]+", str(value or "")) if k]
    bad = [k for k in kinds if str(k).strip().lower() not in allowed]
    if bad:
        raise DistillError(f"{where}: kind {bad[0]!r} is not one of {', '.join(allowed)}")
    return [str(k).strip().lower() for k in kinds]


def score_sheet(path: Path, key: dict[str, Any]) -> dict[str, Any]:
    """Per system of ``key``: items on the sheet, judged, label counts, rates with Wilson
    intervals, M kinds. Every id of the file must be in the key, each once."""
    labels = key.get("labels") or LABELS
    kind_label = next((k for k in KIND_OF if k in labels), "M")
    counts = {s: Counter() for s in key["systems"]}
    kinds = {s: Counter() for s in key["systems"]}
    on_sheet = Counter(s for it in key["items"].values() for s in it["systems"])
    seen: set[str] = set()
    for line, row in read_filled(path):
        where = f"{path}:{line}"
        item_id = str(row.get("id", "")).strip()
        if item_id not in key["items"]:
            raise DistillError(f"{where}: item id {item_id!r} is not in the sheet's key.json")
        if item_id in seen:
            raise DistillError(f"{where}: item id {item_id!r} appears twice")
        seen.add(item_id)
        raw = row.get("label")
        label = str(raw if raw is not None else "").strip().upper()
        if not label:
            continue
        if label not in labels:
            raise DistillError(f"{where}: label {raw!r} is not one of {', '.join(labels)} (leave it empty if not "
                               f"judged)")
        found = _kinds(row.get("kinds"), where, KIND_OF[kind_label])
        for s in key["items"][item_id]["systems"]:
            counts[s][label] += 1
            if label == kind_label:
                kinds[s].update(found)
    systems = {}
    for s, fp in key["systems"].items():
        judged = sum(counts[s].values())
        systems[s] = {"fingerprint": fp, "on_sheet": on_sheet[s], "judged": judged,
                      "counts": {k: counts[s][k] for k in labels},
                      "rates": {k: _rate(counts[s][k], judged) for k in labels},
                      "m_kinds": dict(kinds[s].most_common())}
    return {"sheet": str(path), "confidence": CONFIDENCE, "labels": labels, "systems": systems}


def _rate(k: int, n: int) -> dict[str, float] | None:
    ci = wilson(k, n)
    return None if ci is None else {"rate": k / n, "low": ci[0], "high": ci[1]}


def load_key(eval_out: Path) -> dict[str, Any]:
    path = sheet_dir(eval_out) / "key.json"
    if not path.is_file():
        raise DistillError(f"{path} is missing: write a sheet first with `distill eval CONFIG --sheet N`")
    return json.loads(path.read_text())


def attach(results: dict[str, Any], eval_out: Path) -> None:
    """Give each row of ``results`` its human scores from ``sheet/scores.json``, if the
    sheet was made from that very result (same fingerprint); name the stale ones."""
    path = sheet_dir(eval_out) / "scores.json"
    if not path.is_file():
        return
    scores = json.loads(path.read_text())
    stale = []
    for row in results["models"]:
        row.pop("human", None)
        s = scores["systems"].get(row["name"])
        if s is None:
            continue
        if s["fingerprint"] == row.get("fingerprint"):
            row["human"] = {k: v for k, v in s.items() if k != "fingerprint"}
        else:
            stale.append(row["name"])
    results["human"] = {"sheet": scores["sheet"], "confidence": scores["confidence"], "stale": stale,
                        "labels": scores.get("labels") or LABELS}


def _pct(r: dict[str, float] | None) -> str:
    return "-" if r is None else f"{100 * r['rate']:.1f}% [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"


def human_table(results: dict[str, Any]) -> str:
    """The second table of results.md: human labels per system ('' without a scored sheet)."""
    rows, h = [r for r in results["models"] if r.get("human")], results.get("human") or {}
    if not rows and not h.get("stale"):
        return ""
    labels = h.get("labels") or LABELS
    legend = ("P = same meaning, visibly reworded (the keep class); C = copy or trivial edit; M = meaning changed; "
              "D = degenerate or off task." if labels == LABELS else
              "; ".join(f"{k} = {v}" for k, v in labels.items()) + f" ({next(iter(labels))} is the keep class).")
    shown = _kinds_shown(labels)
    head = [f"{k} ↑" if n == 0 else k for n, k in enumerate(labels)] + ([f"{shown} kinds"] if shown else [])
    lines = [f"Human labels from the blind sheet `{h['sheet']}` (systems hidden, shuffled per input). Rates over the "
             f"judged items with {100 * h['confidence']:.0f}% Wilson intervals; unlabelled items are not judged, not "
             f"failures; an output several systems share was shown once and counts for each. {legend}", "",
             "| model | judged / on sheet | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]
    for r in rows:
        u = r["human"]
        kinds = [", ".join(f"{k} {v}" for k, v in u["m_kinds"].items()) or "-"] if shown else []
        lines.append(f"| {r['name']} | {u['judged']} / {u['on_sheet']} | "
                     + " | ".join([_pct(u["rates"][k]) for k in labels] + kinds) + " |")
    if h.get("stale"):
        lines += ["", f"Not shown (their outputs changed since the sheet was written): {', '.join(h['stale'])}."]
    return "\n".join(lines)


# ---- the CLI (distill eval --sheet / --score-sheet) ----------------------------------------

def _results(cfg) -> tuple[dict[str, Any], Path]:
    from distill.trainers.evaluate import eval_dir

    out = eval_dir(cfg)
    path = out / "results.json"
    if not path.is_file():
        raise DistillError(f"{path} is missing: run `distill eval` (or `distill run`) first")
    return json.loads(path.read_text()), out


def cli_write(cfg, n: int, include_copy: bool, progress: bool = True) -> int:
    """The sheet covers what was last evaluated in the eval folder (by `distill eval`, or by
    `distill run` with every round's student); with no results there yet, evaluate first."""
    from distill.trainers.evaluate import eval_dir, run_eval

    if not (eval_dir(cfg) / "results.json").is_file():
        run_eval(cfg, progress=progress)
    results, out = _results(cfg)
    info = write_sheet(results, out, n, cfg.seed, include_copy)
    print(f"{info['items']} items for {info['inputs']} inputs from {len(info['systems'])} systems "
          f"({', '.join(info['systems'])}) in {info['dir']}: fill sheet.jsonl or sheet.csv (see README.md there), "
          f"keep key.json out of sight, then `distill eval CONFIG --score-sheet FILE`")
    return 0


def cli_score(cfg, path: Path) -> int:
    """Score the filled sheet; write sheet/scores.json, then results.json and results.md
    (and, in a `distill run` folder, its results.md and run_summary.json) with the rates."""
    from distill.trainers.evaluate import write_results

    results, out = _results(cfg)
    scores = score_sheet(path, load_key(out))
    atomic_write_json(sheet_dir(out) / "scores.json", scores)
    attach(results, out)
    write_results(results, out)
    results["output_dir"] = str(out)
    from distill.loop import refresh_summary

    refresh_summary(cfg, results)
    print(human_table(results))
    return 0
