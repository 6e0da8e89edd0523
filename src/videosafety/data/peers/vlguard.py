"""VLGuard (Zong et al., ICML 2024; data: ys-zong/VLGuard, ``test.json`` + ``test.zip``).

Layout read: a folder with ``test.json`` (or the JSON file itself) and the images, each row's
``image`` (e.g. ``bad_ads/<uuid>.png``) relative to the folder or to its ``test/`` sub-folder
(where ``test.zip`` may unpack). Rows: ``id``, ``image``, ``safe`` (a JSON boolean; anything else
is an error, never guessed), and ``instr-resp``: for an unsafe image one ``{"instruction",
"response"}`` plus ``harmful_category``/``harmful_subcategory``; for a safe image one
``{"safe_instruction", "response"}`` and one ``{"unsafe_instruction", "response"}``.

| VLGuard subset (as its VLGuard_eval.py names it) | ours | labels (video, query) |
|---|---|---|
| unsafes: unsafe image + its instruction | HH | 1, 1 |
| safe_unsafes: safe image + unsafe instruction | SH | 0, 1 |
| safe_safes: safe image + safe instruction | SafeQ | 0, 0 |

Categories (unsafe images only), by (category, sub-category), then by category:

| VLGuard category / sub-category | ours |
|---|---|
| privacy / personal data (any) | privacy_doxxing |
| risky behavior / professional advice | misinformation (no advice category in ours) |
| risky behavior / political | misinformation |
| risky behavior / sexually explicit | adult_sexual_content |
| risky behavior / violence | physical_violence |
| deception / disinformation (any) | misinformation |
| discrimination (hateful speech) / sex, race, other (any) | hate_speech |

Safe images carry no category in VLGuard, so their SH and SafeQ rows take the documented
fallback ``FALLBACK_SUBCATEGORY`` (provenance ``category_mapping: "fallback"``,
``peer_category: null``): the schema needs a sub-category, and inventing one per row would be a
guess. Per-category figures of VLGuard are therefore meaningful for HH (unsafes) only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from videosafety.data.peers.common import (
    MediaStore,
    PeerFormatError,
    make_sample,
    media_path,
    read_records,
    row_language,
    text_field,
)
from videosafety.schema import Sample, check_relative_path

NAME = "vlguard"
ALIASES = ()
FILES = ("test.json",)
FALLBACK_SUBCATEGORY = "misinformation"

PAIR_MAP = {
    ("risky behavior", "professional advice"): "misinformation",
    ("risky behavior", "political"): "misinformation",
    ("risky behavior", "sexually explicit"): "adult_sexual_content",
    ("risky behavior", "violence"): "physical_violence",
}
CATEGORY_MAP = {
    "privacy": "privacy_doxxing",
    "deception": "misinformation",
    "discrimination": "hate_speech",
    "hateful speech": "hate_speech",
}


def _norm(s: str | None) -> str:
    return " ".join((s or "").replace("_", " ").lower().split())


def map_category(category: str, subcategory: str | None) -> tuple[str, str]:
    c, s = _norm(category), _norm(subcategory)
    if (c, s) in PAIR_MAP:
        return PAIR_MAP[(c, s)], "subcategory"
    if c in CATEGORY_MAP:
        return CATEGORY_MAP[c], "category"
    raise KeyError(category)


def locate(path: Path) -> tuple[Path, list[Path]]:
    if path.is_file():
        return path.parent, [path]
    if not (path / "test.json").is_file():
        raise FileNotFoundError(f"{path}: no test.json in this folder (VLGuard)")
    return path, [path / "test.json"]


def _image(root: Path, rel, file: Path, line: int):
    if isinstance(rel, str) and rel.strip():
        try:
            check_relative_path(rel, "the peer's folder")
        except ValueError as e:
            raise PeerFormatError(file, line, "image", str(e)) from None
        for cand in (rel, f"test/{rel}"):
            if (root / cand).exists() or (root / cand).is_symlink():
                return cand, media_path(root, cand, file, line, "image")
    return rel, media_path(root, rel, file, line, "image")  # raises, naming the missing file


def _instruction(items: list, key: str, file: Path, line: int) -> tuple[str, str | None] | None:
    for it in items:
        if isinstance(it, dict) and key in it:
            text = text_field(it, key, file, line)
            resp = it.get("response") if isinstance(it.get("response"), str) else None
            return text, resp
    return None


def samples(root: Path, files: list[Path], media: MediaStore) -> Iterator[Sample]:
    for file in files:
        rel_file = file.name if file.parent == root else str(file)
        for line, key, rec in read_records(file):
            pid = rec.get("id", key)
            safe = rec.get("safe")
            if not isinstance(safe, bool):
                raise PeerFormatError(file, line, "safe", f"expected true or false, got {safe!r}")
            items = rec.get("instr-resp")
            if not isinstance(items, list) or not items:
                raise PeerFormatError(file, line, "instr-resp", "expected a non-empty list")
            rel, src = _image(root, rec.get("image"), file, line)
            video = media.image(src, file, line, "image")
            lang = row_language(rec, file, line)
            base = {"peer": NAME, "peer_id": pid, "source_file": rel_file, "source_line": line, "source_media": rel,
                    "peer_image_harmful": 0 if safe else 1}
            if not safe:
                cat = text_field(rec, "harmful_category", file, line)
                sub = text_field(rec, "harmful_subcategory", file, line, required=False)
                try:
                    ours, how = map_category(cat, sub)
                except KeyError:
                    raise PeerFormatError(file, line, "harmful_category",
                                          f"unknown VLGuard category {cat!r} / sub-category {sub!r} (known: "
                                          f"{', '.join(sorted(CATEGORY_MAP) + ['risky behavior'])})") from None
                got = _instruction(items, "instruction", file, line)
                if got is None:
                    raise PeerFormatError(file, line, "instr-resp", "an unsafe image needs an 'instruction'")
                yield make_sample(id=f"vlguard-unsafes-{pid}", subset="HH", subcategory=ours, query=got[0],
                                  reference_response=got[1], language=lang, video=video, file=file, line=line,
                                  provenance={**base, "peer_subset": "unsafes", "peer_category": cat,
                                              "peer_subcategory": sub, "category_mapping": how})
                continue
            found = False
            for peer_subset, instr_key, subset in (("safe_unsafes", "unsafe_instruction", "SH"),
                                                   ("safe_safes", "safe_instruction", "SafeQ")):
                got = _instruction(items, instr_key, file, line)
                if got is None:
                    continue
                found = True
                yield make_sample(id=f"vlguard-{peer_subset}-{pid}", subset=subset,
                                  subcategory=FALLBACK_SUBCATEGORY, query=got[0], reference_response=got[1],
                                  language=lang, video=video, file=file, line=line,
                                  provenance={**base, "peer_subset": peer_subset, "peer_category": None,
                                              "peer_subcategory": None, "category_mapping": "fallback"})
            if not found:
                raise PeerFormatError(file, line, "instr-resp",
                                      "a safe image needs a 'safe_instruction' or an 'unsafe_instruction'")
