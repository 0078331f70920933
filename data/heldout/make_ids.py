"""Make ``lee_background_ids.txt``, the fixed held-out sample (run once; the output is
committed, and reruns reproduce it byte for byte).

    python data/heldout/make_ids.py [--n 150] [--seed 0]

From each document of gensim's ``lee_background.cor``, split with
:func:`distill.data.heldout.split_sentences`, the candidates are sentences of 8-30 words
that pass the well-formedness critic with its defaults (one clean sentence: balanced
quotes, capital start, end punctuation, no line break). ``--n`` documents that have a
candidate are drawn with ``random.Random(seed)``, and one candidate from each, so the
sample spans many stories. Lines are written in the drawn order, so the first N lines
(``eval.limit``) are themselves a random sample.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from distill.critics.wellformed import WellFormed
from distill.data.heldout import IDS_FILE, lee_documents, sentence_sha, split_sentences


def candidates(doc: str) -> list[tuple[int, str]]:
    wf = WellFormed()
    return [(i, s) for i, s in enumerate(split_sentences(doc))
            if 8 <= len(s.split()) <= 30 and wf.problem(s) is None]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=150, help="sentences (one per document)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name(IDS_FILE)))
    args = ap.parse_args(argv)
    docs = lee_documents()
    cands = {d: c for d, c in ((d, candidates(doc)) for d, doc in enumerate(docs)) if c}
    rng = random.Random(args.seed)
    picked = rng.sample(sorted(cands), min(args.n, len(cands)))
    lines = [f"# lee_background.cor held-out sample: doc_index sentence_index sha1[:8] "
             f"(make_ids.py --n {args.n} --seed {args.seed})"]
    for d in picked:
        s, text = rng.choice(cands[d])
        lines.append(f"{d} {s} {sentence_sha(text)}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {len(picked)} ids to {args.out}")


if __name__ == "__main__":
    main()
