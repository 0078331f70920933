"""Lexical constraints for the transformers backend: a logits processor that bans, per row and
step, every token that would make the generated y break its row's
:class:`~distill.generator.constraints.LexicalConstraint`.

The tokenizer's vocabulary is read once (:class:`Lexicon`): each token's text and its runs of
letters or digits (the words of ``constraints.WORD``). A row's state is the run its text ends
in, if any. A candidate token

- that starts with a character of the same class *continues* that run: the run so far plus the
  token's first run must stay a prefix of an allowed word (be a whole one, if the token ends it);
- that starts otherwise (a space, punctuation, the other class, EOS) *ends* the run, which must
  then be allowed whole (so "Pak" cannot stop short of x's "Pakistan");
- and every further run inside the token must be allowed on its own: that part depends only on
  x, so it is one mask per constraint, computed once (:class:`_Rules`).

Only tokens after the prompt are read, each row from its own tokens: a row's bans do not depend
on the other rows of its batch, so per-row seeded samples stay reproducible. Known gaps: a
word spelled with byte tokens that decode to partial characters is cut at them, and a row whose
every token is banned (never seen) is left unconstrained for that step.
"""

from __future__ import annotations

import re

from distill.generator.constraints import (CAPITAL_TIME_WORDS, FUNCTION_WORDS, NUMBER_WORDS, TIME_WORDS,
                                           LexicalConstraint, plausible_case)

_RUN = re.compile(r"(?P<L>[^\W\d_]+)|(?P<D>\d+)")
_UNIVERSE = set(NUMBER_WORDS) | TIME_WORDS | CAPITAL_TIME_WORDS  # every word a rule may ban


def runs(piece: str) -> list[tuple[str, str, bool]]:
    """(class "L" or "D", text, closed: something follows it in the piece) for each run."""
    return [(m.lastgroup, m.group(), m.end() < len(piece)) for m in _RUN.finditer(piece)]


def _prefixes(words) -> set[str]:
    return {w[:j] for w in words for j in range(1, len(w) + 1)}


class Lexicon:
    """What every token of a tokenizer looks like, read once per backend."""

    def __init__(self, tok, vocab_size: int | None = None, device: str = "cpu") -> None:
        import torch

        n = len(tok)
        self.size = max(vocab_size or n, n)  # the model's logits may be wider than the tokenizer
        special = set(tok.all_special_ids)
        toks = tok.convert_ids_to_tokens(list(range(n)))
        self.pieces: list[str] = []
        for i, t in enumerate(toks):
            if i in special or t is None:
                self.pieces.append("")
                continue
            p = tok.convert_tokens_to_string([t])
            if t.startswith("▁") and not p.startswith(" "):  # sentencepiece drops a leading space
                p = " " + p
            self.pieces.append(p)
        self.runs = [runs(p) for p in self.pieces]
        self.lead_index: dict[tuple[str, str, bool], list[int]] = {}
        lead = {"L": torch.zeros(self.size, dtype=torch.bool), "D": torch.zeros(self.size, dtype=torch.bool)}
        self.device = device
        self.starts = [bool(rs) and p[0] == rs[0][1][0] for p, rs in zip(self.pieces, self.runs)]
        #: (token, whether its first run starts it, its runs with an upper-case flag): the tokens
        #: with a run some rule may ban
        self.candidates: list[tuple[int, bool, list[tuple[str, str, bool, bool]]]] = []
        for i, rs in enumerate(self.runs):
            if self.starts[i]:
                cls, text, closed = rs[0]
                lead[cls][i] = True
                self.lead_index.setdefault((cls, text.lower(), closed), []).append(i)
            if any(c == "D" or t[0].isupper() or t.lower() in _UNIVERSE for c, t, _ in rs):
                self.candidates.append((i, self.starts[i], [(c, t, t[0].isupper(), cl) for c, t, cl in rs]))
        closer = ~(lead["L"] | lead["D"])  # tokens that end the current run
        closer[n:] = False  # ids past the tokenizer are never generated: leave them be
        self.lead = {k: v.to(device) for k, v in lead.items()}
        self.closer = closer.to(device)
        self._rules: dict[LexicalConstraint, _Rules] = {}
        self._first_ids: dict[str, tuple[int, int]] = {}
        self.tok = tok

    def starts_run(self, i: int) -> bool:
        """Whether token ``i`` begins with a letter or a digit."""
        return i < len(self.starts) and self.starts[i]

    def rules(self, c: LexicalConstraint) -> "_Rules":
        if c not in self._rules:
            if len(self._rules) > 4096:
                self._rules.clear()
            self._rules[c] = _Rules(self, c)
        return self._rules[c]

    def first_ids(self, name: str) -> tuple[int, int]:
        """The first token of `` name`` and of ``name`` (a name mid-sentence, and at the start)."""
        if name not in self._first_ids:
            a = self.tok(" " + name, add_special_tokens=False)["input_ids"]
            b = self.tok(name, add_special_tokens=False)["input_ids"]
            self._first_ids[name] = (a[0], b[0])
        return self._first_ids[name]


