"""Benchmark manifests: JSONL (one sample a line) or parquet (one sample a row), with video
paths relative to the manifest's folder. Reading streams, so a 77k-row manifest keeps flat
memory; every error names the file, the line (or row) and the field."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from videosafety.schema import Sample

try:  # a faster JSON parser when present (3x on manifest lines); the format is plain JSON either way
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    _loads = json.loads

MANIFEST_NAMES = ("manifest.jsonl", "manifest.parquet")
_PARQUET_BATCH = 4096


@dataclass(frozen=True)
class ManifestProblem:
    file: str
    line: int  # 1-based line (JSONL) or row (parquet); 0 = the file as a whole
    field: str  # dotted field path, or "" when the whole row is at fault
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


class ManifestError(ValueError):
    def __init__(self, problem: ManifestProblem):
        super().__init__(str(problem))
        self.problem = problem


def resolve_manifest(path: str | Path) -> Path:
    """A manifest file, or a folder holding manifest.jsonl / manifest.parquet."""
    p = Path(path)
    if p.is_dir():
        for name in MANIFEST_NAMES:
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p}: no {' or '.join(MANIFEST_NAMES)} in this folder")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such manifest")
    return p


def validation_problems(file: str, line: int, err: ValidationError) -> list[ManifestProblem]:
    out = []
    for e in err.errors(include_url=False):
        field = ".".join(str(x) for x in e.get("loc", ()))
        msg = e.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(ManifestProblem(file, line, field, msg))
    return out


def _raw_rows(path: Path) -> Iterator[tuple[int, dict | ManifestProblem]]:
    """(line, row dict) pairs, or (line, problem) for rows that are not even JSON objects."""
    name = str(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a bad file
            yield 0, ManifestProblem(name, 0, "", f"not a readable parquet file ({e})")
            return
        row = 0
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH):
            for rec in batch.to_pylist():
                row += 1
                prov = rec.get("provenance")
                if isinstance(prov, str):  # parquet stores free-form provenance as JSON text
                    try:
                        rec["provenance"] = json.loads(prov) if prov else {}
                    except json.JSONDecodeError as e:
                        yield row, ManifestProblem(name, row, "provenance", f"not JSON ({e})")
                        continue
                yield row, rec
        return
    yield from iter_jsonl_objects(path)


def iter_jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict | ManifestProblem]]:
    """(line, object) for every non-blank line of a JSONL file, or (line, problem) for a line
    that is not one JSON object; never stops at a bad line."""
    name = str(path)
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rec = _loads(raw)
            except (ValueError, UnicodeDecodeError) as e:  # orjson's and json's decode errors are ValueErrors
                yield line_no, ManifestProblem(name, line_no, "", f"not valid JSON ({e})")
                continue
            if not isinstance(rec, dict):
                yield line_no, ManifestProblem(name, line_no, "", "a line must hold one JSON object")
                continue
            yield line_no, rec


def iter_rows(path: str | Path) -> Iterator[tuple[int, Sample | list[ManifestProblem]]]:
    """Every row as (line, Sample) or (line, problems); never stops at a bad row."""
    path = resolve_manifest(path)
    for line, rec in _raw_rows(path):
        if isinstance(rec, ManifestProblem):
            yield line, [rec]
            continue
        try:
            yield line, Sample.model_validate(rec)
        except ValidationError as e:
            yield line, validation_problems(str(path), line, e)


def duplicate_id(file: str, line: int, sample_id: str, first_line: int) -> ManifestProblem:
    """Two rows with one id would share one answer slot in a run: always an error."""
    return ManifestProblem(file, line, "id", f"duplicate id {sample_id!r} (first on line {first_line})")


def iter_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line, row) of every row, not yet validated: for a reader that selects rows first and
    validates only those (evaluate.plan). A line that is not one JSON object, or a second row
    with an id already seen, raises ManifestError naming file and line."""
    path = resolve_manifest(path)
    first_line: dict[str, int] = {}
    for line, rec in _raw_rows(path):
        if isinstance(rec, ManifestProblem):
            raise ManifestError(rec)
        rid = rec.get("id")
        if isinstance(rid, str):
            if rid in first_line:
                raise ManifestError(duplicate_id(str(path), line, rid, first_line[rid]))
            first_line[rid] = line
        yield line, rec


def sample_of(path: str | Path, line: int, record: dict) -> Sample:
    """One row of iter_records validated; ManifestError names file, line and field."""
    try:
        return Sample.model_validate(record)
    except ValidationError as e:
        raise ManifestError(validation_problems(str(resolve_manifest(path)), line, e)[0]) from None


def iter_samples(path: str | Path) -> Iterator[Sample]:
    """Samples of a manifest; the first bad row (or repeated id) raises ManifestError naming
    file, line, field."""
    for line, rec in iter_records(path):
        yield sample_of(path, line, rec)


def read_manifest(path: str | Path) -> list[Sample]:
    return list(iter_samples(path))


def manifest_root(path: str | Path) -> Path:
    """The folder video paths are relative to."""
    return resolve_manifest(path).parent


def sample_to_row(s: Sample) -> dict:
    return s.model_dump(mode="json")


def write_jsonl(samples: Iterable[Sample], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(sample_to_row(s), ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    tmp.replace(path)  # a crash mid-write never leaves a half manifest under the real name
    return n


def _flat_rows(samples: Iterable[Sample]) -> Iterator[dict]:
    for s in samples:
        row = sample_to_row(s)
        row["provenance"] = json.dumps(row["provenance"], ensure_ascii=False, sort_keys=True)
        yield row


def write_parquet(samples: Iterable[Sample], path: str | Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")  # as write_jsonl: a half file never stands under the real name
    writer, n, buf = None, 0, []

    def flush():
        nonlocal writer
        table = pa.Table.from_pylist(buf)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table.cast(writer.schema))
        buf.clear()

    for row in _flat_rows(samples):
        buf.append(row)
        n += 1
        if len(buf) >= _PARQUET_BATCH:
            flush()
    if buf or writer is None:
        flush()
    writer.close()
    tmp.replace(path)
    return n


def write_manifest(samples: Iterable[Sample], path: str | Path) -> int:
    """By suffix: .jsonl or .parquet."""
    path = Path(path)
    if path.suffix == ".parquet":
        return write_parquet(samples, path)
    if path.suffix == ".jsonl":
        return write_jsonl(samples, path)
    raise ValueError(f"{path}: manifest must end in .jsonl or .parquet")


def to_hf_dataset(samples: Iterable[Sample]):
    """A Hugging Face datasets.Dataset, one row per sample (provenance as JSON text)."""
    import datasets

    return datasets.Dataset.from_list(list(_flat_rows(samples)))


def from_hf_dataset(ds, *, name: str = "<dataset>") -> list[Sample]:
    out = []
    for i, rec in enumerate(ds, start=1):
        rec = dict(rec)
        if isinstance(rec.get("provenance"), str):
            rec["provenance"] = json.loads(rec["provenance"]) if rec["provenance"] else {}
        try:
            out.append(Sample.model_validate(rec))
        except ValidationError as e:
            raise ManifestError(validation_problems(name, i, e)[0]) from None
    return out


def load_hf_dataset(path: str | Path):
    """A manifest as a datasets.Dataset (streamed through validation first)."""
    return to_hf_dataset(iter_samples(path))
