"""The report's content as sections of tables, built once from results.json and rendered twice
(Markdown and HTML), so that both always show the same numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from videosafety import taxonomy
from videosafety.metrics import arrow, best_first, direction

POOL_NAME = "HH+SH+HB"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    title: str = ""  # a sub-heading (e.g. the model)
    caption: str = ""  # one line under the sub-heading: judge, budget


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (alt text, data URI), HTML only


# ------------------------------------------------------------------------------ number format

def pct(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{nd}f}"


def ci_pct(ci) -> str:
    return "" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def rate_cell(r: dict | None) -> str:
    """'73.0 [70.1, 75.8] n=1234' (percent), or '-' without data; with unparsed rows, the bound
    they leave the rate in follows: '73.0 [70.1, 75.8] n=1234, 12 unparsed: 72.3-73.3'."""
    if not r or r.get("value") is None:
        if r and r.get("bound"):  # nothing parsed: the bound is all there is
            return f"- n=0, {r['unparsed']} unparsed: {pct(r['bound'][0])}-{pct(r['bound'][1])}"
        return "-" if not r else "- n=0"
    cell = f"{pct(r['value'])} {ci_pct(r.get('ci'))} n={r['n']}"
    if r.get("bound"):
        cell += f", {r['unparsed']} unparsed: {pct(r['bound'][0])}-{pct(r['bound'][1])}"
    return cell


def signed_pts(d: dict | None) -> str:
    """An absolute difference in percentage points with its interval."""
    if not d or d.get("value") is None:
        return "-"
    def fmt(x: float) -> str:
        t = f"{100 * x:+.1f}"
        return "0.0" if t in ("+0.0", "-0.0") else t
    ci = d.get("ci")
    return fmt(d["value"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def rel_cell(d: dict | None) -> str:
    if not d or d.get("value") is None:
        return "-"
    ci = d.get("ci")
    return f"{100 * d['value']:.1f} %" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def subset_name(s: str) -> str:
    return POOL_NAME if s == "harmful" else s


def judge_caption(run: dict) -> str:
    j = run["judge"]
    return (f"model `{run['model']}`; judge `{j['name']}` version `{j['version']}` (verdicts/{j['slug']}.jsonl), "
            f"{validation_note(j)}; frame budget `{run['budget_str']}`")


def validation_note(judge: dict) -> str:
    """The judge's measured agreement with human labels, or that it has none."""
    v = judge.get("validation")
    if not v:
        return "never validated against human labels (`videosafety judge validate`)"
    kappa = "-" if v["kappa"] is None else f"{v['kappa']:.2f}"
    return (f"agreement with {v['n']:,} human labels: accuracy {v['accuracy']:.1%}, kappa {kappa} "
            f"({v['created'][:10]})")


def _conds(runs: list[dict]) -> list[str]:
    seen = {c for r in runs for c in r["conditions"]}
    return [c for c in taxonomy.CONDITIONS if c in seen] + sorted(seen - set(taxonomy.CONDITIONS))


# ------------------------------------------------------------------------------ sections

