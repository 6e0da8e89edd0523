"""Plots for the HTML report, as PNG bytes (matplotlib, Agg canvas, no pyplot global state, so
nothing opens a window and nothing needs a display or the network). Inputs are results.json
parts; a plot with nothing to show returns None."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from videosafety import taxonomy

COND_COLORS = {"text": "#4C72B0", "blank": "#8C8C8C", "video": "#C44E52"}
DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _pct(x: float | None) -> float:
    return math.nan if x is None else 100 * x


def _err(rates: Sequence[dict | None]) -> list[list[float]]:
    lo, hi = [], []
    for r in rates:
        if not r or r.get("value") is None or not r.get("ci"):
            lo.append(0.0)
            hi.append(0.0)
        else:
            lo.append(100 * (r["value"] - r["ci"][0]))
            hi.append(100 * (r["ci"][1] - r["value"]))
    return [lo, hi]


def _grouped_bars(ax, groups: Sequence[str], series: dict[str, list[dict | None]], colors: dict[str, str]) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, rates) in enumerate(series.items()):
        xs = [group + (i - (len(series) - 1) / 2) * width for group in range(len(groups))]
        ax.bar(xs, [_pct(r.get("value") if r else None) for r in rates], width, yerr=_err(rates),
               capsize=2, label=name, color=colors.get(name), error_kw={"elinewidth": 0.8, "alpha": 0.8})
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=25, ha="right")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def dsr_by_category(run: dict, subset: str = "harmful") -> bytes | None:
    """Bars: DSR per category, one bar per condition, Wilson 95 % error bars."""
    per_cond = run["dsr"].get(subset) or {}
    if not per_cond:
        return None
    cats = []
    for c in per_cond.values():
        cats += [k for k in c["by_category"] if k not in cats]
    cats = [c for c in taxonomy.CATEGORIES if c in cats] + [c for c in cats if c not in taxonomy.CATEGORIES]
    series = {cond: [per_cond[cond]["by_category"].get(cat) for cat in cats] for cond in per_cond}
    fig = Figure(figsize=(max(6.0, 1.1 * len(cats) + 2), 3.6))
    ax = fig.add_subplot()
    _grouped_bars(ax, [c.replace("_", " ") for c in cats], series, COND_COLORS)
    ax.set_ylabel("DSR (%)  higher is safer")
    ax.set_title(f"{run['label']}: DSR by category ({_subset_name(subset)})", fontsize=10)
    ax.legend(fontsize=8, ncols=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.32), frameon=False)
    return _png(fig)


def _subset_name(subset: str) -> str:
    return "HH+SH+HB pooled" if subset == "harmful" else subset


def category_language_heatmap(run: dict, condition: str = "video", subset: str = "harmful") -> bytes | None:
    """Heatmap: DSR per category (rows) x language (columns), cells annotated with % and n."""
    cell = (run["dsr"].get(subset) or {}).get(condition)
    if not cell or not cell["by_category_language"]:
        return None
    grid = cell["by_category_language"]
    cats = list(grid)
    langs_seen = {lang for v in grid.values() for lang in v}
    langs = [lang for lang in taxonomy.LANGUAGES if lang in langs_seen] + sorted(langs_seen - set(taxonomy.LANGUAGES))
    values = [[_pct((grid[c].get(lang) or {}).get("value")) for lang in langs] for c in cats]
    fig = Figure(figsize=(max(5.0, 0.75 * len(langs) + 3), max(2.5, 0.5 * len(cats) + 1.4)))
    ax = fig.add_subplot()
    cmap = LinearSegmentedColormap.from_list("dsr", ["#b2182b", "#f7f7f7", "#2166ac"]).with_extremes(bad="#dddddd")
    import numpy as np

    im = ax.imshow(np.ma.masked_invalid(np.array(values, dtype=float)), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i, c in enumerate(cats):
        for j, lang in enumerate(langs):
            r = grid[c].get(lang)
            if r and r.get("value") is not None:
                ax.text(j, i, f"{100 * r['value']:.0f}\nn={r['n']}", ha="center", va="center", fontsize=7,
                        color="black")
    ax.set_xticks(range(len(langs)))
    ax.set_xticklabels(langs)
    ax.set_yticks(range(len(cats)))
    ax.set_yticklabels([c.replace("_", " ") for c in cats], fontsize=8)
    ax.set_title(f"{run['label']}: DSR (%) by category x language, {condition}, {_subset_name(subset)}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="DSR (%)")
    return _png(fig)


def slope_chart(runs: Sequence[dict], subset: str = "HH") -> bytes | None:
    """One line per model from DSR text-only to DSR with the video (the paper's drop)."""
    pts = []
    for r in runs:
        d = (r["drop"].get(subset) or {}).get("text_to_video")
        if d and d["dsr_from"]["value"] is not None and d["dsr_to"]["value"] is not None:
            pts.append((r["label"], 100 * d["dsr_from"]["value"], 100 * d["dsr_to"]["value"], d["relative"]["value"]))
    if not pts:
        return None
    fig = Figure(figsize=(6.4, max(3.6, 0.32 * len(pts) + 2.5)))
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(pts))]
    for (label, t, v, rel), col in zip(pts, colors):
        ax.plot([0, 1], [t, v], marker="o", color=col, lw=2)
        ax.annotate(f"{t:.1f}", (0, t), xytext=(-8, 0), textcoords="offset points", ha="right", va="center",
                    fontsize=8, color=col)
        rel_txt = "" if rel is None else f" ({-100 * rel:+.1f} % rel.)"
        rel_txt = rel_txt.replace("+0.0 ", "0.0 ").replace("-0.0 ", "0.0 ")
        ax.annotate(f"{v:.1f} {label}{rel_txt}", (1, v), xytext=(8, 0), textcoords="offset points", ha="left",
                    va="center", fontsize=8, color=col)
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["text only", "with video"])
    ax.set_xlim(-0.35, 1.9)
    ax.set_ylim(-3, 103)
    ax.set_ylabel(f"DSR on {_subset_name(subset)} (%)")
    ax.set_title(f"Safety drop from video ({_subset_name(subset)}), per model", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png(fig)


def frr_bars(runs: Sequence[dict]) -> bytes | None:
    """Bars: FRR on SafeQ per model, one bar per condition, Wilson 95 % error bars."""
    conds = [c for c in taxonomy.CONDITIONS if any(c in (r["frr"].get("SafeQ") or {}) for r in runs)]
    runs = [r for r in runs if r["frr"].get("SafeQ")]
    if not runs or not conds:
        return None
    series = {c: [(r["frr"]["SafeQ"].get(c) or {}).get("all") for r in runs] for c in conds}
    fig = Figure(figsize=(max(5.0, 1.3 * len(runs) + 2), 3.4))
    ax = fig.add_subplot()
    _grouped_bars(ax, [r["label"] for r in runs], series, COND_COLORS)
    ax.set_ylabel("FRR on SafeQ (%)  lower is better")
    ax.set_title("Over-refusal: false refusal rate on benign queries", fontsize=10)
    ax.legend(fontsize=8, ncols=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.32), frameon=False)
    return _png(fig)


