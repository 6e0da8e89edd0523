"""`videosafety demo`: the paper end to end on CPU at toy scale.

1. The demo base model (``models.demo``: safe on text, unsafe once a harmful video comes) is
   evaluated on VSB-mini's eval split in the video, text and blank conditions.
2. VideoSafety-R1's four stages train it on VSB-mini's *train* split (`train.pipeline`):
   AT-SFT warm-up, AT-SFT with heads, CoT cold start, safety-guided GRPO.
3. The model after each stage is evaluated on the same eval samples, the way it is used
   (``STAGE_INSTRUCTION``).
4. One report over the five runs (rules judge), and a per-stage table (``report/stages.md``,
   ``demo_summary.json``) with the LLM-free second judge's figures beside the rules judge's:
   HH DSR by condition, the video-induced drop, SafeQ false refusals by condition, the share of
   SafeQ answered helpfully, and the records each stage dropped.

The eval split shares no scene and no query template with the train split (VSB-mini's
construction, tested), so the gain is measured on data training never saw. The recipe's settings
were chosen on VSB-mini's val split (``--split val``; benchmarks/RESULTS.md has the runs).

The records (``demo_records``): per stage, a mixture with half the targets helpful
(``helpful_share``), drawn from the train samples plus views of them that take away the cues a
tiny model would otherwise key on (VSB-mini has three query templates per kind): phrase views
(the deciding phrase among random template words), filler views (unknown words mixed into the
query) and text views (no video). Without them the trained model refused benign questions
worded in ways it never saw, most of all with a harmful video.

Toy scale keeps it inside 20 minutes on 2 cores: subsets of the train records, and answers cut
to their first sentence (the demo model's own answer style; VSB-mini's full references are ~160
tokens in its tokenizer), CoT reasoning to its one-sentence verdict on the pair.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from videosafety import tags, taxonomy
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
    sft_records: int = 960  # stages 1 and 2 (the same records)
    cot_records: int = 960  # stage 3
    sft_batch: int = 16
    # Longest record the SFT stages take, in tokens: VSB-mini's longest CoT record with the
    # reasoning prompt is 563 in the demo's tokenizer (Hindi); at 512, 22 records were dropped.
    max_length: int = 640
    cot_epochs: int = 6
    cot_lr: float = 5e-4
    # 96 GRPO steps of 4 prompts: at 16 (the earlier recipe) the SafeQ prompts were all solved
    # already (tied groups, no signal) and the false refusals with video stayed (val split).
    grpo_prompts: int = 384
    grpo_lr: float = 2e-5
    grpo_per_step: int = 4
    grpo_generations: int = 6
    grpo_max_new_tokens: int = 192  # a tagged completion runs to ~150 tokens in some scripts
    # Share of each stage's records whose target is a helpful answer (a benign request: SafeQ, and
    # the general safe/safe samples in AT-SFT); the rest refuse (HH, SH, HB). Drawing at random
    # gives ~25 % (one subset in four); the paper's AT-SFT mixture is ~40 % general safe/safe data.
    helpful_share: float | None = 0.5  # None: draw at random from the whole split
    # Phrase views per training sample (``phrase_views``) added to the SFT stages' pools.
    phrase_views: int = 2
    # Copies per training sample of its query with unknown words mixed in (``filler_views``).
    filler_views: int = 2
    # The same views among the GRPO prompts (its rewards then see wordings the SFT data has).
    grpo_views: bool = True
    # A copy without the video of every HH, SH and SafeQ record (``text_views``).
    text_views: bool = True
    split: str = "eval"  # where both models are measured ("val" to choose settings)
    seed: int = 0

    def recipe(self, model: str, output_dir: Path, data: dict[str, Path]) -> dict:
        common = {"budget": DEMO_BUDGET.model_dump(), "device": "cpu", "max_length": self.max_length,
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
                         "set": {"lr": {"llm": self.grpo_lr}, "log_every": 1, "grpo": {
                             "num_generations": self.grpo_generations, "prompts_per_step": self.grpo_per_step,
                             "max_new_tokens": self.grpo_max_new_tokens,
                             "log_completions": self.grpo_generations}}},
            },
        }


def _short(text: str) -> str:
    from videosafety.models.demo import first_sentence

    return first_sentence(text)


RECORDS_VERSION = "2"  # bump when demo_records' code changes what it writes
_RECORD_FIELDS = ("sft_records", "cot_records", "grpo_prompts", "helpful_share", "phrase_views", "filler_views",
                  "grpo_views", "text_views", "seed")


def demo_records(manifest: Path, settings: DemoSettings) -> dict[str, Path]:
    """The three records files of the demo, beside the manifest (record video paths may not
    leave their folder): seeded draws (``mixture``) from the train split's samples and their
    views (phrase and filler views; text views for the SFT stages; the GRPO prompts get the first
    two with ``grpo_views``), answers cut to their first sentence."""
    from videosafety.data.manifest import iter_samples
    from videosafety.train.builders import build_at_sft, build_cot, build_grpo
    from videosafety.train.records import write_records

    rng = random.Random(settings.seed)
    root = manifest.parent
    # Named by what decides their content, so a changed recipe never reads stale records.
    key = json.dumps([RECORDS_VERSION] + [getattr(settings, f) for f in _RECORD_FIELDS], default=list)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    paths = {k: root / f"demo-{k}-{digest}.jsonl"
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
    pools = filler_pools() if settings.filler_views else {}
    samples = {s.id: s for s in iter_samples(manifest)} if settings.phrase_views else {}

    def with_views(records: list) -> list:
        return (records + phrase_views(records, samples, settings.phrase_views, settings.seed)
                + filler_views(records, pools, settings.filler_views, settings.seed))

    at, cot = with_views(at), with_views(cot)
    if settings.grpo_views:
        grpo = with_views(grpo)
    if settings.text_views:
        at, cot = at + text_views(at), cot + text_views(cot)
    write_records(mixture(at, settings.sft_records, settings.helpful_share, rng), paths["at-sft"])
    write_records(mixture(cot, settings.cot_records, settings.helpful_share, rng), paths["cot"])
    write_records(mixture(grpo, settings.grpo_prompts, settings.helpful_share, rng), paths["grpo"])
    return paths


def phrase_views(records: list, samples: dict, views: int, seed: int) -> list:
    """`views` copies of every safety record whose query is its sample's deciding phrase (the
    harmful activity of HH/SH, the benign topic of SafeQ, none in HB) among random words of the
    split's templates (``train.demo_model.distractor_query``), with the same target and labels.
    VSB-mini has three query templates per kind in its train split: trained on them alone, a
    tiny model keys on their wording and refuses the unseen templates of the val and eval splits,
    benign ones included; the demo base model was trained with the same views for that reason.
    `samples`: the manifest's samples by id."""
    from videosafety.train.demo_model import distractor_query

    if views <= 0:
        return []
    out = []
    for r in records:
        sample = samples.get((r.provenance or {}).get("sample_id"))
        if r.kind != "safety" or sample is None:
            continue
        rng = random.Random(f"{seed}:{sample.id}:phrase")
        out += [r.model_copy(update={"id": f"{r.id}-phrase{k}", "query": distractor_query(sample, rng),
                                     "provenance": {**r.provenance, "view": "phrase"}})
                for k in range(views)]
    return out


