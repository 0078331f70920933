"""An experiment, not a feature: Dynamic Blocking (Niu et al., "Unsupervised Paraphrasing with
Pretrained Language Models", EMNLP 2021) on the cpu_run few-shot teacher, against no blocking.

    python data/paraphrase/dynamic_blocking/make_candidates.py OUT.json

Both arms: the round-1 prompt of examples/cpu_run.yaml (T 0.3, top-p 0.95), the same per-row
seeds, on lee-train[300:360] (60 sentences cpu_run does not use), k=2. With blocking, whenever
the teacher writes a token of x, the token that follows it in x is banned for the next step
(probability 1), if that token starts a lower-case word: names, numbers, punctuation and word
pieces are never blocked. The blocker is put in front of the backend's own processors by
wrapping ``model.generate`` (the backend has no hook for extra processors; this is a one-off
measurement). The candidates were labelled blind (labels.jsonl, LABELS.md).
"""
import json, random, sys
from pathlib import Path
from distill.config import load_config
from distill.generator.tasks import build_task
from distill.generator.backends.base import Request, SamplingParams
from distill.generator.backends.transformers_backend import TransformersBackend
from distill.generator.tasks.paraphrase import clean_answer
from distill.generator.seeds import read_rows

cfg = load_config(Path(__file__).resolve().parents[3] / "examples" / "cpu_run.yaml")
task = build_task(cfg.task, cfg.seed)
rows = read_rows("builtin:lee-train", "text")
xs = [r["text"].strip() for r in rows[300:360]]
b = TransformersBackend(batch_size=32)
tok = b.tok
pieces = tok.convert_ids_to_tokens(list(range(len(tok))))

def blockable(i):
    p = pieces[i] if i < len(pieces) else ""
    if not p.startswith("Ġ"):
        return False  # only word starts: never cut into a word
    w = p[1:]
    return w[:1].isalpha() and w[:1].islower()  # names, numbers, punctuation stay free

class DynBlock:
    def __init__(self, sources, width, p_block, seed):
        self.src, self.width, self.p = sources, width, p_block
        self.rng = random.Random(seed)
    def __call__(self, input_ids, scores):
        if input_ids.shape[1] <= self.width:
            return scores
        last = input_ids[:, -1].tolist()
        for r, t in enumerate(last):
            s = self.src[r]
            for j in range(len(s) - 1):
                if s[j] == t and blockable(s[j + 1]) and self.rng.random() < self.p:
                    scores[r, s[j + 1]] = float("-inf")
        return scores

src_of = {}
orig_gen = b.model.generate
state = {"on": False}
def gen_wrapper(*a, **kw):
    if state["on"]:
        ids = kw["input_ids"]
        srcs = [src_of[tuple(t for t, m in zip(row, mrow) if m)] for row, mrow in zip(ids.tolist(), kw["attention_mask"].tolist())]
        kw["logits_processor"].insert(0, DynBlock(srcs, ids.shape[1], 1.0, 0))
    return orig_gen(*a, **kw)
b.model.generate = gen_wrapper

msgs = [task.messages(x) for x in xs]
for m, x in zip(msgs, xs):
    ptoks = tuple(tok(b.render(m), add_special_tokens=False)["input_ids"])
    src_of[ptoks] = tok(x, add_special_tokens=False)["input_ids"]
s = cfg.task.sampling
params = SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, seed=0)
out = []
for arm in ("free", "block"):
    state["on"] = arm == "block"
    b._prefixes.clear()
    res = b.generate(msgs, 2, params)
    for i, (x, comps) in enumerate(zip(xs, res)):
        for k, c in enumerate(comps):
            out.append({"arm": arm, "src": i, "sample": k, "x": x, "y": clean_answer(c.text), "finish": c.finish_reason})
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(len(out))
for o in out[:3] + out[120:123]:
    print(o["arm"], "|", o["x"], "=>", o["y"])
