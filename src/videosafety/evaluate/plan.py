"""The plan of a run: the manifest read once into work items (sample, condition, cache key,
prompt), in the order the run writes them. Generation, the response rows and (through them)
the judges all use it; nothing goes back to the manifest.

A planned sample keeps what the run needs of a manifest sample and drops the rest (reference
answer, provenance other than the groupings the report uses), so a plan over the paper's 77k
samples stays small."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from sys import intern

import numpy as np

from videosafety.data.manifest import iter_records, iter_samples, manifest_root, sample_of
from videosafety.evaluate.cache import cache_key
from videosafety.schema import Sample
from videosafety.tags import with_instruction


@dataclass(frozen=True)
class SampleFilter:
    """Which samples of a manifest a run evaluates."""

    split: str | None = "eval"
    subsets: tuple[str, ...] | None = None
    languages: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None  # categories or sub-categories
    limit: int | None = None  # evenly spread over the filtered samples, so every stratum shows

    def keeps(self, s: Sample | dict) -> bool:
        """Whether a sample, or a manifest row not yet validated, is selected."""
        get = s.get if isinstance(s, dict) else (lambda name: getattr(s, name))
        return ((self.split is None or get("split") == self.split)
                and (self.subsets is None or get("subset") in self.subsets)
                and (self.languages is None or get("language") in self.languages)
                and (self.categories is None or get("category") in self.categories
                     or get("subcategory") in self.categories))


@dataclass(frozen=True, slots=True)
class PlannedVideo:
    """A manifest's VideoRef without the pydantic object around it (a sixth of its memory)."""

    path: str
    sha256: str
    duration: float
    fps: float
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class PlannedSample:
    id: str
    subset: str
    category: str
    subcategory: str
    language: str
    video_label: int
    query_label: int
    query: str
    prompt: str  # the query with the run's instruction appended: what the model is asked
    harmful_intention: str | None
    video: PlannedVideo
    attack: str | None  # data.augment's attack name
    peer: str | None  # data.peers' benchmark and its own subset name
    peer_subset: str | None

    @classmethod
    def of(cls, s: Sample, instruction: str | None) -> "PlannedSample":
        prov, v = s.provenance, s.video
        # the grouping names repeat across samples: one string object each, not one per sample
        return cls(s.id, intern(s.subset), intern(s.category), intern(s.subcategory), intern(s.language),
                   s.video_label, s.query_label, s.query,
                   with_instruction(s.query, instruction), s.harmful_intention,
                   PlannedVideo(v.path, v.sha256, v.duration, v.fps, v.width, v.height),
                   prov.get("attack") or None, prov.get("peer") or None, prov.get("peer_subset") or None)


@dataclass(frozen=True, slots=True)
class WorkItem:
    index: int  # position in the run's order: item i belongs to rank i % world
    sample: PlannedSample
    condition: str
    key: str  # the response cache key (evaluate.cache.cache_key)


@dataclass(frozen=True)
class Plan:
    manifest: Path
    root: Path  # the folder video paths are relative to
    samples: tuple[PlannedSample, ...]
    items: tuple[WorkItem, ...]  # condition-major, then manifest order


def condition_runs(items: Sequence[WorkItem]) -> Iterator[list[WorkItem]]:
    """Consecutive runs of one condition (a model batch never mixes conditions)."""
    run: list[WorkItem] = []
    for it in items:
        if run and it.condition != run[0].condition:
            yield run
            run = []
        run.append(it)
    if run:
        yield run


def spread(kept: list, limit: int | None) -> list:
    """At most `limit` of `kept`, evenly spaced (first and last included), in order."""
    if limit is None:
        return kept
    n = min(limit, len(kept))
    chosen = sorted(set(np.linspace(0, len(kept) - 1, n).round().astype(int).tolist())) if n else []
    return [kept[i] for i in chosen]


def select(manifest: str | Path, selection: SampleFilter) -> list[Sample]:
    """The selected samples in manifest order, from one pass over the manifest."""
    return spread([s for s in iter_samples(manifest) if selection.keeps(s)], selection.limit)


def make_plan(manifest: str | Path, selection: SampleFilter, conditions: Sequence[str], fingerprint: str,
              instruction: str | None = None) -> Plan:
    """One pass over the manifest: rows are selected on their raw fields, and only the selected
    ones are validated (a bad row the run does not use does not stop it; `bench validate`
    checks every row). Converted as they are read, so the full samples of a large manifest are
    never held together."""
    if selection.limit is None:
        samples = tuple(PlannedSample.of(sample_of(manifest, line, rec), instruction)
                        for line, rec in iter_records(manifest) if selection.keeps(rec))
    else:
        chosen = spread([(line, rec) for line, rec in iter_records(manifest) if selection.keeps(rec)], selection.limit)
        samples = tuple(PlannedSample.of(sample_of(manifest, line, rec), instruction) for line, rec in chosen)
    items = []
    for condition in conditions:
        for s in samples:
            items.append(WorkItem(len(items), s, condition, cache_key(fingerprint, s, condition)))
    return Plan(Path(manifest), manifest_root(manifest), samples, tuple(items))
