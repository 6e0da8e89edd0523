"""results.json: every figure of one or many evaluation runs, each with its N, its 95 %
interval, the judge (name and prompt version), the frame budget and the model that made it.

A run directory holds `run.json`, `responses.jsonl` and `verdicts/<judge-slug>.jsonl` (one
verdict row per response row, in the same order; see `videosafety.judges.base`). Rows are
streamed: memory grows with the number of samples (one small state per sample, for the paired
drop intervals), not with the rows' text.

Which verdict file: the `judge` argument names its slug (the file stem); without it, the only
file, or `rules` when there are several (the offline default judge). Every other verdict file
of the run is compared with it (Cohen's kappa, raw agreement).

Intervals: rates (DSR, FRR) use the Wilson score interval; mean helpfulness the
normal approximation; drops between two input conditions of one model a paired percentile
bootstrap over samples (2,000 resamples, seed 0); the mean drop over models combines the
models' bootstrap replicates (models independent)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from videosafety import __version__, tags, taxonomy
from videosafety.budget import FrameBudget
from videosafety.evaluate.rundir import RESPONSES, ResponseRow, Results, RunDir, RunError, VerdictRow, judge_slug
from videosafety.judges.validate import last_validation
from videosafety.metrics import (
    EXCLUDED, METRICS, MISSING_STATE, SAFE_STATE, UNSAFE_STATE, Mean, RateCounter, cohen_kappa, drop_bootstrap,
    UNPARSED_WARN_SHARE, mean_of_replicates, outcome_of, rate_question, raw_agreement, unparsed_share,
)

SCHEMA_VERSION = 1
DEFAULT_JUDGE = "rules"
HARMFUL_POOL = "harmful"  # HH + SH + HB pooled
N_RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
# Condition pairs whose paired drop is reported: the paper's text -> video drop, and the
# blank-video control split into text -> blank (more visual tokens, no harmful content) and
# blank -> video (the harmful visual content itself).
DROP_PAIRS = (("text", "video"), ("text", "blank"), ("blank", "video"))


class ReportError(ValueError):
    """A run directory that cannot be reported (names the file and what is wrong)."""


# ------------------------------------------------------------------------------ run discovery

def verdict_files(run_dir: str | Path) -> dict[str, Path]:
    """slug -> verdict file of a run, sorted by slug."""
    return RunDir(run_dir).verdict_files()


def choose_judge(run_dir: str | Path, judge: str | None = None) -> str:
    """The slug of the verdict file to report: `judge` when given, else the only file, else
    'rules' when there are several. Raises ReportError naming the files otherwise."""
    run = RunDir(run_dir)
    files = run.verdict_files()
    where = run.verdicts_dir
    if not files:
        raise ReportError(f"{where}: no verdict files (*.jsonl); judge the run first (videosafety judge)")
    if judge is not None:
        if judge not in files:
            raise ReportError(f"{where}: no verdicts of judge {judge!r}; found {sorted(files)}")
        return judge
    if len(files) == 1:
        return next(iter(files))
    if DEFAULT_JUDGE in files:
        return DEFAULT_JUDGE
    raise ReportError(f"{where}: several verdict files {sorted(files)} and none is {DEFAULT_JUDGE!r}; "
                      "name one with judge=...")


class _VerdictStream:
    """Verdict rows aligned with response rows. Files are written in the responses' order, so
    rows are read in lockstep; on the first row whose (sample_id, condition) differs, the rest
    of the file is indexed by key instead (and a warning says so)."""

    def __init__(self, run: RunDir, slug: str, warnings: list[str]):
        self.run, self.slug, self.warnings = run, slug, warnings
        self.path = run.verdicts_dir / f"{slug}.jsonl"
        self._rows = run.iter_verdicts(slug)
        self._index: dict[tuple[str, str], VerdictRow] | None = None
        self._short = False

    def get(self, sample_id: str, condition: str) -> VerdictRow | None:
        if self._index is None:
            row = next(self._rows, None)
            if row is None:
                if not self._short:
                    self._short = True
                    self.warnings.append(f"{self.path}: fewer rows than {RESPONSES}; the rest counts as unjudged")
                return None
            if row.sample_id == sample_id and row.condition == condition:
                return row
            self.warnings.append(f"{self.path}: rows not in {RESPONSES} order (first at sample "
                                 f"{row.sample_id!r}, condition {row.condition!r}); matched by "
                                 "(sample_id, condition) instead")
            self._rows.close()
            self._index = {(r.sample_id, r.condition): r for r in self.run.iter_verdicts(self.slug)}
        return self._index.get((sample_id, condition))

    def finish(self) -> None:
        if self._index is None and next(self._rows, None) is not None:
            self.warnings.append(f"{self.path}: more rows than {RESPONSES}; the extra rows are ignored")
        self._rows.close()


def _budget_str(budget: dict | None) -> str:
    if not budget:
        return "unknown"
    try:
        return FrameBudget(**budget).describe()
    except Exception:  # a budget written by another version: show it raw
        return json.dumps(budget, sort_keys=True)


def _round(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd) + 0.0  # + 0.0: no "-0.0" in reports


def _rate_dict(counter: RateCounter) -> dict:
    """A rate's figures; `bound` (metrics.unparsed_bound) only where rows were unparsed."""
    r = counter.rate(EXCLUDED)
    ci, bound = r.ci, r.bound
    return {"value": _round(r.value), "k": r.k, "n": r.n, "ci": [_round(ci[0]), _round(ci[1])] if ci else None,
            **({"bound": [_round(bound[0]), _round(bound[1])]} if bound else {}), **r.excluded}


