"""Typed training records: one (video, query, response) example with its per-modality labels
(1 harmful, 0 safe; taxonomy's convention). Validated at the edge — reading a records file,
importing the reference recipe's data — and trusted past it.

Records files are JSONL, one record a line; a record's `video` is a path relative to the
records file's folder (the trainer reads videos from there), under the same rules as a
manifest's video paths: never absolute, never through '..'.

Labels are required. A record without them is an error naming the file, the line and the
field; nothing here guesses a label, and no reader skips or replaces a bad record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from videosafety import tags, taxonomy
from videosafety.data.manifest import ManifestError, ManifestProblem, iter_jsonl_objects, validation_problems
from videosafety.schema import check_relative_path

# Problems and errors are the manifest reader's types: one shape of "file:line: field: message".
RecordProblem = ManifestProblem
RecordError = ManifestError

Kind = Literal["safety", "general"]
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _check_label(v: Any) -> int:
    # Strict: a JSON true/false or "1" is not a label in our convention, it is a sign of
    # data written under another one (spec §1.4: convert explicitly, never guess).
    if isinstance(v, bool) or not isinstance(v, int) or v not in (taxonomy.SAFE, taxonomy.HARMFUL):
        raise ValueError(f"must be the integer {taxonomy.HARMFUL} (harmful) or {taxonomy.SAFE} (safe), got {v!r}")
    return v


class _RecordBase(BaseModel):
    """What every training record has, checked the same way."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    kind: Kind
    source: str = Field(min_length=1)  # where the record came from (benchmark, file, generator)
    video: str | None = Field(default=None, min_length=1)  # relative to the records file's folder
    system: str | None = None
    query: str = Field(min_length=1)
    subcategory: str | None = None
    language: str | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    @field_validator("video")
    @classmethod
    def _video_path(cls, v: str | None) -> str | None:
        return None if v is None else check_relative_path(v, "the records file's folder")

    @field_validator("subcategory")
    @classmethod
    def _known_sub(cls, v: str | None) -> str | None:
        if v is not None and v not in taxonomy.SUBCATEGORIES:
            raise ValueError(f"unknown sub-category {v!r}")
        return v

    @field_validator("language")
    @classmethod
    def _language_tag(cls, v: str | None) -> str | None:
        # Training data may hold languages beyond the benchmark's ten: any BCP-47-shaped tag.
        if v is not None and not _LANGUAGE_TAG.match(v):
            raise ValueError(f"not a BCP-47 language tag: {v!r}")
        return v


class SFTRecord(_RecordBase):
    """One supervised example. `kind` "general" marks general video-instruction data, which
    is safe/safe by definition (spec §3.2) and so must carry labels (0, 0)."""

    video_label: int  # 0 | 1, required: never guessed
    query_label: int  # 0 | 1, required: never guessed
    response: str = Field(min_length=1)

    @field_validator("video_label", "query_label", mode="before")
    @classmethod
    def _label(cls, v: Any) -> int:
        return _check_label(v)

    @model_validator(mode="after")
    def _general_is_safe(self) -> "SFTRecord":
        if self.kind == "general" and (self.video_label, self.query_label) != (taxonomy.SAFE, taxonomy.SAFE):
            raise ValueError(
                f"kind 'general' records are safe/safe by definition, got video_label={self.video_label}, "
                f"query_label={self.query_label}; use kind 'safety' for labelled safety data"
            )
        return self

    @property
    def labels(self) -> tuple[int, int]:
        return self.video_label, self.query_label