class _Rules:
    """One constraint compiled against one lexicon: which runs it bans, and the masks of tokens
    banned whatever the row's state."""

    def __init__(self, lex: Lexicon, c: LexicalConstraint) -> None:
        import torch

        self.lex, self.c = lex, c
        self.whole = {"L": set(c.words) | FUNCTION_WORDS, "D": set(c.numbers)}
        self.prefix = {k: _prefixes(v) for k, v in self.whole.items()}
        self.banned, self.capital_banned = set(c.banned), set(c.capital_banned)
        rest, fresh = [], []  # tokens with a later run banned / with their first run banned as a new word
        for i, starts, rs in lex.candidates:
            for j, (cls, text, upper, closed) in enumerate(rs):
                if self.bans(cls, text, upper, closed):
                    (fresh if j == 0 and starts else rest).append(i)
        self.rest = torch.zeros(lex.size, dtype=torch.bool)
        self.rest[rest] = True
        self.fresh = torch.zeros(lex.size, dtype=torch.bool)
        self.fresh[fresh] = True
        self.rest, self.fresh = self.rest.to(lex.device), self.fresh.to(lex.device)
        self._cont: dict[tuple[str, str, bool], tuple[bool, list[int]]] = {}
        self.boost = [(n.lower(), lex.first_ids(n)) for n in c.boost] if c.boost_value else []

    def constrained(self, cls: str, upper: bool) -> bool:
        return (cls == "D" and self.c.check_numbers) or (cls == "L" and upper and self.c.check_names)

    def bans(self, cls: str, text: str, upper: bool, closed: bool) -> bool:
        """Whether a run may not stand in y: ``closed`` when it is whole, else as a prefix."""
        if cls == "D":
            return self.c.check_numbers and text not in (self.whole["D"] if closed else self.prefix["D"])
        low = text.lower()
        if low in self.banned or (upper and low in self.capital_banned):
            return True  # a banned word is banned as soon as it is spelled out
        if not (self.c.check_names and upper):
            return False
        return low not in (self.whole["L"] if closed else self.prefix["L"]) or not plausible_case(text, self.c.cased)

    def continuations(self, cls: str, text: str, upper: bool) -> tuple[bool, list[int]]:
        """For a row in the middle of run ``text``: (True, the only same-class tokens allowed) for
        a constrained run, else (False, the same-class tokens banned)."""
        key = (cls, text, upper)
        if key not in self._cont:
            low, idx = text.lower(), self.lex.lead_index
            if self.constrained(cls, upper):
                pool, allow = self.whole[cls], True
            else:
                pool, allow = (self.banned | (self.capital_banned if upper else set())) if cls == "L" else set(), False
            ids: list[int] = []
            for w in pool:
                if len(w) > len(low) and w.startswith(low):
                    rem = w[len(low):]
                    for j in range(1, len(rem) + 1):
                        ids += idx.get((cls, rem[:j], False), [])
                    ids += idx.get((cls, rem, True), [])
            if allow and cls == "L":  # "Pa" + "Kistan" is not a spelling of x's word
                ids = [i for i in ids if plausible_case(text + self.lex.runs[i][0][1], self.c.cased)]
            self._cont[key] = (allow, ids)
        return self._cont[key]

    def mask(self, state: tuple[str, str, bool] | None):
        """The tokens banned for a row whose text ends in ``state`` (None: not inside a run)."""
        lex = self.lex
        if state is None:
            return self.rest | self.fresh
        cls, text, upper = state
        other = lex.lead["D" if cls == "L" else "L"]
        m = self.rest | (other & self.fresh)  # a run of the other class starts a new word
        if self.bans(cls, text, upper, closed=True):
            m |= lex.closer | other  # the run may not end here
        allow, ids = self.continuations(cls, text, upper)
        if allow:
            m |= lex.lead[cls]
            if ids:
                m[ids] = self.rest[ids]
        elif ids:
            m[ids] = True
        return m


class LexicalProcessor:
    """Logits processor: applies each row's constraint (None: the row is free) to the tokens
    generated after column ``prompt_width``; must run before sampling."""

    def __init__(self, lexicon: Lexicon, constraints: list[LexicalConstraint | None], prompt_width: int) -> None:
        self.lex, self.width, self.seen = lexicon, prompt_width, 0
        self.rules = [lexicon.rules(c) if c is not None else None for c in constraints]
        self.state: list[tuple[str, str, bool] | None] = [None] * len(constraints)
        self.pending = [{n for n, _ in r.boost} if r is not None else set() for r in self.rules]
        self.unconstrained_steps = 0  # rows left free for a step because every token was banned

    def _close(self, r: int) -> None:
        s = self.state[r]
        if s is not None and s[0] == "L":
            self.pending[r].discard(s[1].lower())
        self.state[r] = None

    def _consume(self, r: int, token: int) -> None:
        """Advance row ``r``'s state over the text of ``token``."""
        lex = self.lex
        rs = lex.runs[token] if token < len(lex.runs) else []
        s = self.state[r]
        if s is None or not lex.starts_run(token) or rs[0][0] != s[0]:
            self._close(r)  # the token ends the row's run, if it is in one
        for cls, text, closed in rs:
            s = self.state[r]
            self.state[r] = (cls, s[1] + text, s[2]) if s is not None else (cls, text, text[0].isupper())
            if closed:
                self._close(r)

    def __call__(self, input_ids, scores):
        new = input_ids[:, self.width + self.seen :].tolist()
        self.seen = input_ids.shape[1] - self.width
        for r, toks in enumerate(new):
            if self.rules[r] is not None:
                for t in toks:
                    self._consume(r, t)
        for r, rules in enumerate(self.rules):
            if rules is None:
                continue
            if self.pending[r]:
                for name, (mid, start) in rules.boost:
                    if name in self.pending[r]:
                        scores[r, mid] += rules.c.boost_value
                        if self.state[r] is None and start != mid:
                            scores[r, start] += rules.c.boost_value
            m = rules.mask(self.state[r])
            if bool(m[: len(self.lex.pieces)].all()):
                self.unconstrained_steps += 1
                continue
            scores[r].masked_fill_(m, float("-inf"))
        return scores
