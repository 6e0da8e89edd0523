"""Stage 6, pair: `translations.jsonl` -> a benchmark folder (manifest.jsonl, manifest.parquet,
an HF dataset folder `hf/`, a dataset card README.md, and `videos/` holding the used clips).

Every accepted translation of a query becomes a candidate Sample (its video, its subset and
labels, its language). Quotas: at most `quota` samples per (subset, sub-category, language)
cell, chosen in a deterministic order (a hash of the seed and the query group), so a rerun gives
the same benchmark. Split: no leakage, by video and by query group together — a union-find joins
each sample's video and its query group, and every connected component goes wholly to one
split, so no video and no query group (a query and its translations) appears in both. The
components are dealt in hash order: to eval while eval holds fewer than `eval_share` of the
samples, else to train. The manifest is validated (videos hashed and decoded) before the stage
reports success.

Videos are hard-linked (copied across file systems) into OUT/videos so that the folder is
self-contained and its manifest paths stay inside it.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from videosafety import taxonomy
from videosafety.data.construct.queries import read_records, stable_hash
from videosafety.data.construct.stage import provenance
from videosafety.data.manifest import ManifestError, ManifestProblem, validation_problems, write_manifest
from videosafety.schema import Sample, VideoRef

STAGE = "pair"
OUTPUT = "dataset"
VIDEO_DIR = "videos"


class PairSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quota: int | None = Field(None, ge=1)  # samples per (subset, sub-category, language) cell; None = all
    eval_share: float = Field(0.2, ge=0, le=1)  # paper: 11.4k eval of 57k (eval + VST train)
    seed: str = "0"


class UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smaller name is the root: deterministic


def split_components(samples: list[dict], eval_share: float, seed: str) -> tuple[UnionFind, dict[str, str]]:
    """The union-find over the video and query-group ids of the samples, and {component root: split}."""
    uf = UnionFind()
    for s in samples:
        uf.union("video:" + s["video_sha256"], "group:" + s["group_id"])
    sizes = Counter(uf.find("video:" + s["video_sha256"]) for s in samples)
    order = sorted(sizes, key=lambda root: (stable_hash(seed, root), root))
    total, n_eval, out = sum(sizes.values()), 0, {}
    for root in order:
        if n_eval < eval_share * total:
            out[root] = "eval"
            n_eval += sizes[root]
        else:
            out[root] = "train"
    return uf, out


@dataclass
class PairSummary:
    candidates: int = 0
    samples: int = 0
    splits: Counter = field(default_factory=Counter)
    components: int = 0
    problems: list = field(default_factory=list)  # validation problems (empty when clean)
    output: Path | None = None


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system: a copy, which a kill may cut off, so under another name first
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)


def _candidates(path: Path) -> list[dict]:
    out = []
    for line, rec in read_records(path):
        queries = {q["group_id"]: q for q in rec.get("queries", [])}
        for i, t in enumerate(rec.get("translate", [])):
            if not t.get("accepted"):
                continue
            q = queries.get(t.get("group_id"))
            if q is None:
                raise ManifestError(ManifestProblem(str(path), line, f"translate[{i}].group_id",
                                                    f"no query {t.get('group_id')!r} in this record"))
            out.append({"line": line, "index": i, "record": rec, "query": q, "translation": t,
                        "video_sha256": rec["sha256"], "group_id": q["group_id"],
                        "cell": (q["subset"], q["subcategory"], t["language"])})
    return out


def _sample(c: dict, split: str, prov: dict) -> Sample:
    rec, q, t = c["record"], c["query"], c["translation"]
    info = rec.get("info") or {}
    return Sample(
        id=f"{q['group_id']}-{t['language']}", group_id=q["group_id"], split=split, subset=q["subset"],
        category=q.get("category") or taxonomy.category_of(q["subcategory"]), subcategory=q["subcategory"],
        language=t["language"], source_language=q["language"], query=t["query"],
        harmful_intention=q.get("harmful_intention"), query_label=q["query_label"],
        video=VideoRef(path=f"{VIDEO_DIR}/{rec['video']}", sha256=rec["sha256"], duration=info.get("duration"),
                       fps=info.get("fps"), width=info.get("width"), height=info.get("height")),
        video_label=rec["video_label"], reference_response=t.get("reference_response"),
        provenance={"source": "videosafety bench build", "video": rec["video"],
                    "metadata": rec.get("metadata") or {},
                    "stages": {**rec.get("provenance", {}), STAGE: prov},
                    "template": q.get("template"), "paraphrase": q.get("paraphrase"),
                    "translation": None if t.get("model") is None else
                    {"model": t["model"], "detected": t.get("detected"), "detector": t.get("detector")}},
    )


def pair(videos: str | Path, out_dir: str | Path, settings: PairSettings = PairSettings(), *,
         dataset_dir: str | Path | None = None, check_videos: bool = True) -> PairSummary:
    """OUT/translations.jsonl -> the benchmark folder (default OUT/dataset)."""
    from videosafety.data.manifest import to_hf_dataset
    from videosafety.data.validate import validate_manifest

    root, out = Path(videos), Path(out_dir)
    source = out / "translations.jsonl"
    dest = Path(dataset_dir) if dataset_dir is not None else out / OUTPUT
    cands = _candidates(source)
    summary = PairSummary(candidates=len(cands), output=dest)

    by_cell: dict[tuple, list[dict]] = defaultdict(list)
    for c in cands:
        by_cell[c["cell"]].append(c)
    chosen = []
    for cell in sorted(by_cell):
        items = sorted(by_cell[cell], key=lambda c: (stable_hash(settings.seed, c["group_id"]), c["group_id"]))
        chosen += items[:settings.quota] if settings.quota else items

    uf, split_of = split_components(chosen, settings.eval_share, settings.seed)
    summary.components = len(split_of)
    prov = provenance(STAGE, f"quota {settings.quota} per (subset, sub-category, language), eval share "
                             f"{settings.eval_share}, split by union-find over video and query group", settings)
    samples = []
    for c in chosen:
        split = split_of[uf.find("video:" + c["video_sha256"])]
        try:
            samples.append(_sample(c, split, prov))
        except ValidationError as e:
            p = validation_problems(str(source), c["line"], e)[0]
            raise ManifestError(ManifestProblem(p.file, p.line, f"translate[{c['index']}]: {p.field}", p.message)) from None
    samples.sort(key=lambda s: (s.split, s.subset, s.subcategory, s.language, s.id))
    if not samples:
        raise ValueError(f"{source}: no accepted translation to pair")
    summary.samples = len(samples)
    summary.splits = Counter(s.split for s in samples)

    for rel in sorted({s.provenance["video"] for s in samples}):
        _link(root / rel, dest / VIDEO_DIR / rel)
    write_manifest(samples, dest / "manifest.jsonl")
    write_manifest(samples, dest / "manifest.parquet")
    if (dest / "hf").exists():
        shutil.rmtree(dest / "hf")  # an earlier build's shards would otherwise stay beside the new ones
    to_hf_dataset(samples).save_to_disk(str(dest / "hf"))
    (dest / "README.md").write_text(dataset_card(samples, settings), encoding="utf-8")
    summary.problems = validate_manifest(dest / "manifest.jsonl", check_videos=check_videos).problems
    return summary


def counts_tables(samples: list[Sample]) -> str:
    """Markdown: per split and subset, a table of sub-categories (grouped by category) x languages."""
    langs = [lang for lang in taxonomy.LANGUAGES if any(s.language == lang for s in samples)]
    counts = Counter((s.split, s.subset, s.subcategory, s.language) for s in samples)
    lines = []
    for split in taxonomy.SPLITS:
        for subset in taxonomy.SUBSETS:
            subs = [sub for sub in taxonomy.SUBCATEGORIES if any(counts[(split, subset, sub, lang)] for lang in langs)]
            if not subs:
                continue
            lines += [f"### {split} / {subset}", "", "| category | sub-category | " + " | ".join(langs) + " | total |",
                      "|---|---|" + "---:|" * (len(langs) + 1)]
            for sub in subs:
                row = [counts[(split, subset, sub, lang)] for lang in langs]
                lines.append(f"| {taxonomy.category_of(sub)} | {sub} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
            lines.append("")
    return "\n".join(lines)


def dataset_card(samples: list[Sample], settings: PairSettings) -> str:
    split_counts = Counter((s.split, s.subset) for s in samples)
    videos = Counter(s.split for s in {(s.split, s.video.sha256): s for s in samples}.values())
    head = [
        "---", "license: other", "task_categories:", "- video-text-to-text", "tags:", "- safety", "- video",
        # On the Hugging Face Hub, datasets.load_dataset("OWNER/NAME") reads the parquet manifest.
        "configs:", "- config_name: default", "  data_files: manifest.parquet", "---", "",
        "# Video safety benchmark (built with `videosafety bench build`)", "",
        "Video-query pairs for measuring the safety of video LLMs, in the VideoSafetyBench format: subsets HH "
        "(harmful video, harmful query), SH (safe video, harmful query), HB (harmful video, query benign alone) and "
        "SafeQ (benign query). Labels: 1 = harmful, 0 = safe, per modality. Queries come from shipped templates "
        "(no operational detail), optionally paraphrased, translated by a model and checked by language "
        "identification; every row carries its provenance. Licences of the videos are in each row's "
        "`provenance.metadata.licence`.", "",
        f"Quota per (subset, sub-category, language): {settings.quota or 'none'}; eval share {settings.eval_share}; "
        "train and eval share no video and no query group.", "",
        "| split | " + " | ".join(taxonomy.SUBSETS) + " | samples | videos |",
        "|---|" + "---:|" * (len(taxonomy.SUBSETS) + 2),
    ]
    for split in (sp for sp in taxonomy.SPLITS if any(s.split == sp for s in samples)):
        row = [split_counts[(split, sub)] for sub in taxonomy.SUBSETS]
        head.append(f"| {split} | " + " | ".join(map(str, row)) + f" | {sum(row)} | {videos[split]} |")
    return "\n".join([*head, "", LOADING, "## Counts: subset x category x language", "", counts_tables(samples)]) + "\n"


# The card's loading section; its Python block runs as is in the dataset folder (tested).
LOADING = """## Loading

With Hugging Face `datasets`, from this folder (or, once uploaded to the Hub,
`datasets.load_dataset("OWNER/NAME")`, which reads the same parquet file):

```python
import datasets

rows = datasets.load_dataset("parquet", data_files="manifest.parquet", split="train")  # every sample
eval_rows = rows.filter(lambda row: row["split"] == "eval")    # the benchmark's own split column
same = datasets.load_from_disk("hf")                           # the same rows, saved by datasets
print(eval_rows[0]["video"]["path"], eval_rows[0]["query"])    # video paths are relative to this folder
```

All rows come as the loader's "train" split; the `split` column says train or eval. `provenance` is
JSON text. With videosafety: `videosafety eval --bench .` evaluates it, and
`videosafety.data.manifest.read_manifest("manifest.jsonl")` gives typed, validated samples.
"""
