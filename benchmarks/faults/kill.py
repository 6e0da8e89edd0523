"""Kill anywhere (issue 13): SIGKILL `videosafety eval`, `videosafety judge`, `bench build`,
`train sft` and `train grpo`, rerun each to the end, compare with an uninterrupted run.

Per entry point, `trials` kills at random moments: a delay drawn uniformly within the measured
uninterrupted duration (start-up included), the phase read afterwards from what stood on disk;
then kills at phases too short to hit by timing (judging with the rules, writing a file, a
checkpoint), each at a random place within the phase through faults/killpoint.py. Every killed
run is rerun to the end and compared (faults/harness.py): rows lost, duplicated, differing in
responses, verdicts, judge summaries, run.json, results.json and report.md; in the stages'
records and the benchmark's manifest; in the final weights (every tensor, bit for bit), the
step-keyed logs, and whether the final model loads. `hung`: a rerun that did not end in time
or failed.

Tiny everything (a random qwen2_vl of a few MB, VSB-mini, synthetic videos): the point is the
kill, not the model.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from faults import harness as h

DEFAULT = 20
TINY_EVAL = ["--num-frames", "4", "--max-pixels", "3136", "--max-new-tokens", "6", "--batch-size", "4",
             "--device", "cpu"]
RERUN_TIMEOUT = 600


def log(msg: str) -> None:
    print(f"[kill {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- fixtures

def setup(workdir: Path) -> dict:
    """VSB-mini (with SFT and GRPO records beside it), a tiny model, a corpus of synthetic videos."""
    from videosafety.models.tiny import build_tiny_model, train_tokenizer

    mini = h.mini_with_records(workdir / "vsb-mini", grpo_safety=6, grpo_general=2)
    model = build_tiny_model("qwen2_vl", workdir / "tiny", tokenizer=train_tokenizer(), seed=0)

    corpus = workdir / "corpus"
    hints = ["violence", "physical_violence", "fraud_deception", "", "scams_fraud", "", "graphic_gore", "",
             "hate_speech", "", "self_harm", ""]
    h.synthetic_corpus(corpus, [x if x in _known_hints() else "" for x in hints])
    return {"mini": mini, "model": model, "corpus": corpus}


def _known_hints() -> set[str]:
    from videosafety import taxonomy

    return set(taxonomy.CATEGORIES) | set(taxonomy.SUBCATEGORIES)


# ---------------------------------------------------------------- entry points

class EntryPoint:
    """A command, how to compare its output, how to read the phase a kill interrupted, and the
    kill points of its short phases (name -> a spec drawn at random within the phase)."""

    name = ""

    def __init__(self, fx: dict, work: Path):
        self.fx, self.work = fx, work

    def command(self, out: Path) -> list[str]:
        raise NotImplementedError

    def prepare(self, out: Path) -> None:
        """What must stand in `out` before the command starts."""

    def compare(self, ref: Path, got: Path) -> h.Diff:
        raise NotImplementedError

    def phase(self, out: Path) -> str:
        raise NotImplementedError

    def started(self, out: Path) -> bool:
        """The work has begun (imports and model loading done): random kills are drawn after it."""
        return out.exists()

    def points(self, rng: random.Random) -> dict[str, str]:
        return {}


class Eval(EntryPoint):
    name = "eval"

    def command(self, out):
        return h.videosafety("eval", "--bench", self.fx["mini"], "--model", f"hf:{self.fx['model']}", "--limit", "80",
                             *TINY_EVAL, "--out", out)

    def compare(self, ref, got):
        return h.compare_run(ref, got)

    def started(self, out):
        return (out / "cache.sqlite").exists()

    def phase(self, out):
        if not (out / "responses.jsonl").exists():
            n = h.sqlite_rows(out / "cache.sqlite", "responses")
            if (out / "responses.jsonl.tmp").exists():
                return "writing responses"
            return "generation" if n else "start-up"
        if not (out / "verdicts" / "rules.jsonl").exists() or not (out / "verdicts" / "rules.json").exists():
            return "judging"
        if not (out / "report.html").exists():
            return "report"
        return "finished first"

    def points(self, rng):
        return {
            "generation (batch commit)": f"call:videosafety.evaluate.cache:ResponseCache.put:{rng.randint(1, 60)}",
            "writing responses": "torn:responses.jsonl:1",
            "judging": f"call:videosafety.judges.rules:RulesJudge.judge:{rng.randint(1, 4)}",  # 240 rows, 64 a batch
            "writing verdicts": f"torn:{rng.choice(['rules.jsonl', 'rules.json'])}:1",
            "report": f"torn:{rng.choice(['results.json', 'report.md', 'report.html'])}:1",
            "run.json": f"torn:run.json:{rng.randint(1, 2)}",
        }


class Judge(EntryPoint):
    """`videosafety judge` on a run of VSB-mini's whole eval split (ref:comply-all: 4,560 rows)."""

    name = "judge"

    def prepare(self, out):
        src = self.work / "responses-only"
        if not src.exists():
            h.run(h.videosafety("eval", "--bench", self.fx["mini"], "--model", "ref:comply-all", "--limit", "1520",
                                "--no-judge", "--out", src))
        out.mkdir(parents=True)
        for name in ("responses.jsonl", "run.json"):
            shutil.copy2(src / name, out / name)

    def command(self, out):
        return h.videosafety("judge", out, "--judge", "rules", "--batch-size", "64")

    def compare(self, ref, got):
        return h.compare_run(ref, got, report=False)

    def started(self, out):
        return (out / "verdicts" / "cache.sqlite").exists()

    def phase(self, out):
        if (out / "verdicts" / "rules.json").exists():
            return "finished first"
        if (out / "verdicts" / "rules.jsonl.tmp").exists() or (out / "verdicts" / "rules.jsonl").exists():
            return "writing verdicts"
        if h.sqlite_rows(out / "verdicts" / "cache.sqlite", "verdicts"):
            return "judging"
        return "judging, before the first commit" if (out / "verdicts" / "cache.sqlite").exists() else "start-up"

    def points(self, rng):
        return {"judging": f"call:videosafety.judges.rules:RulesJudge.judge:{rng.randint(1, 71)}",
                "verdict commit": "return:videosafety.judges.run:VerdictCache.put:1",
                "writing verdicts": "torn:rules.jsonl:1",
                "judge summary": "torn:rules.json:1"}


