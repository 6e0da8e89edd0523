"""VSB-mini's query text: templates and sub-category phrases per language, shipped as data
files (text/<lang>.yaml, translated from en.yaml; no translation at run time)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from videosafety import taxonomy

SOURCE_LANGUAGE = "en"
TEMPLATE_KINDS = ("harmful", "hb", "safeq")  # query templates, each split into eval/train
REFERENCE_KINDS = ("harmful", "hb", "safeq")
_SLOT = re.compile(r"\{(\w+)\}")
# Which slots each kind of text may use; checked when a file loads so a broken translation
# fails at once, naming its file and key, instead of in the middle of a build.
_SLOTS = {"harmful": {"act"}, "hb": set(), "safeq": {"topic"}, "reference": {"topic"}, "intention": {"act"}}


class TextDataError(ValueError):
    pass


@dataclass(frozen=True)
class LanguageText:
    language: str
    templates: dict[str, dict[str, tuple[str, ...]]]  # kind -> split -> templates
    references: dict[str, str]
    phrases: dict[str, dict[str, str]]  # subcategory -> {"act", "topic"}
    intention: str | None

    def query(self, kind: str, split: str, index: int, subcategory: str) -> str:
        return self.templates[kind][split][index].format(**self.phrases[subcategory])

    def reference(self, kind: str, subcategory: str) -> str:
        return self.references[kind].format(**self.phrases[subcategory])


def _check_slots(where: str, text: str, kind: str) -> None:
    found = set(_SLOT.findall(text))
    if found - _SLOTS[kind]:
        raise TextDataError(f"{where}: unexpected slot(s) {sorted(found - _SLOTS[kind])} in {text!r}")


def parse_language_text(data: dict, name: str, reference: dict | None = None) -> LanguageText:
    """Validate one language file; `reference` (the English file) fixes the list lengths."""
    try:
        lang = data["language"]
        templates: dict[str, dict[str, tuple[str, ...]]] = {}
        for kind in TEMPLATE_KINDS:
            templates[kind] = {}
            for split in taxonomy.SPLITS:
                items = tuple(data[kind][split])
                for i, t in enumerate(items):
                    _check_slots(f"{name}: {kind}.{split}[{i}]", t, kind)
                if reference is not None and len(items) != len(reference[kind][split]):
                    raise TextDataError(f"{name}: {kind}.{split} has {len(items)} templates, the source has {len(reference[kind][split])}")
                templates[kind][split] = items
        refs = {k: data["reference"][k] for k in REFERENCE_KINDS}
        for k, t in refs.items():
            _check_slots(f"{name}: reference.{k}", t, "reference")
        subs = data["subcategories"]
        missing = set(taxonomy.SUBCATEGORIES) - set(subs)
        if missing:
            raise TextDataError(f"{name}: subcategories missing {sorted(missing)}")
        phrases = {s: {"act": subs[s]["act"], "topic": subs[s]["topic"]} for s in taxonomy.SUBCATEGORIES}
    except KeyError as e:
        raise TextDataError(f"{name}: missing key {e}") from None
    intention = data.get("intention")
    if intention is not None:
        _check_slots(f"{name}: intention", intention, "intention")
    return LanguageText(lang, templates, refs, phrases, intention)


def _load_yaml(lang: str) -> dict:
    f = resources.files("videosafety.data.vsb_mini") / "text" / f"{lang}.yaml"
    return yaml.safe_load(f.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def load_texts() -> dict[str, LanguageText]:
    source = _load_yaml(SOURCE_LANGUAGE)
    out = {}
    for lang in taxonomy.LANGUAGES:
        name = f"vsb_mini/text/{lang}.yaml"
        try:
            data = source if lang == SOURCE_LANGUAGE else _load_yaml(lang)
        except FileNotFoundError:
            raise TextDataError(f"{name}: missing translation file") from None
        out[lang] = parse_language_text(data, name, reference=source)
        if out[lang].language != lang:
            raise TextDataError(f"{name}: says language {out[lang].language!r}")
    if out[SOURCE_LANGUAGE].intention is None:
        raise TextDataError("vsb_mini/text/en.yaml: missing key 'intention'")
    return out
