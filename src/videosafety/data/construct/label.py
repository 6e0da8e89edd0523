"""Stage 3, video harm labelling: `static.jsonl` (or `ingest.jsonl`) -> `label.jsonl`.

Each kept video is shown to several labellers — any model backend of the evaluation harness
(`hf:`, `openai:` (a served VLM in practice), `ref:`) — with one versioned prompt
(`prompts/label_v1.txt`) listing the candidate sub-categories' policies: the metadata's hint
(a sub-category, or the sub-categories of a category; all 19 without a hint). Each labeller
answers one sub-category name or "safe". The majority answer is the label; the agreement (share
of labellers giving it) is recorded, and a video whose agreement is below `min_agreement`, or
without a majority, is flagged for human review: `export_review` writes a sheet, a person fills
the `decision` column, `import_review` applies it (provenance: "human").

Frames are sampled once per video with the run's frame budget and shown to every labeller.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from videosafety import taxonomy
from videosafety import video as vio
from videosafety.budget import FrameBudget
from videosafety.data.construct.stage import cached, provenance, read_stage, write_stage
from videosafety.data.manifest import ManifestError, ManifestProblem
from videosafety.models.base import FailedResponse, GenerationSettings, ModelInput

STAGE = "label"
OUTPUT = "label.jsonl"
PROMPT_VERSION = "label_v1"
SAFE = taxonomy.SAFE_VIDEO


class LabelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labellers: list[str] = Field(min_length=1)  # model specs, e.g. openai:qwen2.5-vl-72b@http://127.0.0.1:8000/v1
    min_agreement: float = Field(1.0, gt=0, le=1)  # below it a video goes to human review
    budget: FrameBudget = Field(default_factory=lambda: FrameBudget(num_frames=16, fps=None, max_frames=16))
    max_new_tokens: int = Field(16, ge=1)
    prompt_version: str = PROMPT_VERSION


def prompt_template(version: str = PROMPT_VERSION) -> str:
    return (resources.files("videosafety.data.construct") / "prompts" / f"{version}.txt").read_text(encoding="utf-8")


def candidates_for(hint: str | None) -> list[str]:
    """Sub-categories a video may be labelled with, from its metadata hint (all of them for no
    hint and for "safe": a video said to be safe is still shown every policy, so that a wrong
    hint is caught by the labellers)."""
    if hint in taxonomy.SUBCATEGORIES:
        return [hint]
    if hint in taxonomy.CATEGORIES:
        return [s for s in taxonomy.SUBCATEGORIES if taxonomy.category_of(s) == hint]
    return list(taxonomy.SUBCATEGORIES)


def label_prompt(candidates: list[str], version: str = PROMPT_VERSION) -> str:
    policies = "\n".join(f"- {name}: {taxonomy.SUBCATEGORIES[name].title}. {taxonomy.SUBCATEGORIES[name].policy}"
                         for name in candidates)
    return prompt_template(version).format(policies=policies).strip()


def parse_label(text: str, candidates: list[str]) -> str | None:
    """The one candidate name (or "safe") an answer gives; None when it names none or several."""
    if not isinstance(text, str):
        return None
    words = set(re.findall(r"[a-z_]+", text.lower()))
    found = [c for c in [*candidates, SAFE] if c in words]
    return found[0] if len(found) == 1 else None


def vote(answers: list[str | None]) -> tuple[str | None, float]:
    """(majority answer, agreement): the most common parsed answer if it is a strict plurality,
    else None; agreement = its share of all labellers (unparsed answers count against it)."""
    counts = Counter(a for a in answers if a is not None).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None, 0.0 if not counts else counts[0][1] / len(answers)
    return counts[0][0], counts[0][1] / len(answers)


@dataclass
class LabelSummary:
    videos: int = 0
    labelled: int = 0  # asked in this run (the rest came from the stage's own output)
    harmful: int = 0
    safe: int = 0
    flagged: int = 0
    output: Path | None = None


def _source(out: Path) -> Path:
    for name in ("static.jsonl", "ingest.jsonl"):
        if (out / name).exists():
            return out / name
    raise FileNotFoundError(f"{out}: no static.jsonl or ingest.jsonl (run the ingest stage first)")


def label_videos(videos: str | Path, out_dir: str | Path, settings: LabelSettings, *, models: list | None = None,
                 batch_size: int = 8) -> LabelSummary:
    """Label every kept video; `models` (VideoLLM objects, one per spec) may be given to reuse
    loaded models, else they are loaded from the specs."""
    from videosafety.models.spec import ModelOptions, load_model

    root, out = Path(videos), Path(out_dir)
    records = [r for r in read_stage(_source(out)) if r["status"] == "kept"]
    output = out / OUTPUT
    previous = cached(output, STAGE, settings)
    prov = provenance(STAGE, f"majority of {len(settings.labellers)} labeller(s), prompt {settings.prompt_version}",
                      settings)
    todo = [r for r in records if r["sha256"] not in previous]
    if models is None and todo:
        models = [load_model(spec, settings.budget, ModelOptions(batch_size=batch_size)) for spec in settings.labellers]
    gen = GenerationSettings(max_new_tokens=settings.max_new_tokens)

    votes: dict[str, list[dict]] = {r["video"]: [] for r in todo}
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        inputs, asked = [], []
        for r in chunk:
            cands = candidates_for(r.get("metadata", {}).get("category_hint"))
            try:
                clip = vio.sample_with_budget(vio.path_inside(root, r["video"]), settings.budget)
            except vio.VideoError as e:
                votes[r["video"]].append({"labeller": None, "answer": None, "error": str(e)})
                continue
            inputs.append(ModelInput(query=label_prompt(cands, settings.prompt_version), frames=clip.frames,
                                     timestamps=clip.timestamps, video_fps=clip.sampled_fps))
            asked.append((r, cands))
        for spec, model in zip(settings.labellers, models or []):
            answers = model.generate(inputs, gen) if inputs else []
            for (r, cands), a in zip(asked, answers):
                if isinstance(a, FailedResponse):
                    votes[r["video"]].append({"labeller": spec, "answer": None, "error": a.error})
                else:
                    votes[r["video"]].append({"labeller": spec, "answer": a, "parsed": parse_label(a, cands)})

    summary = LabelSummary(videos=len(records), labelled=len(todo), output=output)
    out_records = []
    for r in records:
        if r["video"] in votes:
            v = votes[r["video"]]
            majority, agreement = vote([x.get("parsed") for x in v])
            hint = r.get("metadata", {}).get("category_hint")
            # metadata that says "safe" is a claim to check: labellers who see harm send it to review
            against_hint = hint == SAFE and majority is not None and majority != SAFE
            label = {"votes": v, "majority": majority, "agreement": round(agreement, 4),
                     "candidates": candidates_for(hint),
                     "flagged": majority is None or agreement < settings.min_agreement or against_hint,
                     "human": None}
        else:
            label = previous[r["sha256"]][STAGE]
        rec = dict(r, provenance={**r["provenance"], STAGE: prov}, **{STAGE: label})
        _finalise(rec)
        summary.flagged += rec[STAGE]["flagged"] and rec[STAGE]["human"] is None
        if rec["video_label"] == taxonomy.HARMFUL:
            summary.harmful += 1
        elif rec["video_label"] == taxonomy.SAFE:
            summary.safe += 1
        out_records.append(rec)
    write_stage(output, out_records)
    return summary


def _finalise(rec: dict) -> None:
    """The record's decision: a human's when given, else the majority when not flagged."""
    lab = rec[STAGE]
    final = lab["human"] if lab["human"] is not None else (None if lab["flagged"] else lab["majority"])
    rec["subcategory"] = final if final not in (None, SAFE) else None
    rec["video_label"] = None if final is None else (taxonomy.SAFE if final == SAFE else taxonomy.HARMFUL)


REVIEW_FIELDS = ("video", "candidates", "votes", "majority", "agreement", "decision")


def export_review(out_dir: str | Path, sheet: str | Path) -> int:
    """A CSV of the flagged videos without a human decision; fill `decision` with one of the
    candidates or "safe"."""
    rows = [r for r in read_stage(Path(out_dir) / OUTPUT) if r[STAGE]["flagged"] and r[STAGE]["human"] is None]
    with open(sheet, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=REVIEW_FIELDS)
        w.writeheader()
        for r in rows:
            lab = r[STAGE]
            w.writerow({"video": r["video"], "candidates": " ".join(lab["candidates"]),
                        "votes": " | ".join(f"{x.get('labeller')}: {x.get('parsed') or x.get('error') or x.get('answer')}"
                                            for x in lab["votes"]),
                        "majority": lab["majority"] or "", "agreement": lab["agreement"], "decision": ""})
    return len(rows)


def import_review(out_dir: str | Path, sheet: str | Path) -> int:
    """Apply a filled review sheet; returns the number of decisions applied. Blank decisions are
    skipped; a decision that is not a candidate or "safe", or names an unknown video, is an error
    naming the sheet, the line and the field."""
    path = Path(out_dir) / OUTPUT
    records = read_stage(path)
    by_video = {r["video"]: r for r in records}
    name = str(sheet)
    applied = 0
    with open(sheet, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for row in reader:
            decision = (row.get("decision") or "").strip()
            if not decision:
                continue
            rec = by_video.get(row.get("video") or "")
            if rec is None:
                raise ManifestError(ManifestProblem(name, reader.line_num, "video", f"unknown video {row.get('video')!r}"))
            allowed = [*rec[STAGE]["candidates"], SAFE]
            if decision not in allowed:
                raise ManifestError(ManifestProblem(name, reader.line_num, "decision",
                                                    f"{decision!r} is not one of {', '.join(allowed)}"))
            rec[STAGE]["human"] = decision
            rec["provenance"][STAGE + "_review"] = {"stage": STAGE, "rule": "human", "sheet": Path(sheet).name}
            _finalise(rec)
            applied += 1
    write_stage(path, records)
    return applied
