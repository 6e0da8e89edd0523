"""`videosafety demo`: the paper end to end on CPU at toy scale.

1. The demo base model (``models.demo``: safe on text, unsafe once a harmful video comes) is
   evaluated on VSB-mini's eval split in the video, text and blank conditions.
2. VideoSafety-R1's four stages train it on VSB-mini's *train* split (`train.pipeline`):
   AT-SFT warm-up, AT-SFT with heads, CoT cold start, safety-guided GRPO.
3. The trained model is evaluated on the same eval samples, the same way.
4. One report compares both: the base model's video-induced drop, the trained model's DSR on HH,
   with Wilson CIs, and FRR on SafeQ so over-refusal shows.

The eval split shares no scene and no query template with the train split (VSB-mini's
construction, tested), so the gain is measured on data training never saw.

Toy scale keeps it inside 20 minutes on 2 cores: subsets of the train records, and answers cut
to their first sentence (the demo model's own answer style; VSB-mini's full references are ~160
tokens in its tokenizer), CoT reasoning to its one-sentence verdict on the pair.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from videosafety import tags
from videosafety.evaluate.plan import SampleFilter
from videosafety.evaluate.rundir import Results, judge_slug
from videosafety.models.demo import DEMO_BUDGET
from videosafety.eval_pipeline import EvalRequest, evaluate
from videosafety.report import write_report

DEMO_JUDGE = "rules"


@dataclass(frozen=True)
class DemoSettings:
    eval_limit: int = 240  # eval samples (x 3 conditions), stratified
    max_new_tokens: int = 160  # both models, greedy: room for a tagged answer
    sft_records: int = 960  # per SFT stage
    sft_batch: int = 16
    cot_epochs: int = 6
    cot_lr: float = 5e-4
    grpo_prompts: int = 64
    grpo_per_step: int = 4
    grpo_generations: int = 6
    grpo_max_new_tokens: int = 192  # a tagged completion runs to ~150 tokens in some scripts
    seed: int = 0

    def recipe(self, model: str, output_dir: Path, data: dict[str, Path]) -> dict:
        common = {"budget": DEMO_BUDGET.model_dump(), "device": "cpu", "max_length": 512,
                  "per_device_batch_size": self.sft_batch, "log_every": 5}
        return {
            "model": model, "output_dir": str(output_dir), "seed": self.seed, "set": common,
            "stages": {
                "1": {"config": "tiny-stage1", "data": str(data["at-sft"]), "set": {"lr": {"llm": 5e-4, "alarm": 1e-2}}},
                "2": {"config": "tiny-stage2", "data": str(data["at-sft"]),
                      "set": {"lr": {"llm": 5e-4, "alarm": 1e-2, "heads": 1e-2}}},
                # The tagged format must be sharp enough that samples at temperature 1.0 hold it, or
                # GRPO's rewards are 0 for every completion (2 epochs: format reward 0 in every group).
                # A higher rate (2e-3) instead degenerates the tiny model's answers into mixed languages.
                "cot": {"config": "tiny-cot", "data": str(data["cot"]),
                        "set": {"lr": {"llm": self.cot_lr}, "epochs": self.cot_epochs}},
                "grpo": {"config": "tiny-grpo", "data": str(data["grpo"]),
                         "set": {"lr": {"llm": 2e-5}, "log_every": 1, "grpo": {
                             "num_generations": self.grpo_generations, "prompts_per_step": self.grpo_per_step,
                             "max_new_tokens": self.grpo_max_new_tokens}}},
            },
        }


def _short(text: str) -> str:
    from videosafety.models.demo import first_sentence

    return first_sentence(text)


def demo_records(manifest: Path, settings: DemoSettings) -> dict[str, Path]:
    """The three records files of the demo, beside the manifest (record video paths may not
    leave their folder): seeded subsets of the train split with short answers."""
    from videosafety.train.builders import build_at_sft, build_cot, build_grpo
    from videosafety.train.records import write_records

    rng = random.Random(settings.seed)
    root = manifest.parent
    paths = {k: root / f"demo-{k}-{settings.sft_records}-{settings.grpo_prompts}-s{settings.seed}.jsonl"
             for k in ("at-sft", "cot", "grpo")}
    if all(p.exists() for p in paths.values()):
        return paths
    at = [r.model_copy(update={"response": _short(r.response)}) for r in build_at_sft(manifest)]
    cot = []
    for r in build_cot(manifest, think_parts=("pair",)):
        p = tags.parse_tagged(r.response)
        cot.append(r.model_copy(update={"response": tags.format_cot(p.think, _short(p.answer), r.video_label,
                                                                    r.query_label)}))
    grpo = []
    for r in build_grpo(manifest):
        if r.problem_type != "safety":
            continue
        p = tags.parse_tagged(r.solution)
        grpo.append(r.model_copy(update={"solution": tags.format_solution(_short(p.answer), p.video_label,
                                                                          p.query_label)}))
    write_records(rng.sample(at, min(settings.sft_records, len(at))), paths["at-sft"])
    write_records(rng.sample(cot, min(settings.sft_records, len(cot))), paths["cot"])
    write_records(rng.sample(grpo, min(settings.grpo_prompts, len(grpo))), paths["grpo"])
    return paths


def evaluate_model(model_spec: str, manifest: Path, out: Path, settings: DemoSettings, *, progress: bool,
                   instruction: str | None = None) -> Path:
    """Responses (video, text, blank) and the demo judge's verdicts; returns the run folder."""
    evaluate(EvalRequest(model=model_spec, bench=str(manifest), budget=DEMO_BUDGET,
                         selection=SampleFilter(split="eval", limit=settings.eval_limit),
                         max_new_tokens=settings.max_new_tokens, batch_size=16, instruction=instruction,
                         judge=DEMO_JUDGE, report=False, out=out, device="cpu", dtype="float32"), progress=progress)
    return out


