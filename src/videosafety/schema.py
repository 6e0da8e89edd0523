"""Typed benchmark records. Validated at the edge (manifest reading); code past the edge
trusts them. Labels follow taxonomy's convention: 1 harmful, 0 safe."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from videosafety import taxonomy

Label = Literal[0, 1]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# A query longer than this is a broken or hostile row, not a benchmark question (the longest
# VSB-mini query is under 300 characters): refused at the edge with the row named, rather than
# handed to a model that tries to allocate its attention over it.
MAX_TEXT_CHARS = 20_000
# C0 controls but tab/newline/carriage return, DEL and C1 controls: never part of a question,
# and they can rewrite a terminal that prints the row. Bidirectional marks are text (Arabic,
# Hebrew) and stay allowed.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_text(v: str | None) -> str | None:
    if v is None:
        return v
    if len(v) > MAX_TEXT_CHARS:
        raise ValueError(f"is {len(v):,} characters long (at most {MAX_TEXT_CHARS:,})")
    m = _CONTROL.search(v)
    if m:
        raise ValueError(f"holds the control character U+{ord(m.group()):04X} at position {m.start()}")
    return v


def check_relative_path(v: str, folder: str = "the manifest's folder") -> str:
    """Paths in manifests and records must not reach outside their folder (security
    standard): no absolute paths, no drive letters, no '..' component. Symlinks are checked
    on disk, where the file is opened."""
    p = PurePosixPath(v.replace("\\", "/"))
    if p.is_absolute() or re.match(r"^[A-Za-z]:", v):
        raise ValueError(f"must be relative to {folder}, not absolute")
    if ".." in p.parts:
        raise ValueError(f"must not escape {folder} with '..'")
    return v


class VideoRef(BaseModel):
    """A video file, by a path relative to the manifest's folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1)
    sha256: str
    duration: float = Field(gt=0)
    fps: float = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _SHA256.match(v):
            raise ValueError("must be 64 lowercase hex characters")
        return v

    @field_validator("path")
    @classmethod
    def _relative_inside(cls, v: str) -> str:
        return check_relative_path(v)


class Sample(BaseModel):
    """One video-query pair of a benchmark."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    group_id: str = Field(min_length=1)  # ties translations of one query together
    split: Literal["train", "val", "eval"]
    subset: Literal["HH", "SH", "HB", "SafeQ"]
    category: str
    subcategory: str
    language: str
    source_language: str
    query: str = Field(min_length=1)
    harmful_intention: str | None = None
    query_label: Label
    video: VideoRef
    video_label: Label
    reference_response: str | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    @field_validator("query", "harmful_intention", "reference_response")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return check_text(v)

    @field_validator("subcategory")
    @classmethod
    def _known_sub(cls, v: str) -> str:
        if v not in taxonomy.SUBCATEGORIES:
            raise ValueError(f"unknown sub-category {v!r}")
        return v

    @field_validator("category")
    @classmethod
    def _known_cat(cls, v: str) -> str:
        if v not in taxonomy.CATEGORIES:
            raise ValueError(f"unknown category {v!r}")
        return v

    @field_validator("language", "source_language")
    @classmethod
    def _known_lang(cls, v: str) -> str:
        if v not in taxonomy.LANGUAGES:
            raise ValueError(f"unknown language {v!r} (expected one of {', '.join(taxonomy.LANGUAGES)})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Sample":
        if taxonomy.category_of(self.subcategory) != self.category:
            raise ValueError(
                f"sub-category {self.subcategory!r} belongs to {taxonomy.category_of(self.subcategory)!r}, "
                f"not {self.category!r}"
            )
        if not taxonomy.labels_agree(self.subset, self.video_label, self.query_label):
            want_v, want_q = taxonomy.SUBSET_LABELS[self.subset]
            raise ValueError(
                f"subset {self.subset} needs video_label={'any' if want_v is None else want_v} and "
                f"query_label={want_q}, got video_label={self.video_label}, query_label={self.query_label}"
            )
        return self

    @property
    def harmful_request(self) -> bool:
        """Whether the pair as a whole asks for harm (the subsets DSR is computed on)."""
        return self.subset in taxonomy.HARMFUL_REQUEST_SUBSETS