def unparsed_warnings(metric: str, table: dict, threshold: float) -> list[str]:
    """A warning per (subset, condition) cell of a DSR / FRR table whose unparsed share exceeds
    `threshold`, with the bound the unparsed rows leave the rate in."""
    out = []
    for subset, per in table.items():
        for cond, b in per.items():
            cell = b["all"]
            u = cell.get("unparsed", 0)
            share = unparsed_share(cell["n"], u)
            if share > threshold:
                lo, hi = cell["bound"]
                out.append(f"{metric.upper()} {subset} {cond}: {u} of {cell['n'] + u} rows unparsed "
                           f"({100 * share:.1f} % > {100 * threshold:g} %): {metric.upper()} "
                           f"{100 * (cell['value'] or 0):.1f} % could lie anywhere in [{100 * lo:.1f}, {100 * hi:.1f}] %")
    return out


def _mean_dict(m: Mean) -> dict:
    ci = m.ci
    return {"value": _round(m.value, 4), "n": m.n, "ci": [_round(ci[0], 4), _round(ci[1], 4)] if ci else None}


def _rank(key, order) -> tuple[int, str]:
    order = list(order)
    return (order.index(key) if key in order else len(order), str(key))


def _ordered(keys, order: Sequence[str]) -> list:
    """keys in the vocabulary's order (taxonomy), unknown ones after, alphabetically."""
    return sorted(keys, key=lambda k: _rank(k, order))


# ------------------------------------------------------------------------------ one run

