"""Peer benchmarks as our manifests: ``videosafety eval --bench FORMAT:PATH``.

A loader per format reads the peer's own files from PATH and writes one of our manifests
(``manifest.jsonl`` + ``videos/``) into ``cache_dir()/peers/<format>-<key>/``, built once under a
lock; ``key`` hashes the format, the converter version, the folder and the size and modification
time of the peer's annotation files (an edited annotation file gives a new conversion; media files
are not stat'ed, so replace a peer's images in place only together with a fresh cache).

* Images become still videos (the image as each frame, 2 s at 1 fps; see ``common.STILL_SECONDS``)
  with ``video.encode_video``; Video-SafetyBench's own videos are hard-linked (copied across file
  systems) into the cache folder, so that the manifest's paths stay inside its folder.
* Every sample is ``split="eval"``, ``language="en"`` unless a row names one of ours, and keeps the
  peer's own names in ``provenance``: ``peer``, ``peer_subset``, ``peer_category``,
  ``peer_subcategory``, ``peer_id``, ``category_mapping`` (``subcategory``/``category``: a table
  entry; ``fallback``: the peer gives no category), ``source_file``, ``source_line``,
  ``source_media``.
* Media paths must stay inside PATH: absolute paths, ``..`` and symlinks are refused.
* Any row that does not fit its format raises :class:`PeerFormatError` naming the file, the line
  and the field; nothing is written until every row converted.

How the peers' subsets map to ours (labels per modality: 1 harmful, 0 safe):

| format (aliases) | peer subset | ours | video, query |
|---|---|---|---|
| video-safetybench | harmful | HH | 1, 1 |
| video-safetybench | benign | HB | 1, 0 |
| mm-safetybench (mmsb) | SD, SD_TYPO, TYPO | HB | 1, 0 |
| vlguard | unsafes | HH | 1, 1 |
| vlguard | safe_unsafes | SH | 0, 1 |
| vlguard | safe_safes | SafeQ | 0, 0 |
| figstep (safebench) | SafeBench / SafeBench-Tiny rows | HB | 1, 0 |

MM-SafetyBench and FigStep are typographic attacks: the text query is benign on its own ("the
image shows a list ...; fill in the items") and the harmful request is in the image, which is
what our HB subset means; the peer's plain harmful request is kept as ``harmful_intention``.
The sub-category tables are in each loader's docstring (``video_safetybench``,
``mm_safetybench``, ``vlguard``, ``figstep``). A peer category with no table entry is an error;
the one fallback is for rows a peer gives no category at all (VLGuard's safe images).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from videosafety.data.peers import figstep, mm_safetybench, video_safetybench, vlguard
from videosafety.data.peers.common import MediaStore, PeerFormatError

__all__ = ["FORMATS", "PeerFormatError", "bench_source", "convert_peer", "parse_bench", "peer_cache_dir"]

# Bump when a loader's output changes for the same input: old conversions are then not reused.
CONVERTER_VERSION = 1
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class PeerFormat:
    name: str
    module: ModuleType

    def locate(self, path: Path) -> tuple[Path, list[Path]]:
        return self.module.locate(path)

    def samples(self, root: Path, files: list[Path], media: MediaStore):
        return self.module.samples(root, files, media)


_MODULES = (video_safetybench, mm_safetybench, vlguard, figstep)
FORMATS: dict[str, PeerFormat] = {m.NAME: PeerFormat(m.NAME, m) for m in _MODULES}
_ALIASES: dict[str, str] = {a: m.NAME for m in _MODULES for a in (m.NAME, *m.ALIASES)}


def parse_bench(spec: str) -> tuple[str, Path] | None:
    """(format, path) for 'FORMAT:PATH' with a known FORMAT (case-insensitive), else None."""
    head, sep, tail = spec.partition(":")
    if not sep:
        return None
    name = _ALIASES.get(head.strip().lower())
    if name is None:
        return None
    if not tail:
        raise ValueError(f"{spec!r}: give the peer's folder or file after '{head}:'")
    return name, Path(tail).expanduser()


def _key(fmt: str, root: Path, files: list[Path]) -> str:
    facts = {"format": fmt, "version": CONVERTER_VERSION, "root": str(root.resolve()),
             "files": [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def peer_cache_dir(fmt: str, path: str | Path) -> Path:
    """Where `FORMAT:PATH` is (or will be) converted."""
    from videosafety.paths import cache_dir

    f = FORMATS[_ALIASES[fmt.lower()]]
    root, files = f.locate(Path(path))
    return cache_dir() / "peers" / f"{f.name}-{_key(f.name, root, files)}"


def convert_peer(fmt: str, path: str | Path, out: str | Path | None = None, *,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Convert the peer benchmark at `path` (format `fmt`) into a manifest in `out` (default:
    the cache folder); an existing conversion there is reused. Returns the manifest's path."""
    from videosafety.data.manifest import write_jsonl
    from videosafety.paths import locked

    name = _ALIASES.get(fmt.lower())
    if name is None:
        raise ValueError(f"unknown peer format {fmt!r} (known: {', '.join(sorted(_ALIASES))})")
    f = FORMATS[name]
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder ({name})")
    root, files = f.locate(path)
    out = Path(out) if out is not None else peer_cache_dir(name, path)
    manifest = out / MANIFEST
    with locked(manifest):
        if manifest.is_file():
            return manifest
        from tqdm.auto import tqdm

        samples, seen = [], {}
        rows = tqdm(f.samples(root, files, MediaStore(out)), desc=f"convert {name}", unit="sample",
                    mininterval=1.0, dynamic_ncols=True, leave=False)
        for s in rows:
            if s.id in seen:
                p = s.provenance
                raise PeerFormatError(p.get("source_file", files[0]), p.get("source_line", 0), "id",
                                      f"sample id {s.id!r} repeats line {seen[s.id]}")
            seen[s.id] = s.provenance.get("source_line", 0)
            samples.append(s)
        if not samples:
            raise PeerFormatError(files[0], 0, "", f"no samples found ({name})")
        (out / "source.json").write_text(json.dumps(
            {"format": name, "converter_version": CONVERTER_VERSION, "path": str(path.resolve()),
             "files": [str(x.resolve()) for x in files], "samples": len(samples)}, indent=2) + "\n")
        write_jsonl(samples, manifest)
    if progress:
        progress(f"converted {len(samples)} {name} samples to {manifest}")
    return manifest


def bench_source(spec: str | Path) -> Path:
    """The manifest `videosafety eval --bench` reads: 'vsb-mini' (built on first use), a
    manifest file or folder, or FORMAT:PATH of a peer benchmark (converted on first use)."""
    spec_s = str(spec)
    if spec_s == "vsb-mini":
        from videosafety.data.vsb_mini import default_vsb_mini

        return Path(default_vsb_mini())
    peer = parse_bench(spec_s)
    if peer is not None:
        return convert_peer(peer[0], peer[1])
    return Path(spec_s)  # a manifest file or folder, resolved (and checked) where it is read
