"""One evaluation pipeline: model + benchmark -> responses -> verdicts -> report, for the CLI,
`videosafety demo` and frame-budget sweeps alike.

    result = evaluate(EvalRequest(model="ref:comply-all", selection=SampleFilter(limit=100)))
    result.results.runs[0].rate("dsr", "HH", "video")

Under `accelerate launch` / `torchrun` every process generates its share; the main process
judges and reports. A request with several --fps (or --num-frames) values is a sweep: one run
per value in OUT/fps-<v>, one report over them (evaluate.sweep)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from videosafety import taxonomy
from videosafety.budget import FrameBudget
from videosafety.data.peers import bench_source
from videosafety.evaluate.plan import SampleFilter
from videosafety.evaluate.rundir import Results, judge_slug, write_atomic
from videosafety.evaluate.runner import EvalConfig, EvalSummary, run_eval
from videosafety.evaluate.sweep import PLOT, SUMMARY, SweepPoint, reusing_loader, run_sweep, sweep_points
from videosafety.judges.run import JudgeSummary, judge_run
from videosafety.judges.spec import load_judge
from videosafety.models.base import GenerationSettings
from videosafety.models.spec import ModelOptions, load_model, parse_spec
from videosafety.report import write_report
from videosafety.report.plots import dsr_vs_budget
from videosafety.tags import GRPO_INSTRUCTION

# `videosafety eval` with no options must finish within minutes on 2 cores, first run included.
DEMO_DEFAULT_LIMIT = 400
INSTRUCTIONS = {"reasoning": GRPO_INSTRUCTION}  # names a user may give for --instruction


@dataclass(frozen=True)
class EvalRequest:
    """Everything an evaluation needs. None means "the model's default" (the demo model has
    its own frame budget, answer length and batch size)."""

    model: str | None = None  # a model spec (models.spec); None: the embedded demo model
    bench: str = "vsb-mini"  # a manifest, "vsb-mini", or FORMAT:PATH of a peer benchmark
    selection: SampleFilter = SampleFilter()
    conditions: tuple[str, ...] = taxonomy.CONDITIONS
    budget: FrameBudget | None = None  # the base budget; the overrides below apply to it
    fps: tuple[float, ...] | None = None  # one value, or several: a sweep
    num_frames: tuple[int, ...] | None = None
    max_frames: int | None = None
    max_pixels: int | None = None
    max_new_tokens: int | None = None
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0
    batch_size: int | None = None
    instruction: str | None = None  # appended to every query; a name of INSTRUCTIONS or the text
    judge: str | None = "rules"  # None: responses only, no verdicts and no report
    report: bool = True  # write the run's report (the demo reports two runs together instead)
    out: str | Path | None = None  # default runs/eval-<model>
    force: bool = False
    max_error_rate: float = 0.05
    device: str = "auto"
    dtype: str = "auto"
    decode_workers: int = 2
    openai: dict = field(default_factory=dict)  # options of the OpenAI-compatible backend
    trust_remote_code: bool = False

    def check(self) -> None:
        """Raises ValueError for options that contradict each other."""
        parse_spec(self.model)
        bad = [c for c in self.conditions if c not in taxonomy.CONDITIONS]
        if bad or not self.conditions:
            raise ValueError(f"unknown condition(s) {bad}; expected a comma list of {', '.join(taxonomy.CONDITIONS)}")
        if self.sweep_values and self.fps and self.num_frames:
            raise ValueError("sweep over --fps or over --num-frames, not both")

    @property
    def sweep_values(self) -> bool:
        return len(self.fps or ()) > 1 or len(self.num_frames or ()) > 1

    def with_model_defaults(self) -> tuple["EvalRequest", list[str]]:
        """The request with the demo model's own defaults filled in, and notes saying so."""
        if parse_spec(self.model)[0] != "demo":
            return self, []
        from videosafety.models.demo import DEMO_BUDGET, DEMO_MAX_NEW_TOKENS  # the shipped model's settings

        notes = ["the demo model is a synthetic demonstration model trained on VSB-mini only"]
        selection = self.selection
        if selection.limit is None and self.bench == "vsb-mini":
            selection = replace(selection, limit=DEMO_DEFAULT_LIMIT)
            notes.insert(0, f"default: a stratified subset of {DEMO_DEFAULT_LIMIT} of VSB-mini's 1,520 eval "
                            "samples, evenly spread over sub-categories, subsets and languages (--limit 1520 for all)")
        # its longest answer, with room (a batch runs to its longest row); the budget it was trained with
        return replace(self, selection=selection, budget=self.budget or DEMO_BUDGET,
                       max_new_tokens=self.max_new_tokens or DEMO_MAX_NEW_TOKENS,
                       batch_size=self.batch_size or 16), notes

    def frame_budget(self) -> FrameBudget:
        """The budget of a single run (a sweep's points come from evaluate.sweep.sweep_points)."""
        single = (lambda values: values[0] if values and len(values) == 1 else None)
        return (self.budget or FrameBudget()).with_overrides(
            fps=single(self.fps), num_frames=single(self.num_frames), max_frames=self.max_frames,
            max_pixels=self.max_pixels)

    def settings(self) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=self.max_new_tokens or 256, do_sample=self.temperature > 0,
                                  temperature=self.temperature if self.temperature > 0 else 1.0, top_p=self.top_p,
                                  seed=self.seed)


