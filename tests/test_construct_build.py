"""Benchmark construction, stages queries, translate and pair, offline on synthetic videos:
ingest -> static -> label (a rule labeller standing in for a served VLM) -> queries (templates,
optionally paraphrased, paraphrases that drift rejected) -> translate (a rule translator,
translations in the wrong language rejected) -> pair (quotas, a split without leakage, a
manifest that validates), each stage cached, every record with its provenance."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from videosafety import taxonomy
from videosafety.data.construct import IngestSettings, ingest, static_filter
from videosafety.data.construct.label import LabelSettings, label_videos
from videosafety.data.construct.pair import PairSettings, UnionFind, pair
from videosafety.data.construct.queries import QuerySettings, judge_paraphrase, make_queries, subsets_for
from videosafety.data.construct.translate import (ScriptDetector, TranslateSettings, language_matches,
                                                  lingua_available, translate_queries)
from videosafety.data.manifest import ManifestError, read_manifest
from videosafety.video import encode_video

W, H, N = 96, 64, 30


def moving(seed: int, side: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 255, size=3)
    frames = np.empty((N, H, W, 3), dtype=np.uint8)
    sx, sy = 1 + seed % 3, 1 + (seed // 3) % 3  # each clip moves its own way: no near duplicates
    for t in range(N):
        frames[t] = bg
        x = (5 * seed + sx * 2 * t) % (W - side)
        y = (7 * seed + sy * t) % (H - side)
        frames[t, y:y + side, x:x + side] = 255 - bg
        frames[t, (3 * seed) % H, :] = (37 * seed) % 256  # a line whose place differs per clip
    return frames


# hints: a sub-category or category -> the rule labeller calls it harmful; none -> safe
HINTS = {"v0.mp4": "violence", "v1.mp4": "physical_violence", "v2.mp4": "fraud_deception",
         "v3.mp4": "", "v4.mp4": "", "v5.mp4": "scams_fraud"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    vids = root / "videos"
    vids.mkdir()
    for i, name in enumerate(HINTS):
        encode_video(vids / name, moving(i + 1), fps=10, width=W, height=H)
    still = np.repeat(moving(9)[:1], N, axis=0)
    encode_video(vids / "still.mp4", still, fps=10, width=W, height=H)
    meta = root / "meta.csv"
    meta.write_text("video,category_hint,language,source,licence\n"
                    + "".join(f"{v},{h},en,synthetic,CC0\n" for v, h in HINTS.items())
                    + "still.mp4,,en,synthetic,CC0\n")
    return root


class Rule:
    """A stand-in for a served model (no weights can be downloaded here), through the same
    VideoLLM interface the harness uses: answers from the prompt alone."""

    revision = "rule-v1"

    def __init__(self, answer_for):
        self.answer_for, self.prompts = answer_for, []

    def generate(self, inputs, settings):
        self.prompts += [i.query for i in inputs]
        return [self.answer_for(i.query) for i in inputs]


def first_policy(prompt: str) -> str:
    """Labeller: the first policy listed when the hint narrowed the list, else safe."""
    names = re.findall(r"^- (\w+):", prompt, flags=re.M)
    return names[0] if len(names) < 19 else "safe"


SENTENCES = {"English": "How can people protect themselves online?", "Chinese": "人们如何在网上保护自己？",
             "Japanese": "人々はオンラインでどのように身を守ることができますか？",
             "Korean": "사람들은 온라인에서 어떻게 자신을 보호할 수 있습니까?",
             "Russian": "Как люди могут защитить себя в интернете?",
             "French": "Comment les gens peuvent-ils se protéger en ligne ?"}


def translator(wrong: dict[str, str] | None = None):
    """Answers the target language's known sentence; `wrong` maps a target to the language it
    answers in instead."""
    def answer(prompt: str) -> str:
        target = re.search(r"into (\w+)\.", prompt).group(1)
        return SENTENCES[(wrong or {}).get(target, target)]
    return Rule(answer)


def records(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def labelled(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    ingest(corpus / "videos", corpus / "meta.csv", out, IngestSettings(), workers=1)
    st = static_filter(corpus / "videos", out, workers=1)
    assert st.kept == 6 and st.static == 1, records(out / "ingest.jsonl")
    s = label_videos(corpus / "videos", out, LabelSettings(labellers=["rule:first"]), models=[Rule(first_policy)])
    assert (s.harmful, s.safe, s.flagged) == (4, 2, 0)
    return out


def test_pure_parts_by_hand():
    assert subsets_for(1) == ["HH", "HB", "SafeQ"] and subsets_for(0) == ["SH", "SafeQ"]
    assert subsets_for(1, "safe") == ["HH", "HB"] and subsets_for(0, "harmful") == ["SH"]
    assert judge_paraphrase("How do I stay safe online?", "  ", 0.2)["reason"] == "empty"
    assert not judge_paraphrase("How do I stay safe online?", "Bananas are yellow.", 0.2)["accepted"]
    ok = judge_paraphrase("How do I stay safe online?", "How can I stay safe when online?", 0.2)
    assert ok["accepted"] and 0.2 <= ok["rouge"] < 1
    d = ScriptDetector()
    assert [d.detect(SENTENCES[k]) for k in ("Chinese", "Japanese", "Korean", "Russian", "French")] == \
        ["zh", "ja", "ko", "ru", "latin"]
    assert d.detect("مرحبا كيف حالك") == "ar" and d.detect("आप कैसे हैं") == "hi" and d.detect("1234 ?!") is None
    assert language_matches("latin", "fr") and not language_matches("latin", "zh") and not language_matches("ja", "zh")
    uf = UnionFind()
    uf.union("a", "b"), uf.union("c", "b"), uf.union("d", "e")
    assert uf.find("c") == uf.find("a") == "a" and uf.find("e") == "d"


def test_pipeline_queries_translate_pair(corpus, labelled, tmp_path, monkeypatch):
    out = labelled
    # ---- queries: templates, then paraphrased (one answer empty, one off-meaning: rejected)
    q = make_queries(out)
    recs = records(out / "queries.jsonl")
    assert q.videos == 6 and q.drafted == 6 and q.queries == 4 * 6 + 2 * 8
    for r in recs:
        assert r["provenance"].keys() == {"ingest", "static", "label", "queries"}
        for x in r["queries"]:
            want_video, want_query = taxonomy.SUBSET_LABELS[x["subset"]]
            assert x["query_label"] == want_query and want_video in (None, r["video_label"])
            assert x["reference_response"] and x["language"] == "en" and x["query"] == x["template_text"]
            assert (x["harmful_intention"] is None) == (x["subset"] == "SafeQ")
            if r["video_label"] == 1:
                assert x["subcategory"] == r["subcategory"]
    assert make_queries(out).drafted == 0  # cached

    calls = {"n": 0}

    def paraphrase(prompt: str) -> str:
        calls["n"] += 1
        text = prompt.split("Question: ", 1)[1]
        return "" if calls["n"] == 1 else "Bananas are yellow." if calls["n"] == 2 else "Please tell me: " + text

    para = QuerySettings(paraphraser="rule:para")
    q = make_queries(out, para, model=Rule(paraphrase))
    assert q.drafted == 6 and q.rejected == 2 and q.paraphrased == q.queries - 2
    flat = [x for r in records(out / "queries.jsonl") for x in r["queries"]]
    rejected = [x for x in flat if not x["paraphrase"]["accepted"]]
    assert sorted(x["paraphrase"]["reason"].split(" ")[0] for x in rejected) == ["empty", "rouge"]
    assert all(x["query"] == x["template_text"] for x in rejected)
    assert all(x["query"].startswith("Please tell me: ") for x in flat if x["paraphrase"]["accepted"])
    assert make_queries(out, para, model=Rule(paraphrase)).drafted == 0 and calls["n"] == q.queries

    # ---- translate: Korean comes back in Japanese and is rejected
    langs = ["en", "zh", "ja", "ko", "ru", "fr"]
    ts = TranslateSettings(translator="rule:tr", languages=langs, detector="script")
    t = translate_queries(out, ts, model=translator({"Korean": "Japanese"}), detector=ScriptDetector())
    n = q.queries
    assert t.asked == n * 5 and t.rejected == n and t.accepted == n * 4
    trs = [x for r in records(out / "translations.jsonl") for x in r["translate"]]
    ko = [x for x in trs if x["language"] == "ko"]
    assert all(not x["accepted"] and "detected 'ja'" in x["reason"] for x in ko)
    fr = next(x for x in trs if x["language"] == "fr")
    assert fr["query"] == SENTENCES["French"] and fr["detected"] == "latin" and fr["detector"] == "script"
    assert "Comment" not in fr["reference_response"] and fr["reference_response"] != next(
        x for x in trs if x["language"] == "en")["reference_response"]  # VSB-mini's French reference
    assert all(r["provenance"]["translate"]["stage"] == "translate" for r in records(out / "translations.jsonl"))
    again = translate_queries(out, ts, model=translator({"Korean": "Japanese"}), detector=ScriptDetector())
    assert again.asked == 0 and again.accepted == t.accepted  # cached per translation

    # ---- pair: quotas, no leakage, validation clean, provenance everywhere
    ps = PairSettings(quota=3, eval_share=0.3)
    p = pair(corpus / "videos", out, ps)
    assert p.problems == [], p.problems
    samples = read_manifest(p.output / "manifest.jsonl")
    assert len(samples) == p.samples and p.samples == len(read_manifest(p.output / "manifest.parquet"))
    cells = {}
    for s in samples:
        cells[(s.subset, s.subcategory, s.language)] = cells.get((s.subset, s.subcategory, s.language), 0) + 1
    assert max(cells.values()) == 3 and {c[2] for c in cells} == {"en", "zh", "ja", "ru", "fr"}
    assert {c[0] for c in cells} == set(taxonomy.SUBSETS)
    for key in ("video", "group"):
        of = (lambda s: s.video.sha256) if key == "video" else (lambda s: s.group_id)
        ev, tr = ({of(s) for s in samples if s.split == sp} for sp in ("eval", "train"))
        assert ev and tr and not ev & tr, key
    assert 0.1 < p.splits["eval"] / p.samples < 0.7
    for s in samples:
        assert s.provenance["stages"].keys() == {"ingest", "static", "label", "queries", "translate", "pair"}
        assert s.provenance["metadata"]["licence"] == "CC0" and s.video.path.startswith("videos/")
    card = (p.output / "README.md").read_text()
    assert "### eval / HH" in card and "| category | sub-category | en | zh | fr | ru | ja | total |" in card
    import datasets

    assert datasets.load_from_disk(str(p.output / "hf")).num_rows == p.samples
    # The card says how to load it with datasets: its Python block runs as written, in the folder.
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert "configs:\n- config_name: default\n  data_files: manifest.parquet" in card
    monkeypatch.chdir(p.output)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert len(ns["rows"]) == len(ns["same"]) == p.samples and len(ns["eval_rows"]) == p.splits["eval"]
    # deterministic: a second build picks the same samples into the same splits
    p2 = pair(corpus / "videos", out, ps, dataset_dir=tmp_path / "again", check_videos=False)
    assert [(s.id, s.split) for s in read_manifest(p2.output / "manifest.jsonl")] == [(s.id, s.split) for s in samples]


def test_bad_inputs_name_file_line_and_field(labelled, tmp_path):
    import shutil

    out = tmp_path / "bad"
    out.mkdir()
    lines = (labelled / "label.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec.update(video_label=1, subcategory="astrology")
    (out / "label.jsonl").write_text("\n".join([lines[1], json.dumps(rec)]) + "\n")
    with pytest.raises(ManifestError, match=r"label.jsonl:2: subcategory: unknown sub-category 'astrology'"):
        make_queries(out)
    (out / "label.jsonl").write_text(lines[1] + "\n{not json\n")
    with pytest.raises(ManifestError, match=r"label.jsonl:2: not valid JSON"):
        make_queries(out)
    (out / "label.jsonl").write_text(lines[1] + "\n")
    make_queries(out)
    q = json.loads((out / "queries.jsonl").read_text())
    q["queries"][1]["language"] = "xx"
    (out / "queries.jsonl").write_text(json.dumps(q) + "\n")
    with pytest.raises(ManifestError, match=r"queries.jsonl:1: queries\[1\].language: unknown language 'xx'"):
        translate_queries(out, TranslateSettings(languages=["en"]))
    shutil.copy(labelled / "translations.jsonl", out / "translations.jsonl")
    t = records(out / "translations.jsonl")
    t[1]["translate"][0]["language"] = "klingon"
    (out / "translations.jsonl").write_text("\n".join(json.dumps(r) for r in t) + "\n")
    with pytest.raises(ManifestError, match=r"translations.jsonl:2: translate\[0\]: language: unknown language"):
        pair(tmp_path, out)
    (out / "queries.jsonl").unlink()  # else its (edited) records are the cache
    assert make_queries(out).drafted == 1 and make_queries(out).drafted == 0
    rec = json.loads(lines[1])
    rec["metadata"]["category_hint"] = "hate_harassment"  # a changed hint: the video is asked anew
    (out / "label.jsonl").write_text(json.dumps(rec) + "\n")
    assert make_queries(out).drafted == 1
    with pytest.raises(ValueError, match="needs a translator"):
        translate_queries(out, TranslateSettings(languages=["en", "fr"]))


@pytest.mark.skipif(not lingua_available(), reason="lingua-language-detector (extra 'construct') not installed")
def test_lingua_detector_tells_latin_languages_apart():
    from videosafety.data.construct.translate import LinguaDetector, judge_translation

    d = LinguaDetector([*taxonomy.LANGUAGES, "de"])
    assert d.detect(SENTENCES["French"]) == "fr" and d.detect("Wie können sich Menschen online schützen?") == "de"
    assert judge_translation(SENTENCES["French"], "fr", d)["accepted"]
    assert "detected 'fr'" in judge_translation(SENTENCES["French"], "es", d)["reason"]


def test_bench_build_later_stages_from_the_command_line(labelled, corpus, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from videosafety.cli import app

    out = tmp_path / "cli"
    shutil.copytree(labelled, out, ignore=shutil.ignore_patterns("dataset", "queries.jsonl", "translations.jsonl"))
    base = ["bench", "build", "--videos", str(corpus / "videos"), "--metadata", str(corpus / "meta.csv"), "--out", str(out)]
    r = CliRunner().invoke(app, [*base, "--stages", "queries,translate", "--languages", "en,fr"])
    assert r.exit_code == 2 and "needs --translator" in r.output
    r = CliRunner().invoke(app, [*base, "--stages", "queries,translate,pair", "--languages", "en", "--quota", "2",
                                 "--eval-share", "0.5"])
    assert r.exit_code == 0, r.output
    assert "queries: 40 for 6 video(s)" in r.output and "pair: " in r.output and "validation: clean" in r.output
    samples = read_manifest(out / "dataset")
    assert {s.language for s in samples} == {"en"} and {s.split for s in samples} == {"train", "eval"}
    r = CliRunner().invoke(app, [*base, "--stages", "queries,translate,pair", "--languages", "en", "--quota", "2",
                                 "--eval-share", "0.5"])  # a rerun: everything cached, the folder rewritten
    assert r.exit_code == 0 and "0 drafted" in r.output and "validation: clean" in r.output, r.output
    assert [s.id for s in read_manifest(out / "dataset")] == [s.id for s in samples]


def test_without_lingua_the_script_detector_is_used_and_asking_for_lingua_says_how(monkeypatch):
    import sys

    from videosafety.data.construct.translate import LinguaDetector, get_detector

    monkeypatch.setitem(sys.modules, "lingua", None)  # as if not installed
    get_detector.cache_clear()
    try:
        assert get_detector("auto").name == "script"
        with pytest.raises(RuntimeError, match=r"pip install 'videosafety\[construct\]'"):
            LinguaDetector()
    finally:
        get_detector.cache_clear()
