"""report.html: one self-contained page (inline CSS, plots as base64 PNG, no script, no font or
file fetched from anywhere), rendered from templates/report.html.j2 with autoescaping on."""

from __future__ import annotations

import re

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from videosafety.report import plots
from videosafety.report.tables import Section, subset_name

TEMPLATE = "report.html.j2"
RESPONSE_CHARS = 4000  # per response shown; the full text stays in responses.jsonl


def _code(text: str) -> Markup:
    """`x` -> <code>x</code>, after escaping everything else."""
    return Markup(re.sub(r"`([^`]*)`", r"<code>\1</code>", str(escape(text))))


def _env() -> Environment:
    env = Environment(loader=PackageLoader("videosafety.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["code"] = _code
    return env


def attach_plots(results: dict, sections: list[Section]) -> None:
    """Put each plot into the section it illustrates."""
    runs = results["runs"]
    by_id = {s.id: s for s in sections}

    def add(section_id: str, alt: str, png: bytes | None) -> None:
        if png is not None and section_id in by_id:
            by_id[section_id].images.append((alt, plots.data_uri(png)))

    subsets = [s for s in ("HH", "SH", "HB", "harmful") if any(s in r["drop"] for r in runs)]
    for s in subsets[:1] + [x for x in subsets[1:] if x == "harmful"]:
        add("drop", f"Slope chart: DSR text only to with video per model, {subset_name(s)}", plots.slope_chart(runs, s))
    for r in runs:
        add("dsr-category", f"Bar chart: DSR by category, {r['label']}", plots.dsr_by_category(r))
    for r in runs:
        pooled = r["dsr"].get("harmful") or {}
        cond = "video" if "video" in pooled else next(iter(pooled), None)
        if cond:
            add("dsr-language", f"Heatmap: DSR by category and language, {cond}, {r['label']}",
                plots.category_language_heatmap(r, cond))
    add("frr", "Bar chart: false refusal rate on SafeQ per model and condition", plots.frr_bars(runs))
    for s in [x for x in ("HH", "harmful") if any(x in r["dsr"] for r in runs)][:1]:
        add("dsr-budget", f"Line chart: DSR ({subset_name(s)}, video) against the frame budget",
            plots.dsr_vs_budget(runs, s, "video"))


def render_html(results: dict, sections: list[Section], examples: dict[str, dict], max_responses: int) -> str:
    """examples: run label -> {"rows": [...], "shown": int, "total": int, "per_cell": int}."""
    attach_plots(results, sections)
    for ex in examples.values():
        for row in ex["rows"]:
            text = row.get("response")
            if text is not None and len(text) > RESPONSE_CHARS:
                row["response"] = text[:RESPONSE_CHARS]
                row["truncated"] = len(text)
    return _env().get_template(TEMPLATE).render(results=results, sections=sections, examples=examples,
                                                response_chars=RESPONSE_CHARS, max_responses=max_responses)