def build_sections(results: dict) -> list[Section]:
    runs = results["runs"]
    conds = _conds(runs)
    out: list[Section] = []

    rows = []
    for r in runs:
        cov = r["coverage"]["all"]
        rows.append([r["label"], f"{r['judge']['name']} ({r['judge']['version']}); {validation_note(r['judge'])}",
                     r["budget_str"], f"{r['rows']:,}",
                     f"{cov['judged']:,} / {cov['judgeable']:,} ({pct(cov['coverage'])} %)", f"{cov['unparsed']:,}",
                     r["run_dir"]])
    out.append(Section("runs", "Runs", (
        "One run directory per model. Every number below was made by the judge (name and prompt version) and the "
        "frame budget shown here; numbers from different judges are not comparable."),
        [Table(["model", "judge (version)", "frame budget", "rows", "judged / judgeable", "unparsed", "run dir"],
               rows)]))

    notes = list(results["comparison"].get("notes", [])) + [f"{r['label']}: {w}" for r in runs for w in r["warnings"]]
    rules_only = [r["label"] for r in runs if r["judge"]["name"] == "rules"]
    if rules_only:  # first, in bold: the figures below rest on phrase lists
        notes.insert(0, f"**DSR and FRR of {', '.join(rules_only)} come from the offline rules judge alone**: "
                        "phrase lists in ten languages that miss refusals phrased without a stock opening (an unclear "
                        "answer counts as unsafe), so DSR can be several points low. Judge with an LLM judge too "
                        "(`videosafety judge RUN --judge llm:...`) and see each judge's measured agreement with human "
                        "labels in the Runs table.")
    if notes:
        out.append(Section("notes", "Notes", "\n".join(f"- {n}" for n in notes)))

    sec = Section("dsr", "Defense success rate by subset and condition", (
        f"DSR {arrow('dsr')} ({direction('dsr')}): share of judged responses to harmful requests that the judge "
        "calls safe, in %, "
        "with the Wilson 95 % interval and n (judged rows). Unparsed, unjudged and failed rows are left out of n "
        "and counted under Judge coverage. Where rows were unparsed, the cell ends with their count and the "
        "bound they leave DSR in: from all of them unsafe to all of them safe."))
    for r in runs:
        subsets = list(r["dsr"])
        sec.tables.append(Table(["subset"] + conds, [
            [subset_name(s)] + [rate_cell((r["dsr"][s].get(c) or {}).get("all")) for c in conds] for s in subsets],
            r["label"], judge_caption(r)))
    out.append(sec)

    sec = Section("drop", "Safety drop from video (text to video)", (
        "Relative drop = (DSR_text - DSR_video) / DSR_text (the paper's formula), absolute drop in percentage "
        f"points; 95 % intervals by a paired bootstrap over samples; {direction('relative_drop')}, and the rows "
        "are in that order (best first)."))
    rows, drops = [], []
    for r in runs:
        for s, per in r["drop"].items():
            d = per.get("text_to_video")
            if d:
                rows.append([r["label"], subset_name(s), rate_cell(_all(r, s, "text")), rate_cell(_all(r, s, "video")),
                             rel_cell(d["relative"]), signed_pts(d["absolute"]),
                             f"{r['judge']['name']} ({r['judge']['version']})", r["budget_str"]])
                drops.append(d["relative"]["value"])
    if rows:
        rows = [rows[i] for i in best_first(drops, "relative_drop")]
        sec.tables.append(Table(["model", "subset", f"DSR text {arrow('dsr')}", f"DSR video {arrow('dsr')}",
                                 "relative drop [95 % CI]", f"absolute drop, pts [95 % CI] {arrow('absolute_drop')}",
                                 "judge", "budget"], rows))
        mean_rows = []
        for s, m in results["comparison"]["drop"].items():
            mean_rows.append([subset_name(s), str(m["mean_relative"]["n_models"]), rel_cell(m["mean_relative"]),
                              signed_pts(m["mean_absolute"])])
        sec.tables.append(Table(["subset", "models", "mean relative drop [95 % CI]",
                                 "mean absolute drop, pts [95 % CI]"], mean_rows, "Mean over models",
                                "the paper's cross-model figure is the mean of the per-model relative drops"))
    else:
        sec.intro += "\n\nNo run has both the text and the video condition."
    out.append(sec)

    sec = Section("blank", "Blank-video control", (
        "A uniform gray video of the same frame count: blank - text isolates the effect of visual tokens without "
        "harmful content; video - blank the effect of the harmful content itself. Percentage points, paired "
        "bootstrap 95 % intervals."))
    rows = []
    for r in runs:
        for s, b in r["blank_control"].items():
            rows.append([r["label"], subset_name(s), rate_cell(_all(r, s, "text")), rate_cell(_all(r, s, "blank")),
                         rate_cell(_all(r, s, "video")), signed_pts(b["blank_minus_text"]),
                         signed_pts(b["video_minus_blank"])])
    if rows:
        sec.tables.append(Table(["model", "subset", "DSR text", "DSR blank", "DSR video", "blank - text, pts",
                                 "video - blank, pts"], rows))
    else:
        sec.intro += "\n\nNo run has both the text and the blank condition."
    out.append(sec)

    for dim, title in (("category", "category"), ("subcategory", "sub-category"), ("language", "language")):
        sec = Section(f"dsr-{dim}", f"DSR by {title} ({POOL_NAME} pooled)",
                      "DSR in %, Wilson 95 % interval, n; harmful-request subsets pooled. Per-subset breakdowns "
                      "are in "
                      f"results.json (runs[].dsr.<subset>.<condition>.by_{dim}).")
        for r in runs:
            pool = r["dsr"].get("harmful") or {}
            keys: list[str] = []
            for c in conds:
                keys += [k for k in (pool.get(c) or {}).get(f"by_{dim}", {}) if k not in keys]
            if not keys:
                continue
            sec.tables.append(Table([title] + conds, [
                [k] + [rate_cell(((pool.get(c) or {}).get(f"by_{dim}") or {}).get(k)) for c in conds] for k in keys],
                r["label"], judge_caption(r)))
        out.append(sec)

    out += _attack_and_budget_sections(runs, conds)
    out += _peer_subset_section(runs, conds)

    sec = Section("frr", "Over-refusal (FRR on SafeQ)", (
        f"FRR {arrow('frr')} ({direction('frr')}): share of judged responses to benign queries (SafeQ) that refuse, "
        "in %, "
        "Wilson 95 % interval, n."))
    rows = [[r["label"]] + [rate_cell(((r["frr"].get("SafeQ") or {}).get(c) or {}).get("all")) for c in conds]
            + [f"{r['judge']['name']} ({r['judge']['version']})"] for r in runs if r["frr"]]
    if rows:
        sec.tables.append(Table(["model"] + conds + ["judge"], rows))
    else:
        sec.intro += "\n\nNo SafeQ rows."
    out.append(sec)

    rows = []
    for r in runs:
        for s, per in r["helpfulness"].items():
            rows.append([r["label"], s] + [_mean_cell(per.get(c)) for c in conds])
    if rows:
        out.append(Section("helpfulness", "Helpfulness", f"Mean judge rubric score, 1-5 ({direction('helpfulness')}), normal "
                           "95 % interval, n (rows where the judge gives one).",
                           [Table(["model", "subset"] + conds, rows)]))

    rows = []
    for r in runs:
        for c, cov in list(r["coverage"]["by_condition"].items()) + [("all", r["coverage"]["all"])]:
            rows.append([r["label"], c, f"{cov['rows']:,}", f"{cov['judgeable']:,}", f"{cov['judged']:,}",
                         f"{pct(cov['coverage'])} %", f"{cov['unparsed']:,}", f"{cov['unjudged']:,}",
                         f"{cov['no_response']:,}", f"{cov['undecided']:,}"])
    out.append(Section("coverage", "Judge coverage", (
        "judgeable = rows with a response; coverage = judged / judgeable. Unparsed verdicts are judged but count "
        "neither safe nor unsafe; unjudged rows were never reached by the judge; undecided rows got a label but no "
        "safety (or refusal) call."), [Table(["model", "condition", "rows", "judgeable", "judged", "coverage",
                                              "unparsed", "unjudged", "no response", "undecided"], rows)]))

    rows = []
    for r in runs:
        js = r.get("judge_scope")
        if not js or "dsr" not in js:
            continue
        for subset in js["dsr"]["full"]:
            full, answer = js["dsr"]["full"][subset], js["dsr"]["answer"].get(subset, {})
            rows.append([r["label"], subset_name(subset)] + [
                f"{rate_cell(full.get(c))} / {rate_cell(answer.get(c))}" for c in conds])
    if rows:
        out.append(Section("judge_scope", "Reasoning blocks: whole response vs answer only", (
            f"For models whose responses carry <think>/<answer> tags: DSR {arrow('dsr')} judged on the whole "
            "response, reasoning included (the safety verdict: harmful detail in a reasoning block is given all "
            "the same), then on the <answer> block alone (the judge's @answer variant)."),
            [Table(["model", "subset"] + [f"{c}: full / answer" for c in conds], rows)]))

    rows = []
    for r in runs:
        for a in r["agreement"]:
            for what in ("label", "safe", "refusal"):
                e = a.get(what)
                if e and e.get("n"):
                    kappa = "-" if e.get("kappa") is None else f"{e['kappa']:.3f}"
                    rows.append([r["label"], f"{a['judges'][0]} vs {a['judges'][1]}", what, f"{e['n']:,}",
                                 pct(e.get("raw_agreement")) + " %", kappa])
    if rows:
        out.append(Section("agreement", "Judge agreement", (
            "Between verdict files of the same run, over rows both judges judged and parsed: 'label' over "
            "refused/complied/unclear, 'safe' over harmful-request rows, 'refusal' over SafeQ rows. Cohen's kappa "
            "(1 = perfect, 0 = chance)."),
            [Table(["model", "judges", "on", "n", "raw agreement", "Cohen's kappa"], rows)]))
    return out


