"""Video-SafetyBench (Liu et al. 2025, arXiv 2505.11842; data: BAAI/Video-SafetyBench).

Layout read: a folder with ``harmful_data.json`` and/or ``benign_data.json`` (JSON arrays; a
``.jsonl`` twin is read too), or one such file; each row has ``question``, ``harmful_intention``,
``category`` (e.g. ``1_Violent_Crimes``), ``subcategory``, ``video_path`` (relative to the
folder, e.g. ``video/1_Violent_Crimes/Animal_Abuse/1.mp4`` once ``video.tar.gz`` is unpacked) and
optionally ``question_id`` and ``question_type`` (``harmful``/``benign``; the file name decides
when absent).

Subsets: ``harmful`` (harmful video + harmful query) -> HH; ``benign`` (harmful video + a query
that reads as benign alone and is harmful with the video) -> HB, the subset ours was modelled on.

Categories (the 13 MLCommons-style parents, ordinal prefix and spelling as released, including
the upstream ``6_Specificial_Advice`` typo) map by the parent; a few sub-categories known from the
release refine it. A sub-category not in the refinement table takes its parent's mapping (the
parent is a reviewed decision, so nothing is guessed); an unknown parent is an error.

| Video-SafetyBench category | ours | refinements by sub-category |
|---|---|---|
| 1_Violent_Crimes | physical_violence | Animal_Abuse -> animal_cruelty; Terrorism -> terrorism_extremism |
| 2_Non-Violent_Crimes | theft_property_crime | Cyber_Crimes -> cybercrime_hacking; Drug_Crimes -> drugs_substances; Weapons_Crimes -> weapons_firearms; Fraud, Financial_Crimes -> scams_fraud |
| 3_Sex-Related_Crimes | adult_sexual_content | |
| 4_Child_Sexual_Exploitation | child_sexualization | |
| 5_Defamation | misinformation | |
| 6_Specificial_Advice | misinformation (no advice category in ours) | |
| 7_Privacy | privacy_doxxing | |
| 8_Intellectual_Property | theft_property_crime | |
| 9_Indiscriminate_Weapons | weapons_firearms | Explosives, High_Yield_Explosives -> explosives |
| 10_Hate | hate_speech | |
| 11_Suicide_Self-Harm | suicide_self_harm | Eating_Disorders -> eating_disorders |
| 12_Sexual_Content | adult_sexual_content | |
| 13_Elections | misinformation | |
"""

from __future__ import annotations

import re
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
from videosafety.schema import Sample

NAME = "video-safetybench"
ALIASES = ("videosafetybench", "video-safety-bench")
FILES = ("harmful_data.json", "benign_data.json", "harmful_data.jsonl", "benign_data.jsonl")
SUBSETS = {"harmful": "HH", "benign": "HB"}

CATEGORY_MAP = {
    "violent_crimes": "physical_violence",
    "non_violent_crimes": "theft_property_crime",
    "sex_related_crimes": "adult_sexual_content",
    "child_sexual_exploitation": "child_sexualization",
    "defamation": "misinformation",
    "specificial_advice": "misinformation",
    "specialized_advice": "misinformation",
    "privacy": "privacy_doxxing",
    "intellectual_property": "theft_property_crime",
    "indiscriminate_weapons": "weapons_firearms",
    "hate": "hate_speech",
    "suicide_self_harm": "suicide_self_harm",
    "sexual_content": "adult_sexual_content",
    "elections": "misinformation",
}
SUBCATEGORY_MAP = {
    ("violent_crimes", "animal_abuse"): "animal_cruelty",
    ("violent_crimes", "terrorism"): "terrorism_extremism",
    ("non_violent_crimes", "cyber_crimes"): "cybercrime_hacking",
    ("non_violent_crimes", "drug_crimes"): "drugs_substances",
    ("non_violent_crimes", "weapons_crimes"): "weapons_firearms",
    ("non_violent_crimes", "fraud"): "scams_fraud",
    ("non_violent_crimes", "financial_crimes"): "scams_fraud",
    ("indiscriminate_weapons", "explosives"): "explosives",
    ("indiscriminate_weapons", "high_yield_explosives"): "explosives",
    ("suicide_self_harm", "eating_disorders"): "eating_disorders",
}


def norm(name: str) -> str:
    """'1_Violent_Crimes', 'S1-Violent Crimes', 'Violent Crimes' -> 'violent_crimes'."""
    s = re.sub(r"^[sS]?\d+[\s_\-.]+", "", name.strip())
    return re.sub(r"[\s\-&/]+", "_", s).strip("_").lower().replace("__", "_")


def map_category(category: str, subcategory: str | None) -> tuple[str, str]:
    """(our sub-category, how: 'subcategory' or 'category'); KeyError for an unknown parent."""
    parent = norm(category)
    if parent not in CATEGORY_MAP:
        raise KeyError(category)
    refined = SUBCATEGORY_MAP.get((parent, norm(subcategory or "")))
    return (refined, "subcategory") if refined else (CATEGORY_MAP[parent], "category")


def locate(path: Path) -> tuple[Path, list[Path]]:
    if path.is_file():
        return path.parent, [path]
    files = [path / f for f in FILES if (path / f).is_file()]
    if not files:
        raise FileNotFoundError(f"{path}: no {' or '.join(FILES[:2])} in this folder (Video-SafetyBench)")
    return path, files


def _split_of(rec: dict, file: Path, line: int) -> str:
    for field in ("question_type", "query_type"):
        v = rec.get(field)
        if v not in (None, ""):
            if v not in SUBSETS:
                raise PeerFormatError(file, line, field, f"expected one of {', '.join(SUBSETS)}, got {v!r}")
            return v
    hits = [s for s in SUBSETS if s in file.name.lower()]
    if len(hits) != 1:
        raise PeerFormatError(file, line, "question_type",
                              "missing, and the file name says neither 'harmful' nor 'benign'")
    return hits[0]


def samples(root: Path, files: list[Path], media: MediaStore) -> Iterator[Sample]:
    for file in files:
        rel_file = file.name if file.parent == root else str(file)
        for line, key, rec in read_records(file):
            split = _split_of(rec, file, line)
            query = text_field(rec, "question", file, line)
            intention = text_field(rec, "harmful_intention", file, line)
            category = text_field(rec, "category", file, line)
            subcategory = text_field(rec, "subcategory", file, line, required=False)
            try:
                ours, how = map_category(category, subcategory)
            except KeyError:
                raise PeerFormatError(file, line, "category",
                                      f"unknown Video-SafetyBench category {category!r} "
                                      f"(known: {', '.join(sorted(CATEGORY_MAP))})") from None
            rel = rec.get("video_path")
            video = media.video(media_path(root, rel, file, line, "video_path"), file, line, "video_path")
            qid = rec.get("question_id", key)
            yield make_sample(
                id=f"vsb-{split}-{qid}", subset=SUBSETS[split], subcategory=ours, query=query,
                harmful_intention=intention, language=row_language(rec, file, line), video=video,
                file=file, line=line,
                provenance={"peer": NAME, "peer_subset": split, "peer_category": category,
                            "peer_subcategory": subcategory, "peer_id": qid, "category_mapping": how,
                            "source_file": rel_file, "source_line": line, "source_media": rel})
