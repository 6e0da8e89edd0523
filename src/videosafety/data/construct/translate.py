"""Stage 5, translate: `queries.jsonl` -> `translations.jsonl`, every query in every requested
language (spec §1.3: default the ten).

A translator (any model backend, asked text-only with the versioned prompt
`prompts/translate_v1.txt`) translates each source-language query; the source language itself
is kept as written. Every translation is checked by offline language identification and
rejected (recorded, with what was detected) when empty, when the backend failed, or when it is
in another language. Reference responses in the target language are VSB-mini's shipped
translations of the same reference (no model writes them); harmful_intention stays in English.

Language identification (`LanguageDetector`):
- `lingua`: lingua-language-detector (the optional extra `videosafety[construct]`; its models
  ship in the wheel, nothing is downloaded), over all of its 75 languages, so a translation into
  German is caught when Spanish was asked.
- `script`: built in and weaker: the Unicode script of the letters. It tells zh (Han without
  kana), ja (kana), ko (Hangul), ar, hi (Devanagari) and ru (Cyrillic) apart, but calls every
  Latin-script text "latin", so en, es, fr and pt are not told from one another (nor from any
  other Latin-script language): only a wrong script is caught.
- `auto` (default): lingua when installed, else script.

One record per video, as in the other stages. The cache is per translation: one whose source
text, target language and settings are unchanged is kept on rerun.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from videosafety import taxonomy
from videosafety.data.construct.queries import read_records
from videosafety.data.construct.stage import provenance, settings_fingerprint, write_stage
from videosafety.data.manifest import ManifestError, ManifestProblem

STAGE = "translate"
OUTPUT = "translations.jsonl"
PROMPT_VERSION = "translate_v1"
LATIN = "latin"
LATIN_LANGUAGES = frozenset({"en", "es", "fr", "pt"})


class TranslateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    translator: str | None = None  # model spec; needed unless only the source language is asked
    languages: list[str] = Field(default_factory=lambda: list(taxonomy.LANGUAGES))
    detector: Literal["auto", "lingua", "script"] = "auto"
    max_new_tokens: int = Field(256, ge=1)
    prompt_version: str = PROMPT_VERSION

    @field_validator("languages")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in taxonomy.LANGUAGES]
        if bad:
            raise ValueError(f"unknown language(s) {bad} (expected some of {', '.join(taxonomy.LANGUAGES)})")
        return list(dict.fromkeys(v))


# ---------------------------------------------------------------- language identification

class LanguageDetector(Protocol):
    name: str

    def detect(self, text: str) -> str | None:
        """A BCP-47 code (any language, not only the ten), "latin" (script detector), or None."""


def _script(ch: str) -> str | None:
    o = ord(ch)
    if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return "hangul"
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:
        return "kana"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
        return "han"
    if 0x0600 <= o <= 0x06FF or 0x0750 <= o <= 0x077F or 0x08A0 <= o <= 0x08FF or 0xFB50 <= o <= 0xFEFF:
        return "arabic"
    if 0x0900 <= o <= 0x097F:
        return "devanagari"
    if 0x0400 <= o <= 0x052F:
        return "cyrillic"
    if ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"):
        return "latin"
    return "other" if ch.isalpha() else None


class ScriptDetector:
    """Language from the Unicode script of the letters (weaker: Latin languages are one class)."""

    name = "script"

    def detect(self, text: str) -> str | None:
        counts = Counter(s for s in map(_script, text) if s)
        if not counts:
            return None
        if counts["kana"]:
            return "ja"  # Japanese mixes kana with Han; Chinese has no kana
        if counts["hangul"]:
            return "ko"
        top = counts.most_common(1)[0][0]
        return {"han": "zh", "arabic": "ar", "devanagari": "hi", "cyrillic": "ru", "latin": LATIN}.get(top, top)


class LinguaDetector:
    """lingua-language-detector over all its languages (or the given BCP-47 codes)."""

    name = "lingua"

    def __init__(self, languages: list[str] | None = None):
        try:
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
        except ImportError:
            raise RuntimeError("the lingua language detector is not installed: pip install 'videosafety[construct]' "
                               "(or use the built-in, weaker script detector)") from None
        if languages is None:
            builder = LanguageDetectorBuilder.from_all_languages()
        else:
            builder = LanguageDetectorBuilder.from_languages(
                *(Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in languages))
        self._detector = builder.build()

    def detect(self, text: str) -> str | None:
        lang = self._detector.detect_language_of(text)
        return None if lang is None else lang.iso_code_639_1.name.lower()


def lingua_available() -> bool:
    try:
        import lingua  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=4)
def get_detector(kind: str = "auto") -> LanguageDetector:
    if kind == "lingua" or (kind == "auto" and lingua_available()):
        return LinguaDetector()
    if kind in ("auto", "script"):
        return ScriptDetector()
    raise ValueError(f"unknown language detector {kind!r} (auto, lingua or script)")


def language_matches(detected: str | None, wanted: str) -> bool:
    return detected == wanted or (detected == LATIN and wanted in LATIN_LANGUAGES)


# ---------------------------------------------------------------- the stage

def translate_prompt(text: str, source: str, target: str, version: str = PROMPT_VERSION) -> str:
    tmpl = (resources.files("videosafety.data.construct") / "prompts" / f"{version}.txt").read_text(encoding="utf-8")
    return tmpl.format(text=text, source_name=taxonomy.LANGUAGES[source],
                       target_name=taxonomy.LANGUAGES[target]).strip()


def judge_translation(answer, wanted: str, detector: LanguageDetector) -> dict:
    from videosafety.models.base import FailedResponse

    if isinstance(answer, FailedResponse):
        return {"query": None, "detected": None, "accepted": False, "reason": f"failed: {answer.error}"}
    text = (answer or "").strip().strip('"').strip()
    if not text:
        return {"query": "", "detected": None, "accepted": False, "reason": "empty"}
    detected = detector.detect(text)
    if not language_matches(detected, wanted):
        return {"query": text, "detected": detected, "accepted": False,
                "reason": f"language: detected {detected!r}, wanted {wanted!r} ({detector.name} detector)"}
    return {"query": text, "detected": detected, "accepted": True, "reason": None}


def _check_query(path: Path, line: int, i: int, q: dict) -> None:
    for key in ("group_id", "subset", "subcategory", "kind", "query", "language"):
        if not isinstance(q.get(key), str) or not q.get(key):
            raise ManifestError(ManifestProblem(str(path), line, f"queries[{i}].{key}", "missing or not a string"))
    if q["language"] not in taxonomy.LANGUAGES:
        raise ManifestError(ManifestProblem(str(path), line, f"queries[{i}].language", f"unknown language {q['language']!r}"))
    if q["subcategory"] not in taxonomy.SUBCATEGORIES:
        raise ManifestError(ManifestProblem(str(path), line, f"queries[{i}].subcategory",
                                            f"unknown sub-category {q['subcategory']!r}"))
    if q["subset"] not in taxonomy.SUBSETS:
        raise ManifestError(ManifestProblem(str(path), line, f"queries[{i}].subset", f"unknown subset {q['subset']!r}"))


@dataclass
class TranslateSummary:
    videos: int = 0
    queries: int = 0
    asked: int = 0  # translations requested in this run (the rest came from the cache)
    accepted: int = 0
    rejected: int = 0
    output: Path | None = None


def translate_queries(out_dir: str | Path, settings: TranslateSettings = TranslateSettings(), *, model=None,
                      detector: LanguageDetector | None = None, batch_size: int = 16) -> TranslateSummary:
    """Translate OUT/queries.jsonl into OUT/translations.jsonl; `model` (a VideoLLM) and
    `detector` may be given, else they come from the settings."""
    from videosafety.data.vsb_mini.text import load_texts
    from videosafety.models.base import GenerationSettings, ModelInput

    out = Path(out_dir)
    source = out / "queries.jsonl"
    rows = read_records(source)
    for line, rec in rows:
        if not isinstance(rec.get("queries"), list):
            raise ManifestError(ManifestProblem(str(source), line, "queries", "missing or not a list"))
        for i, q in enumerate(rec["queries"]):
            _check_query(source, line, i, q)
    output = out / OUTPUT
    fp = settings_fingerprint(STAGE, settings)
    previous: dict[tuple[str, str, str], dict] = {}
    if output.exists():
        for _, rec in read_records(output):
            if rec.get("provenance", {}).get(STAGE, {}).get("fingerprint") == fp:
                for t in rec.get(STAGE, []):
                    previous[(t["group_id"], t["language"], t["source"])] = t
    prov = provenance(STAGE, f"translated by {settings.translator} (prompt {settings.prompt_version}), "
                             f"checked by the {settings.detector} language detector", settings)
    texts = load_texts()

    summary = TranslateSummary(videos=len(rows), output=output)
    per_video: list[list[dict]] = []
    pending: list[dict] = []
    for _, rec in rows:
        items = []
        for q in rec["queries"]:
            summary.queries += 1
            for lang in settings.languages:
                ref = q.get("reference_response")
                if lang != q["language"] and q["kind"] in ("harmful", "hb", "safeq"):
                    ref = texts[lang].reference(q["kind"], q["subcategory"])
                base = {"group_id": q["group_id"], "language": lang, "source": q["query"], "reference_response": ref}
                if lang == q["language"]:
                    items.append(dict(base, query=q["query"], detected=None, accepted=True, reason=None, model=None))
                    continue
                old = previous.get((q["group_id"], lang, q["query"]))
                if old is not None and not (old.get("reason") or "").startswith("failed"):  # a failure is retried
                    items.append(old)
                    continue
                item = dict(base, query=None, detected=None, accepted=False, reason="pending", model=settings.translator,
                            _source_language=q["language"])
                items.append(item)
                pending.append(item)
        per_video.append(items)

    if pending:
        if model is None:
            if not settings.translator:
                raise ValueError("stage translate needs a translator (a model spec) for languages other than the source")
            from videosafety.budget import FrameBudget
            from videosafety.models.spec import ModelOptions, load_model

            model = load_model(settings.translator, FrameBudget(), ModelOptions(batch_size=batch_size))
        detector = detector or get_detector(settings.detector)
        gen = GenerationSettings(max_new_tokens=settings.max_new_tokens)
        for start in range(0, len(pending), batch_size):
            chunk = pending[start:start + batch_size]
            answers = model.generate([ModelInput(query=translate_prompt(t["source"], t["_source_language"], t["language"],
                                                                        settings.prompt_version)) for t in chunk], gen)
            for t, a in zip(chunk, answers):
                t.update(judge_translation(a, t["language"], detector))
                t["detector"] = detector.name
                del t["_source_language"]
        summary.asked = len(pending)

    out_records = []
    for (_, rec), items in zip(rows, per_video):
        summary.accepted += sum(1 for t in items if t["accepted"] and t["model"])
        summary.rejected += sum(1 for t in items if not t["accepted"])
        out_records.append(dict(rec, provenance={**rec.get("provenance", {}), STAGE: prov}, **{STAGE: items}))
    write_stage(output, out_records)
    return summary
