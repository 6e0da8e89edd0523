"""VSB-mini: coverage of every cell, no leakage between train, val and eval, determinism, clean validation,
and the text data of all ten languages."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from videosafety import taxonomy
from videosafety.data.manifest import read_manifest
from videosafety.data.validate import validate_manifest
from videosafety.data.vsb_mini import build_vsb_mini
from videosafety.data.vsb_mini.render import HEIGHT, NUM_FRAMES, WIDTH, Scene, render_scene
from videosafety.data.vsb_mini.text import TextDataError, load_texts, parse_language_text
from videosafety.video import sample_frames


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("vsb-mini")
    path = build_vsb_mini(out, workers=2)
    return path, read_manifest(path)


def test_every_cell_is_filled_train_three_times_eval(mini):
    _, samples = mini
    cells = Counter((s.split, s.subcategory, s.language, s.subset) for s in samples)
    for sub in taxonomy.SUBCATEGORIES:
        for lang in taxonomy.LANGUAGES:
            for subset in taxonomy.SUBSETS:
                n_eval = cells[("eval", sub, lang, subset)]
                assert n_eval >= 2 and cells[("val", sub, lang, subset)] == n_eval
                assert cells[("train", sub, lang, subset)] >= 3 * n_eval
    assert len(samples) == 19 * 10 * 4 * (2 + 2 + 6)


def test_no_leakage_between_splits(mini):
    _, samples = mini
    by_split = {sp: [s for s in samples if s.split == sp] for sp in taxonomy.SPLITS}
    videos = {sp: {s.video.path for s in v} for sp, v in by_split.items()}
    templates = {sp: {s.provenance["template"] for s in v} for sp, v in by_split.items()}
    queries = {sp: {s.query for s in v} for sp, v in by_split.items()}
    groups = {sp: {s.group_id for s in v} for sp, v in by_split.items()}
    for a, b in (("train", "eval"), ("train", "val"), ("val", "eval")):
        assert videos[a] and videos[b] and not videos[a] & videos[b], (a, b)
        assert not templates[a] & templates[b], (a, b)
        # hb templates carry no slot, so an overlap in text would mean a template reused
        assert not queries[a] & queries[b], (a, b)
        assert not groups[a] & groups[b], (a, b)
    # nor a scene's caption: a val scene reworded from a train one would leak its cue
    from videosafety.data.vsb_mini.build import scenes
    captions = {sp: {sc.words for subs in scenes(sp)[0].values() for sc in subs} | {sc.words for sc in scenes(sp)[1]}
                for sp in taxonomy.SPLITS}
    assert not captions["val"] & (captions["train"] | captions["eval"])


def test_labels_translations_and_references(mini):
    _, samples = mini
    groups = Counter(s.group_id for s in samples)
    assert set(groups.values()) == {10}  # each query in ten languages, one group
    for s in samples:
        assert taxonomy.labels_agree(s.subset, s.video_label, s.query_label)
        assert s.reference_response and "{" not in s.query and "{" not in s.reference_response
        assert (s.harmful_intention is not None) == (s.subset != "SafeQ")
        assert s.video_label == (1 if s.video.path.split("/")[-1].startswith("harm-") else 0)
    # SafeQ pairs its benign query with a harmful video of its own sub-category
    safeq = [s for s in samples if s.subset == "SafeQ"]
    assert all(f"harm-{s.subcategory}-" in s.video.path for s in safeq)
    zh = next(s for s in samples if s.language == "zh" and s.subset == "HH")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh.query)


def test_validates_clean_and_build_is_deterministic(mini, tmp_path):
    path, _ = mini
    report = validate_manifest(path)
    assert report.ok, [str(p) for p in report.problems[:5]]
    assert report.videos_checked == 126 + 19 + 3  # val: one harmful scene per sub-category, 3 safe
    again = build_vsb_mini(tmp_path, workers=1)
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_words_are_revealed_over_time(mini):
    path, samples = mini
    hh = next(s for s in samples if s.subset == "HH")
    clip = sample_frames(path.parent / hh.video.path, num_frames=6)
    assert clip.frames.shape == (6, HEIGHT, WIDTH, 3)
    frames = render_scene(Scene("harm-explosives-0", ("HOMEMADE", "BOMB"), True))
    assert len(frames) == NUM_FRAMES
    caption = lambda f: (f[:50] != f[0, -1]).sum()  # caption band pixels differing from background
    assert caption(frames[0]) == 0 < caption(frames[10]) < caption(frames[30])


def test_all_ten_languages_ship_complete_text():
    texts = load_texts()
    assert set(texts) == set(taxonomy.LANGUAGES)
    for lang, t in texts.items():
        for sub in taxonomy.SUBCATEGORIES:
            for kind in ("harmful", "hb", "safeq"):
                for split in taxonomy.SPLITS:
                    for i in range(len(t.templates[kind][split])):
                        q = t.query(kind, split, i, sub)
                        assert q and "{" not in q
    # a translation that differs in a template count or slot is refused with its name
    import copy

    import yaml
    from importlib import resources
    en = yaml.safe_load((resources.files("videosafety.data.vsb_mini") / "text" / "en.yaml").read_text())
    bad = copy.deepcopy(en)
    bad["harmful"]["eval"] = bad["harmful"]["eval"][:1]
    with pytest.raises(TextDataError, match="xx.yaml: harmful.eval has 1"):
        parse_language_text(bad, "xx.yaml", reference=en)
    bad = copy.deepcopy(en)
    bad["safeq"]["train"][0] = "About {act}?"
    with pytest.raises(TextDataError, match=r"safeq.train\[0\]: unexpected slot"):
        parse_language_text(bad, "xx.yaml", reference=en)
