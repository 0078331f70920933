"""The card's figures, drawn with matplotlib's Agg backend: the funnel, the lengths of x
and y per split, and each critic score's histogram with its thresholds marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

KEPT, DROP, ACCENT = "#2b6cb0", "#e2e8f0", "#c53030"
SPLIT_COLORS = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def funnel(rows: list[dict[str, Any]], path: Path) -> None:
    """One bar per stage, the count and the share of generated written on it."""
    plt = _plt()
    first = rows[0]["count"] or 1
    labels = [r["stage"].replace("critic:", "critic: ").replace("dedup:", "dedup: ") for r in rows]
    counts = [r["count"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [first] * len(rows), color=DROP, height=0.7)
    ax.barh(y, counts, color=KEPT, height=0.7)
    for yi, c in zip(y, counts):
        inside = c > 0.35 * first
        ax.text(c - 0.01 * first if inside else c + 0.01 * first, yi, f"{c:,}  ({100 * c / first:.1f}%)",
                va="center", ha="right" if inside else "left", color="white" if inside else "#1a202c", fontsize=9)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, first * 1.02)
    ax.set_xlabel("records (grey: dropped so far)")
    ax.set_title("What each stage kept", loc="left", fontweight="bold")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def lengths(dd, path: Path) -> None:
    """Words in x and in y, one histogram per column, one step line per split."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    allw = [len(t.split()) for ds in dd.values() for col in ("input", "output") for t in ds[col]]
    hi = max(allw) if allw else 1
    lo = min(allw) if allw else 0
    bins = np.arange(lo, hi + 2, max(1, (hi - lo + 1) // 30)) if allw else 10
    for ax, col, title in zip(axes, ("input", "output"), ("x (input)", "y (output)")):
        for (split, ds), color in zip(dd.items(), SPLIT_COLORS):
            w = [len(t.split()) for t in ds[col]]
            if w:
                ax.hist(w, bins=bins, histtype="step", linewidth=1.8, color=color, density=True,
                        label=f"{split} (n={len(w):,}, median {int(np.median(w))})")
        ax.set_title(f"Length of {title}", loc="left", fontweight="bold")
        ax.set_xlabel("words")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(frameon=False, fontsize=8, loc="best")
    axes[0].set_ylabel("share of rows")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scores(filter_stats: dict[str, Any], path: Path) -> bool:
    """Histograms from the filter's ``stats.json`` (every record a critic judged, kept or
    not), with the thresholds each critic stated there as red dashed lines. Returns False
    when there is no score to draw."""
    from distill.corpus.card import thresholds as stated

    summaries, thresholds = filter_stats.get("scores", {}), stated(filter_stats)
    keys = [k for k, s in summaries.items() if s.get("histogram") and s.get("count")]
    if not keys:
        return False
    plt = _plt()
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    from matplotlib.ticker import MaxNLocator

    for ax, k in zip(axes.flat, keys):
        h = summaries[k]["histogram"]
        edges, counts = np.asarray(h["edges"]), np.asarray(h["counts"])
        lo, hi = float(edges[0]), float(edges[-1])
        title = k
        if hi - lo < 1e-6:  # every record scored the same: one visible bar, not a zero-width one
            ax.bar([lo], [counts.sum()], width=0.1 * (abs(lo) or 1), color=KEPT, alpha=0.85)
            lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
            title = f"{k} (every record: {float(edges[0]):g})"
        else:
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=KEPT, alpha=0.85, edgecolor="white")
        marks = thresholds.get(k, [])
        lo, hi = min([lo] + [v for _, v in marks]), max([hi] + [v for _, v in marks])
        pad = 0.06 * (hi - lo or 1)
        lo, hi = lo - pad, hi + pad
        for n, (op, v) in enumerate(marks):  # shade the side the critic drops; label the side it keeps
            keeps_above = op.startswith(">")
            right = (v - lo) < 0.7 * (hi - lo)  # the label goes right of its line unless that runs off the panel
            ax.axvspan(lo, v, color=ACCENT, alpha=0.07, lw=0) if keeps_above else ax.axvspan(v, hi, color=ACCENT,
                                                                                            alpha=0.07, lw=0)
            ax.axvline(v, color=ACCENT, linestyle="--", linewidth=1.6)
            ax.annotate(f"keep {op} {v:g}", (v, 1), xycoords=("data", "axes fraction"), xytext=(4 if right else -4, -4 - 14 * n),
                        textcoords="offset points", ha="left" if right else "right", va="top", color=ACCENT,
                        fontsize=8, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.9})
        ax.set_xlim(lo, hi)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, loc="left", fontweight="bold")
        ax.set_ylabel("records")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle("Critic scores of every judged record (dashed: thresholds; shaded: dropped)", x=0.01, ha="left",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
