"""Building a VideoSafetyBench-style benchmark from real videos (spec §1.5), in resumable stages.

Each stage reads the previous stage's JSONL and writes its own, one record per video, every
record carrying its provenance (stage, rule or model, settings, when). A stage's output is also
its cache: on rerun, a video whose content (sha256) and stage settings are unchanged keeps its
record; only new or changed videos are processed.

Stages here: `ingest` (probe, reject unreadable files, exact duplicates by sha256, near
duplicates by a perceptual hash of sampled frames) and `static` (drop near-static clips by the
similarity of features of uniformly sampled frames: a Hugging Face vision model through
`AutoModel`, or a built-in pixel/histogram score).
"""

from videosafety.data.construct.ingest import IngestSettings, ingest
from videosafety.data.construct.static import StaticSettings, static_filter

__all__ = ["IngestSettings", "StaticSettings", "ingest", "static_filter"]