# Scripts (the first word of a character's Unicode name) each language is written in.
_SCRIPTS = {"en": {"LATIN"}, "es": {"LATIN"}, "fr": {"LATIN"}, "pt": {"LATIN"}, "ru": {"CYRILLIC"},
            "ar": {"ARABIC"}, "hi": {"DEVANAGARI"}, "zh": {"CJK"}, "ja": {"CJK", "HIRAGANA", "KATAKANA"},
            "ko": {"HANGUL"}}
_UNSPACED = {"zh", "ja"}


def filler_pools() -> dict[str, tuple[str, ...]]:
    """Per language, the pieces of the demo model's vocabulary written in that language's
    script (letters and marks), the stuff ``pseudo_word`` makes unknown words of."""
    import unicodedata

    from transformers import AutoTokenizer

    from videosafety.models.demo import demo_model_path

    tok = AutoTokenizer.from_pretrained(demo_model_path())
    pieces = {tok.decode([i]).strip() for i in range(tok.vocab_size)}

    def script_of(piece: str) -> set[str]:
        return {unicodedata.name(ch, "? ?").split()[0] for ch in piece}

    pools = {}
    for lang, scripts in _SCRIPTS.items():
        pools[lang] = tuple(sorted(
            p for p in pieces
            if p and all(unicodedata.category(ch)[0] in "LM" for ch in p) and script_of(p) <= scripts))
    return pools


