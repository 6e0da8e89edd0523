"""report.md: the report's tables as GitHub-flavoured Markdown."""

from __future__ import annotations

from videosafety.report.tables import Section, Table


def _esc(cell: str) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def table_md(t: Table) -> str:
    lines = []
    if t.title:
        lines += [f"### {t.title}", ""]
    if t.caption:
        lines += [t.caption, ""]
    lines.append("| " + " | ".join(_esc(h) for h in t.headers) + " |")
    lines.append("| " + " | ".join("---" for _ in t.headers) + " |")
    lines += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def render_markdown(results: dict, sections: list[Section]) -> str:
    n = len(results["runs"])
    out = [
        "# VideoSafety evaluation report", "",
        f"Created {results['created']} by videosafety {results['videosafety_version']} from {n} run"
        f"{'s' if n != 1 else ''}. Rates and drops in %, differences in percentage points (pts). "
        f"Intervals are 95 %: {results['intervals']['rates']} for rates; {results['intervals']['drops']} for drops. "
        "All figures, with every breakdown (subset x condition x category, sub-category, language), are in "
        "results.json.", "",
    ]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        if sec.intro:
            out += [sec.intro, ""]
        for t in sec.tables:
            out += [table_md(t), ""]
    return "\n".join(out).rstrip() + "\n"
