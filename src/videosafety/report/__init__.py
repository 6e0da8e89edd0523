"""Reports of evaluation runs: results.json (every figure with N, interval, judge, budget and
model), report.md and a self-contained report.html with plots and the responses behind a
content warning.

    from videosafety.report import write_report
    paths = write_report(["runs/model-a", "runs/model-b"], "reports/ab", judge=None)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from videosafety.report.results import DEFAULT_JUDGE, ReportError, choose_judge, compute_results, verdict_files

MAX_RESPONSES = 200  # responses shown per model in report.html

__all__ = ["DEFAULT_JUDGE", "MAX_RESPONSES", "ReportError", "choose_judge", "compute_results", "verdict_files",
           "write_report"]


def write_report(run_dirs: Sequence[str | Path] | str | Path, out_dir: str | Path, judge: str | None = None,
                 *, max_responses: int = MAX_RESPONSES) -> dict[str, Path]:
    """Write results.json, report.md and report.html for one or many runs (one run directory per
    model) into out_dir; returns {"results": ..., "markdown": ..., "html": ...} paths.

    judge: verdict file slug (RUN_DIR/verdicts/<slug>.jsonl) to report; default: the only one,
    or 'rules' when a run has several. max_responses: how many responses per model the HTML
    shows (spread over subset x condition, in file order)."""
    from videosafety.report.html import render_html
    from videosafety.report.markdown import render_markdown
    from videosafety.report.results import _collect
    from videosafety.report.tables import build_sections

    results, internals = _collect(run_dirs, judge, max_examples=max_responses)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "markdown": out / "report.md", "html": out / "report.html"}
    _write(paths["results"], json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    _write(paths["markdown"], render_markdown(results, build_sections(results)))
    examples = {r["label"]: {"rows": inner["examples"], "shown": len(inner["examples"]), "total": r["rows"],
                             "per_cell": inner["per_cell"], "judge": r["judge"]}
                for r, inner in zip(results["runs"], internals)}
    _write(paths["html"], render_html(results, build_sections(results), examples, max_responses))
    return paths


def _write(path: Path, text: str) -> None:
    """Atomically: a report never stands half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
