"""Stage 4, queries: `label.jsonl` -> `queries.jsonl`, the questions each labelled video is asked.

Every video with a decided label (video_label not None) gets queries for the subsets it can
serve (taxonomy.SUBSET_LABELS): a harmful video HH (harmful query) and HB (a query benign alone,
harmful with the video); a safe video SH (harmful query). SafeQ (benign query) goes with safe
videos and, by default, with harmful ones too (spec §1.1: the hard over-refusal case);
`safeq_videos` chooses. A harmful video's queries are about its labelled sub-category; a safe
video has none, so its queries are about `safe_subcategories` sub-categories drawn from its
metadata hint (all 19 without one), rotated by its content hash so that the corpus covers them.

Query text comes from the shipped VSB-mini templates of the source language (English), filled
with the sub-category's phrases (vsb_mini/text/en.yaml: nothing operational). With a
`paraphraser` (any model backend, asked text-only with the versioned prompt
`prompts/paraphrase_v1.txt`) each query is reworded; a paraphrase that is empty or whose ROUGE
to the template falls below `min_rouge` (the meaning drifted) is rejected, recorded, and the
template text kept. Each query carries its group_id (shared by its translations later), subset,
query_label, harmful_intention and the VSB-mini reference response.

One record per video, as in the other stages; the stage's output is its cache (by video content
and settings).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from videosafety import taxonomy
from videosafety.data.construct.label import candidates_for
from videosafety.data.construct.stage import cached, provenance, write_stage
from videosafety.data.manifest import ManifestError, ManifestProblem, iter_jsonl_objects

STAGE = "queries"
OUTPUT = "queries.jsonl"
PROMPT_VERSION = "paraphrase_v1"
# Which VSB-mini template list each subset's query comes from (as vsb_mini.build does).
QUERY_KIND = {"HH": "harmful", "SH": "harmful", "HB": "hb", "SafeQ": "safeq"}


class QuerySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_subset: int = Field(2, ge=1)  # templates per video and subset (of the 5 shipped per kind)
    safe_subcategories: int = Field(2, ge=1)  # sub-categories a safe video is asked about
    safeq_videos: Literal["safe", "harmful", "both"] = "both"
    paraphraser: str | None = None  # model spec; None = template text as is
    min_rouge: float = Field(0.2, ge=0, le=1)  # paraphrase vs template, below it: rejected
    max_new_tokens: int = Field(96, ge=1)
    prompt_version: str = PROMPT_VERSION


def read_records(path: Path) -> list[tuple[int, dict]]:
    """(line, record) of a stage file; a broken line is an error naming the file and the line."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run the previous stage first)")
    out = []
    for line, rec in iter_jsonl_objects(path):
        if isinstance(rec, ManifestProblem):
            raise ManifestError(rec)
        out.append((line, rec))
    return out


def stable_hash(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12], 16)


def templates(kind: str) -> list[tuple[str, str]]:
    """(name, template) of one kind, eval list then train list: the shipped source-language text."""
    from videosafety.data.vsb_mini.text import SOURCE_LANGUAGE, load_texts

    t = load_texts()[SOURCE_LANGUAGE].templates[kind]
    return [(f"{kind}.{split}[{i}]", text) for split in taxonomy.SPLITS for i, text in enumerate(t[split])]


def subsets_for(video_label: int, safeq_videos: str = "both") -> list[str]:
    out = []
    for subset, (want_video, _) in taxonomy.SUBSET_LABELS.items():
        if subset == "SafeQ":
            if safeq_videos == "both" or (safeq_videos == "harmful") == (video_label == taxonomy.HARMFUL):
                out.append(subset)
        elif want_video == video_label:
            out.append(subset)
    return out


def subcategories_for(rec: dict, n: int) -> list[str]:
    """A harmful video's own sub-category; for a safe one, n drawn from its hint's candidates."""
    if rec["video_label"] == taxonomy.HARMFUL:
        return [rec["subcategory"]]
    cands = candidates_for((rec.get("metadata") or {}).get("category_hint"))
    k = stable_hash(rec["sha256"], "subcategories") % len(cands)
    rotated = cands[k:] + cands[:k]
    return rotated[:n]


def draft_queries(rec: dict, settings: QuerySettings) -> list[dict]:
    """The template queries of one labelled video (before any paraphrase)."""
    from videosafety.data.vsb_mini.text import SOURCE_LANGUAGE, load_texts

    en = load_texts()[SOURCE_LANGUAGE]
    out = []
    for sub in subcategories_for(rec, settings.safe_subcategories):
        for subset in subsets_for(rec["video_label"], settings.safeq_videos):
            kind = QUERY_KIND[subset]
            tmpl = templates(kind)
            start = stable_hash(rec["sha256"], sub, subset) % len(tmpl)
            for j in range(min(settings.per_subset, len(tmpl))):
                name, text = tmpl[(start + j) % len(tmpl)]
                query = text.format(**en.phrases[sub])
                query_label = taxonomy.SUBSET_LABELS[subset][1]
                out.append({
                    "group_id": f"{rec['sha256'][:12]}-{subset}-{sub}-{re.sub(r'[^a-z0-9]+', '-', name).strip('-')}",
                    "subset": subset, "subcategory": sub, "category": taxonomy.category_of(sub),
                    "kind": kind, "template": name, "template_text": query, "query": query,
                    "language": SOURCE_LANGUAGE, "query_label": query_label,
                    "harmful_intention": (en.intention.format(**en.phrases[sub])
                                          if subset in taxonomy.HARMFUL_REQUEST_SUBSETS else None),
                    "reference_response": en.reference(kind, sub),
                    "paraphrase": None,
                })
    return out


