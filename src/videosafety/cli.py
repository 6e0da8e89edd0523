"""The command line: parses options and calls the library; no logic of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from videosafety import __version__, taxonomy

# add_completion: `videosafety --install-completion` (bash, zsh, fish, PowerShell) and --show-completion.
app = typer.Typer(no_args_is_help=True, add_completion=True,
                  help="Measure and improve the safety of video LLMs (VideoSafetyBench, VideoSafety-R1).")
bench_app = typer.Typer(no_args_is_help=True, help="Build, check and describe benchmark manifests.")
app.add_typer(bench_app, name="bench")
train_app = typer.Typer(no_args_is_help=True, help="VideoSafety-R1 training: AT-SFT (stages 1-2), CoT cold start, plain SFT.")
app.add_typer(train_app, name="train")

console = Console()
err_console = Console(stderr=True)


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in value.split(",") if x.strip()) if value else None


def _fail(message: object, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    err_console.print(f"[red]error:[/red] {escape(str(message))}", highlight=False)
    return typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        console.print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the package version and exit."),
) -> None:
    pass


@app.command()
def version() -> None:
    """Print the package version."""
    _print_version(True)


@bench_app.command("mini")
def bench_mini(
    out: Path = typer.Option(Path("vsb-mini"), "--out", help="Folder to write manifest.jsonl and videos/ into."),
    workers: int = typer.Option(0, help="Rendering processes (0 = up to 4, by CPU count)."),
) -> None:
    """Write VSB-mini, the embedded synthetic benchmark, deterministically."""
    from videosafety.data.manifest import iter_samples
    from videosafety.data.stats import manifest_stats
    from videosafety.data.vsb_mini import build_vsb_mini

    path = build_vsb_mini(out, workers=workers or None, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    _print_stats(manifest_stats(iter_samples(path)), title=f"VSB-mini: {path}")


@bench_app.command("build")
def bench_build(
    videos: Path = typer.Option(..., help="Folder of candidate videos."),
    metadata: Path = typer.Option(..., help="CSV or JSONL: video (relative path), category_hint, language, source, licence."),
    out: Path = typer.Option(..., "--out", help="Folder for the stage outputs (ingest.jsonl, static.jsonl)."),
    stages: str = typer.Option("ingest,static", help="Comma list of stages to run, in order."),
    static_model: str = typer.Option(None, help="Vision model for the static filter (AutoModel, e.g. "
                                                "facebook/dinov2-small); default: the built-in pixel score."),
    static_threshold: float = typer.Option(0.999, help="Consecutive-frame similarity at or above which a clip is near-static."),
    near_duplicate_bits: float = typer.Option(6.0, help="Mean perceptual-hash distance (of 64) for near duplicates."),
    labeller: list[str] = typer.Option([], "--labeller", help="Stage label: a model spec (hf:, openai:MODEL@URL, "
                                                               "ref:); repeat for several voting labellers."),
    min_agreement: float = typer.Option(1.0, help="Stage label: agreement below which a video goes to human review."),
    paraphraser: str = typer.Option(None, help="Stage queries: a model spec that rewords the template queries "
                                               "(default: the templates as they are)."),
    translator: str = typer.Option(None, help="Stage translate: a model spec that translates the queries."),
    languages: str = typer.Option(None, help="Stage translate: comma list of languages (default: all ten)."),
    quota: int = typer.Option(None, help="Stage pair: at most this many samples per (subset, sub-category, language)."),
    eval_share: float = typer.Option(0.2, help="Stage pair: share of the samples in the eval split."),
    workers: int = typer.Option(0, help="Worker processes (0 = up to 4, by CPU count)."),
) -> None:
    """Build a benchmark from real videos, stage by stage (resumable; each stage's output is its cache).
    Stages: ingest, static, label, queries, translate, pair (the benchmark folder OUT/dataset)."""
    from videosafety.data.construct.build import BuildRequest, build
    from videosafety.data.manifest import ManifestError

    def show(done) -> None:
        console.print(f"{done.stage}: {done.line}", markup=False, highlight=False)
        if done.stage == "pair":
            console.print("validation: " + ("clean" if not done.problems else f"{len(done.problems)} problem(s)"))
            for problem in done.problems[:20]:
                err_console.print(f"  {problem}", markup=False)

    request = BuildRequest(videos=videos, metadata=metadata, out=out, stages=_csv(stages) or (),
                           static_model=static_model, static_threshold=static_threshold,
                           near_duplicate_bits=near_duplicate_bits, labellers=tuple(labeller),
                           min_agreement=min_agreement, paraphraser=paraphraser, translator=translator,
                           languages=_csv(languages) or tuple(taxonomy.LANGUAGES), quota=quota, eval_share=eval_share,
                           workers=workers or None)
    try:
        stages_done = build(request, on_stage=show)
    except (ManifestError, FileNotFoundError, ValueError) as e:
        raise _fail(e)
    if any(done.problems for done in stages_done):
        raise typer.Exit(1)


@bench_app.command("review")
def bench_review(
    out: Path = typer.Argument(..., help="The build folder (holding label.jsonl)."),
    export: Path = typer.Option(None, "--export", help="Write the flagged videos to this CSV sheet."),
    import_: Path = typer.Option(None, "--import", help="Apply the decisions of a filled sheet."),
) -> None:
    """Human review of labelling disagreements: export a sheet, fill `decision`, import it."""
    from videosafety.data.construct.label import export_review, import_review
    from videosafety.data.manifest import ManifestError

    if (export is None) == (import_ is None):
        err_console.print("[red]error:[/red] give exactly one of --export or --import")
        raise typer.Exit(2)
    try:
        if export is not None:
            console.print(f"{export_review(out, export)} video(s) to review -> {export}")
        else:
            console.print(f"{import_review(out, import_)} decision(s) applied to {out / 'label.jsonl'}")
    except (ManifestError, FileNotFoundError) as e:
        raise _fail(e)


@bench_app.command("validate")
def bench_validate(
    path: Path = typer.Argument(..., help="Manifest file (.jsonl/.parquet) or its folder."),
    videos: bool = typer.Option(True, "--videos/--no-videos", help="Check video files (existence, sha256, decoding)."),
    decode: bool = typer.Option(True, "--decode/--no-decode", help="Decode a frame of every video."),
    hash_files: bool = typer.Option(True, "--hash/--no-hash", help="Compare sha256 of every video."),
    as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON lines."),
) -> None:
    """Check every row; report every problem with its line and field; exit 1 if any."""
    from videosafety.data.validate import validate_manifest

    try:
        report = validate_manifest(path, check_videos=videos, decode=decode, hash_files=hash_files)
    except FileNotFoundError as e:
        raise _fail(e)
    for p in report.problems:
        if as_json:
            print(json.dumps({"file": p.file, "line": p.line, "field": p.field, "message": p.message}, ensure_ascii=False))
        else:
            console.print(str(p), markup=False, highlight=False)
    summary = (f"{report.manifest}: {report.rows} rows, {report.valid_rows} valid, "
               f"{report.videos_checked} videos checked, {len(report.problems)} problem(s)")
    if report.ok:
        err_console.print(f"[green]ok[/green] {summary}", soft_wrap=True)
        return
    by_field = ", ".join(f"{f}: {n}" for f, n in report.by_field().most_common())
    err_console.print(f"[red]invalid[/red] {summary} ({by_field})", soft_wrap=True)
    raise typer.Exit(1)


@bench_app.command("info")
def bench_info(
    path: Path = typer.Argument(..., help="Manifest file or its folder."),
    split: str = typer.Option(None, help="Only this split (train, val or eval)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Counts by subset x category x language."""
    from videosafety.data.manifest import ManifestError, iter_samples
    from videosafety.data.stats import manifest_stats

    try:
        stats = manifest_stats(s for s in iter_samples(path) if split is None or s.split == split)
    except (ManifestError, FileNotFoundError) as e:
        raise _fail(e)
    if as_json:
        print(json.dumps(stats.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print_stats(stats, title=str(path) + (f" ({split})" if split else ""))


@bench_app.command("convert")
def bench_convert(
    src: Path = typer.Argument(..., help="Manifest file or its folder."),
    dst: Path = typer.Argument(..., help="Output: .jsonl, .parquet, or a folder for a Hugging Face dataset (--hf)."),
    hf: bool = typer.Option(False, "--hf", help="Write a Hugging Face datasets folder (save_to_disk)."),
) -> None:
    """Convert between JSONL, parquet and Hugging Face dataset folders."""
    from videosafety.data.manifest import ManifestError, iter_samples, load_hf_dataset, write_manifest

    try:
        if hf:
            load_hf_dataset(src).save_to_disk(str(dst))
            n = None
        else:
            n = write_manifest(iter_samples(src), dst)
    except (ManifestError, FileNotFoundError, ValueError) as e:
        raise _fail(e)
    console.print(f"wrote {dst}" + (f" ({n} rows)" if n is not None else ""))
    if not hf and src.resolve().parent != dst.resolve().parent:
        err_console.print("[yellow]note:[/yellow] video paths are relative to the manifest's folder; "
                          "the new manifest lives elsewhere, so copy or link its videos beside it")


@bench_app.command("augment")
def bench_augment(
    manifest: str = typer.Argument(..., help="Manifest file or its folder, or vsb-mini."),
    out: Path = typer.Option(..., "--out", help="Folder to write manifest.jsonl and videos/ into."),
    attacks: str = typer.Option("late,interleave,overlay", help="Comma list of late, interleave, overlay."),
    split: str = typer.Option("eval", help="Split to attack ('all' for every row)."),
    subsets: str = typer.Option("HH,HB", help="Comma list of subsets to attack (only harmful-video samples are)."),
    languages: str = typer.Option(None, help="Comma list of language codes."),
    limit: int = typer.Option(None, help="At most N source samples, evenly spread over the selection."),
    late_fraction: float = typer.Option(0.25, help="late: share of the harmful clip kept, from its end."),
    block_seconds: float = typer.Option(1.0, help="interleave: seconds per benign / harmful block."),
    overlay_text: str = typer.Option("intention", help="overlay: 'intention' (the harmful intention, else the "
                                                       "query) or 'query'."),
    with_sources: bool = typer.Option(False, "--with-sources", help="Also copy the unattacked source samples, "
                                                                     "so one eval compares them with each attack."),
) -> None:
    """Temporal and typographic attacks: variants of harmful samples whose harmful content comes
    late, is interleaved with benign footage, or is written over a benign video (deterministic)."""
    from videosafety.data.augment import AttackSettings, augment_manifest, parse_attacks
    from videosafety.data.manifest import ManifestError

    try:
        if manifest == "vsb-mini":
            from videosafety.data.vsb_mini import default_vsb_mini

            manifest = str(default_vsb_mini())
        summary = augment_manifest(
            manifest, out, parse_attacks(attacks), split=None if split == "all" else split, subsets=_csv(subsets),
            languages=_csv(languages), limit=limit, with_sources=with_sources,
            settings=AttackSettings(late_fraction=late_fraction, block_seconds=block_seconds,
                                    overlay_text=overlay_text),
            progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    except (ManifestError, FileNotFoundError, ValueError) as e:
        raise _fail(e)
    skipped = {a: n for a, n in (summary.skipped or {}).items() if n}
    console.print(f"{summary.sources} source samples -> {summary.manifest}"
                  + (f" (not applicable: {skipped})" if skipped else ""))


def _train(stage: str, config: str | None, model: str | None, data: str | None, out: str | None,
           overrides: list[str]) -> None:
    from videosafety.configs import resolve_config
    from videosafety.train.config import load_config
    from videosafety.train.pipeline import run_stage

    base = {"stage": stage}
    base.update({k: v for k, v in (("model", model), ("data", data), ("output_dir", out)) if v is not None})
    try:
        cfg = load_config(resolve_config(config) if config else None, overrides, **base)
        # the command's own options win over the file, like overrides
        cfg = cfg.model_copy(update={k: v for k, v in base.items()})
    except (ValueError, FileNotFoundError) as e:
        raise _fail(e)
    final = run_stage(cfg)
    console.print(f"model: {final}")


_CONFIG_HELP = "YAML config: a path, or a shipped name (paper-stage1, paper-stage2, paper-cot, tiny-stage2, ...)."
_SET_HELP = "Override a config key: --set lr.llm=1e-5 (repeatable)."


@train_app.command("sft")
def train_sft(
    stage: str = typer.Option(..., help="1 (AT-SFT warm-up), 2 (AT-SFT with heads) or plain (no alarm tokens)."),
    config: str = typer.Option(None, help=_CONFIG_HELP),
    model: str = typer.Option(None, help="HF checkpoint (stage 1/plain) or alarm checkpoint (stage 2)."),
    data: str = typer.Option(None, help="Records JSONL (see `videosafety train data`)."),
    out: str = typer.Option(None, "--out", help="Output folder (checkpoints, log, final/)."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
) -> None:
    """Alarm-token safety fine-tuning (stages 1-2) or plain SFT; resumes from out/checkpoints."""
    if stage not in ("1", "2", "plain"):
        err_console.print("[red]error:[/red] --stage must be 1, 2 or plain")
        raise typer.Exit(2)
    _train(stage, config, model, data, out, set_)


@train_app.command("cot")
def train_cot(
    config: str = typer.Option(None, help=_CONFIG_HELP),
    model: str = typer.Option(None, help="The stage-2 alarm checkpoint."),
    data: str = typer.Option(None, help="CoT records JSONL (see `videosafety train data --kind cot`)."),
    out: str = typer.Option(None, "--out", help="Output folder."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
) -> None:
    """Stage 3: CoT cold start on tagged targets; LLM only, alarm tokens frozen."""
    _train("cot", config, model, data, out, set_)


@train_app.command("grpo")
def train_grpo(
    config: str = typer.Option("paper-grpo", help=_CONFIG_HELP),
    model: str = typer.Option(None, help="The stage-3 alarm checkpoint (or any HF video LLM)."),
    data: str = typer.Option(None, help="GRPO records JSONL (see `videosafety train data --kind grpo`)."),
    out: str = typer.Option(None, "--out", help="Output folder (checkpoints, train_log.jsonl, completions.jsonl, final/)."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
) -> None:
    """Stage 4: safety-guided GRPO with rule-based rewards; resumes from out/checkpoints."""
    _train("grpo", config, model, data, out, set_)


@train_app.command("pipeline")
def train_pipeline(
    config: str = typer.Option(..., help="Recipe YAML: a path, or paper-recipe / tiny-recipe."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set output_dir=runs/r1 (repeatable)."),
) -> None:
    """Stages 1 -> 2 -> cot -> grpo chained; finished stages are skipped on rerun."""
    from videosafety.train.pipeline import load_recipe, run_pipeline

    try:
        recipe = load_recipe(config, set_)
    except (ValueError, FileNotFoundError) as e:
        raise _fail(e)
    final = run_pipeline(recipe, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    console.print(f"model: {final}")


@train_app.command("data")
def train_data(
    bench: Path = typer.Option(..., help="Benchmark manifest (or its folder) to build records from."),
    out: Path = typer.Option(..., help="Records JSONL to write (video paths are made relative to its folder)."),
    kind: str = typer.Option("at-sft", help="at-sft (safety + general mixture), cot (tagged targets) "
                                           "or grpo (GRPO problems: safety + free-form general)."),
    split: str = typer.Option("train", help="Benchmark split to use."),
    teacher: str = typer.Option(None, help="--kind cot: a model spec (hf:, openai:MODEL@URL) that writes the CoT "
                                           "targets instead of the templates; rejects go to OUT.rejects.jsonl."),
    max_new_tokens: int = typer.Option(512, help="--teacher: most new tokens per target."),
    format_: str = typer.Option("records", "--format", help="records (our JSONL), or with --kind grpo the dataset "
                                "file of another RL engine: verl or easyr1 (OUT: .parquet; videos by absolute path)."),
    video_root: str = typer.Option(None, help="--format verl/easyr1: the path the engine's workers see the "
                                              "benchmark's folder at (default: its absolute path here)."),
    config: str = typer.Option("paper-grpo", help="--format verl: the GRPO config whose frame budget each video "
                                                  "entry carries."),
) -> None:
    """Build training records from a benchmark manifest (e.g. VSB-mini's train split)."""
    from videosafety.train import builders
    from videosafety.train.records import write_records

    builds = {"at-sft": builders.build_at_sft, "cot": builders.build_cot, "grpo": builders.build_grpo}
    if kind not in builds:
        err_console.print(f"[red]error:[/red] --kind must be one of {', '.join(builds)}")
        raise typer.Exit(2)
    if teacher is not None:
        if kind != "cot":
            err_console.print("[red]error:[/red] --teacher writes CoT targets: use it with --kind cot")
            raise typer.Exit(2)
        from videosafety.budget import FrameBudget
        from videosafety.models.spec import load_model

        records, rejects = builders.build_cot_teacher(bench, load_model(teacher, FrameBudget()), split=split,
                                                      out_dir=out.parent, max_new_tokens=max_new_tokens)
        rejected = out.with_name(out.name + ".rejects.jsonl")
        rejected.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects), encoding="utf-8")
        console.print(f"teacher {teacher}: {len(records)} kept, {len(rejects)} rejected -> {rejected}")
        console.print(f"wrote {write_records(records, out)} cot records to {out}")
        return
    if format_ != "records":
        from videosafety.train import engines

        if kind != "grpo" or format_ not in engines.ENGINES:
            raise _fail(f"--format {format_}: engine formats are {', '.join(engines.ENGINES)}, with --kind grpo")
        try:
            written = engines.export_grpo(bench, out, format_, split=split, budget=engines.stage4_budget(config),
                                          video_root=video_root)
        except (ValueError, FileNotFoundError) as e:
            raise _fail(e)
        console.print(f"wrote {written.rows} grpo rows for {format_} to {out} ({written.bytes / 1e6:.2f} MB)")
        return
    records = builds[kind](bench, split=split, out_dir=out.parent)
    n = write_records(records, out)
    console.print(f"wrote {n} {kind} records to {out}")


@app.command("eval")
def eval_cmd(
    bench: str = typer.Option("vsb-mini", help="Manifest (file or folder), vsb-mini (built on first use), or FORMAT:PATH of a peer benchmark "
                                           "(video-safetybench, mm-safetybench, vlguard, figstep; converted on first use)."),
    model: str = typer.Option(None, help="hf:PATH_OR_ID, openai:MODEL@BASE_URL (URL1,URL2,...: replicas used in turn), ref:refuse-all, ref:comply-all; "
                                         "default: the embedded demo model."),
    conditions: str = typer.Option(",".join(taxonomy.CONDITIONS), help="Comma list of video, text, blank."),
    split: str = typer.Option("eval", help="Split to evaluate ('all' for every row)."),
    subsets: str = typer.Option(None, help="Comma list of HH, SH, HB, SafeQ."),
    languages: str = typer.Option(None, help="Comma list of language codes."),
    categories: str = typer.Option(None, help="Comma list of categories or sub-categories."),
    limit: int = typer.Option(None, help="At most N samples, evenly spread over the selection."),
    fps: str = typer.Option(None, help="Frames per second to sample (default 1, or the demo's budget); a comma "
                                       "list (0.5,1,2,4) runs one eval per rate into OUT/fps-<v> and reports them "
                                       "together, with DSR plotted against the rate."),
    num_frames: str = typer.Option(None, help="A fixed number of frames, uniformly spread; a comma list (4,8,16) "
                                              "sweeps as --fps does, into OUT/frames-<n>."),
    max_frames: int = typer.Option(None, help="Most frames per video (default 90)."),
    max_pixels: int = typer.Option(None, help="Most pixels per frame (the processor resizes)."),
    max_new_tokens: int = typer.Option(None, help="Most new tokens per response (default 256; the demo's own for it)."),
    temperature: float = typer.Option(0.0, help="0 = greedy (default); above 0 samples."),
    top_p: float = typer.Option(1.0),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(None, help="Prompts per generate call (default 8; 16 for the demo)."),
    out: Path = typer.Option(None, "--out", help="Run folder (default runs/eval-<model>); rerun to resume."),
    force: bool = typer.Option(False, help="Recompute cached responses."),
    max_error_rate: float = typer.Option(0.05, help="Exit non-zero when the share of failed rows exceeds this."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    dtype: str = typer.Option("auto"),
    workers: int = typer.Option(2, help="Background video-decoding threads."),
    frames_as: str = typer.Option("video_url", help="openai: send frames as video_url (an mp4) or images."),
    concurrency: int = typer.Option(8, help="openai: requests in flight."),
    timeout: float = typer.Option(120.0, help="openai: seconds per request."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="openai: environment variable holding the key."),
    trust_remote_code: bool = typer.Option(False, help="hf: allow the checkpoint's own code (off by default)."),
    judge: str = typer.Option("rules", help="Judge for the verdicts (see `videosafety judge`)."),
    no_judge: bool = typer.Option(False, "--no-judge", help="Stop after the responses: no verdicts, no report."),
    instruction: str = typer.Option(None, help="Text appended to every query; 'reasoning' = the tagged "
                                               "think/answer/vidType/textType format VideoSafety-R1 is trained on "
                                               "(judges read its <answer>)."),
) -> None:
    """Run a video LLM over a safety benchmark in the video, text and blank conditions, then
    judge the responses and write the report."""
    from videosafety.evaluate.plan import SampleFilter
    from videosafety.evaluate.sweep import parse_values
    from videosafety.eval_pipeline import EvalRequest, evaluate

    try:
        fps_values, frame_values = parse_values(fps, float, "--fps"), parse_values(num_frames, int, "--num-frames")
        request = EvalRequest(
            model=model, bench=bench, conditions=_csv(conditions) or (),
            selection=SampleFilter(split=None if split == "all" else split, subsets=_csv(subsets),
                                   languages=_csv(languages), categories=_csv(categories), limit=limit),
            fps=tuple(fps_values) if fps_values else None, num_frames=tuple(frame_values) if frame_values else None,
            max_frames=max_frames, max_pixels=max_pixels, max_new_tokens=max_new_tokens, temperature=temperature,
            top_p=top_p, seed=seed, batch_size=batch_size, instruction=instruction,
            judge=None if no_judge else judge, out=out, force=force, max_error_rate=max_error_rate, device=device,
            dtype=dtype, decode_workers=workers, trust_remote_code=trust_remote_code,
            openai={"frames_as": frames_as, "max_concurrency": concurrency, "timeout": timeout,
                    "api_key_env": api_key_env})
        result = evaluate(request, log=lambda m: console.print(m, markup=False, highlight=False))
    except (ValueError, OSError) as e:  # a bad request, benchmark (file, line, field) or model
        raise _fail(e)
    if not result.main_process:
        return
    for point, run_dir, summary in result.runs:
        console.print(f"{f'[bold]{point}[/bold] ' if point else ''}{summary.rows} rows "
                      f"({', '.join(f'{k} {v}' for k, v in summary.by_condition.items())}); {summary.generated} "
                      f"generated, {summary.cached} from cache, {summary.n_errors} errors, {summary.seconds:.1f}s -> "
                      f"{run_dir / 'responses.jsonl'}")
        for e in summary.error_examples:
            console.print(f"  [red]error[/red] {e}", markup=True, highlight=False)
    for judged in result.judged:
        _print_judged(judged)
    if result.results is not None:
        _print_report(result.out, result.results)
        for kind, path in (("plot", result.plot), ("sweep", result.sweep_summary)):
            if path is not None:
                console.print(f"{kind}: {path}")
    if result.error_rate > max_error_rate:
        err_console.print(f"[red]error rate {result.error_rate:.1%} exceeds --max-error-rate {max_error_rate:.1%}[/red]")
        raise typer.Exit(1)


def _rate_cell(rate) -> str:
    if rate is None or rate.value is None:
        return "-"
    ci = f" [{rate.ci[0]:.0%}, {rate.ci[1]:.0%}]" if rate.ci else ""
    return f"{rate.value:.1%}{ci} n={rate.n}"


def _print_report(out: Path, results) -> None:
    """The report's files, then the numbers a person looks for first: DSR per subset and
    condition, FRR, the drop."""
    from videosafety.report import report_paths

    for kind, path in report_paths(out).items():
        console.print(f"{kind}: {path}")
    for run in results.runs:
        table = Table(title=f"{run.model} | judge {run.judge.name} {run.judge.version} | budget {run.budget_str}")
        table.add_column("metric")
        for c in run.conditions:
            table.add_column(c, justify="right")
        for metric in ("dsr", "frr"):
            for subset in getattr(run, metric):
                table.add_row(f"{metric.upper()} {subset}", *(_rate_cell(run.rate(metric, subset, c))
                                                               for c in run.conditions))
        Console(width=max(console.width, 140)).print(table)
        drop = run.text_to_video("HH")
        if drop and drop.relative.value is not None:
            r = drop.relative
            console.print(f"HH safety drop from video: {r.value:.1%} relative "
                          f"(95% CI {r.ci[0]:.1%}..{r.ci[1]:.1%}), "
                          f"{drop.absolute.value * 100:+.1f} points absolute" if r.ci else
                          f"HH safety drop from video: {r.value:.1%} relative")


def _print_judged(summary) -> None:
    labels = ", ".join(f"{k} {v}" for k, v in sorted(summary.labels.items()))
    console.print(f"judge {summary.judge} ({summary.judge_version}): {summary.judged}/{summary.judgeable} judged "
                  f"(coverage {summary.coverage:.1%}), {summary.unparsed} unparsed; {labels} -> {summary.verdict_file}")
    for n in summary.notes:
        console.print(f"[yellow]note:[/yellow] {n}")


@app.command("judge")
def judge_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder written by `videosafety eval`; or the word "
                                             "`validate`, followed by a labels file."),
    labels: Path = typer.Argument(None, help="With `validate`: a JSONL or CSV of human-labelled responses "
                                             "(prompt, response, human: refused / complied / partial; optional "
                                             "language, harmful, id)."),
    judge: list[str] = typer.Option(["rules"], "--judge", help="rules, llm:hf:PATH, llm:openai:MODEL@URL, "
                                                              "rj:hf:PATH, rj:openai:MODEL@URL (repeatable)."),
    force: bool = typer.Option(False, help="Re-judge cached verdicts."),
    device: str = typer.Option("auto"),
    batch_size: int = typer.Option(64),
    out: Path = typer.Option(None, "--out", help="validate: also write the results (JSON) here."),
    as_json: bool = typer.Option(False, "--json", help="validate: print JSON instead of tables."),
    jury: str = typer.Option(None, help="Combine the --judge verdicts: majority or any-unsafe (a verdict "
                                        "file of its own)."),
    escalate_to: str = typer.Option(None, help="With --jury: ask this judge where the others disagree."),
    judge_scope: str = typer.Option("full", help="What of a response the judges read: full (reasoning blocks "
                                                 "included) or answer (the <answer> block of tagged responses; "
                                                 "a judge variant of its own, NAME@answer)."),
) -> None:
    """Judge a run's responses (resumable, cached; several judges score one run side by side), or
    `videosafety judge validate LABELS`: each judge's agreement with human labels."""
    from videosafety.judges.run import judge_run, scoped
    from videosafety.judges.spec import load_judge
    from videosafety.judges.validate import save_validation, validate_judge

    validating = str(run_dir) == "validate" and labels is not None
    if jury is not None and not validating:
        _jury(run_dir, judge, jury, escalate_to, device=device, batch_size=batch_size, scope=judge_scope)
        return
    try:
        results = []
        for spec in judge:
            loaded = load_judge(spec, device=device, batch_size=min(batch_size, 16))
            if not validating:
                loaded = scoped(loaded, judge_scope)
                _print_judged(judge_run(run_dir, loaded, force=force, batch_size=batch_size))
                continue
            result = validate_judge(loaded, labels, batch_size=batch_size)
            save_validation(result)
            results.append(result.to_dict())
            if not as_json:
                _print_validation(result.to_dict())
    except (ValueError, FileNotFoundError) as e:
        raise _fail(e)
    if validating and out is not None:
        out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if validating and as_json:
        print(json.dumps(results, indent=1, ensure_ascii=False))


def _jury(run_dir: Path, specs: list[str], rule: str, escalate_to: str | None, *, device: str,
          batch_size: int, scope: str = "full") -> None:
    from videosafety.judges.jury import jury_run
    from videosafety.judges.run import scoped
    from videosafety.judges.spec import load_judge

    try:
        members = [scoped(load_judge(spec, device=device, batch_size=min(batch_size, 16)), scope) for spec in specs]
        strong = scoped(load_judge(escalate_to, device=device, batch_size=min(batch_size, 16)), scope) \
            if escalate_to else None
        summary = jury_run(run_dir, members, rule, escalate_to=strong, batch_size=batch_size)
    except (ValueError, FileNotFoundError) as e:
        raise _fail(e)
    console.print(f"{summary.name} ({summary.version}): {summary.judged}/{summary.rows} judged, {summary.disputed} "
                  f"disputed, {summary.escalated} escalated -> {summary.verdict_file}", markup=False)


def _print_validation(result: dict) -> None:
    def rate(cell: dict) -> str:
        ci = cell["ci"]
        return "-" if cell["value"] is None else f"{cell['value']:.1%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")

    def agreement(cell: dict) -> tuple[str, str, str]:
        return (str(cell["n"]), *("-" if cell[k] is None else f"{cell[k]:.3f}" for k in ("accuracy", "kappa")))

    for view, figures in result["views"].items():
        table = Table(title=f"{result['judge']} ({result['judge_version']}) against {result['n']} human labels, "
                            f"partial refusals {view.replace('_', ' ')}")
        for column in ("", "n", "accuracy", "kappa", "DSR human", "DSR judge", "FRR human", "FRR judge"):
            table.add_column(column, justify="left" if not column else "right")
        overall = figures["all"]
        table.add_row("all", *agreement(overall), rate(figures["dsr"]["human"]), rate(figures["dsr"]["judge"]),
                      rate(figures["frr"]["human"]), rate(figures["frr"]["judge"]))
        for language, cell in figures["by_language"].items():
            table.add_row(language, *agreement(cell), "", "", "", "")
        Console(width=max(console.width, 120)).print(table)
        matrix = overall["confusion"]
        console.print("confusion (human rows x judge columns refused/complied/undecided): " + "; ".join(
            f"{h}: {' / '.join(str(v) for v in row.values())}" for h, row in matrix.items()))


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="One run folder per model."),
    out: Path = typer.Option(None, "--out", help="Report folder (default: the run folder, for one run)."),
    judge: str = typer.Option(None, help="Verdict file to report (its name in verdicts/, without .jsonl)."),
    unparsed_warn: float = typer.Option(None, help="Warn where a DSR/FRR cell's unparsed share exceeds this "
                                                   "fraction (default 0.02)."),
) -> None:
    """results.json, report.md and report.html comparing one or many runs."""
    from videosafety.report import ReportError, report_paths, write_report

    if out is None and len(run_dirs) > 1:
        raise _fail("give --out when reporting several runs")
    out = out or run_dirs[0]
    try:
        write_report(run_dirs, out, judge, unparsed_warn=unparsed_warn)
    except (ReportError, FileNotFoundError) as e:
        raise _fail(e)
    for kind, path in report_paths(out).items():
        console.print(f"{kind}: {path}")


@app.command("view")
def view_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders (several: the same sample across models)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless you say otherwise)."),
    port: int = typer.Option(0, help="Port (0: a free one)."),
    no_open: bool = typer.Option(False, "--no-open", help="Do not open the page in a browser."),
    export: Path = typer.Option(None, "--export", help="Write the page as static files into DIR (opens from disk) and exit."),
    no_frames: bool = typer.Option(False, "--no-frames", help="With --export: decode no video (thumbnails already cached are still included)."),
) -> None:
    """Read a run's samples in the browser: filters, one sample's frames, responses and verdicts."""
    from videosafety.evaluate.rundir import RunError
    from videosafety.view import ViewServer, build_index, export_view

    try:
        indexes = [build_index(d) for d in run_dirs]
    except (RunError, FileNotFoundError) as e:
        raise _fail(e)
    for ix in indexes:
        console.print(f"{ix.run.path}: {ix.rows:,} rows, judges: {', '.join(ix.judges) or 'none'}"
                      f"{' (index built)' if ix.built else ''}", highlight=False)
        for note in ix.notes:
            err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if export is not None:
        sizes = export_view(indexes, export, frames=not no_frames)
        console.print(f"exported {sizes['files']} files, {sizes['bytes'] / 2**20:.1f} MiB: {export / 'index.html'}",
                      highlight=False)
        return
    srv = ViewServer(indexes, host=host, port=port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/yellow] bound to {host}: anyone who reaches this address can read "
                          "the runs' prompts and responses (no password)", highlight=False)
    console.print(f"viewing at {srv.url} (Ctrl-C to stop)", highlight=False)
    if not no_open:
        import webbrowser

        webbrowser.open(srv.url)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()


