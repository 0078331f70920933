"""Entity and content consistency: what y adds, drops or changes relative to x.

Rule-based, model-free (see shared/EVAL.md: pairs that add a name, change "yesterday" to
"today" or swap who said it keep length, overlap and embedding cosine in range). Five
checks, each with its own drop reasons:

| check | reasons |
|---|---|
| ``entities`` (names.py) | ``entity_added:Conservative Party``, ``entity_dropped:Howard``, ``entity_changed:Howard->Keating`` |
| ``numbers`` (timex.py) | ``number_added:4``, ``number_dropped:3``, ``number_changed:3->4`` |
| ``times`` (timex.py) | ``time_added:today``, ``time_dropped:on tuesday``, ``time_changed:yesterday->today`` |
| ``attribution`` (attribution.py) | ``attribution_added:police``, ``attribution_dropped:he``, ``attribution_changed:he->police`` |
| ``modality`` (timex.py) | ``modality_changed:hopes->believes`` |

A kind fails when y adds more than ``max_added`` or drops more than ``max_dropped`` of its
items; the checks run in the order above and the first failure is the reason. Every
check's counts go into record.scores (``ent_added``, ``ent_dropped``, ``num_added``,
``num_dropped``, ``time_added``, ``time_dropped``, ``time_mismatch``, ``attr_mismatch``,
``modality_mismatch``) with ``consistency``: the share of the items found on both sides
that match (1.0 when there are none).

Summaries (``max_dropped: null``): dropping is free, adding or changing is not. No drop
fails (an attribution that is only dropped neither: ``attr_mismatch`` counts only one y adds
or changes), drops are no issues in ``consistency``, and ``thresholds()`` leaves the dropped
bounds out. A summary drops most of its document's items, so an added item is reported as
changed only when the pairing is unambiguous: exactly one item of its kind (for times, of its
slot kind) was dropped (``number_changed:3->4``); otherwise it is added (``entity_added:Sydney``).

Decisions: a title or first name dropped or added around a kept surname is not a change
("Mr Howard" -> "Howard"); a lone number 1 is ignored unless ``count_one`` ("a man" ~
"one man"); a hedge dropped or added without a replacement is not a modality change.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from distill.critics.attribution import compare_attribution, frames
from distill.critics.base import Critic, Verdict
from distill.critics.names import Text
from distill.critics.timex import compare_times, modality_swap, quantities, times
from distill.record import Record

CHECKS = ("entities", "numbers", "times", "attribution", "modality")
DEFAULT_CHECKS = ("entities", "numbers", "times", "attribution", "modality")


def _num_key(v: str) -> tuple[Decimal, str]:
    try:
        return Decimal(v.rstrip("%")), v
    except InvalidOperation:
        return Decimal(0), v


def _reason(prefix: str, added: list[str], dropped: list[str]) -> str:
    if added and dropped:
        return f"{prefix}_changed:{dropped[0]}->{added[0]}"
    return f"{prefix}_added:{added[0]}" if added else f"{prefix}_dropped:{dropped[0]}"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class ConsistencyCritic(Critic):
    """See the module docstring. ``checks`` names the checks that may drop a pair (all
    scores are written either way)."""

    name = "entities"
    score_names = ("ent_added", "ent_dropped", "num_added", "num_dropped", "time_added", "time_dropped",
                   "time_mismatch", "attr_mismatch", "modality_mismatch", "consistency")

    def __init__(self, checks: list[str] | None = None, max_added: int = 0, max_dropped: int | None = 0,
                 count_one: bool = False, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        checks = list(DEFAULT_CHECKS if checks is None else checks)
        unknown = [c for c in checks if c not in CHECKS]
        if unknown:
            raise ValueError(f"checks: unknown check(s) {', '.join(map(str, unknown))}; known: {', '.join(CHECKS)}")
        for k, v in (("max_added", max_added), ("max_dropped", max_dropped)):
            if v is None and k == "max_dropped":  # None: dropping is free (summaries)
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{k} must be an integer >= 0, got {v!r}")
        self.checks, self.max_added, self.max_dropped, self.count_one = checks, max_added, max_dropped, count_one

    def thresholds(self) -> list[tuple[str, str, float]]:
        out: list[tuple[str, str, float]] = []
        for check, names in (("entities", ("ent_added", "ent_dropped")), ("numbers", ("num_added", "num_dropped")),
                             ("times", ("time_added", "time_dropped"))):
            if check in self.checks:
                out.append((names[0], "<=", float(self.max_added)))
                if self.max_dropped is not None:
                    out.append((names[1], "<=", float(self.max_dropped)))
        out += [(s, "<=", 0.0) for c, s in (("attribution", "attr_mismatch"), ("modality", "modality_mismatch"))
                if c in self.checks]
        return out

    @property
    def drops_free(self) -> bool:
        return self.max_dropped is None

    def _fails(self, added: list[Any], dropped: list[Any]) -> bool:
        return len(added) > self.max_added or (not self.drops_free and len(dropped) > self.max_dropped)

    def _reason(self, prefix: str, added: list[str], dropped: list[str]) -> str:
        if self.drops_free and added:  # a change only when one item of the kind went
            return _reason(prefix, added, dropped if len(dropped) == 1 else [])
        return _reason(prefix, added, dropped)

    def _issues(self, added: list[Any], dropped: list[Any]) -> int:
        return len(added) + (0 if self.drops_free else len(dropped))

    def judge(self, record: Record) -> Verdict:
        x, y, s = record.input, record.output, record.scores
        tx, ty = Text(x, other=y), Text(y, other=x)
        reasons: dict[str, str] = {}
        items = issues = 0

        ent_add = _unique([sp.text for sp in ty.spans if not tx.keeps(sp)])
        ent_drop = _unique([sp.text for sp in tx.spans if not ty.keeps(sp)])
        s["ent_added"], s["ent_dropped"] = float(len(ent_add)), float(len(ent_drop))
        if self._fails(ent_add, ent_drop):
            reasons["entities"] = self._reason("entity", ent_add, ent_drop)
        items += len(tx.spans) + len(ty.spans)
        issues += self._issues(ent_add, ent_drop)

        nx, ny = quantities(x), quantities(y)
        num_add = sorted(ny - nx, key=_num_key)
        num_drop = sorted(nx - ny, key=_num_key)
        if not self.count_one and not (num_add and num_drop):
            num_add, num_drop = [v for v in num_add if v != "1"], [v for v in num_drop if v != "1"]
        s["num_added"], s["num_dropped"] = float(len(num_add)), float(len(num_drop))
        if self._fails(num_add, num_drop):
            reasons["numbers"] = self._reason("number", num_add, num_drop)
        items += len(nx) + len(ny)
        issues += self._issues(num_add, num_drop)

        t_add, t_drop = compare_times(x, y)
        s["time_added"], s["time_dropped"] = float(len(t_add)), float(len(t_drop))
        s["time_mismatch"] = float(len(t_add) + len(t_drop))
        if self._fails(t_add, t_drop):
            # name a changed pair within one slot kind when there is one ("yesterday" -> "today")
            pair = next(((d, a) for d in t_drop for a in t_add if d.kind == a.kind
                         and not (self.drops_free and sum(o.kind == a.kind for o in t_drop) > 1)), None)
            reasons["times"] = (f"time_changed:{pair[0].text}->{pair[1].text}" if pair else
                                f"time_added:{t_add[0].text}" if self.drops_free else
                                _reason("time", [a.text for a in t_add], [d.text for d in t_drop]))
        items += len(times(x)) + len(times(y))
        issues += self._issues(t_add, t_drop)

        attr = compare_attribution(x, y, tx, ty, drops_free=self.drops_free)
        s["attr_mismatch"] = float(attr is not None)
        if attr:
            reasons["attribution"] = attr
        items += len(frames(x)) + len(frames(y))
        issues += attr is not None

        swap = modality_swap(x, y)
        s["modality_mismatch"] = float(swap is not None)
        if swap:
            reasons["modality"] = f"modality_changed:{swap[0]}->{swap[1]}"
            items, issues = items + 2, issues + 1

        s["consistency"] = max(0.0, 1.0 - issues / items) if items else 1.0
        for check in CHECKS:
            if check in self.checks and check in reasons:
                return False, reasons[check]
        return True