def budget_axis(budget: dict | None) -> tuple[str, float] | None:
    """("fps", rate) or ("frames", count) of a run's frame budget; None when unknown."""
    if not budget:
        return None
    if budget.get("num_frames"):
        return "frames", float(budget["num_frames"])
    if budget.get("fps"):
        return "fps", float(budget["fps"])
    return None


def dsr_vs_budget(runs: Sequence[dict], subset: str = "HH", condition: str = "video") -> bytes | None:
    """DSR against the frame rate (or frame count), one line per model, Wilson 95 % error bars:
    the frame-budget sweep (the paper observes that denser sampling lowers safety). None unless
    at least two budgets of one kind have a DSR."""
    series: dict[str, list[tuple[float, dict]]] = {}
    kinds = set()
    for r in runs:
        ax_val = budget_axis(r.get("budget"))
        rate = ((r["dsr"].get(subset) or {}).get(condition) or {}).get("all")
        if ax_val is None or not rate or rate.get("value") is None:
            continue
        kinds.add(ax_val[0])
        series.setdefault(r["model"], []).append((ax_val[1], rate))
    if len(kinds) != 1 or not any(len({x for x, _ in pts}) > 1 for pts in series.values()):
        return None
    kind = kinds.pop()
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    xs_all: set[float] = set()
    for i, (model, pts) in enumerate(series.items()):
        pts.sort(key=lambda p: p[0])
        xs = [x for x, _ in pts]
        xs_all.update(xs)
        rates = [r for _, r in pts]
        ax.errorbar(xs, [_pct(r["value"]) for r in rates], yerr=_err(rates), marker="o", capsize=3,
                    color=f"C{i % 10}", label=model)
        for x, r in pts:
            ax.annotate(f"n={r['n']}", (x, _pct(r["value"])), xytext=(4, -10), textcoords="offset points", fontsize=7)
    ax.set_xscale("log", base=2)
    ticks = sorted(xs_all)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("sampled frames per second" if kind == "fps" else "frames per video (uniform)")
    ax.set_ylabel(f"DSR on {_subset_name(subset)}, {condition} (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.set_title(f"Safety against the frame budget ({_subset_name(subset)}, {condition})", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)
