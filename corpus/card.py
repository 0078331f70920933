"""The dataset card: a README.md with the Hub's YAML header, written from the run itself.

The generated body sits between ``<!-- distill:begin -->`` and ``<!-- distill:end -->``.
:func:`merge_card` puts a new body into an existing card: text outside the markers (what
a person wrote) is kept word for word; in the YAML header the keys this module writes are
replaced and every other key is kept.
"""

from __future__ import annotations

import inspect
import json
import random
from typing import Any

import yaml
from distill.corpus.dataset import FIELD_DOCS

BEGIN, END = "<!-- distill:begin -->", "<!-- distill:end -->"
USER_NOTE = ("## Notes\n\n_Write your own sections here or anywhere outside the distill markers: "
             "`distill corpus` and `--push-to-hub` keep them when they regenerate the card._\n")

CITATION = """@inproceedings{jung2024impossible,
  title     = {Impossible Distillation for Paraphrasing and Summarization: How to Make High-quality Lemonade out of Small, Low-quality Model},
  author    = {Jung, Jaehun and West, Peter and Jiang, Liwei and Brahman, Faeze and Lu, Ximing and Fisher, Jillian and Sorensen, Taylor and Choi, Yejin},
  booktitle = {Proceedings of the 2024 Conference of the North American Chapter of the Association for Computational Linguistics (NAACL)},
  year      = {2024},
  eprint    = {2305.16635},
  archivePrefix = {arXiv}
}

@inproceedings{west2022symbolic,
  title     = {Symbolic Knowledge Distillation: from General Language Models to Commonsense Models},
  author    = {West, Peter and Bhagavatula, Chandra and Hessel, Jack and Hwang, Jena D. and Jiang, Liwei and Le Bras, Ronan and Lu, Ximing and Welleck, Sean and Choi, Yejin},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association for Computational Linguistics (NAACL)},
  year      = {2022},
  eprint    = {2110.07178},
  archivePrefix = {arXiv}
}"""


def critic_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """The critic's effective keyword arguments: the config's, over the constructor's defaults."""
    from distill.critics.registry import critic_class

    given = {k: v for k, v in spec.items() if k != "type"}
    try:
        params = inspect.signature(critic_class(spec["type"]).__init__).parameters
    except Exception:  # an unknown or unimportable critic: show what the config said
        return given
    defaults = {n: p.default for n, p in params.items() if n not in ("self", "keep_rejects", "teacher", "backend")
                and p.default is not inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD}
    return {**defaults, **given}


def thresholds(filter_stats: dict[str, Any]) -> dict[str, list[tuple[str, float]]]:
    """Score name -> [(kept condition: >=, >, <= or <, value)], as each critic stated them
    (``Critic.thresholds``, written by the filter into stats.json's ``critics``)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for c in filter_stats.get("critics", []):
        for t in c.get("thresholds", []):
            out.setdefault(t["score"], []).append((t["op"], float(t["value"])))
    return out


def kept_when(critic_stats: dict[str, Any]) -> str:
    """One critic's stated thresholds as text: ``length_ratio >= 0.8, length_ratio <= 1.5``."""
    return ", ".join(f"{t['score']} {t['op']} {t['value']:g}" for t in critic_stats.get("thresholds", []))


def size_category(n: int) -> str:
    for hi, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                      (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < hi:
            return label
    return "100M<n<1B"


def header(cc, splits: dict[str, dict[str, Any]], feature_yaml: list[dict[str, Any]], pretty_name: str) -> dict[str, Any]:
    total = sum(s["rows"] for s in splits.values())
    return {
        "license": cc.license, "language": list(cc.language), "task_categories": list(cc.task_categories),
        "size_categories": [size_category(total)], "pretty_name": pretty_name,
        "tags": ["synthetic", "distillation", "distill-kd"],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits]}],
        "dataset_info": {"features": feature_yaml,
                         "splits": [{"name": s, "num_examples": v["rows"]} for s, v in splits.items()]},
    }


def feature_yaml(feats) -> list[dict[str, Any]]:
    out = []
    for name, f in feats.items():
        if isinstance(f, dict):
            out.append({"name": name, "struct": [{"name": k, "dtype": v.dtype} for k, v in f.items()]})
        else:
            out.append({"name": name, "dtype": f.dtype})
    return out


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def funnel_table(rows: list[dict[str, Any]]) -> str:
    first = rows[0]["count"] or 1
    out, prev = [], rows[0]["count"]
    for r in rows:
        dropped = ", ".join(f"{k}: {v:,}" for k, v in r.get("dropped", {}).items() if v)
        out.append([f"`{r['stage']}`", f"{r['count']:,}", f"{100 * r['count'] / first:.1f}%",
                    f"{100 * r['count'] / prev:.1f}%" if prev else "-", dropped or ""])
        prev = r["count"]
    return _table(["stage", "records", "% of generated", "% of previous", "dropped (reason: count)"], out)


def examples(dd, n: int, seed: int) -> str:
    parts = []
    for split, ds in dd.items():
        if not len(ds) or not n:
            continue
        idx = sorted(random.Random(f"{seed}:{split}").sample(range(len(ds)), min(n, len(ds))))
        parts.append(f"**{split}**\n")
        for row in ds.select(idx):
            parts.append(f"- `{row['id']}`\n  - x: {row['input']}\n  - y: {row['output']}")
        parts.append("")
    return "\n".join(parts) or "_(no rows)_"


