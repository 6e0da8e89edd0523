"""The lmms-eval task folder (integrations/lmms_eval): its files against lmms-eval's task schema
(always), and, where lmms-eval is installed, a real run through lmms-eval's own evaluator against
`videosafety serve` on loopback (the demo model), whose DSR / FRR / drop must equal our report's on
the same responses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SRC = Path(__file__).resolve().parents[1] / "src"

# lmms-eval 0.7.3's TaskConfig fields (dataclasses.fields of lmms_eval.api.task.TaskConfig), the keys a
# task YAML may hold besides `include`.
TASK_CONFIG_FIELDS = {
    "auto_strip_thinking", "cluster_key", "dataset_kwargs", "dataset_name", "dataset_path", "description",
    "doc_to_choice", "doc_to_decontamination_query", "doc_to_messages", "doc_to_target", "doc_to_text",
    "doc_to_visual", "fewshot_config", "fewshot_delimiter", "fewshot_split", "filter_list", "full_docs",
    "generation_kwargs", "group", "group_alias", "lmms_eval_specific_kwargs", "metadata", "metric_list",
    "model_specific_generation_kwargs", "model_specific_target_kwargs", "num_fewshot", "output_type",
    "process_docs", "process_results", "process_results_use_image", "reasoning_tags", "repeats", "score_key",
    "should_decontaminate", "tag", "target_delimiter", "task", "task_alias", "test_split", "training_split",
    "use_prompt", "validation_split",
}
OUTPUT_TYPES = {"loglikelihood", "multiple_choice", "generate_until", "generate_until_multi_round"}


class _Function(str):
    """A `!function utils.NAME` tag, kept as its name."""


def _loader():
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))
    return Loader


def load_task(folder: Path, name: str) -> dict:
    """A task YAML with its `include`s merged, as lmms-eval's load_yaml_config does."""
    raw = yaml.load((folder / name).read_text(), Loader=_loader())
    merged: dict = {}
    for inc in raw.pop("include", []) if isinstance(raw.get("include"), list) else [raw.pop("include", None)]:
        if inc:
            merged.update(load_task(folder, inc))
    merged.update(raw)
    return merged


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    return build_vsb_mini(tmp_path_factory.mktemp("vsb-mini-lmms"), workers=2)


@pytest.fixture(scope="module")
def folder(mini, tmp_path_factory):
    from videosafety.budget import FrameBudget
    from videosafety.evaluate.plan import SampleFilter
    from videosafety.integrations.lmms_eval import write_task_folder

    return write_task_folder(tmp_path_factory.mktemp("lmms-task"), bench=str(mini), selection=SampleFilter(limit=8),
                             budget=FrameBudget.uniform(4, max_frames=4, max_pixels=3136), max_new_tokens=48)


