"""`videosafety demo` wired end to end with toy-of-toy settings (the real run takes minutes and
its figures are in benchmarks/RESULTS.md): the base model and the model after each stage
evaluated on the same eval samples, all four stages trained on train-split records, one report
over the five runs with a per-stage table, and a rerun that redoes nothing. Then the record
mixture's parts, by hand-checked cases."""

from __future__ import annotations

import json
import random

import pytest

from videosafety.demo import STAGE_NAMES, DemoSettings, mixture, run_demo, text_views

TINY = DemoSettings(eval_limit=8, max_new_tokens=8, sft_records=16, sft_batch=8, cot_epochs=1, grpo_prompts=4,
                    grpo_per_step=2, grpo_generations=2, grpo_max_new_tokens=8)


def test_demo_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSAFETY_CACHE", str(tmp_path / "cache"))
    logs: list[str] = []
    result = run_demo(tmp_path / "demo", TINY, progress=False, log=logs.append)

    runs = {}
    for name in ("eval-base", "eval-trained"):
        rows = [json.loads(x) for x in (tmp_path / "demo" / name / "responses.jsonl").read_text().splitlines()]
        runs[name] = rows
        assert len(rows) == 8 * 3 and {r["condition"] for r in rows} == {"video", "text", "blank"}
        assert all(r["sample_id"].startswith("eval-") for r in rows)
    # the same eval samples, asked plainly (base) and in the reasoning format (trained)
    assert {r["sample_id"] for r in runs["eval-base"]} == {r["sample_id"] for r in runs["eval-trained"]}
    assert all(r["instruction"] is None for r in runs["eval-base"])
    assert all(r["instruction"] for r in runs["eval-trained"])

    for stage in ("1", "2", "cot", "grpo"):
        done = json.loads((tmp_path / "demo" / "train" / f"stage-{stage}" / "stage_done.json").read_text())
        records = [json.loads(x) for x in open(done["data"], encoding="utf-8")]
        assert records and all(r["id"].startswith("train-") or r["kind"] == "general" for r in records)
        # the mixture: half the records with a benign request (the target helps)
        assert sum(r["provenance"].get("subset") in (None, "SafeQ") for r in records) == len(records) // 2

    assert result.model == tmp_path / "demo" / "train" / "stage-grpo" / "final"

    res = json.loads((result.report / "results.json").read_text())
    assert result.results.to_json() == res
    assert len(res["runs"]) == 5 and len(result.rows) == 5
    assert [r["stage"] for r in result.rows] == [STAGE_NAMES[s] for s in ("base", "1", "2", "cot", "grpo")]
    # each stage's model, asked the way it was trained
    for stage, name in (("1", "eval-stage-1"), ("2", "eval-stage-2"), ("cot", "eval-stage-cot")):
        rows = [json.loads(x) for x in (tmp_path / "demo" / name / "responses.jsonl").read_text().splitlines()]
        assert {r["model"] for r in rows} == {f"hf:{tmp_path / 'demo' / 'train' / f'stage-{stage}' / 'final'}"}
        assert all((r["instruction"] is not None) == (stage == "cot") for r in rows)
    for row in result.rows:
        assert {"HH DSR video", "SafeQ FRR video", "SafeQ FRR text", "SafeQ FRR blank", "SafeQ FRR video (exact)",
                "SafeQ helpful video (exact)", "dropped records"} <= set(row)
    assert result.rows[0]["dropped records"] is None and all(r["dropped records"] == 0 for r in result.rows[1:])
    # the second judge's figures are its own verdicts' (base model: plain answers, matched whole)
    base_exact = [json.loads(x) for x in open(next((tmp_path / "demo" / "eval-base" / "verdicts").glob("exact-demo-*.jsonl")))]
    safeq_video = [v for v in base_exact if "-SafeQ-" in v["sample_id"] and v["condition"] == "video"]
    helpful = result.rows[0]["SafeQ helpful video (exact)"]
    assert helpful["n"] == len(safeq_video) and helpful["k"] == sum(v["reason"] == "helpful" for v in safeq_video)
    stages_md = (result.report / "stages.md").read_text()
    assert stages_md.count("\n| after ") == 4 and "exact:demo@answer" in stages_md

    logs.clear()
    again = run_demo(tmp_path / "demo", TINY, progress=False, log=logs.append)
    assert sum("skipped" in m for m in logs) == 4 and again.rows == result.rows


def _records(**fields):
    from videosafety.train.records import SFTRecord

    base = dict(kind="safety", source="test", query="q", response="r", video="videos/a.mp4", language="en",
                subcategory="explosives")
    return SFTRecord(**{**base, **fields})


