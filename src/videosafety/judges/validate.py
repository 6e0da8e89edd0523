"""How far to trust a judge: its agreement with human labels (`videosafety judge validate`).

Input: JSONL or CSV, one labelled response a row:

    prompt      the request (text)
    response    the model's answer
    human       refused | complied | partial    (what a person said the answer does)
    language    optional, default "en"
    harmful     optional: true (a harmful request: DSR counts it), false (a benign one: FRR counts
                it); absent means harmful, as in the public refusal sets this is usually run on
    id          optional, default the line number

The judge reads each row as a text-only pair (subset HH for a harmful request, SafeQ for a benign
one). Compared on one question, "did the answer refuse?": the judge's `refusal` (None, i.e.
undecided or unparsed, is its own column and always a disagreement). A human "partial" refusal
is counted both ways, as a refusal and as compliance, and every figure is given for both.

Output (`ValidationResult.to_dict()`): per view, n, accuracy, Cohen's kappa, the confusion
matrix (human x judge), figures per language, and the DSR (harmful rows: refused) and FRR
(benign rows: refused) that the human labels and the judge each imply, with Wilson 95 %
intervals. Each validation is also kept under the cache folder, keyed by the judge's name and
version (`last_validation`), so reports can show beside a judge how far it was measured to agree.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from videosafety.judges.base import Judge, JudgeInput, Verdict
from videosafety.metrics import Rate, cohen_kappa, raw_agreement
from videosafety.paths import cache_dir

HumanLabel = Literal["refused", "complied", "partial"]
VIEWS = {"partial_as_refused": "refused", "partial_as_complied": "complied"}  # view -> what "partial" counts as
JUDGE_CALLS = ("refused", "complied", "undecided")  # the judge's answer to "did it refuse?"
VALIDATIONS_DIR = "judge-validations"


class LabelledResponse(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str = ""
    prompt: str = Field(min_length=1)
    response: str
    human: HumanLabel
    language: str = "en"
    harmful: bool = True


class LabelsError(ValueError):
    """A labels file that cannot be read; the message names the file, line and field."""


def read_labels(path: str | Path) -> list[LabelledResponse]:
    """The labelled responses of a JSONL or CSV file (by suffix); every problem names
    file:line: field."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: no such file")
    rows = list(_csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path))
    out = []
    for line, raw in rows:
        try:
            item = LabelledResponse.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err.get("loc", ())) or "row"
            raise LabelsError(f"{path}:{line}: {where}: {err['msg']}") from None
        out.append(item if item.id else item.model_copy(update={"id": f"line-{line}"}))
    if not out:
        raise LabelsError(f"{path}: no labelled responses")
    return out


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise LabelsError(f"{path}:{line}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise LabelsError(f"{path}:{line}: a line must hold one JSON object")
            yield line, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            line = reader.line_num  # the header is line 1
            # empty cells are absent fields (their defaults apply), and "harmful" reads as a boolean
            clean = {k: v for k, v in row.items() if k and v not in (None, "")}
            if "harmful" in clean:
                clean["harmful"] = clean["harmful"].strip().lower() in ("1", "true", "yes", "harmful")
            yield line, clean


def judge_call(verdict: Verdict | Exception) -> str:
    """The judge's answer to "did it refuse?": refused, complied, or undecided (no call,
    unparsed, or the judge could not be reached)."""
    if not isinstance(verdict, Verdict) or verdict.label == "unparsed" or verdict.refusal is None:
        return "undecided"
    return "refused" if verdict.refusal else "complied"


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def agreement(human: Sequence[str], judge: Sequence[str]) -> dict:
    """Accuracy, Cohen's kappa and the confusion matrix of two label sequences (pure)."""
    table = Counter(zip(human, judge))
    matrix = {h: {j: table.get((h, j), 0) for j in JUDGE_CALLS} for h in ("refused", "complied")}
    return {"n": len(human), "accuracy": _round(raw_agreement(table)), "kappa": _round(cohen_kappa(table)),
            "confusion": matrix}


def implied_rates(rows: Sequence[LabelledResponse], human: Sequence[str], judge: Sequence[str]) -> dict:
    """DSR over harmful rows (share refused) and FRR over benign rows (share refused), as the
    human labels and as the judge imply them; the judge's undecided rows count as not refused,
    as DSR counts an unclear verdict as unsafe."""
    out = {}
    for metric, harmful in (("dsr", True), ("frr", False)):
        idx = [i for i, r in enumerate(rows) if r.harmful is harmful]
        out[metric] = {"human": Rate(sum(human[i] == "refused" for i in idx), len(idx)).to_dict(),
                       "judge": Rate(sum(judge[i] == "refused" for i in idx), len(idx)).to_dict()}
    return out


@dataclass
class ValidationResult:
    judge: str
    judge_version: str
    labels_file: str
    labels_sha256: str
    n: int
    views: dict[str, dict] = field(default_factory=dict)  # view -> figures (see the module docstring)
    judge_calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    created: str = ""

    def to_dict(self) -> dict:
        return {"judge": self.judge, "judge_version": self.judge_version, "labels_file": self.labels_file,
                "labels_sha256": self.labels_sha256, "n": self.n, "judge_calls": self.judge_calls,
                "views": self.views, "seconds": self.seconds, "created": self.created}


def validate_judge(judge: Judge, labels_file: str | Path, *, batch_size: int = 64) -> ValidationResult:
    """Ask `judge` about every labelled response and measure its agreement with the people."""
    t0 = time.perf_counter()
    rows = read_labels(labels_file)
    items = [JudgeInput(sample_id=r.id, condition="text", subset="HH" if r.harmful else "SafeQ", subcategory="",
                        language=r.language, query=r.prompt, response=r.response) for r in rows]
    verdicts: list[Verdict | Exception] = []
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        try:
            got = judge.judge(batch)
        except Exception as e:  # noqa: BLE001 - a judge that fails on a batch leaves it undecided
            got = [e] * len(batch)
        verdicts += got
    calls = [judge_call(v) for v in verdicts]
    result = ValidationResult(judge=judge.name, judge_version=judge.version, labels_file=str(labels_file),
                              labels_sha256=hashlib.sha256(Path(labels_file).read_bytes()).hexdigest(), n=len(rows),
                              judge_calls=dict(Counter(calls)),
                              created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for view, partial_as in VIEWS.items():
        human = [partial_as if r.human == "partial" else r.human for r in rows]
        figures = {"all": agreement(human, calls), **implied_rates(rows, human, calls), "by_language": {}}
        for language in sorted({r.language for r in rows}):
            idx = [i for i, r in enumerate(rows) if r.language == language]
            figures["by_language"][language] = agreement([human[i] for i in idx], [calls[i] for i in idx])
        result.views[view] = figures
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _record_path(judge_name: str, judge_version: str) -> Path:
    key = hashlib.sha256(f"{judge_name}\x1f{judge_version}".encode()).hexdigest()[:16]
    return cache_dir() / VALIDATIONS_DIR / f"{key}.json"


def save_validation(result: ValidationResult) -> Path:
    """Keep the result as the last validation of this judge name and version."""
    path = _record_path(result.judge, result.judge_version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def last_validation(judge_name: str, judge_version: str) -> dict | None:
    """The last saved validation of exactly this judge name and version, or None."""
    path = _record_path(judge_name, judge_version)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


__all__ = ["LabelledResponse", "LabelsError", "ValidationResult", "agreement", "implied_rates", "judge_call",
           "last_validation", "read_labels", "save_validation", "validate_judge"]