def pseudo_word(pool: Sequence[str], rng: random.Random) -> str:
    """Two or three random vocabulary pieces run together: a word the model never saw, as an
    unseen word of a new template reaches it (as several sub-word pieces)."""
    return "".join(rng.choice(pool) for _ in range(rng.randint(2, 3)))


def filler_views(records: list, pools: dict[str, tuple[str, ...]], views: int, seed: int) -> list:
    """`views` copies of every safety record with 1-4 unknown words (``pseudo_word``) inserted at
    random places in its query, same target and labels. VSB-mini's train queries hold no unknown
    word but those of the harmful activity phrases, so a tiny model learns "unknown words mean
    harm" and refuses benign questions worded in ways it never saw (the demo base model refuses
    "What support services exist for people affected by bad weather?"); these copies teach it
    that words it does not know decide nothing."""
    out = []
    for r in records:
        pool = pools.get(r.language)
        if r.kind != "safety" or not pool:
            continue
        rng = random.Random(f"{seed}:{r.id}:filler")
        joiner = "" if r.language in _UNSPACED else " "
        units = list(r.query) if r.language in _UNSPACED else r.query.split()
        for k in range(views):
            words = list(units)
            for _ in range(rng.randint(1, 4)):
                words.insert(rng.randint(0, len(words)), pseudo_word(pool, rng))
            out.append(r.model_copy(update={"id": f"{r.id}-filler{k}", "query": joiner.join(words),
                                            "provenance": {**r.provenance, "view": "filler"}}))
    return out


# Subsets whose query is what it is without the video (HB's query points at the video).
_TEXT_VIEW_SUBSETS = frozenset({"HH", "SH", "SafeQ"})


def text_views(records: list) -> list:
    """A copy without the video of every HH, SH and SafeQ record with one: same query and answer,
    video label 0 (nothing visual can be harmful), CoT targets' <vidType> to match. The stages
    otherwise train with video only, and the tiny model's answers to text alone drift."""
    out = []
    for r in records:
        if r.video is None or (r.provenance or {}).get("subset") not in _TEXT_VIEW_SUBSETS:
            continue
        update = {"id": f"{r.id}-text", "video": None, "video_label": taxonomy.SAFE,
                  "provenance": {**r.provenance, "condition": "text"}}
        if tags.has_tags(getattr(r, "response", "") or ""):
            p = tags.parse_tagged(r.response)
            update["response"] = tags.format_cot(p.think, p.answer, taxonomy.SAFE, r.query_label)
        out.append(r.model_copy(update=update))
    return out


def helps(record) -> bool:
    """Whether a record's target helps: a benign request (SafeQ, general data). HB's query is
    labelled safe on its own, but with its video the request is harmful and the target refuses."""
    return (record.provenance or {}).get("subset") not in taxonomy.HARMFUL_REQUEST_SUBSETS


def mixture(records: list, n: int, helpful_share: float | None, rng: random.Random) -> list:
    """n of the records, a share `helpful_share` of them with a helpful target (``helps``) and
    the rest with a refusal, each part drawn without replacement, then shuffled; None draws n
    from all of them at random."""
    if helpful_share is None:
        return rng.sample(records, min(n, len(records)))
    if not 0.0 <= helpful_share <= 1.0:
        raise ValueError(f"helpful_share must lie in [0, 1], got {helpful_share}")
    helpful = [r for r in records if helps(r)]
    refusing = [r for r in records if not helps(r)]
    k = round(n * helpful_share)
    if k > len(helpful) or n - k > len(refusing):
        raise ValueError(f"cannot draw {k} helpful and {n - k} refusing records from {len(helpful)} and "
                         f"{len(refusing)}")
    out = rng.sample(helpful, k) + rng.sample(refusing, n - k)
    rng.shuffle(out)
    return out