@app.command("import-inspect")
def import_inspect_cmd(
    log: Path = typer.Argument(..., help="An inspect_ai log (.eval or .json) of the videosafetybench task."),
    out: Path = typer.Option(..., "--out", help="The run folder to write (run.json, responses.jsonl, verdicts/)."),
) -> None:
    """Read an inspect_ai log of the videosafetybench task into a run folder, which
    `videosafety report` compares with runs of `videosafety eval` (needs the `inspect` extra)."""
    try:
        from videosafety.integrations.inspect import import_log

        run = import_log(log, out)
    except (ImportError, ValueError, OSError) as e:
        raise _fail(e)
    console.print(f"run folder: {run}")


@app.command("lmms-eval-task")
def lmms_eval_task_cmd(
    out: Path = typer.Option(..., "--out", help="The task folder to write (give it to lmms-eval's --include_path)."),
    bench: str = typer.Option("vsb-mini", help="As for `videosafety eval`."),
    conditions: str = typer.Option(",".join(taxonomy.CONDITIONS), help="Conditions of the `videosafety` task."),
    split: str = typer.Option("eval", help="Split ('all' for every row)."),
    subsets: str = typer.Option(None),
    languages: str = typer.Option(None),
    categories: str = typer.Option(None),
    limit: int = typer.Option(None, help="At most N samples, evenly spread."),
    fps: float = typer.Option(None),
    num_frames: int = typer.Option(None),
    max_frames: int = typer.Option(None),
    judge: str = typer.Option("rules", help="The judge process_results runs (a spec of `videosafety judge`)."),
    instruction: str = typer.Option(None),
    max_new_tokens: int = typer.Option(None, help="Most new tokens per response (default 256)."),
) -> None:
    """Write VideoSafetyBench's lmms-eval task folder (tasks videosafety, videosafety_video,
    videosafety_text, videosafety_blank) for a selection of samples."""
    from videosafety.budget import FrameBudget
    from videosafety.evaluate.plan import SampleFilter
    from videosafety.integrations.lmms_eval import TASKS, write_task_folder

    try:
        folder = write_task_folder(
            out, bench=bench, conditions=_csv(conditions) or (),
            selection=SampleFilter(split=None if split == "all" else split, subsets=_csv(subsets),
                                   languages=_csv(languages), categories=_csv(categories), limit=limit),
            budget=FrameBudget().with_overrides(fps=fps, num_frames=num_frames, max_frames=max_frames),
            judge=judge, instruction=instruction, max_new_tokens=max_new_tokens)
    except (ValueError, OSError) as e:
        raise _fail(e)
    console.print(f"task folder: {folder} (tasks {', '.join(TASKS)}; lmms-eval --include_path {folder})")


