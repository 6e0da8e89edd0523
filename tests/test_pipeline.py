"""The four-stage pipeline on a tiny model and VSB-mini: each stage's output is the next one's
input, records are built from the bench where a stage has none, a finished stage is skipped on
rerun, and the last model is an alarm checkpoint that GRPO trained."""

from __future__ import annotations

import json

import pytest

from videosafety.train.pipeline import STAGE_ORDER, load_recipe, run_pipeline


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    out = tmp_path_factory.mktemp("vsb-mini-pipeline")
    build_vsb_mini(out, workers=2)
    return out


def test_tiny_recipe_chains_all_stages_and_skips_finished_ones(mini, tiny_model_dirs, tmp_path):
    from videosafety.models.alarm import is_alarm_checkpoint

    out = tmp_path / "r1"
    recipe = load_recipe("tiny-recipe", [f"model={tiny_model_dirs['qwen2_vl']}", f"bench={mini}",
                                         f"output_dir={out}"])
    logs: list[str] = []
    final = run_pipeline(recipe, progress=False, log=logs.append)

    assert final == out / "stage-grpo" / "final" and is_alarm_checkpoint(final)
    done = {s: json.loads((out / f"stage-{s}" / "stage_done.json").read_text()) for s in STAGE_ORDER}
    # each stage started from the previous stage's final model
    assert done["1"]["model"] == str(tiny_model_dirs["qwen2_vl"])
    for prev, nxt in zip(STAGE_ORDER, STAGE_ORDER[1:]):
        assert done[nxt]["model"] == done[prev]["final"]
    # records were built from the bench's train split, with the kind each stage needs
    assert "records-at-sft-train-32" in done["1"]["data"] and "records-cot-train-16" in done["cot"]["data"]
    grpo_log = [json.loads(x) for x in (out / "stage-grpo" / "train_log.jsonl").read_text().splitlines()]
    assert len(grpo_log) == 2 and all("reward" in r and "kl" in r for r in grpo_log)

    mtime = final.stat().st_mtime_ns
    logs.clear()
    again = run_pipeline(recipe, progress=False, log=logs.append)
    assert again == final and final.stat().st_mtime_ns == mtime
    assert sum("skipped" in m for m in logs) == len(STAGE_ORDER)


def test_recipe_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("model: m\noutput_dir: o\nstages:\n  '5': {config: tiny-stage1}\n")
    recipe = load_recipe(bad)
    with pytest.raises(ValueError, match="unknown stage"):
        recipe.ordered()
    bad.write_text("model: m\nstages: {}\n")
    with pytest.raises(ValueError, match=r"recipe.yaml: output_dir"):
        load_recipe(bad)