@dataclass
class EvalResult:
    out: Path
    model: str
    budget: FrameBudget
    notes: list[str]
    runs: list[tuple[str, Path, EvalSummary]]  # (sweep point or "", run folder, summary) per run
    main_process: bool = True  # False on the other ranks of a data-parallel run: nothing below is set
    judged: list[JudgeSummary] = field(default_factory=list)
    results: Results | None = None  # None without a judge
    plot: Path | None = None  # a sweep's DSR-against-budget plot
    sweep_summary: Path | None = None

    @property
    def error_rate(self) -> float:
        """The worst run's share of failed rows."""
        return max((s.error_rate for _, _, s in self.runs), default=0.0)


def default_out(model_name: str) -> Path:
    return Path("runs") / ("eval-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("_")[-80:] or "model"))


def evaluate(request: EvalRequest, *, progress: bool = True, log: Callable[[str], None] = lambda message: None
             ) -> EvalResult:
    """Run a request: generate (resumable), judge, report. Raises ValueError (or OSError) for a
    bad request, benchmark or model before any work is done."""
    import torch  # heavy: only once a run starts
    from accelerate import PartialState

    request.check()
    request, notes = request.with_model_defaults()
    budget = request.frame_budget()
    manifest = bench_source(request.bench)  # converts a peer benchmark on first use
    state = PartialState(cpu=request.device == "cpu" or not torch.cuda.is_available())
    device = request.device
    if state.num_processes > 1 and device == "auto" and state.device.type == "cuda":
        device = str(state.device)
    batch_size = request.batch_size or 8
    options = ModelOptions(device=device, dtype=request.dtype, batch_size=batch_size,
                           trust_remote_code=request.trust_remote_code, openai=request.openai)
    llm = load_model(request.model, budget, options)
    out = Path(request.out) if request.out is not None else default_out(llm.name)
    instruction = INSTRUCTIONS.get(request.instruction, request.instruction)
    cfg = EvalConfig(conditions=request.conditions, settings=request.settings(), budget=budget,
                     batch_size=batch_size, decode_workers=request.decode_workers, force=request.force,
                     max_error_rate=request.max_error_rate, instruction=instruction)
    result = EvalResult(out=out, model=llm.name, budget=budget, notes=notes, runs=[],
                        main_process=state.is_main_process)
    if state.is_main_process:
        for note in notes:
            log(f"note: {note}")
        log(f"model {llm.name} ({llm.revision}) | budget {budget.describe()} | conditions "
            f"{','.join(request.conditions)} | out {out}"
            + (f" | {state.num_processes} processes" if state.num_processes > 1 else ""))
    ranks = dict(rank=state.process_index, world=state.num_processes, barrier=state.wait_for_everyone,
                 progress=progress and state.is_main_process, extra_run_info={"notes": notes})

    if request.sweep_values:
        many = (lambda values: values if values and len(values) > 1 else None)
        points = sweep_points(budget, fps=many(request.fps), num_frames=many(request.num_frames),
                              max_frames=request.max_frames)
        if state.is_main_process:
            log(f"sweep over {', '.join(p.name for p in points)} -> {out}/<point>")
        sweep = run_sweep(reusing_loader(lambda _budget: llm), manifest, out, cfg, points, request.selection,
                          **ranks)
        result.runs = [(point.name, run_dir, summary) for point, run_dir, summary in sweep.runs]
        if state.is_main_process and request.judge is not None:
            result.results, result.plot, result.sweep_summary = report_sweep(
                [run_dir for _, run_dir, _ in result.runs], out, judge=request.judge, judge_device=device)
        return result

    summary = run_eval(llm, manifest, out, cfg, request.selection, **ranks)
    result.runs = [("", out, summary)]
    if state.is_main_process and request.judge is not None:
        judge = load_judge(request.judge, device=device, batch_size=16)
        result.judged.append(judge_run(out, judge, batch_size=64, progress=False))
        if request.report:
            result.results = write_report([out], out, judge=judge_slug(judge.name))
    return result


def report_sweep(run_dirs: list[Path], out: Path, *, judge: str = "rules",
                 judge_device: str = "auto") -> tuple[Results, Path | None, Path]:
    """Judge a sweep's runs (cached verdicts are reused), then one report over them, the
    DSR-against-budget plot (OUT/sweep-dsr.png) and OUT/sweep.json."""
    loaded = load_judge(judge, device=judge_device, batch_size=16)
    for run_dir in run_dirs:
        judge_run(run_dir, loaded, batch_size=64, progress=False)
    results = write_report(list(run_dirs), out, judge=judge_slug(loaded.name))
    runs = results.runs
    subset = next((s for s in ("HH", "harmful") if any(s in r.dsr for r in runs)), "HH")
    png = dsr_vs_budget(results.to_json()["runs"], subset, "video")
    plot = None
    if png is not None:
        plot = out / PLOT
        plot.write_bytes(png)
    table = []
    for r in runs:
        rate = r.rate("dsr", subset, "video")
        table.append({"run_dir": r.run_dir, "model": r.model, "budget": r.budget, "budget_str": r.budget_str,
                      "subset": subset, "condition": "video", "dsr": rate.model_dump() if rate else None,
                      "judge": {"name": r.judge.name, "version": r.judge.version}})
    summary = out / SUMMARY
    write_atomic(summary, json.dumps({"points": table, "plot": PLOT if plot else None}, indent=1) + "\n")
    return results, plot, summary


__all__ = ["DEMO_DEFAULT_LIMIT", "EvalRequest", "EvalResult", "SweepPoint", "default_out", "evaluate", "report_sweep"]