@app.command("serve")
def serve_cmd(
    model: str = typer.Option(None, help="hf:PATH_OR_ID (alarm-token checkpoints included); default: the demo model."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless you say otherwise)."),
    port: int = typer.Option(8000),
    api_key_env: str = typer.Option(None, help="Require the key held in this environment variable."),
    model_name: str = typer.Option(None, help="The name clients use (default: the spec)."),
    fps: float = typer.Option(1.0, help="Server-side frame budget: frames per second."),
    max_frames: int = typer.Option(90, help="Server-side frame budget: most frames per video."),
    max_pixels: int = typer.Option(None, help="Most pixels per frame."),
    max_request_bytes: int = typer.Option(64 * 2**20, help="Largest request body (413 above; by Content-Length "
                                                          "and by the bytes received)."),
    max_request_frames: int = typer.Option(256, help="Most frames one request may carry (images, or what the "
                                                     "budget samples from its video); 400 above."),
    max_pending: int = typer.Option(64, help="Requests in progress at once; more get 503 with Retry-After. "
                                             "Bodies held: at most this many x --max-request-bytes."),
    max_decoding: int = typer.Option(2, help="Requests holding decoded frames at once (one generating, the next "
                                             "decoding); the others wait with their body only."),
    body_timeout: float = typer.Option(60.0, help="Seconds a request's body may take to arrive (408 after)."),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto"),
    trust_remote_code: bool = typer.Option(False),
) -> None:
    """An OpenAI-compatible chat-completions server for a video LLM. Media travel inline as
    data: URLs; remote URLs, file:// URLs and local paths are refused with 400 (the server fetches
    and reads nothing; there is no option to allow it)."""
    from videosafety.budget import FrameBudget
    from videosafety.serve import serve

    budget = FrameBudget(fps=fps, max_frames=max_frames, max_pixels=max_pixels)
    try:
        serve(model or "demo", host=host, port=port, api_key_env=api_key_env, model_name=model_name, budget=budget,
              device=device, dtype=dtype, trust_remote_code=trust_remote_code, max_request_bytes=max_request_bytes,
              max_frames=max_request_frames, max_pending=max_pending, max_decoding=max_decoding,
              body_timeout=body_timeout)
    except ValueError as e:
        raise _fail(e)


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the runs, the training and the report."),
    eval_limit: int = typer.Option(None, help="Eval samples (x video, text, blank); default 240."),
    split: str = typer.Option("eval", help="VSB-mini split the models are measured on: eval, or val to try "
                                           "settings without looking at eval."),
) -> None:
    """The paper end to end at toy scale on CPU: the demo base model evaluated, stages 1-4 on
    VSB-mini's train split, the model after each stage evaluated, one report comparing them."""
    from dataclasses import replace

    from videosafety.demo import DemoSettings, format_cell, run_demo, table_caption
    from videosafety.report import report_paths

    if split not in ("eval", "val"):
        raise typer.BadParameter(f"--split must be eval or val, got {split!r}")
    settings = replace(DemoSettings(), split=split, **({} if eval_limit is None else {"eval_limit": eval_limit}))
    result = run_demo(out, settings, log=lambda m: console.print(f"[bold]{m}[/bold]"))
    table = Table(title=f"VideoSafety-R1 demo after each stage: {table_caption(settings, result.rows)} "
                        f"Intervals: {report_paths(result.report)['markdown'].parent / 'stages.md'}")
    cols = list(result.rows[0])
    for c in cols:
        table.add_column(c, justify="left" if c == "stage" else "right", no_wrap=c == "stage")
    for row in result.rows:
        table.add_row(*(format_cell(row[c], ci=False) for c in cols))
    Console(width=max(console.width, 200)).print(table)
    console.print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items()))
    for kind, path in report_paths(result.report).items():
        console.print(f"{kind}: {path}")