@dataclass
class DemoResult:
    report: Path  # the report's folder (evaluate.rundir.report_paths names its files)
    results: Results
    model: Path
    rows: list[dict]  # the headline table
    seconds: dict[str, float]


def headline(results: Results) -> list[dict]:
    """Per model: HH DSR by condition with CIs, the relative text->video drop, SafeQ FRR."""
    rows = []
    for run in results.runs:
        drop = run.text_to_video("HH")
        cell = (lambda metric, subset, condition: (rate.model_dump() if (rate := run.rate(metric, subset, condition))
                                                   else None))
        rows.append({
            "model": run.model,
            **{f"HH DSR {c}": cell("dsr", "HH", c) for c in ("video", "text", "blank")},
            "HH drop text->video": drop.relative.value if drop else None,
            "SafeQ FRR video": cell("frr", "SafeQ", "video"),
            "SafeQ FRR text": cell("frr", "SafeQ", "text"),
        })
    return rows


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings(), *, progress: bool = True,
             log: Callable[[str], None] = print) -> DemoResult:
    """Everything above; resumable: rerun to finish an interrupted demo (each part is cached)."""
    from videosafety.data.vsb_mini import default_vsb_mini
    from videosafety.models.demo import demo_model_path
    from videosafety.train.pipeline import Recipe, run_pipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    manifest = default_vsb_mini()
    base = demo_model_path()
    data = demo_records(manifest, settings)
    seconds["data"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"1/4 evaluating the base model on {settings.eval_limit} eval samples x video, text, blank")
    base_run = evaluate_model("demo", manifest, out / "eval-base", settings, progress=progress)
    seconds["eval base"] = time.perf_counter() - t

    t = time.perf_counter()
    log("2/4 training stages 1 -> 2 -> cot -> grpo on VSB-mini's train split")
    recipe = Recipe.model_validate(settings.recipe(str(base), out / "train", data))
    final = run_pipeline(recipe, progress=progress, log=log)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    log("3/4 evaluating the trained model the same way")
    # Each model is asked the way it is used: the base with the plain query, VideoSafety-R1 with
    # the reasoning format it was trained to answer in (the judge reads the whole response, its
    # reasoning block included: judges.run, --judge-scope).
    trained_run = evaluate_model(f"hf:{final}", manifest, out / "eval-trained", settings, progress=progress,
                           instruction=tags.GRPO_INSTRUCTION)
    seconds["eval trained"] = time.perf_counter() - t

    log("4/4 report")
    results = write_report([base_run, trained_run], out / "report", judge=judge_slug(DEMO_JUDGE))
    rows = headline(results)
    (out / "demo_summary.json").write_text(json.dumps({"rows": rows, "seconds": seconds,
                                                       "settings": asdict(settings)}, indent=2) + "\n")
    return DemoResult(out / "report", results, final, rows, seconds)
