"""Counts of a manifest by subset, category, sub-category, language and split (bench info)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from videosafety.schema import Sample


@dataclass
class ManifestStats:
    total: int = 0
    by_split: Counter = field(default_factory=Counter)
    by_subset: Counter = field(default_factory=Counter)
    by_language: Counter = field(default_factory=Counter)
    by_category: Counter = field(default_factory=Counter)
    by_subcategory: Counter = field(default_factory=Counter)
    # (subset, category, language) -> count: the subset x category x language table
    cells: Counter = field(default_factory=Counter)
    videos: set = field(default_factory=set)

    def add(self, s: Sample) -> None:
        self.total += 1
        self.by_split[s.split] += 1
        self.by_subset[s.subset] += 1
        self.by_language[s.language] += 1
        self.by_category[s.category] += 1
        self.by_subcategory[s.subcategory] += 1
        self.cells[(s.subset, s.category, s.language)] += 1
        self.videos.add(s.video.path)

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "videos": len(self.videos),
            "by_split": dict(self.by_split),
            "by_subset": dict(self.by_subset),
            "by_language": dict(self.by_language),
            "by_category": dict(self.by_category),
            "by_subcategory": dict(self.by_subcategory),
            "cells": [{"subset": k[0], "category": k[1], "language": k[2], "count": v}
                      for k, v in sorted(self.cells.items())],
        }


def manifest_stats(samples: Iterable[Sample]) -> ManifestStats:
    stats = ManifestStats()
    for s in samples:
        stats.add(s)
    return stats