class CoTRecord(SFTRecord):
    """A chain-of-thought target (spec §3.3): the response is tagged
    ``<think>…</think><answer>…</answer><vidType>v</vidType><textType>t</textType>`` and its
    tagged labels equal the record's labels."""

    @field_validator("response")
    @classmethod
    def _tagged(cls, v: str, info: ValidationInfo) -> str:
        if not tags.is_well_formed(v):
            raise ValueError(
                f"not a tagged CoT target: the whole response must match "
                f"<{tags.THINK}>…</{tags.THINK}><{tags.ANSWER}>…</{tags.ANSWER}>"
                f"<{tags.VIDTYPE}>0|1</{tags.VIDTYPE}><{tags.TEXTTYPE}>0|1</{tags.TEXTTYPE}>"
            )
        parsed = tags.parse_tagged(v)
        # Labels are declared before the response, so info.data holds them when they are valid
        # (an invalid label is reported on its own field).
        for tag, got, field in ((tags.VIDTYPE, parsed.video_label, "video_label"),
                                (tags.TEXTTYPE, parsed.query_label, "query_label")):
            if got is None:
                raise ValueError(f"<{tag}> must hold 0 or 1")
            if field in info.data and got != info.data[field]:
                raise ValueError(f"<{tag}> says {got} but the record's {field} is {info.data[field]}")
        return v