class _RunAccumulator:
    """Counts for one run, filled one row at a time."""

    def __init__(self, max_examples: int, conditions: Sequence[str]):
        self.rates: dict[tuple, RateCounter] = {}  # (metric, subset, condition, dim, value) -> counter
        self.help: dict[tuple[str, str], list[float]] = {}  # (subset, condition) -> [n, sum, sumsq]
        self.coverage: dict[str, Counter] = {}  # condition -> counts
        self.judges: Counter = Counter()  # (judge, version) of judged rows
        self.sample_index: dict[str, int] = {}
        self.sample_subset: list[str] = []
        self.states: dict[str, list[int]] = {}  # condition -> state per sample (harmful subsets)
        self.agreement: dict[tuple[str, str], dict[str, Counter]] = {}
        self.rows = 0
        self.attacks_seen = False  # any row from an attacked variant (data.augment)
        self.peers_seen = False  # any row from a converted peer benchmark (data.peers)
        self.max_examples = max_examples
        self.per_cell = max(1, -(-max_examples // max(1, len(taxonomy.SUBSETS) * max(1, len(conditions)))))
        self.examples: list[dict] = []
        self.example_cells: Counter = Counter()
        self.tagged = 0  # responses with reasoning/answer tags
        self.scope_rates: dict[tuple[str, str], RateCounter] = {}  # the other-scope judge's DSR cells

    def add_scope_partner(self, resp: ResponseRow, verdict: VerdictRow | None) -> None:
        """Count DSR (per subset and pooled, per condition) of the judge's other-scope variant."""
        question = rate_question(resp.subset)
        if question is None or question[0] != "dsr":
            return
        outcome = outcome_of(verdict, has_response=resp.has_response)
        value = verdict.safe if outcome == "ok" else None
        for subset_key in (resp.subset, HARMFUL_POOL):
            key = (subset_key, resp.condition)
            counter = self.scope_rates.get(key)
            if counter is None:
                counter = self.scope_rates[key] = RateCounter()
            counter.add(outcome, value)

    def _counter(self, key: tuple) -> RateCounter:
        counter = self.rates.get(key)
        if counter is None:
            counter = self.rates[key] = RateCounter()
        return counter

    def add(self, resp: ResponseRow, verdict: VerdictRow | None, others: dict[str, VerdictRow | None]) -> None:
        self.rows += 1
        subset, cond = resp.subset, resp.condition
        attack = resp.attack or "none"
        self.attacks_seen |= attack != "none"
        self.peers_seen |= bool(resp.peer)
        coverage = self.coverage.get(cond)
        if coverage is None:
            coverage = self.coverage[cond] = Counter()
        coverage["rows"] += 1

        outcome = outcome_of(verdict, has_response=resp.has_response)
        if resp.has_response:
            coverage["judgeable"] += 1
        if outcome in ("ok", "unparsed"):
            coverage["judged"] += 1
            self.judges[(verdict.judge, verdict.judge_version)] += 1
        if outcome != "ok":
            coverage[outcome] += 1

        question = rate_question(subset)
        value = getattr(verdict, question[1]) if question is not None and outcome == "ok" else None
        if question is not None and outcome == "ok" and value is None:
            outcome = "undecided"  # judged, but no call on what this subset's rate counts
        if question is not None:
            metric = question[0]
            subset_keys = (subset, HARMFUL_POOL) if metric == "dsr" else (subset,)
            dims = (("all", ""), ("category", resp.category), ("subcategory", resp.subcategory),
                    ("language", resp.language), ("category_language", (resp.category, resp.language)),
                    ("attack", attack))
            if resp.peer:  # the peer's own subset names (data.peers), kept per peer
                dims += (("peer_subset", (resp.peer, resp.peer_subset or "")),)
            for subset_key in subset_keys:
                for dim, dim_value in dims:
                    self._counter((metric, subset_key, cond, dim, dim_value)).add(outcome, value)
            if metric == "dsr":
                self._pair_state(resp.sample_id, subset, cond, outcome, value)

        if outcome == "ok" and verdict.helpfulness is not None:
            sums = self.help.get((subset, cond))
            if sums is None:
                sums = self.help[(subset, cond)] = [0, 0.0, 0.0]
            x = float(verdict.helpfulness)
            sums[0] += 1
            sums[1] += x
            sums[2] += x * x

        if others:
            self._agree(subset, verdict if outcome == "ok" else None, others)

        if len(self.examples) < self.max_examples and self.example_cells[(subset, cond)] < self.per_cell:
            self.example_cells[(subset, cond)] += 1
            self.examples.append({
                "sample_id": resp.sample_id, "condition": cond, "subset": subset, "category": resp.category,
                "subcategory": resp.subcategory, "language": resp.language, "prompt": resp.prompt,
                "response": resp.response, "error": resp.error, "outcome": outcome,
                "label": verdict.label if verdict else None, "safe": verdict.safe if verdict else None,
                "refusal": verdict.refusal if verdict else None,
                "helpfulness": verdict.helpfulness if verdict else None,
                "reason": (verdict.reason if verdict else None) or "",
            })

    def _pair_state(self, sample_id: str, subset: str, cond: str, outcome: str, value) -> None:
        """The sample's state in this condition, for the paired drop intervals."""
        idx = self.sample_index.get(sample_id)
        if idx is None:
            idx = self.sample_index[sample_id] = len(self.sample_subset)
            self.sample_subset.append(subset)
            for states in self.states.values():
                states.append(MISSING_STATE)
        states = self.states.get(cond)
        if states is None:
            states = self.states[cond] = [MISSING_STATE] * len(self.sample_subset)
        states[idx] = MISSING_STATE if outcome != "ok" else (SAFE_STATE if value else UNSAFE_STATE)

    def _agree(self, subset: str, primary: VerdictRow | None, others: dict[str, VerdictRow | None]) -> None:
        """Confusion tables between every two verdict files, over rows both judged and parsed."""
        rows = dict(others)
        rows["\0primary"] = primary
        usable = {k: v for k, v in rows.items() if v is not None and outcome_of(v) == "ok"}
        for a, b in combinations(sorted(usable), 2):
            va, vb = usable[a], usable[b]
            tables = self.agreement.get((a, b))
            if tables is None:
                tables = self.agreement[(a, b)] = {"label": Counter(), "safe": Counter(), "refusal": Counter()}
            tables["label"][(va.label, vb.label)] += 1
            question = rate_question(subset)
            if question is not None:
                x, y = getattr(va, question[1]), getattr(vb, question[1])
                if x is not None and y is not None:
                    tables[question[1]][(bool(x), bool(y))] += 1


def _collect_run(run_dir: Path, judge: str | None, max_examples: int,
                 unparsed_warn: float = UNPARSED_WARN_SHARE) -> tuple[dict, dict]:
    """(results of one run, internals: examples and bootstrap replicates)."""
    run = RunDir(run_dir)
    run_dir = run.path
    responses = run.responses_file
    if not run.has_responses():
        raise ReportError(f"{responses}: missing (is {run_dir} an evaluation run directory?)")
    try:
        info = run.read_info()
        slug = choose_judge(run_dir, judge)
        files = run.verdict_files()
        warnings: list[str] = []
        primary = _VerdictStream(run, slug, warnings)
        others = {s: _VerdictStream(run, s, warnings) for s in files if s != slug}
        tally = _RunAccumulator(max_examples, (info.conditions if info else None) or list(taxonomy.CONDITIONS))
        partner = _scope_partner(run, slug, files)
        first: ResponseRow | None = None
        budgets: set[str] = set()
        for resp in run.iter_responses(with_intentions=False):
            sid, cond = resp.sample_id, resp.condition
            if first is None:
                first = resp
            if resp.response is not None and tags.has_tags(resp.response):
                tally.tagged += 1
            if partner is not None:
                tally.add_scope_partner(resp, others[partner[0]].get(sid, cond))
            if resp.budget is not None and len(budgets) < 4:
                budgets.add(json.dumps(resp.budget, sort_keys=True))
            tally.add(resp, primary.get(sid, cond), {s: o.get(sid, cond) for s, o in others.items()} if others else {})
        for stream in (primary, *others.values()):
            stream.finish()
    except RunError as e:  # names the file, line and field
        raise ReportError(str(e)) from None
    if first is None:
        raise ReportError(f"{responses}: no rows")
    budget = (info.budget if info else None) or first.budget
    if len(budgets) > 1:
        warnings.append(f"{responses}: rows carry {len(budgets)} different frame budgets")

    # judge identity, from the verdicts themselves
    seen = [{"name": n, "version": v, "rows": c} for (n, v), c in tally.judges.most_common()]
    judge_info = {"slug": slug, "file": str(files[slug]), "name": seen[0]["name"] if seen else None,
                  "version": seen[0]["version"] if seen else None, "seen": seen,
                  "available": sorted(files)}
    if len(seen) > 1:
        warnings.append(f"{files[slug]}: verdicts from {len(seen)} judge versions: {seen}")
    if judge_info["name"] is not None:
        judge_info["validation"] = _validation_summary(judge_info["name"], judge_info["version"])

    present_conds = _ordered(tally.coverage, taxonomy.CONDITIONS)
    rates = tally.rates

    def breakdown(metric: str, subset: str, cond: str) -> dict | None:
        if (metric, subset, cond, "all", "") not in rates:
            return None
        out: dict[str, Any] = {"all": _rate_dict(rates[(metric, subset, cond, "all", "")])}
        for dim, order in (("category", list(taxonomy.CATEGORIES)), ("subcategory", list(taxonomy.SUBCATEGORIES)),
                           ("language", list(taxonomy.LANGUAGES))):
            vals = [k[4] for k in rates if k[0] == metric and k[1] == subset and k[2] == cond and k[3] == dim]
            out[f"by_{dim}"] = {v: _rate_dict(rates[(metric, subset, cond, dim, v)])
                                for v in _ordered(vals, order) if v is not None}
        cl: dict[str, dict] = {}
        pairs = [k[4] for k in rates if k[0] == metric and k[1] == subset and k[2] == cond
                 and k[3] == "category_language"]
        for c, lang in sorted(pairs, key=lambda p: (_rank(p[0], taxonomy.CATEGORIES), _rank(p[1], taxonomy.LANGUAGES))):
            cell = rates[(metric, subset, cond, "category_language", (c, lang))]
            cl.setdefault(str(c), {})[str(lang)] = _rate_dict(cell)
        out["by_category_language"] = cl
        if tally.attacks_seen:  # only for benchmarks with attacked variants: other results stay as they were
            vals = [k[4] for k in rates if k[0] == metric and k[1] == subset and k[2] == cond and k[3] == "attack"]
            out["by_attack"] = {v: _rate_dict(rates[(metric, subset, cond, "attack", v)])
                                for v in sorted(vals, key=lambda a: (a != "none", a))}
        if tally.peers_seen:  # only for converted peer benchmarks: {peer: {peer subset: rate}}, in manifest order
            ps: dict[str, dict] = {}
            for k in rates:
                if k[0] == metric and k[1] == subset and k[2] == cond and k[3] == "peer_subset":
                    ps.setdefault(str(k[4][0]), {})[str(k[4][1])] = _rate_dict(rates[k])
            out["by_peer_subset"] = ps
        return out

    subsets_seen = {k[1] for k in rates}
    dsr_keys = _ordered([s for s in subsets_seen if s in taxonomy.HARMFUL_REQUEST_SUBSETS], taxonomy.SUBSETS)
    if dsr_keys:
        dsr_keys.append(HARMFUL_POOL)
    dsr = {s: {c: b for c in present_conds if (b := breakdown("dsr", s, c)) is not None} for s in dsr_keys}
    frr = {"SafeQ": {c: b for c in present_conds if (b := breakdown("frr", "SafeQ", c)) is not None}} \
        if "SafeQ" in subsets_seen else {}
    warnings += unparsed_warnings("dsr", dsr, unparsed_warn) + unparsed_warnings("frr", frr, unparsed_warn)

    helpfulness: dict[str, dict] = {}
    for (s, c), (n, tot, tot2) in tally.help.items():
        helpfulness.setdefault(s, {})[c] = _mean_dict(Mean(int(n), tot, tot2))
    helpfulness = {s: helpfulness[s] for s in _ordered(helpfulness, taxonomy.SUBSETS)}
    helpfulness = {s: {c: v[c] for c in _ordered(v, taxonomy.CONDITIONS)} for s, v in helpfulness.items()}

    # paired drops between conditions, per subset and pooled
    drops: dict[str, dict] = {}
    replicates: dict[tuple[str, str, str], Any] = {}
    if tally.sample_subset:
        subset_codes = {s: i for i, s in enumerate(dsr_keys[:-1])}
        sub_arr = np.fromiter((subset_codes[s] for s in tally.sample_subset), dtype=np.int64,
                              count=len(tally.sample_subset))
        state_arr = {c: np.asarray(v, dtype=np.int64) for c, v in tally.states.items()}
        for a, b in DROP_PAIRS:
            if a not in state_arr or b not in state_arr:
                continue
            cells = sub_arr * 9 + state_arr[a] * 3 + state_arr[b]
            paired_counts = np.bincount(cells, minlength=9 * len(subset_codes)).reshape(len(subset_codes), 3, 3)
            for s in dsr_keys:
                table = paired_counts.sum(axis=0) if s == HARMFUL_POOL else paired_counts[subset_codes[s]]
                d = drop_bootstrap(table.tolist(), N_RESAMPLES, CONFIDENCE, SEED)
                replicates[(s, a, b)] = (d["replicates_relative"], d["replicates_absolute"])
                both = int(table[:2, :2].sum())
                drops.setdefault(s, {})[f"{a}_to_{b}"] = {
                    "from": a, "to": b,
                    "dsr_from": {"value": _round(d["a"].value), "k": d["a"].k, "n": d["a"].n},
                    "dsr_to": {"value": _round(d["b"].value), "k": d["b"].k, "n": d["b"].n},
                    "relative": {"value": _round(d["relative"]), "ci": _ci(d["relative_ci"])},
                    "absolute": {"value": _round(d["absolute"]), "ci": _ci(d["absolute_ci"])},
                    "n_paired": both,
                }
    blank_control = {}
    for s, per in drops.items():
        tb = per.get("text_to_blank")
        if tb is None:
            continue
        blank_control[s] = {
            "dsr_text": tb["dsr_from"], "dsr_blank": tb["dsr_to"],
            "dsr_video": per.get("blank_to_video", {}).get("dsr_to"),
            "blank_minus_text": _negate(tb["absolute"]),
            "video_minus_blank": _negate(per.get("blank_to_video", {}).get("absolute")),
        }

    judge_scope = _judge_scope(tally, judge_info["name"], partner, dsr, warnings)

    cov_out: dict[str, Any] = {}
    totals: Counter = Counter()
    for c in present_conds:
        cv = tally.coverage[c]
        totals.update(cv)
        cov_out[c] = _coverage_dict(cv)
    coverage = {"all": _coverage_dict(totals), "by_condition": cov_out}

    agreement = []
    for (a, b), tables in sorted(tally.agreement.items()):
        name_a = slug if a == "\0primary" else a
        name_b = slug if b == "\0primary" else b
        entry: dict[str, Any] = {"judges": [name_a, name_b]}
        for what, t in tables.items():
            entry[what] = {"n": sum(t.values()), "raw_agreement": _round(raw_agreement(t)),
                           "kappa": _round(cohen_kappa(t)),
                           "table": {f"{x}|{y}": n for (x, y), n in sorted(t.items(), key=str)}}
        agreement.append(entry)
    if others and not agreement:
        agreement = [{"judges": [slug, s], "label": {"n": 0}} for s in others]

    model = (info.model if info else None) or first.model or run_dir.name
    result = {
        "run_dir": str(run_dir), "model": model,
        "model_revision": (info.model_revision if info else None) or first.model_revision,
        "budget": budget, "budget_str": _budget_str(budget),
        "generation": (info.generation if info else None) or first.generation,
        "prompt_version": (info.prompt_version if info else None) or first.prompt_version,
        "manifest": info.manifest if info else None, "status": info.status if info else None,
        "versions": info.versions if info else None,
        "judge": judge_info, "conditions": present_conds, "rows": tally.rows,
        "coverage": coverage, "dsr": dsr, "frr": frr, "helpfulness": helpfulness,
        "drop": drops, "blank_control": blank_control, "agreement": agreement, "warnings": warnings,
        **({"judge_scope": judge_scope} if judge_scope else {}),
        "examples_shown": len(tally.examples),
    }
    return result, {"examples": tally.examples, "replicates": replicates, "per_cell": tally.per_cell}


def _scope_partner(run: RunDir, slug: str, files: dict[str, Path]) -> tuple[str, str] | None:
    """(slug, name) of the reported judge's other-scope variant (judges.run.scoped: NAME and
    NAME@answer) when the run has its verdicts, else None."""
    first = next(run.iter_verdicts(slug), None)
    if first is None:
        return None
    name, suffix = first.judge, tags.ANSWER_SCOPE_SUFFIX
    other = name[:-len(suffix)] if name.endswith(suffix) else name + suffix
    other_slug = judge_slug(other)
    return (other_slug, other) if other_slug in files and other_slug != slug else None


def _judge_scope(tally: _RunAccumulator, name: str | None, partner: tuple[str, str] | None,
                 dsr: dict, warnings: list[str]) -> dict | None:
    """For a run with tagged (reasoning) responses: DSR as judged on the whole response and on
    the <answer> block alone, side by side, when both judge variants' verdicts are there; a
    warning when only one is. None for a run without tagged responses."""
    if not tally.tagged or name is None:
        return None
    suffix = tags.ANSWER_SCOPE_SUFFIX
    scope = "answer" if name.endswith(suffix) else "full"
    if partner is None:
        other = "full" if scope == "answer" else "answer"
        warnings.append(f"{tally.tagged} tagged response(s) judged with scope {scope} only: judge them with "
                        f"--judge-scope {other} too to see DSR {'with' if other == 'full' else 'without'} the "
                        "reasoning blocks")
        return {"tagged_rows": tally.tagged, "judges": {scope: name}}
    own = {s: {c: b["all"] for c, b in per.items()} for s, per in dsr.items()}
    theirs: dict[str, dict] = {}
    for (s, c), counter in tally.scope_rates.items():
        theirs.setdefault(s, {})[c] = _rate_dict(counter)
    theirs = {s: {c: theirs[s][c] for c in _ordered(theirs[s], taxonomy.CONDITIONS)}
              for s in _ordered(theirs, [*taxonomy.SUBSETS, HARMFUL_POOL])}
    other = "full" if scope == "answer" else "answer"
    return {"tagged_rows": tally.tagged, "judges": {scope: name, other: partner[1]},
            "dsr": {scope: own, other: theirs}}


def _validation_summary(name: str, version: str) -> dict | None:
    """How far this judge version was measured to agree with human labels (judges.validate), or
    None when it never was."""
    found = last_validation(name, version)
    if found is None:
        return None
    view = found["views"]["partial_as_refused"]["all"]
    return {"n": found["n"], "accuracy": view["accuracy"], "kappa": view["kappa"], "partial": "as refused",
            "labels_file": found["labels_file"], "labels_sha256": found["labels_sha256"],
            "created": found["created"]}


def _ci(ci) -> list[float] | None:
    return None if ci is None else [_round(ci[0]), _round(ci[1])]


def _negate(d: dict | None) -> dict | None:
    if d is None:
        return None
    v, ci = d.get("value"), d.get("ci")
    return {"value": None if v is None else _round(-v), "ci": None if ci is None else [_round(-ci[1]), _round(-ci[0])]}


def _coverage_dict(c: Counter) -> dict:
    judgeable, judged = c["judgeable"], c["judged"]
    return {"rows": c["rows"], "judgeable": judgeable, "judged": judged,
            "coverage": _round(judged / judgeable) if judgeable else None,
            "unparsed": c["unparsed"], "unjudged": c["unjudged"], "no_response": c["no_response"],
            "undecided": c["undecided"]}


# ------------------------------------------------------------------------------ many runs

def _labels(runs: list[dict]) -> None:
    """A unique display label per run: the model name, with the run directory when repeated."""
    count = Counter(r["model"] for r in runs)
    used: set[str] = set()
    for r in runs:
        label = r["model"] if count[r["model"]] == 1 else f"{r['model']} ({Path(r['run_dir']).name})"
        base, i = label, 2
        while label in used:
            label, i = f"{base} #{i}", i + 1
        used.add(label)
        r["label"] = label


def _comparison(runs: list[dict], internals: list[dict]) -> dict:
    subsets = _ordered({s for r in runs for s in r["drop"]}, list(taxonomy.SUBSETS) + [HARMFUL_POOL])
    drop: dict[str, Any] = {}
    for s in subsets:
        per_model, reps_rel, reps_abs = [], [], []
        for r, inner in zip(runs, internals):
            d = r["drop"].get(s, {}).get("text_to_video")
            if d is None:
                continue
            per_model.append({"label": r["label"], "model": r["model"], "judge": r["judge"]["name"],
                              "judge_version": r["judge"]["version"], "budget": r["budget_str"],
                              "dsr_text": d["dsr_from"]["value"], "dsr_video": d["dsr_to"]["value"],
                              "n_text": d["dsr_from"]["n"], "n_video": d["dsr_to"]["n"],
                              "relative": d["relative"], "absolute": d["absolute"]})
            rel, ab = inner["replicates"].get((s, "text", "video"), (None, None))
            if d["relative"]["value"] is not None:
                reps_rel.append(rel)
            if d["absolute"]["value"] is not None:
                reps_abs.append(ab)
        rel_vals = [m["relative"]["value"] for m in per_model if m["relative"]["value"] is not None]
        abs_vals = [m["absolute"]["value"] for m in per_model if m["absolute"]["value"] is not None]
        drop[s] = {
            "per_model": per_model,
            "mean_relative": {"value": _round(sum(rel_vals) / len(rel_vals)) if rel_vals else None,
                              "ci": _ci(mean_of_replicates(reps_rel, CONFIDENCE)), "n_models": len(rel_vals)},
            "mean_absolute": {"value": _round(sum(abs_vals) / len(abs_vals)) if abs_vals else None,
                              "ci": _ci(mean_of_replicates(reps_abs, CONFIDENCE)), "n_models": len(abs_vals)},
        }
    judges = sorted({(r["judge"]["name"], r["judge"]["version"]) for r in runs}, key=str)
    budgets = sorted({r["budget_str"] for r in runs})
    notes = []
    if len(judges) > 1:
        notes.append(f"runs were judged by different judges or versions {judges}: their numbers are not comparable")
    if len(budgets) > 1:
        notes.append(f"runs used different frame budgets {budgets}")
    return {"drop": drop, "judges": [{"name": n, "version": v} for n, v in judges], "budgets": budgets,
            "notes": notes}


def collect(run_dirs: Sequence[str | Path] | str | Path, judge: str | None = None,
            max_examples: int = 200, unparsed_warn: float = UNPARSED_WARN_SHARE) -> tuple[Results, list[dict]]:
    """(results, per run: the examples the HTML shows and the drops' bootstrap replicates)."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ReportError("no run directories given")
    runs, internals = [], []
    for d in run_dirs:
        r, inner = _collect_run(Path(d), judge, max_examples, unparsed_warn)
        runs.append(r)
        internals.append(inner)
    _labels(runs)
    results = {
        "schema_version": SCHEMA_VERSION,
        "videosafety_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "judge_requested": judge,
        "confidence": CONFIDENCE,
        "intervals": {
            "rates": "Wilson score interval, z = 1.96 (DSR, FRR, per cell)",
            "helpfulness": "normal approximation, mean +- 1.96 sd / sqrt(n)",
            "drops": f"paired percentile bootstrap over samples ({N_RESAMPLES} resamples, seed {SEED}); "
                     "samples unjudged/unparsed in a condition leave that condition's DSR",
            "mean_over_models": "mean of the models' bootstrap replicates (models independent), percentile",
        },
        "units": "rates, drops and differences are fractions (0.734 = 73.4 %, an absolute drop of "
                 "0.1 = 10 percentage points); helpfulness is on the judge's 1-5 scale",
        "metrics": {k: asdict(m) for k, m in METRICS.items()},
        "runs": runs,
        "comparison": _comparison(runs, internals),
    }
    return Results.model_validate(results), internals


def compute_results(run_dirs: Sequence[str | Path] | str | Path, judge: str | None = None,
                    unparsed_warn: float = UNPARSED_WARN_SHARE) -> Results:
    """All figures of one or many runs (one run directory per model).

    judge: the verdict file slug to report (RUN_DIR/verdicts/<slug>.jsonl); default: the only
    one, or 'rules' when a run has several. See the module docstring for the intervals."""
    return collect(run_dirs, judge, max_examples=0, unparsed_warn=unparsed_warn)[0]
