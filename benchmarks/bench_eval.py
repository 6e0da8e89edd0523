"""The evaluation harness against a minimal hand-written loop, and its memory as the
benchmark grows.

1. Throughput: the same tiny real-class model (Qwen2-VL architecture), the same samples,
   batch size and frame budget, video condition, greedy. The hand-written loop decodes each
   batch's frames, then generates (what a first script does); the harness decodes in
   background threads while the model computes and stores every response in its cache.
2. Memory: `run_eval` with the reference policy ref:refuse-all over manifests of 1k, 10k and
   77,646 rows (the paper's pool size), each in a fresh process; peak RSS of that process.

    python benchmarks/bench_eval.py [--samples 96] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from videosafety.budget import FrameBudget
from videosafety.conditions import model_input
from videosafety.data.manifest import read_manifest, sample_to_row
from videosafety.data.vsb_mini import build_vsb_mini
from videosafety.evaluate.plan import SampleFilter, select
from videosafety.evaluate.runner import EvalConfig, run_eval
from videosafety.models.base import GenerationSettings

BUDGET = FrameBudget.uniform(8, max_pixels=112 * 112)
SETTINGS = GenerationSettings(max_new_tokens=16)


def throughput(work: Path, n: int, batch: int) -> None:
    from videosafety.models.hf import HFVideoLLM
    from videosafety.models.tiny import build_tiny_model

    model_dir = build_tiny_model("qwen2_vl", work / "model", hidden_size=256, num_layers=4, vision_hidden_size=64)
    llm = HFVideoLLM(model_dir, device="cpu", dtype="float32", batch_size=batch, budget=BUDGET)
    manifest = work / "vsb" / "manifest.jsonl"
    flt = SampleFilter(split="eval", limit=n)
    samples = select(manifest, flt)

    def hand_loop() -> float:
        t0 = time.perf_counter()
        for i in range(0, len(samples), batch):
            inputs = [model_input(s, "video", BUDGET, manifest.parent) for s in samples[i:i + batch]]
            llm.generate(inputs, SETTINGS)
        return time.perf_counter() - t0

    def harness(k: int) -> float:
        cfg = EvalConfig(conditions=("video",), settings=SETTINGS, budget=BUDGET, batch_size=batch)
        t0 = time.perf_counter()
        run_eval(llm, manifest, work / f"run{k}", cfg, flt, progress=False)
        return time.perf_counter() - t0

    hand_loop()  # warm-up (allocator, kernels)
    times = {"hand": [], "harness": []}
    for k in range(3):  # alternate to cancel drift on a shared machine
        times["hand"].append(hand_loop())
        times["harness"].append(harness(k))
    med = {k: sorted(v)[1] for k, v in times.items()}
    print(f"throughput ({n} samples, video condition, batch {batch}, {BUDGET.describe()}, {SETTINGS.max_new_tokens} new tokens)")
    for k in ("hand", "harness"):
        print(f"  {k:8s} median {med[k]:6.2f} s  {n / med[k]:6.1f} samples/s   runs: {', '.join(f'{t:.2f}' for t in times[k])}")
    print(f"  harness / hand-written throughput: {med['hand'] / med['harness']:.2f}x (goal >= 1.0x)")


def _child(manifest: str, out: str) -> None:
    import resource

    from videosafety.models.reference import ReferencePolicy

    t0 = time.perf_counter()
    s = run_eval(ReferencePolicy("refuse-all"), manifest, out, EvalConfig(), SampleFilter(split=None), progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": s.rows, "seconds": time.perf_counter() - t0, "peak_rss_mib": peak}))


def memory(work: Path) -> None:
    base = read_manifest(work / "vsb" / "manifest.jsonl")
    print("memory (ref:refuse-all, 3 conditions, every row; fresh process each)")
    print("  manifest rows   responses   seconds   peak RSS (MiB)")
    for n in (1_000, 10_000, 77_646):
        path = work / "vsb" / f"big-{n}.jsonl"  # beside VSB-mini, so video paths resolve
        with open(path, "w", encoding="utf-8") as f:
            for i, s in zip(range(n), itertools.cycle(base)):
                row = sample_to_row(s)
                row["id"] = f"{row['id']}-{i}"
                row["query"] = f"{row['query']} ({i})"  # distinct content, distinct cache keys
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        r = subprocess.run([sys.executable, __file__, "--child", str(path), str(work / f"mem-{n}")],
                           capture_output=True, text=True, check=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  {n:>13,}   {d['rows']:>9,}   {d['seconds']:7.1f}   {d['peak_rss_mib']:14.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    import torch

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="vs-bench-eval-"))
    build_vsb_mini(work / "vsb")
    throughput(work, args.samples, args.batch_size)
    if not args.skip_memory:
        memory(work)


if __name__ == "__main__":
    main()