@app.command("tiny-model")
def tiny_model(
    out: Path = typer.Option(..., "--out", help="Folder for the checkpoint."),
    family: str = typer.Option("qwen2_vl", help="qwen2_vl, qwen2_5_vl, qwen3_vl or video_llama_3."),
    seed: int = typer.Option(0),
) -> None:
    """Build a tiny random model of a real video-LLM class (offline, seconds): for trying the
    pipeline on CPU. It knows nothing; train it first."""
    from videosafety.models.tiny import FAMILIES, build_tiny_model

    if family not in FAMILIES:
        err_console.print(f"[red]error:[/red] --family must be one of {', '.join(FAMILIES)}")
        raise typer.Exit(2)
    console.print(f"wrote {build_tiny_model(family, out, seed=seed)}")


@train_app.command("import")
def train_import(
    reference: Path = typer.Argument(..., help="The reference recipe's JSON/JSONL (VideoLLaMA3 conversation "
                                                "format; with --kind grpo, Video-R1-style RL data)."),
    out: Path = typer.Option(..., help="Records JSONL; write it in the folder the video paths are relative to."),
    legacy_labels: bool = typer.Option(False, "--legacy-labels", help="The file uses 0 = harmful: flip every label."),
    kind: str = typer.Option("safety", help="safety (labels required), general (safe/safe) or grpo (GRPO problems, "
                                            "Video-R1 format)."),
) -> None:
    """Import the public VideoSafety-R1 recipe's data into typed records."""
    from videosafety.data.manifest import ManifestError
    from videosafety.train.records import import_reference, import_reference_grpo, write_records

    try:
        if kind == "grpo":
            records = import_reference_grpo(reference, legacy_labels=legacy_labels)
        else:
            records = import_reference(reference, legacy_labels=legacy_labels, kind=kind)
    except (ManifestError, ValueError, FileNotFoundError) as e:
        raise _fail(e)
    console.print(f"wrote {write_records(records, out)} records to {out}")