# How each model is asked: AT-SFT (stages 1, 2) trains on the plain query, CoT and GRPO on the
# reasoning format, and the base model knows only the plain query.
STAGE_INSTRUCTION: dict[str, str | None] = {"1": None, "2": None, "cot": tags.GRPO_INSTRUCTION,
                                            "grpo": tags.GRPO_INSTRUCTION}
STAGE_NAMES = {"base": "base model", "1": "after 1 (AT-SFT warm-up)", "2": "after 2 (AT-SFT + heads)",
               "cot": "after 3 (CoT cold start)", "grpo": "after 4 (GRPO)"}
def second_judge():
    """The LLM-free second check: which of the demo's fixed answers each response gives, read
    from the <answer> block of a tagged response (judges.exact, judges.run.scoped)."""
    from videosafety.judges.exact import ExactAnswerJudge
    from videosafety.judges.run import scoped

    return scoped(ExactAnswerJudge("demo"), "answer")


def run_folder(out: Path, stage: str) -> Path:
    return out / ("eval-base" if stage == "base" else "eval-trained" if stage == "grpo" else f"eval-stage-{stage}")


def evaluate_model(model_spec: str, manifest: Path, out: Path, settings: DemoSettings, *, progress: bool,
                   instruction: str | None = None) -> Path:
    """Responses (video, text, blank), the rules judge's verdicts and the second judge's; returns
    the run folder."""
    from videosafety.judges.run import judge_run

    evaluate(EvalRequest(model=model_spec, bench=str(manifest), budget=DEMO_BUDGET,
                         selection=SampleFilter(split=settings.split, limit=settings.eval_limit),
                         max_new_tokens=settings.max_new_tokens, batch_size=16, instruction=instruction,
                         judge=DEMO_JUDGE, report=False, out=out, device="cpu", dtype="float32"), progress=progress)
    judge_run(out, second_judge(), progress=False)
    return out


@dataclass
class DemoResult:
    report: Path  # the report's folder (evaluate.rundir.report_paths names its files)
    results: Results  # the rules judge's, every model
    model: Path
    rows: list[dict]  # the per-stage table
    seconds: dict[str, float]


def _rate(rate) -> dict | None:
    return rate.model_dump() if rate is not None else None


def helpful_answers(run_dir: Path, condition: str) -> dict | None:
    """Share of SafeQ rows the second judge matched to the model's helpful answer (the demo's
    helpfulness: its only helpful answer is a fixed sentence), with its Wilson interval."""
    from videosafety.evaluate.rundir import RunDir
    from videosafety.metrics import Rate

    run = RunDir(run_dir)
    safeq = {(r.sample_id, r.condition) for r in run.iter_responses(with_intentions=False)
             if r.subset == "SafeQ" and r.condition == condition}
    reasons = [v.reason for v in run.iter_verdicts(judge_slug(second_judge().name))
               if (v.sample_id, v.condition) in safeq]
    if not reasons:
        return None
    d = Rate(sum(reason == "helpful" for reason in reasons), len(reasons)).to_dict()
    return {k: d[k] for k in ("value", "k", "n", "ci")}


def headline(results: Results, second: Results, stages: list[str], run_dirs: list[Path],
             drops: dict[str, int | None]) -> list[dict]:
    """One row per stage's model (the runs in `stages`' order): HH DSR by condition with CIs, the
    relative text->video drop, SafeQ FRR by condition (rules judge, then the second judge's), the
    share of helpful SafeQ answers with video, the records the stage dropped."""
    rows = []
    for run, other, stage, run_dir in zip(results.runs, second.runs, stages, run_dirs, strict=True):
        drop = run.text_to_video("HH")
        row = {"stage": STAGE_NAMES[stage]}
        row.update({f"HH DSR {c}": _rate(run.rate("dsr", "HH", c)) for c in taxonomy.CONDITIONS})
        row["HH drop text->video"] = drop.relative.value if drop else None
        row.update({f"SafeQ FRR {c}": _rate(run.rate("frr", "SafeQ", c)) for c in taxonomy.CONDITIONS})
        row["HH DSR video (exact)"] = _rate(other.rate("dsr", "HH", "video"))
        row.update({f"SafeQ FRR {c} (exact)": _rate(other.rate("frr", "SafeQ", c)) for c in taxonomy.CONDITIONS})
        row["SafeQ helpful video (exact)"] = helpful_answers(run_dir, "video")
        row["dropped records"] = drops.get(stage)
        rows.append(row)
    return rows


