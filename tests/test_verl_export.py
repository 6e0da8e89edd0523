"""Stage 4 on verl and EasyR1: the dataset files, the reward on their ground truth, the recipes.

Where verl imports (the optional `verl` extra) its own RLHFDataset, config composition and
reward manager read our files; everywhere else the files are checked against the engines'
documented schema (tests/data/verl_example_row.json, tests/data/easyr1_config_schema.json).
EasyR1 installs as a package named `verl` from its git checkout only, so it is never imported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from videosafety import tags
from videosafety.cli import app
from videosafety.configs import resolve_config
from videosafety.data.vsb_mini import build_vsb_mini
from videosafety.rewards import adapters
from videosafety.rewards.registry import get_problem_type, score
from videosafety.train import engines
from videosafety.train.builders import build_grpo
from videosafety.train.config import load_config
from videosafety.train.records import GRPORecord

DATA = Path(__file__).parent / "data"
CONFIGS = Path(resolve_config("paper-grpo")).parent
runner = CliRunner()


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return build_vsb_mini(tmp_path_factory.mktemp("vsb-mini-engines"), workers=2)


@pytest.fixture(scope="module")
def records(mini) -> list[GRPORecord]:
    return build_grpo(mini)


@pytest.fixture(scope="module")
def files(mini, tmp_path_factory) -> dict[str, Path]:
    out = {}
    elsewhere = tmp_path_factory.mktemp("engine-files")  # not the benchmark's folder: paths are absolute
    for engine in engines.ENGINES:
        path = elsewhere / f"grpo-{engine}.parquet"
        res = runner.invoke(app, ["train", "data", "--bench", str(mini), "--kind", "grpo", "--format", engine,
                                  "--out", str(path)])
        assert res.exit_code == 0, res.output
        out[engine] = path
    return out


@pytest.fixture(scope="module")
def paper():
    return load_config(resolve_config("paper-grpo"), model="-", data="-", output_dir="-")


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _ideal(record: GRPORecord) -> str:
    """The completion the reward scores highest: a think block, then the reference solution."""
    if record.problem_type == "safety":
        return f"<{tags.THINK}>reasoning</{tags.THINK}>{record.solution}"
    return record.solution


def _types_of(value):
    if isinstance(value, dict):
        return {k: _types_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types_of(value[0])] if value else []
    return type(value).__name__


# ---------------------------------------------------------------- the files

def test_verl_rows_follow_the_documented_schema(files, records, paper):
    rows = _rows(files["verl"])
    assert len(rows) == len(records)
    example = json.loads((DATA / "verl_example_row.json").read_text())["row"]
    budget = paper.budget
    for i, (row, rec) in enumerate(zip(rows, records)):
        assert set(row) == set(example)
        # Same nesting and value types as verl's documented row, field by field.
        for key in ("prompt", "reward_model"):
            assert _types_of(row[key]) == _types_of(example[key]), key
        assert row["data_source"] == rec.source and row["ability"] == rec.problem_type
        assert row["reward_model"] == {"style": "rule", "ground_truth": rec.solution}
        assert row["extra_info"]["index"] == i and row["extra_info"]["id"] == rec.id
        assert row["extra_info"]["problem_type"] == rec.problem_type
        (user,) = [m for m in row["prompt"] if m["role"] == "user"]
        instruction = get_problem_type(rec.problem_type).instruction
        assert user["content"] == "<video>" * bool(rec.video) + tags.with_instruction(rec.query, instruction)
        assert user["content"].count("<video>") == len(row["videos"]) == (1 if rec.video else 0)
        for video in row["videos"]:
            assert video == {"video": video["video"], "fps": budget.fps, "max_frames": budget.max_frames}
            assert Path(video["video"]).is_absolute() and Path(video["video"]).is_file()
    assert {r["ability"] for r in rows} == {"safety", "free_form"}


def test_easyr1_rows_follow_the_documented_schema(files, records):
    rows = _rows(files["easyr1"])
    recipe = yaml.safe_load((CONFIGS / "easyr1" / "stage4_grpo.yaml").read_text())["data"]
    # Our columns are the ones the recipe names; no images column, which EasyR1 would take first.
    columns = {recipe["prompt_key"], recipe["answer_key"], recipe["video_key"]}
    assert all(set(row) == columns for row in rows) and "images" not in columns
    for row, rec in zip(rows, records):
        assert row["prompt"].count("<video>") == len(row["videos"]) == (1 if rec.video else 0)
        assert all(Path(v).is_absolute() and Path(v).is_file() for v in row["videos"])
        if rec.problem_type == "safety":
            assert row["answer"] == rec.solution
        else:
            assert json.loads(row["answer"]) == {"problem_type": rec.problem_type, "solution": rec.solution}


def test_reward_on_engine_rows_is_our_reward(files, records):
    verl_rows, easy_rows = _rows(files["verl"]), _rows(files["easyr1"])
    picks = [i for t in ("safety", "free_form") for i in
             [j for j, r in enumerate(records) if r.problem_type == t][:3]]
    for i in picks:
        rec = records[i]
        for completion in (_ideal(rec), "<answer>Here is a short reply.</answer>"):
            want = score(rec.problem_type, completion, rec.solution).total
            row = verl_rows[i]
            got = adapters.compute_score(data_source=row["data_source"], solution_str=completion,
                                         ground_truth=row["reward_model"]["ground_truth"],
                                         extra_info=row["extra_info"])
            assert got["score"] == pytest.approx(want)
            (easy,) = adapters.easyr1_compute_score([{"response": completion, "response_length": 9,
                                                      "ground_truth": easy_rows[i]["answer"]}])
            assert easy["overall"] == pytest.approx(want)
    safety = records[picks[0]]
    assert score("safety", _ideal(safety), safety.solution).total == pytest.approx(3.1)
    free = records[picks[-1]]
    assert score("free_form", _ideal(free), free.solution).total == pytest.approx(1.0)
    # Read as a safety problem (what EasyR1 would do without the packed type) it cannot be scored.
    with pytest.raises(ValueError, match="safety solution"):
        adapters.easyr1_compute_score([{"response": _ideal(free), "response_length": 9,
                                        "ground_truth": free.solution}])


def test_video_root_and_frame_count_budgets(records, tmp_path, mini):
    from videosafety.budget import FrameBudget

    rows = engines.engine_rows(records[:2], "verl", records_dir=mini.parent, video_root="/mnt/data/vsb",
                               budget=FrameBudget.uniform(8, max_pixels=3136))
    assert rows[0]["videos"] == [{"video": f"/mnt/data/vsb/{records[0].video}", "nframes": 8, "max_pixels": 3136}]
    easy = engines.engine_rows(records[:1], "easyr1", records_dir=mini.parent, video_root="/mnt/data/vsb")
    assert easy[0]["videos"] == [f"/mnt/data/vsb/{records[0].video}"]
    res = runner.invoke(app, ["train", "data", "--bench", str(mini.parent), "--kind", "grpo", "--format", "easyr1",
                              "--video-root", "/mnt/data/vsb", "--out", str(tmp_path / "e.parquet")])
    assert res.exit_code == 0, res.output
    assert _rows(tmp_path / "e.parquet")[0]["videos"] == [f"/mnt/data/vsb/{records[0].video}"]


def test_engine_export_refuses_what_the_engine_cannot_hold(records, mini, tmp_path):
    with_system = records[0].model_copy(update={"system": "Be careful."})
    with pytest.raises(engines.EngineExportError, match="system"):
        engines.engine_rows([with_system], "easyr1", records_dir=mini.parent)
    row = engines.engine_rows([with_system], "verl", records_dir=mini.parent)[0]
    assert row["prompt"][0] == {"role": "system", "content": "Be careful."}
    placeholder = records[0].model_copy(update={"query": "Look at <video> here"})
    with pytest.raises(engines.EngineExportError, match="query"):
        engines.engine_rows([placeholder], "verl", records_dir=mini.parent)
    with pytest.raises(engines.EngineExportError, match="reads"):
        engines.write_engine_file(records[:1], tmp_path / "x.jsonl", "verl", records_dir=mini.parent)
    for args in (["--kind", "at-sft", "--format", "verl"], ["--kind", "grpo", "--format", "trl"]):
        res = runner.invoke(app, ["train", "data", "--bench", str(mini), "--out", str(tmp_path / "x.parquet"), *args])
        assert res.exit_code == 2 and "--format" in res.output


def test_easyr1_jsonl_loads_like_parquet(records, mini, tmp_path):
    import datasets

    j = engines.write_engine_file(records[:50], mini.parent / "e.jsonl", "easyr1", records_dir=mini.parent)
    p = engines.write_engine_file(records[:50], mini.parent / "e.parquet", "easyr1", records_dir=mini.parent)
    # As EasyR1 opens a file: datasets' reader chosen by the extension, split "train".
    a = datasets.load_dataset("json", data_files=str(j.path), split="train", cache_dir=str(tmp_path))
    b = datasets.load_dataset("parquet", data_files=str(p.path), split="train", cache_dir=str(tmp_path))
    assert a.to_list() == b.to_list() and len(a) == 50


# ---------------------------------------------------------------- the recipes

def _verl_overrides() -> dict[str, str]:
    text = (CONFIGS / "verl" / "stage4_grpo.sh").read_text()
    return {m[1]: m[2].strip('"\'') for m in re.finditer(r"^\s+([A-Za-z_][\w.]*)=(.*?)\s*\\$", text, re.M)}


def test_recipes_agree_with_paper_grpo(paper):
    g = paper.grpo
    v = _verl_overrides()
    assert v["algorithm.adv_estimator"] == "grpo"
    assert int(v["actor_rollout_ref.rollout.n"]) == g.num_generations
    assert int(v["data.train_batch_size"]) == g.prompts_per_step
    # One optimizer step per pass over the generated batch; num_iterations passes.
    assert int(v["actor_rollout_ref.actor.ppo_mini_batch_size"]) == g.prompts_per_step
    assert int(v["actor_rollout_ref.actor.ppo_epochs"]) == g.num_iterations
    assert float(v["actor_rollout_ref.rollout.temperature"]) == g.temperature
    assert float(v["actor_rollout_ref.rollout.top_p"]) == g.top_p
    assert int(v["data.max_response_length"]) == g.max_new_tokens
    assert int(v["data.max_prompt_length"]) == paper.max_length
    assert float(v["actor_rollout_ref.actor.clip_ratio_low"]) == g.epsilon
    assert float(v["actor_rollout_ref.actor.clip_ratio_high"]) == (g.epsilon_high or g.epsilon)
    assert v["actor_rollout_ref.actor.use_kl_loss"] == "True" and v["algorithm.use_kl_in_reward"] == "False"
    assert float(v["actor_rollout_ref.actor.kl_loss_coef"]) == g.beta
    assert v["actor_rollout_ref.actor.kl_loss_type"] == "low_var_kl"  # verl's name for k3
    assert v["actor_rollout_ref.actor.loss_agg_mode"] == {"sequence": "seq-mean-token-mean",
                                                           "token": "token-mean"}[g.loss_aggregation]
    assert float(v["actor_rollout_ref.actor.optim.lr"]) == paper.lr.llm
    assert float(v["actor_rollout_ref.actor.optim.lr_warmup_steps_ratio"]) == paper.warmup_ratio
    assert v["actor_rollout_ref.actor.optim.lr_scheduler_type"] == paper.schedule
    assert float(v["actor_rollout_ref.actor.optim.weight_decay"]) == paper.weight_decay
    assert float(v["actor_rollout_ref.actor.grad_clip"]) == paper.max_grad_norm
    assert int(v["trainer.total_epochs"]) == paper.epochs
    assert (v["trainer.nnodes"], v["trainer.n_gpus_per_node"]) == ("1", "8")
    assert v["reward.custom_reward_function.name"] == "compute_score"
    assert "rewards.adapters" in (CONFIGS / "verl" / "stage4_grpo.sh").read_text()

    e = yaml.safe_load((CONFIGS / "easyr1" / "stage4_grpo.yaml").read_text())
    actor, rollout, algo = e["worker"]["actor"], e["worker"]["rollout"], e["algorithm"]
    assert (algo["adv_estimator"], algo["use_kl_loss"], algo["kl_penalty"]) == ("grpo", True, "low_var_kl")
    assert algo["kl_coef"] == g.beta
    assert rollout["n"] == g.num_generations and e["data"]["rollout_batch_size"] == g.prompts_per_step
    assert actor["global_batch_size"] == g.prompts_per_step and actor["ppo_epochs"] == g.num_iterations
    assert (rollout["temperature"], rollout["top_p"]) == (g.temperature, g.top_p)
    assert e["data"]["max_response_length"] == g.max_new_tokens and e["data"]["max_prompt_length"] == paper.max_length
    assert actor["clip_ratio_low"] == g.epsilon and actor["clip_ratio_high"] == (g.epsilon_high or g.epsilon)
    assert actor["loss_avg_mode"] == {"sequence": "seq", "token": "token"}[g.loss_aggregation]
    assert actor["max_grad_norm"] == paper.max_grad_norm
    assert actor["optim"] == {"lr": paper.lr.llm, "weight_decay": paper.weight_decay,
                              "lr_warmup_ratio": paper.warmup_ratio, "lr_scheduler_type": paper.schedule}
    assert e["data"]["video_fps"] == paper.budget.fps
    assert (e["trainer"]["total_epochs"], e["trainer"]["nnodes"], e["trainer"]["n_gpus_per_node"]) == (paper.epochs, 1, 8)
    assert "easyr1_compute_score" in (CONFIGS / "easyr1" / "stage4_grpo.sh").read_text()


@pytest.mark.parametrize("engine, module, reward", [("verl", "verl.trainer.main_ppo", "compute_score"),
                                                    ("easyr1", "verl.trainer.main", "easyr1_compute_score")])
def test_recipe_scripts_launch_the_engine(engine, module, reward, tmp_path):
    """The launchers with a stand-in python3 that prints the engine's command line instead of
    training: required variables, the reward file found in the installed package, extra args."""
    import os
    import subprocess
    import sys

    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\n'
                    f'for a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    script = CONFIGS / engine / "stage4_grpo.sh"
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    missing = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "MODEL" in missing.stderr
    env.update(MODEL="/models/stage3", TRAIN_FILES="/data/grpo.parquet")
    done = subprocess.run(["bash", str(script), "trainer.save_freq=10"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    args = done.stdout.splitlines()
    assert args[:2] == ["-m", module] and args[-1] == "trainer.save_freq=10"
    reward_arg = next(a for a in args if "reward_function" in a and "adapters" in a)
    path = reward_arg.split("=", 1)[1].split(":")[0]
    assert Path(path).resolve() == Path(adapters.__file__).resolve()
    assert reward in reward_arg or f"reward.custom_reward_function.name={reward}" in args
    assert any(a.endswith("/models/stage3") for a in args) and any(a.endswith("=/data/grpo.parquet") for a in args)


def test_easyr1_recipe_keys_exist_in_easyr1_config():
    schema = json.loads((DATA / "easyr1_config_schema.json").read_text())["PPOConfig"]
    kinds = {"float": (float, int), "int": (int,), "bool": (bool,), "str": (str,)}

    def check(node: dict, fields: dict, path: str) -> None:
        for key, value in node.items():
            assert key in fields, f"{path}{key}: not an EasyR1 config key"
            if isinstance(value, dict):
                check(value, fields[key], f"{path}{key}.")
            elif value is not None and fields[key] in kinds:
                assert isinstance(value, kinds[fields[key]]), f"{path}{key}: {value!r} is not {fields[key]}"

    check(yaml.safe_load((CONFIGS / "easyr1" / "stage4_grpo.yaml").read_text()), schema, "")


def test_recipes_ship_with_the_package():
    import videosafety

    pkg = Path(videosafety.__file__).parent / "configs"
    for rel in ("verl/stage4_grpo.sh", "easyr1/stage4_grpo.yaml", "easyr1/stage4_grpo.sh"):
        assert (pkg / rel).is_file()
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"configs/verl/*"' in pyproject and '"configs/easyr1/*"' in pyproject


# ---------------------------------------------------------------- verl's own code (optional extra)

def test_verl_reads_the_file_and_rewards_with_our_function(files, records, tiny_model_dirs, paper):
    pytest.importorskip("verl.utils.dataset.rl_dataset", reason="verl is not installed (pip install -e '.[verl]')")
    import numpy as np
    import torch
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from verl import DataProto
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.config import validate_config
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.workers.reward_manager.naive import NaiveRewardManager

    from videosafety.export import export_alarm_checkpoint
    from videosafety.models.alarm import TEXTUAL_ALARM, VISUAL_ALARM, AlarmModel, register_alarm_tokens

    # The recipe's overrides compose over verl's own trainer config (an unknown key fails) and pass its checks.
    placeholders = {"$TRAIN_FILES": str(files["verl"]), "$VAL_FILES": str(files["verl"]), "$MODEL": "/model",
                    "$REWARD_FILE": adapters.__file__}
    overrides = [f"{k}={placeholders.get(v, v)}" for k, v in _verl_overrides().items()]
    with initialize_config_module("verl.trainer.config", version_base=None):
        cfg = compose("ppo_trainer", overrides=overrides)
    validate_config(cfg, use_reference_policy=True, use_critic=False)

    # The starting checkpoint of the recipe: an `export` of an alarm-token model (here untrained).
    root = files["verl"].parent / "verl-model"
    base = AutoProcessor.from_pretrained(tiny_model_dirs["qwen2_vl"])
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["qwen2_vl"], dtype=torch.float32)
    AlarmModel(model, register_alarm_tokens(base, model)).save_pretrained(root / "alarm", processor=base)
    processor = AutoProcessor.from_pretrained(export_alarm_checkpoint(root / "alarm", root / "exported").out)
    data_cfg = OmegaConf.create({"prompt_key": cfg.data.prompt_key, "video_key": cfg.data.video_key,
                                 "max_prompt_length": cfg.data.max_prompt_length, "filter_overlong_prompts": False,
                                 "cache_dir": str(files["verl"].parent / "verl-cache")})
    ds = RLHFDataset(str(files["verl"]), processor.tokenizer, data_cfg, processor=processor)
    assert len(ds) == len(records)
    item = ds[0]
    (user,) = item["raw_prompt"]
    assert [part["type"] for part in user["content"]] == ["video", "text"]
    assert user["content"][0]["fps"] == paper.budget.fps and Path(user["content"][0]["video"]).is_file()
    text = processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
    assert records[0].query in text and processor.video_token in text
    # The exported template places both alarms in verl's prompt: after the video, at the end of the user turn.
    assert text.index(processor.video_token) < text.index(VISUAL_ALARM) < text.index(records[0].query)
    assert text.index(tags.GRPO_INSTRUCTION) < text.index(TEXTUAL_ALARM)

    # verl's reward manager, with the reward function loaded the way the recipe names it.
    fn = get_custom_reward_fn(cfg)
    tok = processor.tokenizer
    i_free = next(i for i, r in enumerate(records) if r.problem_type == "free_form")
    batch = [ds[0], ds[i_free]]
    completions = [_ideal(records[0]), _ideal(records[i_free])]
    responses = [tok(c, add_special_tokens=False)["input_ids"] for c in completions]
    width = max(map(len, responses))
    resp = torch.tensor([r + [tok.pad_token_id or 0] * (width - len(r)) for r in responses])
    mask = torch.tensor([[1] * 2 + [1] * len(r) + [0] * (width - len(r)) for r in responses])
    data = DataProto.from_dict(
        tensors={"prompts": torch.ones(2, 2, dtype=torch.long), "responses": resp, "attention_mask": mask},
        non_tensors={k: np.array([b[k] for b in batch], dtype=object)
                     for k in ("data_source", "reward_model", "extra_info")})
    out = NaiveRewardManager(tok, num_examine=0, compute_score=fn)(data, return_dict=True)
    got = [float(out["reward_tensor"][j, len(responses[j]) - 1]) for j in range(2)]
    want = [score(r.problem_type, c, r.solution).total for r, c in zip((records[0], records[i_free]), completions)]
    assert got == pytest.approx(want) and want[0] == pytest.approx(3.1)
    assert out["reward_extra_info"]["rouge"][0] == pytest.approx(1.0)