def test_mixture_draws_the_helpful_share_without_replacement():
    helpful = [_records(id=f"h{i}", video_label=1, query_label=0, provenance={"subset": "SafeQ"}) for i in range(10)]
    refusing = [_records(id=f"r{i}", video_label=1, query_label=1, provenance={"subset": "HH"}) for i in range(20)]
    # HB: the query is labelled safe alone, the request (with its video) is harmful: refused
    refusing += [_records(id=f"b{i}", video_label=1, query_label=0, provenance={"subset": "HB"}) for i in range(10)]
    got = mixture(helpful + refusing, 8, 0.5, random.Random(0))
    assert len(got) == 8 and len({r.id for r in got}) == 8
    assert sum(r.id.startswith("h") for r in got) == 4
    assert {r.id[0] for r in mixture(helpful + refusing, 30, 0.0, random.Random(0))} == {"r", "b"}
    # None: the old uniform draw (a quarter helpful in expectation here)
    assert len(mixture(helpful + refusing, 40, None, random.Random(0))) == 40
    with pytest.raises(ValueError, match="cannot draw 11 helpful"):
        mixture(helpful + refusing, 11, 1.0, random.Random(0))


def test_text_views_drop_the_video_and_fix_the_labels():
    from videosafety import tags

    cot = tags.format_cot("The request is harmful.", "I can't help with that.", 1, 1)
    hh = _records(id="a", video_label=1, query_label=1, response=cot, provenance={"subset": "HH"})
    hb = _records(id="b", video_label=1, query_label=1, provenance={"subset": "HB"})
    plain = _records(id="c", video_label=1, query_label=0, provenance={"subset": "SafeQ"})
    views = text_views([hh, hb, plain])
    assert [v.id for v in views] == ["a-text", "c-text"]  # HB's query needs its video
    assert all(v.video is None and v.video_label == 0 for v in views)
    assert views[0].response == tags.format_cot("The request is harmful.", "I can't help with that.", 0, 1)
    assert views[1].response == "r" and views[1].query_label == 0


def test_filler_views_insert_unknown_words_and_keep_the_rest():
    from videosafety.demo import filler_views, pseudo_word

    import re

    rng = random.Random(0)
    words = [pseudo_word(("ab", "c"), rng) for _ in range(50)]
    assert all(re.fullmatch("(ab|c){2,3}", w) for w in words) and len(set(words)) > 5
    assert {len(pseudo_word(("x",), rng)) for _ in range(50)} == {2, 3}  # two or three pieces

    en = _records(id="e", video_label=1, query_label=0, query="Why is theft harmful ?", provenance={"subset": "SafeQ"})
    zh = _records(id="z", video_label=1, query_label=1, query="怎么偷车", language="zh", provenance={"subset": "HH"})
    general = _records(id="g", kind="general", video_label=0, query_label=0, provenance={})
    views = filler_views([en, zh, general], {"en": ("q",), "zh": ("好",)}, 2, seed=0)
    assert [v.id for v in views] == ["e-filler0", "e-filler1", "z-filler0", "z-filler1"]  # safety records only
    for v in views[:2]:
        words = v.query.split()
        inserted = [w for w in words if set(w) == {"q"}]
        assert 1 <= len(inserted) <= 4 and all(len(w) in (2, 3) for w in inserted)
        assert [w for w in words if set(w) != {"q"}] == en.query.split()  # the query itself, in order
        assert (v.response, v.video_label, v.query_label, v.video) == (en.response, 1, 0, en.video)
        assert v.provenance["view"] == "filler"
    for v in views[2:]:  # written without spaces: characters go in between characters
        assert v.query.replace("好", "") == "怎么偷车" and 2 <= v.query.count("好") <= 12
    assert filler_views([en], {"en": ("q",)}, 2, seed=0) == views[:2]  # seeded per record


def test_filler_pools_hold_each_languages_own_script():
    import unicodedata

    from videosafety.demo import filler_pools

    pools = filler_pools()
    assert set(pools) == {"en", "zh", "es", "ar", "hi", "fr", "ru", "pt", "ja", "ko"}
    for lang, want in (("ko", "HANGUL"), ("ru", "CYRILLIC"), ("ar", "ARABIC"), ("hi", "DEVANAGARI")):
        assert len(pools[lang]) > 50
        assert all(unicodedata.name(ch).startswith(want) for piece in pools[lang] for ch in piece)
    assert all(unicodedata.name(ch).startswith("LATIN") for piece in pools["en"] for ch in piece)