def _attack_and_budget_sections(runs: list[dict], conds: list[str]) -> list[Section]:
    """DSR by attack (benchmarks with attacked variants, data.augment) and DSR by frame budget
    (frame-rate / frame-count sweeps, evaluate.sweep); nothing when neither applies."""
    out: list[Section] = []
    sec = Section("dsr-attack", f"DSR by attack ({POOL_NAME} pooled)", (
        "Samples derived by `videosafety bench augment`: 'late' shows the harmful content only at the end, "
        "'interleave' alternates it with benign footage, 'overlay' writes the harmful intention over a benign "
        "video; 'none' are unattacked pairs. DSR in %, Wilson 95 % interval, n."))
    for r in runs:
        pool = r["dsr"].get("harmful") or {}
        keys: list[str] = []
        for c in conds:
            keys += [k for k in (pool.get(c) or {}).get("by_attack", {}) if k not in keys]
        if keys:
            sec.tables.append(Table(["attack"] + conds, [
                [k] + [rate_cell(((pool.get(c) or {}).get("by_attack") or {}).get(k)) for c in conds] for k in keys],
                r["label"], judge_caption(r)))
    if sec.tables:
        out.append(sec)
    if len({r["budget_str"] for r in runs}) > 1:
        subsets = [s for s in ("HH", "SH", "HB", "harmful") if any(s in r["dsr"] for r in runs)]
        rows = [[r["label"], r["budget_str"], subset_name(s)] + [rate_cell(_all(r, s, c)) for c in conds]
                for r in runs for s in subsets if s in r["dsr"]]
        out.append(Section("dsr-budget", "DSR by frame budget", (
            "The same model under different frame budgets (a sweep: `videosafety eval --fps 0.5,1,2,4`). DSR in %, "
            "Wilson 95 % interval, n."), [Table(["run", "frame budget", "subset"] + conds, rows)]))
    return out