def paraphrase_prompt(query: str, version: str = PROMPT_VERSION) -> str:
    text = (resources.files("videosafety.data.construct") / "prompts" / f"{version}.txt").read_text(encoding="utf-8")
    return text.format(query=query).strip()


def judge_paraphrase(template: str, answer, min_rouge: float) -> dict:
    """The paraphrase record: accepted, or rejected with the reason (empty, failed, drifted)."""
    from videosafety.models.base import FailedResponse
    from videosafety.rewards.rouge import rouge

    if isinstance(answer, FailedResponse):
        return {"text": None, "rouge": None, "accepted": False, "reason": f"failed: {answer.error}"}
    text = (answer or "").strip().strip('"').strip()
    if not text:
        return {"text": "", "rouge": 0.0, "accepted": False, "reason": "empty"}
    score = round(rouge(text, template), 4)
    if score < min_rouge:
        return {"text": text, "rouge": score, "accepted": False, "reason": f"rouge {score} below {min_rouge}"}
    return {"text": text, "rouge": score, "accepted": True, "reason": None}


def check_label_record(path: Path, line: int, rec: dict) -> None:
    """The fields this stage relies on; an error names the file, the line and the field."""
    name = str(path)
    for key in ("video", "sha256", "video_label"):
        if key not in rec:
            raise ManifestError(ManifestProblem(name, line, key, "missing"))
    if rec["video_label"] not in (None, taxonomy.HARMFUL, taxonomy.SAFE):
        raise ManifestError(ManifestProblem(name, line, "video_label", f"must be 1, 0 or null, got {rec['video_label']!r}"))
    if rec["video_label"] == taxonomy.HARMFUL and rec.get("subcategory") not in taxonomy.SUBCATEGORIES:
        raise ManifestError(ManifestProblem(name, line, "subcategory",
                                            f"unknown sub-category {rec.get('subcategory')!r} for a harmful video"))


def _drafted_from(rec: dict) -> tuple:
    return rec["video_label"], rec.get("subcategory"), (rec.get("metadata") or {}).get("category_hint")


@dataclass
class QuerySummary:
    videos: int = 0
    drafted: int = 0  # videos given queries in this run (the rest came from the cache)
    queries: int = 0
    paraphrased: int = 0
    rejected: int = 0
    output: Path | None = None


def make_queries(out_dir: str | Path, settings: QuerySettings = QuerySettings(), *, model=None,
                 batch_size: int = 16) -> QuerySummary:
    """Queries for every labelled video of OUT/label.jsonl into OUT/queries.jsonl; `model` (a
    VideoLLM) may be given to reuse a loaded paraphraser, else it is loaded from the spec."""
    from videosafety.models.base import GenerationSettings, ModelInput

    out = Path(out_dir)
    source = out / "label.jsonl"
    rows = read_records(source)
    for line, rec in rows:
        check_label_record(source, line, rec)
    records = [rec for _, rec in rows if rec["video_label"] is not None]
    output = out / OUTPUT
    previous = cached(output, STAGE, settings)
    rule = (f"VSB-mini templates, paraphrased by {settings.paraphraser} (prompt {settings.prompt_version}, "
            f"ROUGE >= {settings.min_rouge})" if settings.paraphraser else "VSB-mini templates")
    prov = provenance(STAGE, rule, settings)

    summary = QuerySummary(videos=len(records), output=output)
    drafts: dict[str, list[dict] | None] = {}
    for rec in records:
        old = previous.get(rec["sha256"])
        # a cached record counts only if the label (and hint) it was drafted from are unchanged
        drafts[rec["video"]] = old[STAGE] if old is not None and _drafted_from(old) == _drafted_from(rec) else None
    todo = [r for r in records if drafts[r["video"]] is None]
    fresh = {r["video"] for r in todo}
    summary.drafted = len(todo)
    for r in todo:
        drafts[r["video"]] = draft_queries(r, settings)

    if settings.paraphraser and todo:
        if model is None:
            from videosafety.budget import FrameBudget
            from videosafety.models.spec import ModelOptions, load_model

            model = load_model(settings.paraphraser, FrameBudget(), ModelOptions(batch_size=batch_size))
        pending = [q for r in todo for q in drafts[r["video"]]]
        gen = GenerationSettings(max_new_tokens=settings.max_new_tokens)
        for start in range(0, len(pending), batch_size):
            chunk = pending[start:start + batch_size]
            answers = model.generate([ModelInput(query=paraphrase_prompt(q["template_text"], settings.prompt_version))
                                      for q in chunk], gen)
            for q, a in zip(chunk, answers):
                p = judge_paraphrase(q["template_text"], a, settings.min_rouge)
                p["model"] = settings.paraphraser
                q["paraphrase"] = p
                if p["accepted"]:
                    q["query"] = p["text"]

    out_records = []
    for rec in records:
        qs = drafts[rec["video"]]
        summary.queries += len(qs)
        summary.paraphrased += sum(1 for q in qs if q["paraphrase"] and q["paraphrase"]["accepted"])
        summary.rejected += sum(1 for q in qs if q["paraphrase"] and not q["paraphrase"]["accepted"])
        mine = prov if rec["video"] in fresh else previous[rec["sha256"]]["provenance"][STAGE]
        out_records.append(dict(rec, provenance={**rec.get("provenance", {}), STAGE: mine}, **{STAGE: qs}))
    write_stage(output, out_records)
    return summary
