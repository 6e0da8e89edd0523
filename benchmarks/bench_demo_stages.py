"""Why a `videosafety demo` run's model refuses or helps, stage by stage: the figures behind the
demo's per-stage table, read from a finished demo folder.

    python benchmarks/bench_demo_stages.py runs/demo [--heads] [--json OUT.json]

Prints, per stage:
- the records it trained on: how many, the share with a benign query (the target helps), the
  share per subset, of phrase views and of views without video; the records it dropped;
- with --heads, the harm heads' accuracy on the measured split's SafeQ samples (video condition:
  the video head should say harmful, the query head safe) and on HH, for each model that has
  heads (stage 2 on);
- for GRPO, the logged completions' rewards by subset: mean reward, the share of completions
  with both labels right, and the share of groups whose rewards all tie (no learning signal);
- the per-stage table of the demo (demo_summary.json);
- with --probe, how the base model and the final one answer VSB-mini's SafeQ questions without
  video, template by template (19 topics each, every language): refusals per train, val and
  eval template, for the bare topic, and for strings of benign words it never saw. A model that
  keys on wording refuses whole templates at once.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

from videosafety.demo import STAGE_NAMES, helps
from videosafety.train.pipeline import STAGE_ORDER


def record_mix(path: Path) -> dict:
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    subsets = Counter((r.get("provenance") or {}).get("subset") or r.get("kind") for r in rows)
    n = len(rows)
    return {"records": n,
            "helpful target": sum(helps(SimpleNamespace(provenance=r.get("provenance"))) for r in rows) / n,
            "phrase views": sum((r.get("provenance") or {}).get("view") == "phrase" for r in rows) / n,
            "without video": sum(not r.get("video") for r in rows) / n,
            "subsets": {k: round(v / n, 3) for k, v in sorted(subsets.items(), key=lambda kv: str(kv[0]))}}


def grpo_rewards(stage_dir: Path, data: Path) -> dict:
    subset_of = {}
    for line in open(data, encoding="utf-8"):
        r = json.loads(line)
        subset_of[r["id"]] = (r.get("provenance") or {}).get("subset") or r.get("problem_type")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    path = stage_dir / "completions.jsonl"
    if not path.exists():
        return {}
    for line in open(path, encoding="utf-8"):
        row = json.loads(line)
        groups[(row["step"], row["record_id"])].append(row)
    out: dict[str, dict] = {}
    by_subset: dict[str, list[list[dict]]] = defaultdict(list)
    for (_, record_id), rows in groups.items():
        by_subset[subset_of.get(record_id, "?")].append(rows)
    for subset, gs in sorted(by_subset.items()):
        rows = [r for g in gs for r in g]
        both = [r["components"].get("video_correct", 0) * r["components"].get("text_correct", 0) for r in rows]
        out[subset] = {"groups": len(gs), "completions": len(rows),
                       "mean reward": round(statistics.mean(r["reward"] for r in rows), 3),
                       "both labels right": round(sum(both) / len(rows), 3),
                       "format": round(statistics.mean(r["components"].get("format", 0) for r in rows), 3),
                       "tied groups": round(sum(len({r["reward"] for r in g}) == 1 for g in gs) / len(gs), 3)}
    return out


def head_accuracy(model: Path, manifest: Path, split: str) -> dict:
    from videosafety.conditions import model_input
    from videosafety.data.manifest import iter_samples, manifest_root
    from videosafety.guard import HarmGuard
    from videosafety.models.demo import DEMO_BUDGET

    guard = HarmGuard(model, budget=DEMO_BUDGET, batch_size=16)
    root = manifest_root(manifest)
    out = {}
    for subset in ("SafeQ", "HH"):
        samples = [s for s in iter_samples(manifest) if s.split == split and s.subset == subset]
        probs = guard.probs([model_input(s, "video", DEMO_BUDGET, root) for s in samples])
        out[subset] = {"n": len(samples),
                       "video head right": round(float(((probs[:, 0] > 0.5) == [s.video_label for s in samples]).mean()), 3),
                       "query head right": round(float(((probs[:, 1] > 0.5) == [s.query_label for s in samples]).mean()), 3)}
    return out


NOVEL = ("schools families teach young kids weather garden music travel recipe science history sports "
         "library river mountain").split()


def template_probe(model: str | Path, instruction: str | None) -> dict[str, dict[str, int]]:
    """Per language: refusals (the demo's exact refusal, read from the answer block) out of 19
    for each SafeQ template of each split, the bare topic, and English strings of novel words."""
    from videosafety import tags, taxonomy
    from videosafety.data.vsb_mini.text import load_texts
    from videosafety.judges.exact import demo_answers, match_answer
    from videosafety.models.base import GenerationSettings, ModelInput
    from videosafety.models.demo import DEMO_BUDGET
    from videosafety.models.hf import HFVideoLLM

    llm = HFVideoLLM(model, budget=DEMO_BUDGET, batch_size=32)
    settings = GenerationSettings(max_new_tokens=160 if instruction else 48)
    subs = list(taxonomy.SUBCATEGORIES)
    rng = random.Random(0)
    out: dict[str, dict[str, int]] = {}
    for lang, text in load_texts().items():
        queries = {f"safeq.{split}[{i}]": [text.query("safeq", split, i, sub) for sub in subs]
                   for split in taxonomy.SPLITS for i in range(len(text.templates["safeq"][split]))}
        queries["bare topic"] = [text.phrases[sub]["topic"] for sub in subs]
        if lang == "en":
            queries["novel words"] = [" ".join(rng.sample(NOVEL, 5)) for _ in subs]
        out[lang] = {}
        for name, qs in queries.items():
            answers = llm.generate([ModelInput(query=tags.with_instruction(q, instruction)) for q in qs], settings)
            out[lang][name] = sum(match_answer(tags.user_facing(a), demo_answers(lang)) == "refuse" for a in answers)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demo", type=Path, help="a finished `videosafety demo --out` folder")
    ap.add_argument("--heads", action="store_true", help="also measure the harm heads (a forward pass per sample)")
    ap.add_argument("--probe", action="store_true", help="also probe the base and final models template by template")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    summary = json.loads((args.demo / "demo_summary.json").read_text())
    settings = summary["settings"]
    figures: dict = {"settings": settings, "stages": {}}
    manifest = None
    for stage in STAGE_ORDER:
        stage_dir = args.demo / "train" / f"stage-{stage}"
        done = json.loads((stage_dir / "stage_done.json").read_text())
        data = Path(done["data"])
        manifest = manifest or data.parent / "manifest.jsonl"
        fig = {"mix": record_mix(data), "dropped": done.get("dropped"), "seconds": done.get("seconds")}
        if stage == "grpo":
            fig["rewards by subset"] = grpo_rewards(stage_dir, data)
        if args.heads and stage != "1":
            fig["heads"] = head_accuracy(stage_dir / "final", manifest, settings.get("split", "eval"))
        figures["stages"][stage] = fig
        print(f"## {STAGE_NAMES[stage]}")
        print(json.dumps(fig, indent=1, ensure_ascii=False))
    if args.probe:
        from videosafety import tags
        from videosafety.models.demo import demo_model_path

        figures["probe"] = {"base": template_probe(demo_model_path(), None),
                            "after 4": template_probe(args.demo / "train" / "stage-grpo" / "final",
                                                      tags.GRPO_INSTRUCTION)}
        print("## SafeQ without video, refused of 19 per template (base -> after 4)")
        for lang, row in figures["probe"]["base"].items():
            after = figures["probe"]["after 4"][lang]
            print(lang, "  ".join(f"{name} {row[name]}->{after[name]}" for name in row))
    print("## per-stage table (demo_summary.json)")
    from videosafety.demo import table_markdown

    print(table_markdown(summary["rows"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