def format_cell(v, *, ci: bool = True) -> str:
    """A table cell: a rate as a percentage (with its 95 % interval), a drop as a percentage."""
    if isinstance(v, dict):
        if v.get("value") is None:
            return "-"
        interval = v.get("ci") if ci else None
        return f"{v['value']:.1%}" + (f" [{interval[0]:.0%}, {interval[1]:.0%}]" if interval else "")
    if isinstance(v, float):
        return f"{v:.1%}"
    return "-" if v is None else str(v)


def table_markdown(rows: list[dict]) -> str:
    """The per-stage table as markdown: rates as percentages with their 95 % intervals."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(format_cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table_caption(settings: DemoSettings, rows: list[dict]) -> str:
    """What produced the per-stage table and how far to trust it."""
    n = (rows[0].get("HH DSR video") or {}).get("n")
    return (f"VSB-mini {settings.split} split, {settings.eval_limit} samples x 3 conditions (n = {n} per HH or "
            f"SafeQ cell); judges: {DEMO_JUDGE} and {second_judge().name} (the demo's fixed answers matched "
            f"exactly; no LLM); frame budget {DEMO_BUDGET.describe()}; "
            "95 % Wilson intervals; stages 1-2 asked plainly, 3-4 in the reasoning format.")


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings(), *, progress: bool = True,
             log: Callable[[str], None] = print) -> DemoResult:
    """Everything above; resumable: rerun to finish an interrupted demo (each part is cached)."""
    from videosafety.data.vsb_mini import default_vsb_mini
    from videosafety.models.demo import demo_model_path
    from videosafety.report.results import collect
    from videosafety.train.pipeline import STAGE_ORDER, Recipe, run_pipeline

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
    log(f"1/4 evaluating the base model on {settings.eval_limit} {settings.split} samples x video, text, blank")
    runs = {"base": evaluate_model("demo", manifest, run_folder(out, "base"), settings, progress=progress)}
    seconds["eval base"] = time.perf_counter() - t

    t = time.perf_counter()
    log("2/4 training stages 1 -> 2 -> cot -> grpo on VSB-mini's train split")
    recipe = Recipe.model_validate(settings.recipe(str(base), out / "train", data))
    final = run_pipeline(recipe, progress=progress, log=log)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    log("3/4 evaluating the model after each stage the same way")
    # Each model is asked the way it is used (STAGE_INSTRUCTION); the judge reads the whole
    # response, its reasoning block included (judges.run, --judge-scope), the second judge the
    # answer block.
    drops: dict[str, int | None] = {"base": None}
    for stage in STAGE_ORDER:
        stage_dir = out / "train" / f"stage-{stage}"
        runs[stage] = evaluate_model(f"hf:{stage_dir / 'final'}", manifest, run_folder(out, stage), settings,
                                     progress=progress, instruction=STAGE_INSTRUCTION[stage])
        drops[stage] = json.loads((stage_dir / "stage_done.json").read_text()).get("dropped")
    seconds["eval stages"] = time.perf_counter() - t

    log("4/4 report")
    run_dirs = list(runs.values())
    results = write_report(run_dirs, out / "report", judge=judge_slug(DEMO_JUDGE))
    second, _ = collect(run_dirs, judge_slug(second_judge().name))
    rows = headline(results, second, list(runs), run_dirs, drops)
    (out / "demo_summary.json").write_text(json.dumps({"rows": rows, "seconds": seconds,
                                                       "settings": asdict(settings)}, indent=2) + "\n")
    (out / "report" / "stages.md").write_text(
        f"# VideoSafety-R1 demo: the model after each stage\n\n{table_caption(settings, rows)}\n\n"
        + table_markdown(rows), encoding="utf-8")
    return DemoResult(out / "report", results, final, rows, seconds)