class Build(EntryPoint):
    """`bench build`, every stage, on 12 synthetic clips (a rule labeller for the served VLM)."""

    name = "bench build"
    STAGES = ("ingest", "static", "label", "queries", "translate", "pair")

    def command(self, out):
        c = self.fx["corpus"]
        return h.module("faults.rule_labeller", "bench", "build", "--videos", c / "videos",
                        "--metadata", c / "meta.csv", "--out", out, "--stages", ",".join(self.STAGES),
                        "--labeller", "rule:first", "--languages", "en", "--quota", "2", "--workers", "2")

    def compare(self, ref, got):
        return h.compare_build(ref, got)

    def phase(self, out):
        files = {"ingest": "ingest.jsonl", "static": "static.jsonl", "label": "label.jsonl",
                 "queries": "queries.jsonl", "translate": "translations.jsonl"}
        for stage, name in files.items():
            if not (out / name).exists():
                return stage if stage != "ingest" or out.exists() else "start-up"
        if not (out / "dataset" / "README.md").exists():
            return "pair"
        return "finished first"

    def points(self, rng):
        return {f"{stage} (writing)": f"torn:{name}:1" for stage, name in
                (("ingest", "ingest.jsonl"), ("static", "static.jsonl"), ("label", "label.jsonl"),
                 ("queries", "queries.jsonl"), ("translate", "translations.jsonl"), ("pair", "manifest.jsonl"))} | {
            "pair (hf dataset)": "call:datasets:Dataset.save_to_disk:1",
            "label (asking)": "call:faults.rule_labeller:RuleLabeller.generate:1"}