def test_task_files_follow_lmms_eval_schema(folder):
    import importlib.util

    from videosafety.integrations.lmms_eval import TASKS

    spec = importlib.util.spec_from_file_location("vs_lmms_utils", folder / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    docs = [json.loads(x) for x in (folder / "docs.jsonl").read_text().splitlines()]
    assert len(docs) == 8
    for name in TASKS:
        cfg = load_task(folder, f"{name}.yaml")
        assert cfg["task"] == name
        assert set(cfg) - {"include"} <= TASK_CONFIG_FIELDS, set(cfg) - TASK_CONFIG_FIELDS
        assert cfg["output_type"] in OUTPUT_TYPES
        assert cfg["dataset_path"] == "json" and Path(cfg["dataset_kwargs"]["data_files"]["test"]) == folder / "docs.jsonl"
        assert cfg["generation_kwargs"]["max_new_tokens"] == 48
        # every hook names a function of utils.py
        hooks = [v for v in cfg.values() if isinstance(v, _Function)]
        hooks += [m["aggregation"] for m in cfg["metric_list"]]
        for hook in hooks:
            module, _, fn = hook.partition(".")
            assert module == "utils" and callable(getattr(utils, fn, None)), hook
        # process_results returns exactly the metrics the task lists (lmms-eval aggregates each key)
        listed = [m["metric"] for m in cfg["metric_list"]]
        process = getattr(utils, cfg["process_results"].partition(".")[2])
        doc = {**docs[0], "condition": "text"}
        returned = process(doc, ["I can't help with that."])
        assert sorted(returned) == sorted(listed)
        assert all(isinstance(m["higher_is_better"], bool) for m in cfg["metric_list"])
    # the all-conditions task holds each sample once per condition, in our plan's order
    import datasets

    expanded = utils.process_docs_all(datasets.Dataset.from_list(docs))
    assert [(d["sample_id"], d["condition"]) for d in expanded] == [
        (d["sample_id"], c) for c in ("video", "text", "blank") for d in docs]
    # the frames are ours: the budget's 4 frames for video and blank, none for text
    assert len(utils.doc_to_visual({**docs[0], "condition": "video"})) == 4
    assert len(utils.doc_to_visual({**docs[0], "condition": "blank"})) == 4
    assert utils.doc_to_visual({**docs[0], "condition": "text"}) == []


def test_lmms_eval_evaluator_gives_our_numbers(folder, tmp_path):
    """`python -m lmms_eval --tasks videosafety --include_path FOLDER` against the demo model on
    loopback; its aggregated figures equal our report over the same responses."""
    pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (see README: Running inside inspect_ai "
                                            "and lmms-eval, for the versions it needs)")
    from videosafety.evaluate.rundir import ResponseRow, RunDir, RunInfo
    from videosafety.judges.run import judge_run
    from videosafety.judges.spec import load_judge
    from videosafety.models.demo import DEMO_BUDGET
    from videosafety.models.spec import ModelOptions, load_model
    from videosafety.report.results import compute_results
    from videosafety.serve import BackgroundServer, create_app

    llm = load_model("demo", DEMO_BUDGET, ModelOptions(device="cpu", dtype="float32", batch_size=1))
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "OPENAI_API_KEY": "EMPTY", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    with BackgroundServer(create_app(llm, model_name="demo", budget=DEMO_BUDGET)) as srv:
        done = subprocess.run(
            [sys.executable, "-m", "lmms_eval", "--model", "openai", "--model_args",
             f"model=demo,base_url={srv.url},api_key=EMPTY,num_concurrent=2", "--tasks", "videosafety",
             "--include_path", str(folder), "--batch_size", "1", "--log_samples", "--output_path",
             str(tmp_path / "out"), "--verbosity", "WARNING"],
            env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [results_file] = (tmp_path / "out").rglob("*_results.json")
    [samples_file] = (tmp_path / "out").rglob("*_samples_videosafety.jsonl")
    got = {k.partition(",")[0]: v for k, v in json.loads(results_file.read_text())["results"]["videosafety"].items()}
    logged = [json.loads(x) for x in samples_file.read_text().splitlines()]
    assert len(logged) == 3 * 8

    # the responses lmms-eval got, as a run folder of ours, judged and reported by our own code
    docs = {d["sample_id"]: d for d in map(json.loads, (folder / "docs.jsonl").read_text().splitlines())}
    run = RunDir(tmp_path / "run")
    run.write_info(RunInfo(model="lmms-eval:openai/demo", manifest=None, conditions=["video", "text", "blank"],
                           format_version=2))
    rows = []
    for s in sorted(logged, key=lambda s: s["doc_id"]):
        r = s["dsr_video"]
        d = docs[r["sample_id"]]
        rows.append(ResponseRow(sample_id=d["sample_id"], condition=r["condition"], subset=d["subset"],
                                category=d["category"], subcategory=d["subcategory"], language=d["language"],
                                prompt=d["prompt"], harmful_intention=d["harmful_intention"],
                                response=s["filtered_resps"] if isinstance(s["filtered_resps"], str)
                                else s["filtered_resps"][0]))
    run.write_responses(rows)
    judge_run(run.path, load_judge("rules"), progress=False)
    ours = compute_results(run.path).runs[0]
    assert len({r.response for r in rows}) >= 2  # refusals and placeholders: the figures are not trivial
    for cond in ("video", "text", "blank"):
        cell = ours.rate("dsr", "harmful", cond)
        assert got[f"dsr_{cond}"] == cell.k / cell.n
        assert [got[f"dsr_{cond}_ci_low"], got[f"dsr_{cond}_ci_high"]] == pytest.approx(cell.ci, abs=1e-6)
        frr = ours.rate("frr", "SafeQ", cond)
        assert got[f"frr_{cond}"] == frr.k / frr.n
    drop = ours.drop["harmful"]["text_to_video"]
    assert got["drop_relative"] == pytest.approx(drop.relative.value, abs=1e-6)
    assert [got["drop_relative_ci_low"], got["drop_relative_ci_high"]] == pytest.approx(drop.relative.ci, abs=1e-6)
    assert got["drop_absolute"] == pytest.approx(drop.absolute.value, abs=1e-6)
