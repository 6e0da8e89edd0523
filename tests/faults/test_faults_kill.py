"""Kill anywhere (issue 13), the fast cases: a real SIGKILL of `videosafety eval`, `judge`, `bench
build`, `train sft` and `train grpo` at chosen phases (benchmarks/faults/killpoint.py), a rerun to
the end, and what it left compared with an uninterrupted run (benchmarks/faults/harness.py): no
row lost, duplicated or differing; the same results.json; the same weights, bit for bit, and
the same training log. The long campaign, with kills at random moments, is
`python benchmarks/bench_faults.py kill`.

Kills run in subprocesses (one thread each); reruns and references run in this process through
the same command line (typer's runner), training ones on one torch thread as the subprocess,
so that kernels reduce in the same order."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from faults import harness as h  # noqa: E402

from videosafety.cli import app  # noqa: E402

runner = CliRunner()


def invoke(*args) -> None:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output + repr(r.exception)


def killed(cmd: list[str], spec: str) -> None:
    p = h.run(cmd, kill_at=spec, timeout=300)
    assert p.returncode == -9, f"{spec} not reached (exit {p.returncode}): {p.stderr[-2000:]}"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """VSB-mini with 16 AT-SFT and 4 GRPO records beside its manifest."""
    return h.mini_with_records(tmp_path_factory.mktemp("vsb-mini-kill"), grpo_safety=4)


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- eval and judge

EVAL_POINTS = {  # (the long campaign kills at more points: writing responses, verdicts, run.json, ...)
    "generation": "call:videosafety.evaluate.cache:ResponseCache.put:3",  # 2 batches committed
    "judging": "call:videosafety.judges.rules:RulesJudge.judge:1",
    "writing the report": "torn:results.json:1",  # results.json.tmp cut mid-line, never renamed
}


@pytest.fixture(scope="module")
def eval_ref(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-ref") / "run"
    invoke(*_eval_args(bench, out))
    return out


def _eval_args(bench: Path, out: Path) -> list:
    return ["eval", "--bench", bench, "--model", "ref:comply-all", "--limit", "12", "--batch-size", "4", "--out", out]


@pytest.mark.parametrize("phase", list(EVAL_POINTS))
def test_eval_killed_then_rerun_equals_uninterrupted(phase, bench, eval_ref, tmp_path):
    out = tmp_path / "run"
    killed(h.videosafety(*_eval_args(bench, out)), EVAL_POINTS[phase])
    assert not (out / "results.json").exists()
    invoke(*_eval_args(bench, out))
    diff = h.compare_run(eval_ref, out)
    assert diff.clean and not diff.notes, diff


def test_judge_killed_after_a_commit_asks_only_for_the_rest(bench, eval_ref, tmp_path):
    """`videosafety judge` killed once its first verdicts were committed: the rerun takes them
    from the cache and the verdict file equals the uninterrupted one."""
    import shutil

    out = tmp_path / "run"
    out.mkdir()
    for name in ("responses.jsonl", "run.json"):
        shutil.copy2(eval_ref / name, out / name)
    killed(h.videosafety("judge", out, "--batch-size", "8"), "return:videosafety.judges.run:VerdictCache.put:1")
    committed = h.sqlite_rows(out / "verdicts" / "cache.sqlite", "verdicts")
    assert 0 < committed and not (out / "verdicts" / "rules.jsonl").exists()
    invoke("judge", out, "--batch-size", "8")
    summary = json.loads((out / "verdicts" / "rules.json").read_text())
    assert summary["cached"] == committed and summary["newly_judged"] == summary["judged"] - committed
    diff = h.compare_run(eval_ref, out, report=False)
    assert diff.clean and not diff.notes, diff


# ---------------------------------------------------------------- bench build

def test_bench_build_killed_mid_stage_then_rerun_equals_uninterrupted(tmp_path, monkeypatch):
    """Killed while the label stage writes its records (ingest and static done): the rerun
    reuses the finished stages and ends with the same records and the same benchmark."""
    from faults.rule_labeller import SPEC, RuleLabeller
    from videosafety.models import spec as model_spec

    meta = h.synthetic_corpus(tmp_path, ["violence", "physical_violence", "scams_fraud", "", ""])
    videos = tmp_path / "videos"
    args = lambda out: ["bench", "build", "--videos", videos, "--metadata", meta, "--out", out,  # noqa: E731
                        "--stages", "ingest,static,label,queries,translate,pair", "--labeller", SPEC,
                        "--languages", "en", "--quota", "2", "--workers", "1"]
    cut = tmp_path / "cut"
    killed(h.module("faults.rule_labeller", *args(cut)), "torn:label.jsonl:1")
    assert (cut / "static.jsonl").exists() and not (cut / "label.jsonl").exists()
    real = model_spec.load_model
    monkeypatch.setattr(model_spec, "load_model", lambda s, *a, **k: RuleLabeller() if s == SPEC else real(s, *a, **k))
    invoke(*args(cut))
    invoke(*args(tmp_path / "ref"))
    diff = h.compare_build(tmp_path / "ref", cut)
    assert diff.clean and not diff.notes, diff
    assert (cut / "dataset" / "manifest.jsonl").read_text().count("\n") > 0


# ---------------------------------------------------------------- training

def _sft_args(bench: Path, model: Path, out: Path) -> list:
    return ["train", "sft", "--stage", "2", "--config", "tiny-stage2", "--model", model, "--data",
            bench / "at_16.jsonl", "--set", "per_device_batch_size=2", "--set", "max_steps=6", "--set", "save_every=2",
            "--out", out]


@pytest.fixture(scope="module")
def sft_ref(bench, tiny_model_dirs, tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("sft-ref") / "run"
        invoke(*_sft_args(bench, tiny_model_dirs["qwen2_vl"], out))
    finally:
        torch.set_num_threads(before)
    return out


SFT_POINTS = {
    # step 3 logged, checkpoint at step 2: step 3 is redone and logged once
    "during a step": "call:videosafety.train.trainer:SFTTrainer._step:4",
    # step-4's model weights written, its optimizer and state not: resumed from step 2
    "during a checkpoint write": "call:accelerate.accelerator:save_accelerator_state:2",
}


@pytest.mark.parametrize("phase", list(SFT_POINTS))
def test_train_sft_killed_then_rerun_equals_uninterrupted(phase, bench, tiny_model_dirs, sft_ref, tmp_path,
                                                          one_thread):
    out = tmp_path / "run"
    args = _sft_args(bench, tiny_model_dirs["qwen2_vl"], out)
    killed(h.videosafety(*args), SFT_POINTS[phase])
    assert not (out / "final").exists() and (out / "checkpoints" / "step-2" / "trainer_state.json").exists()
    invoke(*args)
    diff = h.compare_training(sft_ref, out)
    assert diff.clean, diff
    assert h.final_loads(out) is None


def test_train_grpo_killed_during_a_checkpoint_write_then_rerun_equals_uninterrupted(bench, tiny_model_dirs, tmp_path,
                                                                          one_thread):
    """Killed while step 2's checkpoint is written (rounds 1-2 logged, their completions written,
    the complete checkpoint at step 1): the rerun redoes round 2 with the same samples; log and
    completions hold each step once."""
    def args(out):
        return ["train", "grpo", "--config", "tiny-grpo", "--model", tiny_model_dirs["qwen2_vl"], "--data",
                bench / "grpo_4.jsonl", "--set", "grpo.num_generations=2", "--set", "grpo.max_new_tokens=6",
                "--set", "grpo.prompts_per_step=1", "--set", "save_every=1", "--set", "keep_checkpoints=1",
                "--set", "max_steps=3", "--out", out]

    invoke(*args(tmp_path / "ref"))
    out = tmp_path / "run"
    killed(h.videosafety(*args(out)), "return:accelerate:Accelerator.save_state:2")  # state file not yet written
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2
    invoke(*args(out))
    diff = h.compare_training(tmp_path / "ref", out, files=("train_log.jsonl", "completions.jsonl"))
    assert diff.clean, diff


# ---------------------------------------------------------------- what a kill leaves, by hand

def test_resume_skips_a_checkpoint_whose_state_file_a_kill_emptied(tmp_path):
    """A kill between creating the state file and writing it (the file was written in place)
    left it empty: that checkpoint is not complete, the one before it is resumed from."""
    from videosafety.train.loop import STATE_FILE, latest_checkpoint

    for step, text in ((2, json.dumps({"step": 2, "epoch": 0, "offset": 2})), (4, "")):
        (tmp_path / "checkpoints" / f"step-{step}").mkdir(parents=True)
        (tmp_path / "checkpoints" / f"step-{step}" / STATE_FILE).write_text(text)
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-2"


def test_resume_trims_a_step_log_to_the_checkpoint_and_drops_a_torn_line(tmp_path):
    from videosafety.train.loop import trim_step_log

    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo')
    trim_step_log(log, 2)
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2]
    before = log.stat().st_mtime_ns
    trim_step_log(log, 2)  # nothing to drop: left alone
    assert log.stat().st_mtime_ns == before
    trim_step_log(tmp_path / "absent.jsonl", 2)


class Killed(BaseException):
    """Stands for the SIGKILL inside a write (nothing after it runs, no handler catches it)."""


def test_a_video_copy_cut_off_by_a_kill_is_copied_again(tmp_path, monkeypatch):
    """bench build's pair stage copies videos into the benchmark when they cannot be hard-linked
    (another file system). A copy cut off by a kill stood under the real name, and the rerun,
    finding the file there, kept the truncated video."""
    import importlib
    import os
    import shutil

    pair = importlib.import_module("videosafety.data.construct.pair")  # the package exports a function of that name

    src, dst = tmp_path / "src.mp4", tmp_path / "dataset" / "videos" / "src.mp4"
    src.write_bytes(os.urandom(4096))

    def cut_copy(a, b, **kw):
        Path(b).write_bytes(Path(a).read_bytes()[:1000])
        raise Killed

    monkeypatch.setattr(os, "link", lambda a, b: (_ for _ in ()).throw(OSError(18, "Invalid cross-device link")))
    monkeypatch.setattr(shutil, "copy2", cut_copy)
    with pytest.raises(Killed):
        pair._link(src, dst)
    monkeypatch.undo()
    monkeypatch.setattr(os, "link", lambda a, b: (_ for _ in ()).throw(OSError(18, "Invalid cross-device link")))
    pair._link(src, dst)  # the rerun
    assert dst.read_bytes() == src.read_bytes()


def test_a_parquet_manifest_write_cut_off_by_a_kill_leaves_the_previous_one(tmp_path, monkeypatch):
    """manifest.parquet was written in place: a kill mid-write left a file that does not read
    until the stage ran again; now it is written beside and renamed, as manifest.jsonl is."""
    import pyarrow.parquet as pq

    from videosafety.data.manifest import read_manifest, write_manifest
    from videosafety.data.vsb_mini import build_vsb_mini

    build_vsb_mini(tmp_path / "mini", workers=1)
    samples = read_manifest(tmp_path / "mini" / "manifest.jsonl")[:20]
    path = tmp_path / "manifest.parquet"
    write_manifest(samples[:10], path)

    def cut(self, table, *a, **kw):
        raise Killed

    monkeypatch.setattr(pq.ParquetWriter, "write_table", cut)
    with pytest.raises(Killed):
        write_manifest(samples, path)
    monkeypatch.undo()
    assert [s.id for s in read_manifest(path)] == [s.id for s in samples[:10]]