class Train(EntryPoint):
    """`train sft` (stage 2, 8 steps, a checkpoint every 2) or `train grpo` (8 rounds, every 1)."""

    def __init__(self, fx, work, kind: str):
        super().__init__(fx, work)
        self.kind = kind
        self.name = f"train {kind}"

    def command(self, out):
        m = self.fx["mini"]
        if self.kind == "sft":
            return h.videosafety("train", "sft", "--stage", "2", "--config", "tiny-stage2", "--model", self.fx["model"],
                                 "--data", m / "at_16.jsonl", "--set", "epochs=2", "--set", "save_every=2",
                                 "--out", out)
        return h.videosafety("train", "grpo", "--config", "tiny-grpo", "--model", self.fx["model"], "--data",
                             m / "grpo_8.jsonl", "--set", "grpo.num_generations=2", "--set", "grpo.max_new_tokens=8",
                             "--set", "save_every=1", "--set", "epochs=2", "--set", "keep_checkpoints=2",
                             "--out", out)

    def compare(self, ref, got):
        files = ("train_log.jsonl",) + (("completions.jsonl",) if self.kind == "grpo" else ())
        d = h.compare_training(ref, got, files=files)
        why = h.final_loads(got)
        if why:
            d.differing += 1
            d.notes.append(f"final model does not load: {why}")
        return d

    def started(self, out):
        return (out / "train_config.json").exists()

    def phase(self, out):
        if (out / "final").exists() or (out / "weights_rank0.sha256").exists():
            return "final save"
        ckpts = sorted((out / "checkpoints").glob("step-*")) if (out / "checkpoints").exists() else []
        if any(not (c / "trainer_state.json").exists() for c in ckpts):
            return "checkpoint write"
        return "step" if (out / "train_log.jsonl").exists() else "start-up"

    def points(self, rng):
        trainer = ("videosafety.train.trainer:SFTTrainer._step" if self.kind == "sft"
                   else "videosafety.train.grpo:GRPOTrainer._step")
        saves = 3 if self.kind == "sft" else 7
        return {
            "step": f"call:{trainer}:{rng.randint(1, 8)}",
            "checkpoint write (model saved, optimizer not)": f"call:accelerate.accelerator:save_accelerator_state:"
                                                              f"{rng.randint(1, saves)}",
            "checkpoint write (state file)": f"torn:trainer_state.json:{rng.randint(1, saves)}",
            "final save": "call:videosafety.train.loop:save_model:1",
        }


# ---------------------------------------------------------------- trials

