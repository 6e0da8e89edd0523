"""`videosafety bench build`: the construction stages run in order, each reading the previous
stage's output in OUT and writing its own (resumable: each stage's output is its cache)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from videosafety import taxonomy
from videosafety.data.construct.ingest import IngestSettings, ingest
from videosafety.data.construct.label import LabelSettings, label_videos
from videosafety.data.construct.pair import PairSettings, pair
from videosafety.data.construct.queries import QuerySettings, make_queries
from videosafety.data.construct.static import StaticSettings, static_filter
from videosafety.data.construct.translate import TranslateSettings, translate_queries

STAGES = ("ingest", "static", "label", "queries", "translate", "pair")


@dataclass(frozen=True)
class BuildRequest:
    videos: Path  # folder of candidate videos
    metadata: Path  # CSV or JSONL, one row per video
    out: Path  # the stage outputs; the benchmark folder is OUT/dataset
    stages: tuple[str, ...] = ("ingest", "static")
    static_model: str | None = None  # AutoModel for the static filter; None: the built-in pixel score
    static_threshold: float = 0.999
    near_duplicate_bits: float = 6.0
    labellers: tuple[str, ...] = ()
    min_agreement: float = 1.0
    paraphraser: str | None = None
    translator: str | None = None
    languages: tuple[str, ...] = tuple(taxonomy.LANGUAGES)
    quota: int | None = None
    eval_share: float = 0.2
    workers: int | None = None  # None: up to 4, by CPU count

    def check(self) -> None:
        """Raises ValueError for stages that cannot run with these options."""
        unknown = [x for x in self.stages if x not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; available: {', '.join(STAGES)}")
        if "label" in self.stages and not self.labellers:
            raise ValueError("stage label needs at least one --labeller")
        if "translate" in self.stages and not self.translator and list(self.languages) != ["en"]:
            raise ValueError("stage translate needs --translator (or --languages en)")


@dataclass(frozen=True)
class StageDone:
    stage: str
    line: str  # one line for people: counts and the output file
    problems: list[str] = field(default_factory=list)  # validation problems of the finished benchmark


def build(request: BuildRequest, on_stage: Callable[[StageDone], None] = lambda done: None) -> list[StageDone]:
    """Run the requested stages in order; `on_stage` hears of each as it finishes."""
    request.check()
    out, videos, workers = request.out, request.videos, request.workers
    done: list[StageDone] = []

    def report(stage: str, line: str, problems: list[str] | None = None) -> None:
        done.append(StageDone(stage, line, problems or []))
        on_stage(done[-1])

    if "ingest" in request.stages:
        s = ingest(videos, request.metadata, out, IngestSettings(near_duplicate_bits=request.near_duplicate_bits),
                   workers=workers)
        report("ingest", f"{s.kept}/{s.listed} kept, rejected {s.rejected or 0}, {s.examined} examined -> {s.output}")
    if "static" in request.stages:
        s = static_filter(videos, out, StaticSettings(threshold=request.static_threshold, model=request.static_model),
                          workers=workers)
        report("static", f"{s.kept}/{s.candidates} kept, {s.static} near-static, {s.errors} unreadable, "
                         f"{s.scored} scored -> {s.output}")
    if "label" in request.stages:
        s = label_videos(videos, out, LabelSettings(labellers=list(request.labellers),
                                                    min_agreement=request.min_agreement))
        report("label", f"{s.harmful} harmful, {s.safe} safe, {s.flagged} flagged for review "
                        f"(`videosafety bench review {out} --export sheet.csv`), {s.labelled} asked -> {s.output}")
    if "queries" in request.stages:
        s = make_queries(out, QuerySettings(paraphraser=request.paraphraser))
        report("queries", f"{s.queries} for {s.videos} video(s), {s.paraphrased} paraphrased, {s.rejected} "
                          f"paraphrase(s) rejected, {s.drafted} drafted -> {s.output}")
    if "translate" in request.stages:
        s = translate_queries(out, TranslateSettings(translator=request.translator, languages=list(request.languages)))
        report("translate", f"{s.accepted} accepted, {s.rejected} rejected, {s.asked} asked -> {s.output}")
    if "pair" in request.stages:
        s = pair(videos, out, PairSettings(quota=request.quota, eval_share=request.eval_share))
        report("pair", f"{s.samples} samples of {s.candidates} candidates, {s.splits['train']} train, "
                       f"{s.splits['eval']} eval, {s.components} component(s) -> {s.output}",
               [str(p) for p in s.problems])
    return done
