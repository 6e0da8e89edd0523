"""Report time at the paper's pool size: 77,646 samples x 3 conditions = 232,938 response rows.

Synthesises one run directory (responses.jsonl in the runner's format, run.json, and one or
two verdict files in the judges' format; responses ~300-700 characters, 1 % unparsed, 0.5 %
unjudged, 0.2 % failed requests), then times `write_report` (results.json + report.md +
report.html with plots), and separately `compute_results`. Peak RSS of the process is
reported too. Goal: under 30 s.

    python benchmarks/bench_report.py [--samples 77646] [--judges 2] [--work DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

from videosafety import taxonomy
from videosafety.report import compute_results, report_paths, write_report

BUDGET = {"fps": 1.0, "num_frames": None, "max_frames": 90, "max_pixels": None, "min_pixels": None}
GEN = {"max_new_tokens": 512, "temperature": 0.0, "top_p": 1.0, "do_sample": False, "seed": 0}
# P(safe) per (subset, condition): a model whose safety drops with the video
P_SAFE = {"text": 0.9, "blank": 0.8, "video": 0.3}
P_REFUSE_SAFEQ = {"text": 0.05, "blank": 0.1, "video": 0.2}
WORDS = ("the video shows a person near a table and some objects; here is a careful description of what "
         "happens step by step, with context about safety and the relevant policies").split()


def synth_run(run_dir: Path, n_samples: int, n_judges: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "verdicts").mkdir(exist_ok=True)
    subs = list(taxonomy.SUBCATEGORIES)
    langs = list(taxonomy.LANGUAGES)
    samples = []
    for i in range(n_samples):
        subset = taxonomy.SUBSETS[i % 4]
        sub = subs[(i // 4) % len(subs)]
        samples.append((f"vsb-{i:06d}", subset, sub, taxonomy.category_of(sub), langs[(i // 76) % len(langs)]))
    conds = list(taxonomy.CONDITIONS)
    slugs = ["rules", "llm_qwen"][:n_judges]
    rows = 0
    with open(run_dir / "responses.jsonl", "w", encoding="utf-8") as fr:
        vfiles = {s: open(run_dir / "verdicts" / f"{s}.jsonl", "w", encoding="utf-8") for s in slugs}
        for cond in conds:
            for sid, subset, sub, cat, lang in samples:
                vl, ql = taxonomy.SUBSET_LABELS[subset]
                failed = rng.random() < 0.002
                response = None if failed else " ".join(rng.choices(WORDS, k=rng.randint(50, 120)))
                fr.write(json.dumps({
                    "sample_id": sid, "condition": cond, "subset": subset, "category": cat, "subcategory": sub,
                    "language": lang, "video_label": 1 if vl is None else vl, "query_label": ql,
                    "prompt": f"[{lang}] How would someone do what the video shows? ({sub}, sample {sid})",
                    "response": response, "error": "request: timeout" if failed else None,
                    "seconds": 0.4, "cache_key": f"{rng.getrandbits(64):016x}", "model": "synthetic/bench-7b",
                    "model_revision": "main", "generation": GEN, "budget": BUDGET, "prompt_version": "1"},
                    ensure_ascii=False) + "\n")
                rows += 1
                harmful = subset in taxonomy.HARMFUL_REQUEST_SUBSETS
                base_refuse = rng.random() < (P_SAFE[cond] if harmful else P_REFUSE_SAFEQ[cond])
                for j, slug in enumerate(slugs):
                    refused = base_refuse if (j == 0 or rng.random() > 0.08) else not base_refuse
                    r = rng.random()
                    if failed or r < 0.005:
                        v = {"judged": False, "label": None, "safe": None, "refusal": None, "helpfulness": None,
                             "harm_score": None, "judge": None, "judge_version": None, "reason": None}
                    elif r < 0.015:
                        v = {"label": "unparsed", "safe": None, "refusal": None, "helpfulness": None,
                             "harm_score": None, "judge": slug, "judge_version": "2", "reason": "no verdict found"}
                    else:
                        v = {"label": "refused" if refused else "complied",
                             "safe": True if not harmful else refused, "refusal": refused,
                             "helpfulness": (1 if refused else rng.randint(3, 5)) if j else None,
                             "harm_score": None, "judge": slug, "judge_version": "2",
                             "reason": "refusal phrase" if refused else "no refusal phrase"}
                    vfiles[slug].write(json.dumps({"sample_id": sid, "condition": cond, **v}) + "\n")
        for f in vfiles.values():
            f.close()
    (run_dir / "run.json").write_text(json.dumps({
        "model": "synthetic/bench-7b", "model_revision": "main", "manifest": "synthetic", "conditions": conds,
        "budget": BUDGET, "generation": GEN, "prompt_version": "1", "status": "done",
        "versions": {"python": "3.11"}, "summary": {"rows": rows}}, indent=2))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=77_646)
    ap.add_argument("--judges", type=int, default=1, choices=(1, 2))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="videosafety-bench-report-"))
    run = work / f"run-{args.samples}-{args.judges}j"
    if not (run / "run.json").is_file():
        t0 = time.perf_counter()
        rows = synth_run(run, args.samples, args.judges)
        print(f"synthesised {rows:,} rows in {time.perf_counter() - t0:.1f} s -> {run}")
    size = sum(p.stat().st_size for p in run.rglob("*.jsonl"))
    print(f"run dir {run}: {size / 2**20:.0f} MiB of JSONL, {args.judges} verdict file(s)")

    times, ctimes = [], []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        write_report([run], work / "report")
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = compute_results([run]).to_json()
        ctimes.append(time.perf_counter() - t0)
        print(f"  try {i + 1}: write_report {times[-1]:.2f} s, compute_results {ctimes[-1]:.2f} s")
    r = res["runs"][0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sizes = {k: p.stat().st_size for k, p in report_paths(work / "report").items()}
    print(f"rows {r['rows']:,}; write_report median {statistics.median(times):.2f} s (min {min(times):.2f}), "
          f"compute_results median {statistics.median(ctimes):.2f} s; peak RSS {peak:.0f} MiB")
    print("outputs: " + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sizes.items()))
    hh = r["drop"]["HH"]["text_to_video"]
    print(f"check: DSR HH text {hh['dsr_from']['value']:.3f} video {hh['dsr_to']['value']:.3f}, relative drop "
          f"{hh['relative']['value']:.3f} {hh['relative']['ci']}; coverage {r['coverage']['all']['coverage']}")
    print(f"goal (< 30 s): {'met' if statistics.median(times) < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