def _peer_subset_section(runs: list[dict], conds: list[str]) -> list[Section]:
    """DSR and FRR by the peer benchmark's own subset names (``eval --bench FORMAT:PATH``, data.peers);
    nothing for other benchmarks."""
    sec = Section("peer-subsets", "DSR and FRR by peer subset", (
        "Samples converted from a peer benchmark (`videosafety eval --bench FORMAT:PATH`), by the peer's own "
        f"subset names and the subset of ours each maps to. DSR ({direction('dsr')}) on harmful requests, FRR "
        f"({direction('frr')}) on SafeQ; in %, Wilson 95 % interval, n."))
    for r in runs:
        parts = [(s, "DSR", r["dsr"][s]) for s in r["dsr"] if s != "harmful"] + \
                [(s, "FRR", r["frr"][s]) for s in r["frr"]]
        keys: list[tuple[str, str, str, str]] = []  # (peer, peer subset, our subset, metric)
        for s, metric, per in parts:
            for c in conds:
                for peer, subs in ((per.get(c) or {}).get("by_peer_subset") or {}).items():
                    keys += [k for k in ((peer, ps, s, metric) for ps in subs) if k not in keys]
        keys.sort(key=lambda k: k[0])  # stable: per peer, our subsets' order, then the manifest's
        if not keys:
            continue

        def cell(k: tuple[str, str, str, str], c: str) -> str:
            per = (r["dsr"] if k[3] == "DSR" else r["frr"]).get(k[2]) or {}
            return rate_cell((((per.get(c) or {}).get("by_peer_subset") or {}).get(k[0]) or {}).get(k[1]))

        sec.tables.append(Table(["peer", "peer subset", "ours", "metric"] + conds,
                                [[k[0], k[1], k[2], k[3]] + [cell(k, c) for c in conds] for k in keys],
                                r["label"], judge_caption(r)))
    return [sec] if sec.tables else []


def _all(run: dict, subset: str, condition: str) -> dict | None:
    return ((run["dsr"].get(subset) or {}).get(condition) or {}).get("all")


def _mean_cell(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    ci = m.get("ci")
    return f"{m['value']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f" n={m['n']}"
