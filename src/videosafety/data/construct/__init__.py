"""Building a VideoSafetyBench-style benchmark from real videos (spec §1.5), in resumable stages.

Each stage reads the previous stage's JSONL and writes its own, one record per video, every
record carrying its provenance (stage, rule or model, settings, when). A stage's output is also
its cache: on rerun, a video whose content (sha256) and stage settings are unchanged keeps its
record; only new or changed videos are processed.

Stages here: `ingest` (probe, reject unreadable files, exact duplicates by sha256, near
duplicates by a perceptual hash of sampled frames) and `static` (drop near-static clips by the
similarity of features of uniformly sampled frames: a Hugging Face vision model through
`AutoModel`, or a built-in pixel/histogram score), `label` (label.py: voting video labellers and
human review), `queries` (template queries per labelled video, optionally paraphrased),
`translate` (into the ten languages, checked by language identification) and `pair` (quotas, a
train/eval split without leakage, the validated benchmark folder).
"""

from videosafety.data.construct.ingest import IngestSettings, ingest
from videosafety.data.construct.pair import PairSettings, pair
from videosafety.data.construct.queries import QuerySettings, make_queries
from videosafety.data.construct.static import StaticSettings, static_filter
from videosafety.data.construct.translate import TranslateSettings, translate_queries

__all__ = ["IngestSettings", "PairSettings", "QuerySettings", "StaticSettings", "TranslateSettings", "ingest",
           "make_queries", "pair", "static_filter", "translate_queries"]