class GRPORecord(_RecordBase):
    """One GRPO prompt (spec §3.4): a video (optional), a query and the solution its completions
    are rewarded against. `problem_type` picks the reward (videosafety.rewards.PROBLEM_TYPES) and
    the answer-format instruction appended to the query; "safety" solutions are tagged
    ``<answer>REF</answer><vidType>v</vidType><textType>t</textType>`` (tags.format_solution)
    and must agree with the record's labels, which safety records require."""

    problem_type: str = "safety"
    video_label: int | None = None  # required for problem_type "safety"
    query_label: int | None = None
    solution: str = Field(min_length=1)

    @field_validator("video_label", "query_label", mode="before")
    @classmethod
    def _label(cls, v: Any) -> int | None:
        return None if v is None else _check_label(v)

    @field_validator("problem_type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        from videosafety.rewards import PROBLEM_TYPES

        if v not in PROBLEM_TYPES:
            raise ValueError(f"unknown problem type {v!r}; known: {', '.join(sorted(PROBLEM_TYPES))}")
        return v

    @model_validator(mode="after")
    def _solution_agrees(self) -> "GRPORecord":
        if self.kind == "general" and (self.video_label, self.query_label) not in ((None, None), (0, 0)):
            raise ValueError("kind 'general' records are safe/safe by definition")
        if self.problem_type != "safety":
            return self
        if self.video_label is None or self.query_label is None:
            raise ValueError("safety records need video_label and query_label (never guessed)")
        parsed = tags.parse_tagged(self.solution)
        if parsed.answer is None:
            raise ValueError(f"solution: a safety solution needs an <{tags.ANSWER}> block")
        for tag, got, want in ((tags.VIDTYPE, parsed.video_label, self.video_label),
                               (tags.TEXTTYPE, parsed.query_label, self.query_label)):
            if got != want:
                raise ValueError(f"solution: <{tag}> says {got} but the record's label is {want}")
        return self

    @property
    def labels(self) -> tuple[int, int]:
        return (self.video_label or 0), (self.query_label or 0)


# ---------------------------------------------------------------- reading and writing



def iter_record_rows(path: str | Path, cls: type[SFTRecord] = SFTRecord,
                     ) -> Iterator[tuple[int, SFTRecord | list[ManifestProblem]]]:
    """Every non-blank line as (line, record) or (line, problems); never stops at a bad row
    and never drops one: for validators that want every problem at once."""
    name = str(path)
    for line_no, rec in iter_jsonl_objects(path):
        if isinstance(rec, ManifestProblem):
            yield line_no, [rec]
            continue
        try:
            yield line_no, cls.model_validate(rec)
        except ValidationError as e:
            yield line_no, validation_problems(name, line_no, e)


def iter_records(path: str | Path, cls: type[SFTRecord] = SFTRecord) -> Iterator[SFTRecord]:
    """Records of a file; the first bad row raises RecordError naming file, line and field."""
    for _, item in iter_record_rows(path, cls):
        if isinstance(item, list):
            raise RecordError(item[0])
        yield item


def read_records(path: str | Path, cls: type[SFTRecord] = SFTRecord) -> list:
    return list(iter_records(path, cls))


def write_records(records: Iterable[SFTRecord], path: str | Path) -> int:
    """JSONL, one record a line; written to a temporary name first so a crash never leaves a
    half file under the real name. Video paths stay as they are: write the file into the
    folder they are relative to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    tmp.replace(path)
    return n


def resolve_video(records_path: str | Path, record: SFTRecord) -> Path | None:
    """The record's video on disk (None for text-only), refusing symlinks and escapes."""
    from videosafety.paths import resolve_video_path

    if record.video is None:
        return None
    return resolve_video_path(Path(records_path).parent, record.video)


# ---------------------------------------------------------------- the reference recipe's data

_PLACEHOLDER = re.compile(r"<(?:video|image)>")
_HUMAN = ("human", "user")
_GPT = ("gpt", "assistant")
# "visual"/"textual": the spelling of the recipe's own label normaliser (scripts/data/normalize_safety_labels.py).
_LABEL_KEYS = {"video": ("video", "video_label", "visual"),
               "text": ("text", "text_label", "query", "query_label", "textual")}


class _Bad(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def _raw_reference(path: Path) -> Iterator[tuple[int, int | None, Any]]:
    """(line, list index or None, entry) for a JSON list or a JSONL file; a broken file or
    line comes back as a ManifestProblem in place of the entry."""
    name = str(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        # Walk the list element by element so each entry's error can name its line.
        dec = json.JSONDecoder()
        pos = text.index("[") + 1
        index = 0
        ws = re.compile(r"\s*")
        while True:
            pos = ws.match(text, pos).end()
            if pos < len(text) and text[pos] == "]":
                return
            line = text.count("\n", 0, pos) + 1
            try:
                entry, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                yield e.lineno, index, ManifestProblem(name, e.lineno, f"[{index}]", f"not valid JSON ({e.msg})")
                return
            yield line, index, entry
            index += 1
            pos = ws.match(text, pos).end()
            if pos < len(text) and text[pos] == ",":
                pos += 1
            elif pos < len(text) and text[pos] == "]":
                return
            else:
                line = text.count("\n", 0, pos) + 1
                yield line, index, ManifestProblem(name, line, f"[{index}]", "expected ',' or ']' in the JSON list")
                return
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield line_no, None, json.loads(raw)
        except json.JSONDecodeError as e:
            yield line_no, None, ManifestProblem(name, line_no, "", f"not valid JSON ({e.msg})")


def _label_value(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v not in (0, 1):
        raise _Bad(field, f"must be the integer 0 or 1, got {v!r}")
    return v


def _reference_labels(entry: dict) -> tuple[int, int] | None:
    if "safety_labels" not in entry or entry["safety_labels"] is None:
        return None
    labels = entry["safety_labels"]
    if isinstance(labels, list):
        if len(labels) != 2:
            raise _Bad("safety_labels", f"a label list must be [video, text], got {len(labels)} element(s)")
        return _label_value(labels[0], "safety_labels[0]"), _label_value(labels[1], "safety_labels[1]")
    if isinstance(labels, dict):
        out = []
        for modality, keys in _LABEL_KEYS.items():
            present = [k for k in keys if k in labels]
            if not present:
                raise _Bad("safety_labels", f"no {modality} label (expected one of {', '.join(keys)})")
            if len(present) > 1:
                raise _Bad("safety_labels", f"{modality} label given twice ({', '.join(present)})")
            out.append(_label_value(labels[present[0]], f"safety_labels.{present[0]}"))
        return out[0], out[1]
    raise _Bad("safety_labels", f"must be {{'video': 0|1, 'text': 0|1}} or [video, text], got {type(labels).__name__}")


def _flip_tagged(response: str) -> str:
    def flip(m: re.Match) -> str:
        return f"{m.group(1)}{1 - int(m.group(2))}{m.group(3)}"

    for tag in (tags.VIDTYPE, tags.TEXTTYPE):
        response = re.sub(rf"(<{tag}>\s*)([01])(\s*</{tag}>)", flip, response, count=1)
    return response


def _one_video(entry: dict, key: str) -> str | None:
    """entry[key] as one path: a string or a one-element list (empty list or absent: None)."""
    video = entry.get(key)
    if isinstance(video, list):
        if len(video) > 1:
            raise _Bad(key, f"one video per record is supported, got {len(video)}")
        video = video[0] if video else None
    if video is not None and not isinstance(video, str):
        raise _Bad(key, f"must be a path or a one-element list of paths, got {type(video).__name__}")
    return video


def _refuse_images(entry: dict) -> None:
    if entry.get("image") not in (None, [], ""):
        raise _Bad("image", "image records are not supported (video or text only)")


def _validated(cls: type[BaseModel], fields: dict, where: dict[str, str]) -> Any:
    """cls(**fields), a validation error turned into _Bad naming the source's field (`where`
    maps record fields to the source's names; a model-level message "field: ..." names its field)."""
    try:
        return cls.model_validate(fields)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in first.get("loc", ()))
        msg = first.get("msg", "invalid").removeprefix("Value error, ")
        if not loc and ": " in msg and msg.split(": ", 1)[0] in cls.model_fields:
            loc, msg = msg.split(": ", 1)
        raise _Bad(where.get(loc, loc), msg) from None


def _reference_id(entry: dict, keys: tuple[str, ...], file: Path, index: int) -> str:
    for key in keys:
        rid = entry.get(key)
        if rid is not None and not (isinstance(rid, str) and not rid):
            return str(rid)
    return f"{file.stem}-{index}"


def _reference_record(entry: Any, *, file: Path, line: int, index: int, kind: str, legacy_labels: bool,
                      multi_turn: str, source: str) -> SFTRecord:
    if not isinstance(entry, dict):
        raise _Bad("", "an entry must be a JSON object")
    _refuse_images(entry)
    video = _one_video(entry, "video")

    conv = entry.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise _Bad("conversations", "must be a non-empty list of {'from', 'value'} turns")
    for i, turn in enumerate(conv):
        if not (isinstance(turn, dict) and isinstance(turn.get("from"), str) and isinstance(turn.get("value"), str)):
            raise _Bad(f"conversations[{i}]", "a turn must be {'from': str, 'value': str}")
    system = None
    start = 0
    if conv[0]["from"] == "system":
        system, start = conv[0]["value"], 1
    if len(conv) < start + 2 or conv[start]["from"] not in _HUMAN or conv[start + 1]["from"] not in _GPT:
        raise _Bad(f"conversations[{start}]", "expected a human turn followed by a gpt turn")
    dropped = len(conv) - (start + 2)
    if dropped and multi_turn == "error":
        raise _Bad("conversations",
                   f"{len(conv) - start} turns; only single-turn records are accepted (multi_turn='error')")
    query = _PLACEHOLDER.sub("", conv[start]["value"]).strip()
    response = conv[start + 1]["value"]

    labels = _reference_labels(entry)
    if labels is None:
        if kind == "safety":
            raise _Bad("safety_labels", "missing: safety records need their video and text labels (never guessed)")
        labels = (taxonomy.SAFE, taxonomy.SAFE)  # general data is safe/safe by definition (spec §3.2)
    elif legacy_labels:
        labels = (1 - labels[0], 1 - labels[1])
        if tags.has_tags(response):
            response = _flip_tagged(response)

    rid = _reference_id(entry, ("id",), file, index)
    provenance: dict[str, Any] = {"file": file.name, "index": index, "line": line}
    if dropped:
        provenance["dropped_turns"] = dropped
    if legacy_labels:
        provenance["legacy_labels_flipped"] = True
    fields = dict(id=str(rid), kind=kind, source=source, video=video, video_label=labels[0],
                  query_label=labels[1], system=system, query=query, response=response, provenance=provenance)
    cls = CoTRecord if tags.has_tags(response) else SFTRecord
    return _validated(cls, fields, {"query": f"conversations[{start}].value",
                                    "response": f"conversations[{start + 1}].value",
                                    "video_label": "safety_labels", "query_label": "safety_labels"})


def _reference_rows(path: Path, convert: Callable[..., Any]) -> Iterator[tuple[int, Any]]:
    """(line, convert(entry, line=, index=)) for every entry of a reference file, or (line,
    problem) naming the file, the line and "[index].field"; never stops at a bad entry (a broken
    JSON list ends at the break, a broken JSONL line does not)."""
    name = str(path)
    count = 0
    for line, index, entry in _raw_reference(path):
        if isinstance(entry, ManifestProblem):
            yield line, entry
            continue
        position = index if index is not None else count
        prefix = f"[{position}]"
        count += 1
        try:
            yield line, convert(entry, line=line, index=position)
        except _Bad as bad:
            field = f"{prefix}.{bad.field}" if prefix and bad.field else prefix or bad.field
            yield line, ManifestProblem(name, line, field, bad.message)


def _all_or_raise(rows: Iterable[tuple[int, Any]]) -> list:
    out = []
    for _, item in rows:
        if isinstance(item, ManifestProblem):
            raise RecordError(item)
        out.append(item)
    return out


def iter_reference_rows(path: str | Path, *, legacy_labels: bool = False, kind: Kind = "safety",
                        multi_turn: Literal["first", "error"] = "first",
                        source: str | None = None) -> Iterator[tuple[int, SFTRecord | ManifestProblem]]:
    """Every entry of a reference-recipe file as (line, record) or (line, problem)."""
    if kind not in ("safety", "general"):
        raise ValueError(f"kind must be 'safety' or 'general', got {kind!r}")
    if multi_turn not in ("first", "error"):
        raise ValueError(f"multi_turn must be 'first' or 'error', got {multi_turn!r}")
    path = Path(path)
    src = source or f"reference:{path.name}"
    yield from _reference_rows(path, lambda entry, line, index: _reference_record(
        entry, file=path, line=line, index=index, kind=kind, legacy_labels=legacy_labels,
        multi_turn=multi_turn, source=src))


def import_reference(path: str | Path, *, legacy_labels: bool = False, kind: Kind = "safety",
                     multi_turn: Literal["first", "error"] = "first", source: str | None = None) -> list[SFTRecord]:
    """Records from the public VideoSafety-R1 recipe's JSON data (VideoLLaMA3's conversation
    format), a JSON list or JSONL::

        {"video": ["rel/path.mp4"] | "rel/path.mp4",          # optional: text-only without it
         "conversations": [{"from": "human", "value": "<video>\\nQUERY"},
                           {"from": "gpt", "value": "RESPONSE"}],
         "safety_labels": {"video": 0|1, "text": 0|1} | [video, text]}

    - Labels: dict keys "video"/"video_label"/"visual" and
      "text"/"text_label"/"query"/"query_label"/"textual", or a two-element list [video, text];
      integers 0/1 only. Missing labels on kind "safety"
      raise an error naming the file, the line, the list index and the field: never guessed.
      kind "general" (general video-instruction data) is safe/safe by definition: absent
      labels mean (0, 0), present ones must be (0, 0).
    - legacy_labels=True: the file uses the legacy convention 0 = harmful, 1 = safe; every
      label is flipped into ours (1 = harmful) — the labels of a tagged CoT response too, since
      the whole record is written in one convention — and provenance says so. This is the
      explicit conversion of spec §1.4; nothing decides it by looking at the data.
    - `<video>`/`<image>` placeholders are removed from the query (where media go is the
      processor's business); records holding images are refused, not silently made text-only.
    - A system turn first becomes `system`. Multi-turn conversations: multi_turn="first"
      (default) keeps the first human/gpt pair and records the number of dropped turns in
      provenance["dropped_turns"]; multi_turn="error" refuses them (use it when labels may
      describe later turns).
    - A response holding any reasoning tag becomes a CoTRecord and must be well formed, with
      tagged labels equal to the safety labels.
    - Video paths are kept as written: relative to the data folder, which is where the
      records file should be written (write_records) for the trainer to find them.

    The first bad entry raises RecordError; iter_reference_rows reports every one."""
    return _all_or_raise(iter_reference_rows(path, legacy_labels=legacy_labels, kind=kind,
                                             multi_turn=multi_turn, source=source))


# ---------------------------------------------------------------- the reference recipe's GRPO data

# problem_type as the reference recipe writes it -> ours (videosafety.rewards.PROBLEM_TYPES).
# The recipe's safety type is "free-form-and-choice" (train_grpo_vidlm3.py: ROUGE on <answer>
# plus the <vidType>/<textType> classification, with DRA); "safety" and our own spellings are
# accepted as well. Video-R1's "regression" has no reward here and is refused, like any other.
REFERENCE_PROBLEM_TYPES: dict[str, str] = {
    "multiple choice": "multiple_choice",
    "numerical": "numerical",
    "OCR": "ocr",
    "free-form": "free_form",
    "free-form-and-choice": "safety",
    "safety": "safety",
    "multiple_choice": "multiple_choice",
    "ocr": "ocr",
    "free_form": "free_form",
}
_MODALITIES = ((tags.VIDTYPE, "video"), (tags.TEXTTYPE, "text"))


def _grpo_video(entry: dict) -> tuple[str, str | None]:
    """(source key, path) from "path" (Video-R1) or "video" (VideoLLaMA3 style)."""
    found = {key: _one_video(entry, key) for key in ("path", "video") if entry.get(key) not in (None, [])}
    if len(set(found.values())) > 1:
        raise _Bad("video", f"path {found['path']!r} and video {found['video']!r} name different files")
    if not found:
        return "path", None
    key = next(iter(found))
    return key, found[key]


def _safety_solution(solution: str, labels: tuple[int, int] | None, legacy_labels: bool,
                     ) -> tuple[str, tuple[int, int]]:
    """The tagged safety solution and its labels, both in our convention. Labels come from the
    solution's <vidType>/<textType> and/or safety_labels; where both are given they must agree,
    where neither is the entry is refused. A solution lacking a label tag is rewritten with
    tags.format_solution from its answer (or, with no tag at all, its whole text)."""
    parsed = tags.parse_tagged(solution)
    tagged = (parsed.video_label, parsed.query_label)
    final = []
    for i, (tag, modality) in enumerate(_MODALITIES):
        if f"<{tag}>" in solution and tagged[i] is None:
            raise _Bad("solution", f"<{tag}> must hold 0 or 1")
        stated = None if labels is None else labels[i]
        if tagged[i] is not None and stated is not None and tagged[i] != stated:
            raise _Bad("solution", f"<{tag}> says {tagged[i]} but safety_labels' {modality} label is {stated}")
        value = tagged[i] if tagged[i] is not None else stated
        if value is None:
            raise _Bad("safety_labels", f"missing: no {modality} label in safety_labels or in the solution's "
                                        f"<{tag}> (safety problems need both labels; never guessed)")
        final.append(1 - value if legacy_labels else value)
    if parsed.answer is not None and not parsed.answer:
        raise _Bad("solution", f"empty <{tags.ANSWER}>: a blank reference answer makes every ROUGE 0")
    if None not in tagged:
        return (_flip_tagged(solution) if legacy_labels else solution), (final[0], final[1])
    if parsed.answer is None and tags.has_tags(solution):
        raise _Bad("solution", f"a tagged safety solution needs an <{tags.ANSWER}> block")
    answer = parsed.answer if parsed.answer is not None else solution.strip()
    try:
        return tags.format_solution(answer, final[0], final[1]), (final[0], final[1])
    except ValueError as e:
        raise _Bad("solution", str(e)) from None


def _general_solution(solution: str, raw_type: str) -> str:
    for tag, _ in _MODALITIES:
        if f"<{tag}>" in solution:
            raise _Bad("solution", f"<{tag}> belongs to safety problems, not to problem_type {raw_type!r}")
    if not tags.has_tags(solution):
        return solution.strip()
    answer = tags.parse_tagged(solution).answer
    if not answer:
        raise _Bad("solution", f"tagged, but without a non-empty <{tags.ANSWER}> block")
    return answer


def _grpo_record(entry: Any, *, file: Path, line: int, index: int, legacy_labels: bool,
                 source: str) -> GRPORecord:
    if not isinstance(entry, dict):
        raise _Bad("", "an entry must be a JSON object")
    raw_type = entry.get("problem_type")
    if not isinstance(raw_type, str) or raw_type not in REFERENCE_PROBLEM_TYPES:
        raise _Bad("problem_type", f"unknown problem type {raw_type!r}; known: "
                                   f"{', '.join(repr(k) for k in REFERENCE_PROBLEM_TYPES)}")
    problem_type = REFERENCE_PROBLEM_TYPES[raw_type]

    data_type = entry.get("data_type")
    if data_type == "image":
        raise _Bad("data_type", "image records are not supported (video or text only)")
    if data_type not in (None, "video", "text"):
        raise _Bad("data_type", f"must be 'video' or 'text', got {data_type!r}")
    _refuse_images(entry)
    video_key, video = _grpo_video(entry)
    if data_type == "video" and video is None:
        raise _Bad("path", "data_type 'video' needs a video path")
    if data_type == "text" and video is not None:
        raise _Bad(video_key, "data_type 'text' must not name a video")

    problem = entry.get("problem")
    query = _PLACEHOLDER.sub("", problem).strip() if isinstance(problem, str) else ""
    if not query:
        raise _Bad("problem", "must be a non-empty string (after removing <video>/<image> placeholders)")
    options = entry.get("options")
    if options not in (None, []):
        if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
            raise _Bad("options", "must be a list of non-empty strings")
        if problem_type != "multiple_choice":
            raise _Bad("options", f"only multiple choice problems have options, not {raw_type!r}")
        query += "\nOptions:\n" + "\n".join(o.strip() for o in options)

    solution = entry.get("solution")
    if not isinstance(solution, str) or not solution.strip():
        raise _Bad("solution", "must be a non-empty string")
    labels = _reference_labels(entry)
    if problem_type == "safety":
        solution, labels = _safety_solution(solution, labels, legacy_labels)
    else:
        solution = _general_solution(solution, raw_type)
        if labels is not None:
            labels = (1 - labels[0], 1 - labels[1]) if legacy_labels else labels
            if labels != (taxonomy.SAFE, taxonomy.SAFE):
                raise _Bad("safety_labels", f"problem_type {raw_type!r} is general data, safe/safe by definition; "
                                            f"got video={labels[0]}, text={labels[1]} (our convention)")
        labels = (taxonomy.SAFE, taxonomy.SAFE)

    id_keys = ("id", "problem_id")
    provenance: dict[str, Any] = {"file": file.name, "index": index, "line": line, "problem_type": raw_type}
    if entry.get("data_source") is not None:
        provenance["data_source"] = entry["data_source"]
    if legacy_labels and problem_type == "safety":
        provenance["legacy_labels_flipped"] = True
    fields = dict(id=_reference_id(entry, id_keys, file, index),
                  kind="safety" if problem_type == "safety" else "general", source=source,
                  problem_type=problem_type, video=video, video_label=labels[0], query_label=labels[1],
                  query=query, solution=solution, subcategory=entry.get("subcategory"),
                  language=entry.get("language"), provenance=provenance)
    id_key = next((k for k in id_keys if entry.get(k) not in (None, "")), "id")
    return _validated(GRPORecord, fields, {"query": "problem", "video": video_key, "id": id_key,
                                           "video_label": "safety_labels", "query_label": "safety_labels"})


def iter_reference_grpo_rows(path: str | Path, *, legacy_labels: bool = False, source: str | None = None,
                             ) -> Iterator[tuple[int, GRPORecord | ManifestProblem]]:
    """Every entry of a reference-recipe GRPO file as (line, record) or (line, problem)."""
    path = Path(path)
    src = source or f"reference:{path.name}"
    yield from _reference_rows(path, lambda entry, line, index: _grpo_record(
        entry, file=path, line=line, index=index, legacy_labels=legacy_labels, source=src))


def import_reference_grpo(path: str | Path, *, legacy_labels: bool = False,
                          source: str | None = None) -> list[GRPORecord]:
    """GRPO records from the reference recipe's RL data: the Video-R1 format (Video-R1-260k.json)
    that the VideoSafety-R1 recipe's GRPO stage reads (train_grpo_vidlm3.py), a JSON list or
    JSONL::

        {"problem_id": 7,                          # or "id"; default: FILE_STEM-INDEX
         "problem": "<video>\\nQUERY",              # <video>/<image> placeholders are removed
         "data_type": "video",                      # "video" | "text"; "image" is refused
         "problem_type": "free-form-and-choice",    # see REFERENCE_PROBLEM_TYPES
         "options": ["A. ...", "B. ..."],           # multiple choice only
         "solution": "<answer>REF</answer><vidType>1</vidType><textType>0</textType>",
         "path": "rel/clip.mp4",                    # or "video": "rel/clip.mp4" | ["rel/clip.mp4"]
         "safety_labels": {"video": 0|1, "text": 0|1} | [video, text],   # optional, see below
         "data_source": "..."}                      # kept in provenance

    Confirmed against the public sources: Video-R1's data card and the recipe's GRPO script
    read problem_id, problem, data_type ("video"/"image", and "text" in the recipe's trainer),
    problem_type, options (a list of "A. ..." strings), solution wrapped in <answer></answer>,
    path and data_source (Video-R1's "process" CoT field is SFT data and is ignored here); the
    recipe's problem types are "multiple choice", "numerical", "OCR", "free-form",
    "regression" and, for safety data, "free-form-and-choice", whose solution carries
    <vidType>/<textType> with 1 = harmful; its label normaliser names "safety_labels" with
    "visual"/"textual" keys. Assumed (no released safety GRPO file was found): "safety" as a
    second name of the safety type, "video" as a second name of "path", paths relative to the
    data folder (Video-R1 writes them "./Folder/clip.mp4"), and per-entry "subcategory" and
    "language" (taken when present, validated).

    - problem_type maps to ours; an unknown one (regression included) is an error naming the
      file, the line and the field. Multiple choice: a non-empty options list is appended to
      the query as lines after "Options:", as the recipe's prompt does; options on any other
      type are an error. The per-type answer instruction is the trainer's business, not added.
    - General types (kind "general", labels 0/0 by definition; safety_labels, if given, must say
      so): the solution's <answer> text, or the whole solution when untagged.
    - Safety: labels from the solution's <vidType>/<textType> and/or safety_labels (same keys as
      import_reference); both given must agree, neither is an error: never guessed. A tagged
      solution is kept as written; one missing a label tag is rewritten by tags.format_solution
      from its answer and the stated labels.
    - legacy_labels=True: the file uses 0 = harmful; safety_labels and the solution's tags are
      both flipped into ours, and provenance says so (spec §1.4, as in import_reference).

    The first bad entry raises RecordError; iter_reference_grpo_rows reports every one."""
    return _all_or_raise(iter_reference_grpo_rows(path, legacy_labels=legacy_labels, source=source))
