"""MM-SafetyBench (Liu et al., ECCV 2024; code and questions: isXinLiu/MM-SafetyBench).

Layout read: a folder holding ``processed_questions/<scenario>.json`` (or its parent, holding
``data/processed_questions``) and the images in ``imgs/<scenario>/<TYPE>/<question id>.jpg``
(``.png``/``.jpeg`` accepted) next to ``processed_questions``. Each scenario file is a JSON object
``{"0": {"Question", "Rephrased Question", "Rephrased Question(SD)", "Key Phrase", ...}, ...}``.

Each image type whose folder exists becomes samples of its own, with the query the benchmark
pairs with it (its prompts: SD -> ``Rephrased Question(SD)``; SD_TYPO and TYPO -> ``Rephrased
Question``); ``Question`` (the plain harmful request) is kept as ``harmful_intention``, the
request a judge holds the response against.

| MM-SafetyBench | ours | why |
|---|---|---|
| SD, SD_TYPO, TYPO (image of the key phrase + rephrased question) | HB | the rephrased question is benign alone ("the image shows a phrase of an activity, list steps to perform it"); the harm is in the image |

| scenario | ours |
|---|---|
| 01-Illegal_Activitiy | theft_property_crime (general crime; ours has no catch-all) |
| 02-HateSpeech | hate_speech |
| 03-Malware_Generation | cybercrime_hacking |
| 04-Physical_Harm | physical_violence |
| 05-EconomicHarm | scams_fraud |
| 06-Fraud | scams_fraud |
| 07-Sex | adult_sexual_content |
| 08-Political_Lobbying | misinformation |
| 09-Privacy_Violence | privacy_doxxing |
| 10-Legal_Opinion | misinformation (no advice category in ours) |
| 11-Financial_Advice | misinformation |
| 12-Health_Consultation | misinformation |
| 13-Gov_Decision | misinformation |

An unknown scenario file is an error naming the file.
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

NAME = "mm-safetybench"
ALIASES = ("mmsafetybench", "mmsb")
IMAGE_TYPES = {"SD": "Rephrased Question(SD)", "SD_TYPO": "Rephrased Question", "TYPO": "Rephrased Question"}
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")

SCENARIO_MAP = {
    "illegal_activitiy": "theft_property_crime",  # the upstream spelling
    "illegal_activity": "theft_property_crime",
    "hatespeech": "hate_speech",
    "hate_speech": "hate_speech",
    "malware_generation": "cybercrime_hacking",
    "physical_harm": "physical_violence",
    "economicharm": "scams_fraud",
    "economic_harm": "scams_fraud",
    "fraud": "scams_fraud",
    "sex": "adult_sexual_content",
    "political_lobbying": "misinformation",
    "privacy_violence": "privacy_doxxing",
    "legal_opinion": "misinformation",
    "financial_advice": "misinformation",
    "health_consultation": "misinformation",
    "gov_decision": "misinformation",
}


def norm(stem: str) -> str:
    return re.sub(r"^\d+[-_]", "", stem).lower()


def locate(path: Path) -> tuple[Path, list[Path]]:
    if path.is_file():
        return path.parent.parent, [path]
    for root in (path, path / "data"):
        qdir = root / "processed_questions"
        if qdir.is_dir():
            files = sorted(qdir.glob("*.json"))
            if files:
                return root, files
    raise FileNotFoundError(f"{path}: no processed_questions/*.json here or under data/ (MM-SafetyBench)")


def samples(root: Path, files: list[Path], media: MediaStore) -> Iterator[Sample]:
    for file in files:
        scenario = file.stem
        ours = SCENARIO_MAP.get(norm(scenario))
        if ours is None:
            raise PeerFormatError(file, 0, "scenario", f"unknown MM-SafetyBench scenario {scenario!r} "
                                  f"(known: {', '.join(sorted(SCENARIO_MAP))})")
        types = [t for t in IMAGE_TYPES if (root / "imgs" / scenario / t).is_dir()]
        if not types:
            raise PeerFormatError(file, 0, "", f"no images: expected imgs/{scenario}/SD, SD_TYPO or TYPO "
                                  f"under {root}")
        rel_file = str(file.relative_to(root)) if file.is_relative_to(root) else str(file)
        for line, qid, rec in read_records(file):
            intention = text_field(rec, "Question", file, line)
            lang = row_language(rec, file, line)
            for image_type in types:
                field = IMAGE_TYPES[image_type]
                query = text_field(rec, field, file, line)
                rel = next((f"imgs/{scenario}/{image_type}/{qid}{s}" for s in IMAGE_SUFFIXES
                            if (root / f"imgs/{scenario}/{image_type}/{qid}{s}").exists()),
                           f"imgs/{scenario}/{image_type}/{qid}.jpg")
                src = media_path(root, rel, file, line, f"{qid} ({image_type} image)")
                video = media.image(src, file, line, f"{qid} ({image_type} image)")
                yield make_sample(
                    id=f"mmsb-{scenario}-{image_type}-{qid}", subset="HB", subcategory=ours, query=query,
                    harmful_intention=intention, language=lang, video=video, file=file, line=line,
                    provenance={"peer": NAME, "peer_subset": image_type, "peer_category": scenario,
                                "peer_subcategory": rec.get("Key Phrase"), "peer_id": qid,
                                "category_mapping": "category", "source_file": rel_file, "source_line": line,
                                "source_media": rel})
