"""Build VSB-mini: render its clips, pair them with queries in ten languages and write a
manifest in the real format.

Pairing (per sub-category, language and subset):
- eval: 2 samples, from the eval query templates and the eval scenes;
- val: 2 samples, from the val templates and the val scenes (for choosing training settings
  without looking at eval);
- train: 6 samples, from the train templates and the train scenes.
No two splits share a video scene or a query template, so nothing leaks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from videosafety import taxonomy
from videosafety import video as vio
from videosafety.data.manifest import write_jsonl
from videosafety.data.vsb_mini.render import FPS, HEIGHT, NUM_FRAMES, WIDTH, Scene, render_scene
from videosafety.data.vsb_mini.text import SOURCE_LANGUAGE, load_texts
from videosafety.schema import Sample, VideoRef
from videosafety.workers import process_pool

VSB_MINI_VERSION = "2"  # 2: the val split
SAMPLES_PER_CELL = {"train": 6, "val": 2, "eval": 2}
VIDEO_DIR = "videos"
# Which template list each subset's query comes from, and which reference answers it.
_QUERY_KIND = {"HH": "harmful", "SH": "harmful", "HB": "hb", "SafeQ": "safeq"}


@lru_cache(maxsize=1)
def _scene_data() -> dict:
    f = resources.files("videosafety.data.vsb_mini") / "scenes.yaml"
    return yaml.safe_load(f.read_text(encoding="utf-8"))


def scenes(split: str) -> tuple[dict[str, list[Scene]], list[Scene]]:
    """(harmful scenes per sub-category, safe scenes) of one split."""
    data = _scene_data()
    if split == "val":  # a section of its own, keyed apart from the train/eval lists
        val = data["val"]
        harmful = {sub: [Scene(f"harm-{sub}-v0", tuple(val["harmful"][sub]), True)] for sub in taxonomy.SUBCATEGORIES}
        return harmful, [Scene(f"safe-v{i}", tuple(words), False) for i, words in enumerate(val["safe"])]
    n_h, n_s = data["eval_scenes"]["harmful"], data["eval_scenes"]["safe"]

    def part(items: list, n_eval: int) -> list[tuple[int, list]]:
        idx = list(enumerate(items))
        return idx[:n_eval] if split == "eval" else idx[n_eval:]

    harmful = {
        sub: [Scene(f"harm-{sub}-{i}", tuple(words), True) for i, words in part(data["harmful"][sub], n_h)]
        for sub in taxonomy.SUBCATEGORIES
    }
    safe = [Scene(f"safe-{i}", tuple(words), False) for i, words in part(data["safe"], n_s)]
    return harmful, safe


def _encode(args: tuple[Scene, str]) -> tuple[str, str]:
    scene, path = args
    vio.encode_video(path, render_scene(scene), fps=FPS, width=WIDTH, height=HEIGHT)
    return scene.key, vio.sha256_file(path)


def _pairs(n: int, n_templates: int, n_scenes: int) -> list[tuple[int, int]]:
    """n distinct (template, scene) pairs, walking both lists together."""
    out: list[tuple[int, int]] = []
    k = 0
    while len(out) < n:
        pair = (k % n_templates, (k + k // (n_templates * n_scenes)) % n_scenes)
        if pair not in out:
            out.append(pair)
        k += 1
        if k > 10 * n_templates * n_scenes:
            raise ValueError(f"cannot make {n} distinct pairs from {n_templates} templates x {n_scenes} scenes")
    return out


def build_vsb_mini(
    out_dir: str | Path,
    *,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write OUT/manifest.jsonl and OUT/videos/*.mp4; return the manifest path.

    Deterministic: two builds give byte-identical manifests and videos."""
    out = Path(out_dir)
    (out / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    texts = load_texts()
    en = texts[SOURCE_LANGUAGE]

    by_split = {split: scenes(split) for split in taxonomy.SPLITS}
    all_scenes: list[Scene] = []
    for harmful, safe in by_split.values():
        all_scenes += [s for subs in harmful.values() for s in subs] + safe
    jobs = [(s, str(out / VIDEO_DIR / f"{s.key}.mp4")) for s in all_scenes]
    workers = workers or min(4, os.cpu_count() or 1)
    if progress:
        progress(f"rendering {len(jobs)} videos with {workers} worker(s)")
    if workers > 1:
        with process_pool(workers) as pool:
            digests = dict(pool.map(_encode, jobs, chunksize=4))
    else:
        digests = dict(map(_encode, jobs))
    duration = NUM_FRAMES / FPS

    def ref(scene: Scene) -> VideoRef:
        return VideoRef(path=f"{VIDEO_DIR}/{scene.key}.mp4", sha256=digests[scene.key],
                        duration=duration, fps=float(FPS), width=WIDTH, height=HEIGHT)

    samples: list[Sample] = []
    for split in taxonomy.SPLITS:
        harmful_scenes, safe_scenes = by_split[split]
        for sub_index, sub in enumerate(taxonomy.SUBCATEGORIES):
            for subset, kind in _QUERY_KIND.items():
                video_pool = harmful_scenes[sub]
                if subset == "SH":  # rotate per sub-category so every safe scene is used
                    k = sub_index % len(safe_scenes)
                    video_pool = safe_scenes[k:] + safe_scenes[:k]
                n_templates = len(en.templates[kind][split])
                for t, v in _pairs(SAMPLES_PER_CELL[split], n_templates, len(video_pool)):
                    scene = video_pool[v]
                    group = f"{split}-{sub}-{subset}-t{t}-{scene.key}"
                    video_label = taxonomy.HARMFUL if scene.harmful else taxonomy.SAFE
                    query_label = taxonomy.SUBSET_LABELS[subset][1]
                    intention = None
                    if subset in taxonomy.HARMFUL_REQUEST_SUBSETS:
                        intention = en.intention.format(**en.phrases[sub])
                    for lang, text in texts.items():
                        samples.append(Sample(
                            id=f"{group}-{lang}",
                            group_id=group,
                            split=split,
                            subset=subset,
                            category=taxonomy.category_of(sub),
                            subcategory=sub,
                            language=lang,
                            source_language=SOURCE_LANGUAGE,
                            query=text.query(kind, split, t, sub),
                            harmful_intention=intention,
                            query_label=query_label,
                            video=ref(scene),
                            video_label=video_label,
                            reference_response=text.reference(kind, sub),
                            provenance={
                                "source": "vsb-mini",
                                "version": VSB_MINI_VERSION,
                                "template": f"{kind}.{split}[{t}]",
                                "scene": scene.key,
                                "translated": lang != SOURCE_LANGUAGE,
                            },
                        ))
    path = out / "manifest.jsonl"
    write_jsonl(samples, path)
    if progress:
        progress(f"wrote {len(samples)} samples to {path}")
    return path


def default_vsb_mini() -> Path:
    """VSB-mini built once into the cache folder (the default benchmark everywhere)."""
    from videosafety.paths import cache_dir, locked

    out = cache_dir() / f"vsb-mini-v{VSB_MINI_VERSION}"
    done = out / ".complete"
    with locked(out):
        if not done.exists():
            build_vsb_mini(out)
            done.write_text("ok\n")
    return out / "manifest.jsonl"
