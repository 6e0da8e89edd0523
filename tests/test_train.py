"""The trainer end to end on VSB-mini and a tiny real-class model: AT-SFT learns (loss down,
head accuracy on the unseen eval split well above chance), vision stays frozen, resume is
exact, two data-parallel processes stay in lock-step, CoT and plain SFT run."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from videosafety.configs import resolve_config
from videosafety.models.alarm import VISUAL_ALARM, AlarmModel, is_alarm_checkpoint
from videosafety.train.config import load_config
from videosafety.train.records import write_records
from multiproc import torchrun


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    out = tmp_path_factory.mktemp("vsb-mini-train")
    build_vsb_mini(out, workers=2)
    return out


@pytest.fixture(scope="module")
def records(mini):
    """A small balanced AT-SFT mixture (all ten languages) and CoT records, beside the manifest."""
    from videosafety.train.builders import build_at_sft, build_cot

    rng = random.Random(0)
    at = build_at_sft(mini, split="train")
    safety = [r for r in at if r.kind == "safety"]
    general = [r for r in at if r.kind == "general"]
    small = rng.sample(safety, 200) + general[:32]
    write_records(small, mini / "at_small.jsonl")
    write_records(small[:16], mini / "at_16.jsonl")
    write_records(rng.sample(build_cot(mini, split="train"), 16), mini / "cot_16.jsonl")
    return mini


@pytest.fixture(scope="module")
def model_dir(tiny_model_dirs):
    return tiny_model_dirs["qwen2_vl"]


def cfg_for(name, records, model, out, data="at_16.jsonl", **over):
    overrides = [f"{k}={v}" for k, v in over.items()]
    return load_config(resolve_config(name), overrides, model=str(model), data=str(records / data),
                       output_dir=str(out))


def state_of(final: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(final.glob("*.safetensors")):
        tensors.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    return tensors


@pytest.fixture(scope="module")
def stage2(records, model_dir, tmp_path_factory):
    from videosafety.train.trainer import run_training

    out = tmp_path_factory.mktemp("stage2")
    cfg = cfg_for("tiny-stage2", records, model_dir, out, data="at_small.jsonl", epochs=3, per_device_batch_size=8)
    return run_training(cfg, progress=False), out


def test_stage2_lowers_loss_and_heads_beat_chance_on_eval(stage2, records, model_dir):
    from videosafety.guard import HarmGuard, guard_manifest

    final, out = stage2
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    first = sum(r["ce"] for r in log[:5]) / 5
    last = sum(r["ce"] for r in log[-5:]) / 5
    assert last < first - 2.0, (first, last)
    assert {"bce_video", "bce_query", "video_acc", "query_acc"} <= set(log[-1])
    cfg = json.loads((out / "train_config.json").read_text())
    from videosafety.budget import FrameBudget

    guard = HarmGuard(final, budget=FrameBudget.model_validate(cfg["budget"]))
    report = guard_manifest(guard, records, split="eval", limit=160)
    # eval queries use templates and videos that training never saw; chance is 0.5 for both
    assert report.n == 160
    assert report.video_accuracy >= 0.9, report.as_dict()
    assert report.query_accuracy >= 0.65 and report.query_auroc >= 0.75, report.as_dict()


def test_vision_frozen_alarm_and_heads_trained(stage2, model_dir):
    final, _ = stage2
    before, after = state_of(Path(model_dir)), state_of(final)
    vision = [k for k in before if "visual" in k]
    assert vision
    for k in vision:
        assert torch.equal(before[k], after[k]), k
    lm = [k for k in before if "layers" in k and "visual" not in k]
    assert any(not torch.equal(before[k], after[k]) for k in lm)
    alarm = {k: v for k, v in after.items() if k.startswith("alarm.safetensors")}
    assert alarm and all(v.abs().sum() > 0 for v in alarm.values())  # zeros-initialised, now trained


def test_resume_reaches_the_uninterrupted_weights(records, model_dir, tmp_path):
    from videosafety.train.trainer import run_training

    common = dict(epochs=3, per_device_batch_size=4, gradient_accumulation_steps=2, save_every=2)
    full = run_training(cfg_for("tiny-stage2", records, model_dir, tmp_path / "a", **common), progress=False)
    cfg_b = cfg_for("tiny-stage2", records, model_dir, tmp_path / "b", **common)
    run_training(cfg_b, progress=False, stop_after_steps=3)  # "killed" after step 3; last checkpoint: 2
    assert not (tmp_path / "b" / "final").exists()
    assert (tmp_path / "b" / "checkpoints" / "step-2").exists()
    resumed = run_training(cfg_b, progress=False)
    a, b = state_of(full), state_of(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # step 3 was redone from the step-2 checkpoint: its first row gave way, the log is the uninterrupted one
    timeless = (lambda out: [{k: v for k, v in json.loads(x).items() if k != "seconds"}
                             for x in (out / "train_log.jsonl").read_text().splitlines()])
    assert [r["step"] for r in timeless(tmp_path / "b")] == [1, 2, 3, 4, 5, 6]
    assert timeless(tmp_path / "b") == timeless(tmp_path / "a")


def test_two_process_data_parallel_matches_one_process(records, model_dir, tmp_path):
    """torchrun with 2 CPU processes (what accelerate launch runs on GPUs): both ranks end with
    identical weights, equal to a 1-process run over the same global batches."""
    from videosafety.train.trainer import run_training

    r = torchrun(["-m", "videosafety", "train", "sft", "--stage", "2", "--config", "tiny-stage2", "--model",
                  str(model_dir), "--data", str(records / "at_16.jsonl"), "--out", str(tmp_path / "ddp"),
                  "--set", "per_device_batch_size=2", "--set", "epochs=2"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    fp = [(tmp_path / "ddp" / f"weights_rank{i}.sha256").read_text() for i in (0, 1)]
    assert fp[0] == fp[1]
    single = run_training(cfg_for("tiny-stage2", records, model_dir, tmp_path / "one", per_device_batch_size=4,
                                  epochs=2), progress=False)
    a, b = state_of(tmp_path / "ddp" / "final"), state_of(single)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    log = [json.loads(x) for x in (tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 8 and all(row["samples"] == 4 for row in log)  # 16 records / (2 x 2) per step


def test_cot_stage_trains_llm_only(stage2, records, tmp_path):
    from videosafety.train.trainer import run_training

    final2, _ = stage2
    cfg = cfg_for("tiny-cot", records, final2, tmp_path / "cot", data="cot_16.jsonl", max_steps=3)
    final = run_training(cfg, progress=False)
    before, after = state_of(final2), state_of(final)
    alarm = [k for k in before if k.startswith("alarm.safetensors")]
    assert alarm and all(torch.equal(before[k], after[k]) for k in alarm)  # frozen
    assert any(not torch.equal(before[k], after[k]) for k in before if "layers" in k and "visual" not in k)


def test_plain_sft_has_no_alarm_tokens(records, model_dir, tmp_path):
    from transformers import AutoTokenizer

    from videosafety.train.trainer import run_training

    final = run_training(cfg_for("tiny-plain", records, model_dir, tmp_path / "plain", max_steps=2), progress=False)
    assert not is_alarm_checkpoint(final)
    assert VISUAL_ALARM not in AutoTokenizer.from_pretrained(final).get_vocab()


def test_truncation_drops_and_counts_or_stops(records, model_dir, tmp_path):
    from videosafety.train.data import TrainDataError
    from videosafety.train.trainer import run_training

    with pytest.raises(TrainDataError, match="max_length 40"):
        run_training(cfg_for("tiny-stage2", records, model_dir, tmp_path / "e", max_length=40, on_truncation="error"),
                     progress=False)
    cfg = cfg_for("tiny-stage2", records, model_dir, tmp_path / "d", max_length=300, max_steps=4)
    run_training(cfg, progress=False)
    log = [json.loads(x) for x in (tmp_path / "d" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["dropped"] > 0 and all(row["samples"] + 0 <= 4 for row in log)


def test_config_files_and_overrides(tmp_path):
    cfg = load_config(resolve_config("paper-stage2"), ["lr.llm=2e-6", "budget.max_frames=32"],
                      model="m", data="d.jsonl", output_dir="o")
    assert cfg.stage == "2" and cfg.lr.llm == 2e-6 and cfg.lr.heads == 1e-5
    assert cfg.lambda_v == cfg.lambda_t == 0.1 and cfg.global_batch_size == 128 and cfg.warmup_ratio == 0.03
    assert cfg.budget.fps == 1.0 and cfg.budget.max_frames == 32
    assert cfg.accumulation_for(8) == 16
    with pytest.raises(ValueError, match="lr.llm"):
        load_config(resolve_config("paper-stage2"), ["lr.llm=-1"], model="m", data="d", output_dir="o")
    with pytest.raises(FileNotFoundError, match="shipped: "):
        resolve_config("no-such-recipe")
    # every stage of the paper recipe shares one frame budget
    budgets = {load_config(resolve_config(n), model="m", data="d", output_dir="o").budget
               for n in ("paper-stage1", "paper-stage2", "paper-cot")}
    assert len(budgets) == 1


def test_lora_trains_adapters_only_and_saves_merged(records, model_dir, tmp_path):
    from videosafety.train.trainer import run_training

    cfg = cfg_for("tiny-stage2", records, model_dir, tmp_path / "lora", max_steps=3, gradient_checkpointing=True,
                  lora="{r: 4, alpha: 8, dropout: 0.0}")
    final = run_training(cfg, progress=False)
    before, after = state_of(Path(model_dir)), state_of(final)
    assert not any("lora" in k for k in after)  # merged into ordinary weights
    changed = {k.split(":")[1] for k in before if "layers" in k and not torch.equal(before[k], after.get(k, before[k]))}
    assert changed and all(k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"))
                           for k in changed), sorted(changed)[:5]
    assert all(torch.equal(before[k], after[k]) for k in before if "visual" in k)
    AlarmModel.from_pretrained(final)  # loads as an ordinary alarm checkpoint


def test_bf16_mixed_precision_runs(records, model_dir, tmp_path):
    from videosafety.train.trainer import run_training

    cfg = cfg_for("tiny-stage2", records, model_dir, tmp_path / "bf16", max_steps=2, mixed_precision="bf16")
    run_training(cfg, progress=False)
    log = [json.loads(x) for x in (tmp_path / "bf16" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(math.isfinite(r["loss"]) for r in log)


def test_alarm_checkpoint_generates_through_the_hf_backend(stage2, records):
    """hf: specs load alarm-token checkpoints with their placement: the generated batch holds
    both alarm tokens, and greedy output equals AlarmModel.generate on the same batch."""
    from videosafety.budget import FrameBudget
    from videosafety.conditions import model_input
    from videosafety.data.manifest import read_manifest
    from videosafety.models.base import GenerationSettings
    from videosafety.models.hf import HFVideoLLM

    final, _ = stage2
    budget = FrameBudget.uniform(4, max_pixels=3136)
    llm = HFVideoLLM(final, budget=budget)
    assert llm.alarm_model is not None
    s = next(x for x in read_manifest(records) if x.split == "eval" and x.subset == "HH")
    inputs = [model_input(s, "video", budget, records), model_input(s, "text", budget, records)]
    batch = llm.prepare_inputs(inputs)
    alarm = llm.alarm_model.alarm
    for tok in (alarm.visual, alarm.textual):
        assert ((batch["input_ids"] == tok).sum(dim=1) == 1).all()
    out = llm.generate(inputs, GenerationSettings(max_new_tokens=6))
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_stage_one_trains_llm_and_alarm_vectors_not_heads(records, model_dir, tmp_path):
    from videosafety.train.trainer import load_for_stage, trainable_groups

    cfg = cfg_for("tiny-stage1", records, model_dir, tmp_path / "s1")
    loaded = load_for_stage(cfg)
    groups = {g["name"]: g for g in trainable_groups(loaded.model, cfg)}
    assert set(groups) == {"llm", "alarm"}
    assert groups["llm"]["lr"] == cfg.lr.llm and groups["alarm"]["lr"] == cfg.lr.alarm
    heads = [p for n, p in loaded.model.named_parameters() if "head" in n and "lm_head" not in n]
    vision = loaded.model.param_groups()["vision"]
    assert heads and not any(p.requires_grad for p in heads + vision)
    assert loaded.model.alarm_vectors.requires_grad
