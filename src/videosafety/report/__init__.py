"""Reports of evaluation runs: results.json (every figure with N, interval, judge, budget and
model), report.md and a self-contained report.html with plots and the responses behind a
content warning.

    from videosafety.report import write_report
    paths = write_report(["runs/model-a", "runs/model-b"], "reports/ab", judge=None)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from videosafety.evaluate.rundir import Results, report_paths, write_atomic
from videosafety.report.html import render_html
from videosafety.report.markdown import render_markdown
from videosafety.report.results import DEFAULT_JUDGE, ReportError, choose_judge, collect, compute_results, verdict_files
from videosafety.report.tables import build_sections

MAX_RESPONSES = 200  # responses shown per model in report.html

__all__ = ["DEFAULT_JUDGE", "MAX_RESPONSES", "ReportError", "Results", "choose_judge", "compute_results",
           "report_paths", "verdict_files", "write_report"]


def write_report(run_dirs: Sequence[str | Path] | str | Path, out_dir: str | Path, judge: str | None = None,
                 *, max_responses: int = MAX_RESPONSES, unparsed_warn: float | None = None) -> Results:
    """Write results.json, report.md and report.html for one or many runs (one run directory per
    model) into out_dir (`report_paths(out_dir)` names the files); returns the results.

    judge: verdict file slug (RUN_DIR/verdicts/<slug>.jsonl) to report; default: the only one,
    or 'rules' when a run has several. max_responses: how many responses per model the HTML
    shows (spread over subset x condition, in file order). unparsed_warn: the unparsed share of a
    DSR / FRR cell above which the report warns (default metrics.UNPARSED_WARN_SHARE, 2 %)."""
    kw = {} if unparsed_warn is None else {"unparsed_warn": unparsed_warn}
    results, internals = collect(run_dirs, judge, max_examples=max_responses, **kw)
    paths = report_paths(out_dir)
    paths["results"].parent.mkdir(parents=True, exist_ok=True)
    results.write(paths["results"])
    data = results.to_json()
    sections = build_sections(data)
    write_atomic(paths["markdown"], render_markdown(data, sections))
    examples = {r["label"]: {"rows": inner["examples"], "shown": len(inner["examples"]), "total": r["rows"],
                             "per_cell": inner["per_cell"], "judge": r["judge"]}
                for r, inner in zip(data["runs"], internals)}
    write_atomic(paths["html"], render_html(data, sections, examples, max_responses))
    return results