def _rerun_and_compare(ep: EntryPoint, ref: Path, out: Path) -> tuple[h.Diff, bool]:
    try:
        p = h.run(ep.command(out), timeout=RERUN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return h.Diff(notes=["rerun did not end"]), True
    if p.returncode != 0:
        return h.Diff(notes=[f"rerun exited {p.returncode}: {p.stderr.strip().splitlines()[-1:]}"]), True
    return ep.compare(ref, out), False


def campaign(ep: EntryPoint, rng: random.Random, trials: int, point_trials: int, from_work: bool) -> list[dict]:
    root = ep.work / ep.name.replace(" ", "-")
    root.mkdir(parents=True)
    ref = root / "ref"
    ep.prepare(ref)
    h.run(ep.command(ref), timeout=RERUN_TIMEOUT)
    timed = root / "timed"  # a second uninterrupted run, warm like the trials: their time scale
    ep.prepare(timed)
    t0 = time.monotonic()
    proc = h.start(ep.command(timed), stderr=root / "timed.err")
    work_start = None
    while proc.poll() is None:
        if work_start is None and ep.started(timed):
            work_start = time.monotonic() - t0
        time.sleep(0.005)
    duration = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{ep.name}: exited {proc.returncode}: {(root / 'timed.err').read_text()[-2000:]}")
    work_start = work_start if work_start is not None else 0.0
    check = ep.compare(ref, timed)
    log(f"{ep.name}: uninterrupted run {duration:.1f} s, its work from {work_start:.1f} s; two uninterrupted "
        f"runs agree: {check}")
    if not check.clean:
        raise RuntimeError(f"{ep.name}: two uninterrupted runs differ, nothing to compare kills with: {check}")
    shutil.rmtree(timed)
    stats: dict[str, dict] = defaultdict(lambda: {"trials": 0, "lost": 0, "duplicated": 0, "differing": 0,
                                                  "hung": 0, "notes": []})

    def record(phase: str, diff: h.Diff, hung: bool, what: str) -> None:
        s = stats[phase]
        s["trials"] += 1
        s["lost"] += diff.lost
        s["duplicated"] += diff.duplicated
        s["differing"] += diff.differing
        s["hung"] += hung
        if diff.notes:
            s["notes"].append(f"{what}: " + "; ".join(diff.notes[:3]))
        log(f"{ep.name} | {phase} | {what} | {'HUNG ' if hung else ''}{diff}")

    for i in range(trials):
        out = root / f"random-{i}"
        ep.prepare(out)
        proc = h.start(ep.command(out), stderr=root / "killed.err")
        if from_work:  # uniformly within the work, once it has begun (start-up would take most kills)
            delay = rng.uniform(0, duration - work_start)
            killed = h.kill_when(proc, lambda: ep.started(out), delay=delay, timeout=RERUN_TIMEOUT)
        else:  # uniformly within the whole run, start-up included
            delay = rng.uniform(0, duration)
            start = time.monotonic()
            killed = h.kill_when(proc, lambda: time.monotonic() - start >= delay, timeout=RERUN_TIMEOUT)
        if not killed:
            proc.wait()
            if proc.returncode != 0:
                log(f"{ep.name}: a run meant to be killed exited {proc.returncode} first: "
                    f"{(root / 'killed.err').read_text(errors='replace')[-1500:]}")
        phase = ep.phase(out) if killed else "finished first"
        diff, hung = _rerun_and_compare(ep, ref, out)
        record(f"random: {phase}", diff, hung, f"killed {delay:.2f} s after {'the work began' if from_work else 'start'}")
        shutil.rmtree(out, ignore_errors=True)
    for j in range(point_trials):
        for phase, spec in ep.points(rng).items():
            out = root / f"point-{j}-{len(stats)}"
            ep.prepare(out)
            p = h.run(ep.command(out), kill_at=spec, timeout=RERUN_TIMEOUT, check=False)
            if p.returncode != -9:
                log(f"{ep.name} | {phase} | {spec}: not reached (exit {p.returncode})")
            diff, hung = _rerun_and_compare(ep, ref, out)
            record(phase if p.returncode == -9 else f"{phase} (point not reached)", diff, hung, spec)
            shutil.rmtree(out, ignore_errors=True)
    rows = []
    for phase, s in stats.items():
        notes = "; ".join(s.pop("notes")[:3])
        rows.append({"fault": f"SIGKILL {ep.name}: {phase}", **s, "notes": notes})
    return rows


def run(seed: int, workdir: Path, trials: int = DEFAULT, point_trials: int | None = None,
        only: tuple[str, ...] | None = None, from_work: bool = True) -> list[dict]:
    """trials random kills per entry point (from_work: drawn within the work, once imports and
    model loading are done; else within the whole run), then point_trials rounds of the phase
    kill points."""
    rng = random.Random(seed)
    point_trials = point_trials if point_trials is not None else max(1, trials // 20)
    t0 = time.monotonic()
    fx = setup(workdir)
    log(f"fixtures {time.monotonic() - t0:.1f} s")
    eps = [Train(fx, workdir, "sft"), Train(fx, workdir, "grpo"), Eval(fx, workdir), Judge(fx, workdir),
           Build(fx, workdir)]
    rows = []
    for ep in eps:
        if only and ep.name not in only:
            continue
        rows += campaign(ep, rng, trials, point_trials, from_work)
        (workdir / "rows.json").write_text(json.dumps(rows, indent=1))
    return rows