def body(info: dict[str, Any], dd) -> str:
    cc, st, man = info["cfg"].corpus, info["filter_stats"], info["manifest"]
    teacher = man.get("teacher_model_id") or info["cfg"].teacher.model or "?"
    task = man.get("resolved_task") or info["cfg"].task.model_dump(mode="json")
    splits = info["stats"]["splits"]
    gen = info["generate_stats"]
    s = [BEGIN, "", f"# {info['pretty_name']}", "",
         (f"{sum(v['rows'] for v in splits.values()):,} synthetic `{task.get('name', '?')}` pairs (x -> y) written by "
          f"`{teacher}` and kept by critics and dedup, made with distill-kd following the Impossible Distillation "
          "recipe (symbolic knowledge distillation: over-generate with a teacher, keep what critics accept)."), "",
         "## Splits", "", "Split by group (context), so near-identical pairs from one context never straddle splits.", "",
         _table(["split", "rows", "groups"], [[k, f"{v['rows']:,}", f"{v['groups']:,}"] for k, v in splits.items()]), "",
         ("```python\nfrom datasets import load_dataset\nds = load_dataset(\"OWNER/NAME\")  # once pushed to the Hub\n"
          "ds = load_dataset(\"parquet\", data_dir=\"data\")  # from this folder\n```"), "",
         "## Fields", "", _table(["field", "type", "meaning"], [[f"`{f['name']}`", f.get("dtype") or "struct of " + ", ".join(
             f"{x['name']}: {x['dtype']}" for x in f["struct"]), FIELD_DOCS[f["name"]]] for f in info["features"]]), "",
         "## Teacher and sampling", "", f"- teacher: `{teacher}` (backend `{info['cfg'].teacher.backend}`), seed {info['cfg'].seed}",
         f"- task settings:\n\n```json\n{json.dumps(task, indent=2)}\n```", "",
         "## Critics", "", _critics_table(st), "",
         f"Dedup: `{json.dumps(st.get('dedup_config', {}))}`", "",
         "## Funnel", "", funnel_table(info["stats"]["funnel"]), ""]
    if info["stats"].get("decontamination"):
        d = info["stats"]["decontamination"]
        s += ["## Decontamination", "", f"Compared inputs and outputs with {d['eval_items']:,} items of "
              f"{', '.join(f'`{e}`' for e in d['eval_sets'])} (normalised exact match"
              + (f", cosine >= {d['threshold']} with `{d['encoder'] or 'all-MiniLM-L6-v2'}`" if d["threshold"] else "")
              + f"): dropped {d['dropped'].get('exact', 0):,} exact and {d['dropped'].get('near', 0):,} near duplicates "
              f"(listed in `decontaminated.jsonl`).", ""]
    s += ["## Token usage and cost", "", _table(["prompt tokens", "completion tokens", "cost"], [[
        f"{gen.get('prompt_tokens_paid', 0):,}", f"{gen.get('completion_tokens_paid', 0):,}",
        f"{gen.get('cost', 0.0):.4f}"]]), ""]
    if info["plots"]:
        s += ["## Plots", ""] + [f"![{name}](plots/{name}.png)\n" for name in info["plots"]]
    s += ["## Examples", "", examples(dd, cc.examples_per_split, info["cfg"].seed), "",
          "## Reproduce", "", "Generation: `" + _command(man.get("command")) + "`  ",
          "Filter: `distill filter CONFIG` (CONFIG: the config below)  ", "Corpus: `" + info["command"] + "`", "",
          "Config (all stages, also saved as `config.yaml` beside this card):", "",
          f"```yaml\n{info['config_yaml'].rstrip()}\n```", "",
          "## Citation", "", f"```bibtex\n{CITATION}\n```", "", END]
    return "\n".join(s) + "\n"


def _critics_table(st: dict[str, Any]) -> str:
    """One row per configured critic: its settings and the thresholds it stated. The
    filter writes ``critic_config`` and ``critics`` in the same (config) order."""
    specs, judged = st.get("critic_config", []), st.get("critics", [])
    rows = [[f"`{c['type']}`", ", ".join(f"{k}={v}" for k, v in critic_settings(c).items()) or "defaults",
             (kept_when(judged[n]) if n < len(judged) and len(judged) == len(specs) else "") or "-"]
            for n, c in enumerate(specs)]
    return _table(["critic", "settings", "kept when"], rows)


def _command(argv: list[str] | None) -> str:
    import shlex
    from pathlib import PurePath

    if not argv:
        return "distill generate CONFIG"
    return shlex.join(["distill" if PurePath(argv[0]).name == "distill" else argv[0], *argv[1:]])


def render(head: dict[str, Any], text: str) -> str:
    return "---\n" + yaml.safe_dump(head, sort_keys=False, allow_unicode=True) + "---\n\n" + text


def split_card(card: str) -> tuple[dict[str, Any], str]:
    if card.startswith("---\n"):
        end = card.find("\n---", 4)
        if end != -1:
            return yaml.safe_load(card[4:end]) or {}, card[end + 4 :].lstrip("\n")
    return {}, card


def merge_card(existing: str | None, head: dict[str, Any], generated: str) -> str:
    """The new card: ``generated`` (marker-wrapped) replaces the old marked part; the
    person's text outside the markers and their extra YAML keys stay."""
    if not existing:
        return render(head, generated + "\n" + USER_NOTE)
    old_head, old_body = split_card(existing)
    merged_head = {**old_head, **head}
    i, j = old_body.find(BEGIN), old_body.find(END)
    if i != -1 and j > i:
        new_body = old_body[:i] + generated.strip("\n") + old_body[j + len(END) :]
    else:
        new_body = old_body.rstrip("\n") + "\n\n" + generated
    return render(merged_head, new_body)