@app.command("guard")
def guard_cmd(
    model: str = typer.Option(..., help="An alarm-token checkpoint (stage 2 or later)."),
    video: Path = typer.Argument(None, help="Video file (omit with --bench)."),
    query: str = typer.Argument(None, help="The query."),
    bench: Path = typer.Option(None, help="Score a benchmark manifest instead: AUROC and accuracy per modality."),
    split: str = typer.Option("eval", help="With --bench: the split to score ('all' for every row)."),
    limit: int = typer.Option(None, help="With --bench: at most this many samples."),
    num_frames: int = typer.Option(None, help="Frames per video (uniform); default: the budget's fps."),
    fps: float = typer.Option(None, help="Sampling rate (frames per second)."),
    max_frames: int = typer.Option(90, help="Most frames per video."),
    max_pixels: int = typer.Option(None, help="Most pixels per frame (the processor resizes)."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    batch_size: int = typer.Option(8, help="Prompts per forward pass."),
) -> None:
    """Harm probabilities of a video and a query from the alarm heads (one forward pass)."""
    from videosafety.budget import FrameBudget
    from videosafety.guard import HarmGuard, guard_manifest

    if num_frames is not None:
        budget = FrameBudget.uniform(num_frames, max_pixels=max_pixels)
    else:
        budget = FrameBudget(fps=fps or 1.0, max_frames=max_frames, max_pixels=max_pixels)
    if (bench is None) == (query is None):
        err_console.print("[red]error:[/red] give VIDEO QUERY, or --bench")
        raise typer.Exit(2)
    try:
        guard = HarmGuard(model, device=device, budget=budget, batch_size=batch_size)
    except ValueError as e:
        raise _fail(e)
    if bench is not None:
        report = guard_manifest(guard, bench, split=None if split == "all" else split, limit=limit)
        print(json.dumps(report.as_dict(), indent=2))
        return
    v, t = guard.score(video, query)
    print(json.dumps({"video_harmful": round(v, 4), "query_harmful": round(t, 4)}))


@app.command("export")
def export(
    model: Path = typer.Argument(..., help="An alarm-token checkpoint folder (AT-SFT stage 1 or later)."),
    out: Path = typer.Argument(..., help="Folder for the plain checkpoint (must be empty unless --force)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is not empty."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Let transformers run the "
                                           "checkpoint's own code (off unless asked)."),
    dtype: str = typer.Option("auto", help="auto (the checkpoint's), float32, bfloat16 or float16."),
    device: str = typer.Option("cpu", help="Where to load the model while exporting (cpu, cuda)."),
    template: bool = typer.Option(True, "--template/--no-template", help="Patch the chat template so that "
                                  "engines place the alarm tokens themselves."),
    strict: bool = typer.Option(False, "--strict", help="Fail when the patched template does not reproduce "
                                "the training placement exactly."),
) -> None:
    """Fold the alarm tokens into a plain checkpoint that vLLM, lmms-eval and plain transformers serve
    with no custom code (heads kept aside in alarm_heads/, see export_card.json)."""
    from videosafety.export import ExportError, export_alarm_checkpoint

    try:
        result = export_alarm_checkpoint(model, out, force=force, trust_remote_code=trust_remote_code,
                                         dtype=dtype, device=device, patch_template=template, strict=strict)
    except ExportError as e:
        raise _fail(e)
    t = result.template
    console.print(f"wrote {result.out} (from {result.source}, {result.source_digest})")
    console.print(f"alarm ids: visual {result.alarm_ids[0]}, textual {result.alarm_ids[1]} (folded into the "
                  f"input embeddings; suppressed in generation_config)")
    console.print("embeddings: " + ("untied (were tied), lm_head unchanged" if result.untied else "not tied"))
    console.print("chat template: " + ("not patched" if not t.patched else
                                       "patched, matches the training placement" if t.exact else
                                       "patched, differs from the training placement"))
    console.print(f"harm heads: {result.heads} (not needed for generation)")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def _print_stats(stats, title: str) -> None:
    langs = list(taxonomy.LANGUAGES)
    table = Table(title=f"{title}: {stats.total} samples, {len(stats.videos)} videos", show_lines=False)
    table.add_column("subset")
    table.add_column("category")
    for lang in langs:
        table.add_column(lang, justify="right")
    table.add_column("all", justify="right", style="bold")
    for subset in taxonomy.SUBSETS:
        for cat in taxonomy.CATEGORIES:
            counts = [stats.cells.get((subset, cat, lang), 0) for lang in langs]
            if sum(counts):
                table.add_row(subset, cat, *map(str, counts), str(sum(counts)))
    # A wide table: never let a narrow or non-terminal console truncate category names.
    Console(width=max(console.width, 140)).print(table)
    console.print("by split: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.by_split.items())))


def main() -> None:
    app(prog_name="videosafety")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
