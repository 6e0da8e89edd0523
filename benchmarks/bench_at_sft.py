"""AT-SFT step time against plain SFT step time (goal: AT-SFT at most 1.05x plain).

Same model, same records, same batches, same batch size, same trainable LLM parameters; the
only difference is the alarm machinery: two alarm tokens per sequence, the embedding hook
that puts the learnable alarm vectors there, ``output_hidden_states`` and the two harm heads
with their BCE terms (plus the alarm vectors and head weights in the optimizer).

For each family a tiny random model of the real transformers class is built
(``build_tiny_model``; by default hidden 256, 4 layers, so that a step takes hundreds of
milliseconds on one CPU thread and timer noise does not matter), then loaded twice
through the trainer's own ``load_for_stage``: stage "plain" (the HF model, CE only) and stage
"2" (an ``AlarmModel``: alarm tokens registered, vectors and heads trained). Records are an
AT-SFT mixture of VSB-mini (``build_at_sft``); each timed batch is the same records for both
modes, built once per mode by the trainer's ``ExampleBuilder`` + ``collate`` before any timing.

A timed step is the trainer's step: ``_forward`` + ``at_sft_loss`` + backward + reading the
loss + ``clip_grad_norm_`` + AdamW step + ``zero_grad`` (no scheduler, no logging, no
accelerate wrapper: single process, float32). Warm-up steps are excluded; the modes run
interleaved, the order alternating every round, so drift (other jobs, thermal) hits both.

The figure judged against the goal is the median over rounds of (AT-SFT step / plain step),
each round's two steps taken back to back on the same records: on a shared machine it is far
steadier than the ratio of the two medians (also printed, with the ratio of median CPU times),
because load from other processes moves both steps of a round together.

``--breakdown`` adds variants between the two ends to locate the difference: the plain model
without a KV cache (the trainer's plain forward leaves ``use_cache`` at the config's True,
the AlarmModel forward sets False), then with the AT batches (alarm ids as ordinary tokens),
then with ``output_hidden_states``, then with the alarm hook on (AlarmModel's base inside
``active()``), the last step to AT-SFT being the heads, BCE terms and position check.

    python benchmarks/bench_at_sft.py [--families qwen2_vl] [--hidden 256] [--layers 4]
        [--batch 4] [--steps 30] [--warmup 5] [--threads 1] [--breakdown] [--work DIR]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from videosafety.configs import resolve_config
from videosafety.data.vsb_mini import build_vsb_mini
from videosafety.models.tiny import FAMILIES, build_tiny_model
from videosafety.train.builders import build_at_sft
from videosafety.train.config import TrainConfig, load_config
from videosafety.train.data import Batch, Example, ExampleBuilder, collate
from videosafety.train.loss import at_sft_loss, supervised_token_count
from videosafety.train.records import write_records
from videosafety.train.trainer import _forward, load_for_stage, trainable_groups


@dataclass
class Prepared:
    batch: Batch
    n_tokens: int  # supervised tokens of the step
    n_samples: int


@dataclass
class Mode:
    name: str
    forward: Callable[[Batch], tuple]  # -> (logits, video_logit, query_logit)
    batches: list[Prepared]
    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    times: list[float] = field(default_factory=list)  # wall seconds per timed step
    cpu: list[float] = field(default_factory=list)  # process CPU seconds per timed step (all threads)


def make_step(mode: Mode, p: Prepared) -> tuple[float, float]:
    """One optimizer step as the trainer takes it (one micro-batch, one process): (wall, CPU) s."""
    b, cfg = p.batch, mode.cfg
    c0 = time.process_time()
    t0 = time.perf_counter()
    logits, v_logit, q_logit = mode.forward(b)
    parts = at_sft_loss(logits, b.tensors["labels"], num_tokens=p.n_tokens, video_logit=v_logit,
                        video_label=b.video_label, query_logit=q_logit, query_label=b.query_label,
                        num_samples=p.n_samples, lambda_v=cfg.lambda_v, lambda_t=cfg.lambda_t)
    parts.total.backward()
    float(parts.total.detach())
    if cfg.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(mode.trainable, cfg.max_grad_norm)
    mode.optimizer.step()
    mode.optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, time.process_time() - c0


def build_batches(llm, alarm, cfg: TrainConfig, root: Path, records, batch_size: int) -> list[Prepared]:
    builder = ExampleBuilder(llm, root=root, budget=cfg.budget, max_length=cfg.max_length, alarm=alarm,
                             on_truncation="error", on_bad_video="error")
    pad_id = llm.processor.tokenizer.pad_token_id
    out = []
    for i in range(0, len(records), batch_size):
        items = [builder(r) for r in records[i:i + batch_size]]
        assert all(isinstance(x, Example) for x in items)
        b = collate(items, pad_token_id=pad_id)
        out.append(Prepared(b, supervised_token_count(b.tensors["labels"]), b.size))
    return out


def optimizer_for(groups: list[dict]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)  # as run_training


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def bench_family(family: str, args, data: Path, records) -> dict:
    model_dir = args.work / (f"{family}-h{args.hidden}-l{args.layers}-a{args.heads}"
                             f"-vh{args.vision_hidden}-vl{args.vision_depth}")
    if not (model_dir / "config.json").exists():
        build_tiny_model(family, model_dir, seed=0, hidden_size=args.hidden, num_layers=args.layers,
                         num_heads=args.heads, vision_hidden_size=args.vision_hidden, vision_depth=args.vision_depth)
    common = dict(model=str(model_dir), data=str(data), output_dir=str(args.work / "unused-out"))
    over = [f"per_device_batch_size={args.batch}"]
    cfg_plain = load_config(resolve_config("tiny-stage2"), over + ["stage=plain"], **common)
    cfg_at = load_config(resolve_config("tiny-stage2"), over + ["stage='2'"], **common)

    torch.manual_seed(0)
    plain = load_for_stage(cfg_plain)
    at = load_for_stage(cfg_at)
    plain_groups = trainable_groups(plain.model, cfg_plain)
    at_groups = trainable_groups(at.model, cfg_at)
    g_plain = {g["name"]: sum(p.numel() for p in g["params"]) for g in plain_groups}
    g_at = {g["name"]: sum(p.numel() for p in g["params"]) for g in at_groups}
    assert g_plain["llm"] == g_at["llm"], (g_plain, g_at)  # no vocabulary resize: same LLM parameters
    root = data.parent
    pb = build_batches(plain.llm, None, cfg_plain, root, records, args.batch)
    ab = build_batches(at.llm, at.alarm, cfg_at, root, records, args.batch)
    for x, y in zip(pb, ab):
        assert x.batch.record_ids == y.batch.record_ids and x.n_tokens == y.n_tokens

    plain_params = [p for g in plain_groups for p in g["params"]]
    at_params = [p for g in at_groups for p in g["params"]]
    plain_opt, at_opt = optimizer_for(plain_groups), optimizer_for(at_groups)
    plain_model, at_model = plain.model, at.model

    def inputs(b: Batch) -> dict:
        return {k: v for k, v in b.tensors.items() if k != "labels"}

    def base_fwd(b: Batch, **kw):
        return plain_model(**inputs(b), **kw).logits, None, None

    def hooked_fwd(b: Batch):
        with at_model.active():
            return at_model.base(**inputs(b), use_cache=False, output_hidden_states=True).logits, None, None

    modes = [
        Mode("plain SFT", lambda b: _forward(plain_model, b, False), pb, plain_params, plain_opt, cfg_plain),
        Mode("AT-SFT stage 2", lambda b: _forward(at_model, b, True), ab, at_params, at_opt, cfg_at),
    ]
    if args.breakdown:
        modes[1:1] = [
            Mode("plain, use_cache=False", lambda b: base_fwd(b, use_cache=False), pb, plain_params, plain_opt,
                 cfg_plain),
            Mode("  + 2 alarm tokens (no hook)", lambda b: base_fwd(b, use_cache=False), ab, plain_params,
                 plain_opt, cfg_plain),
            Mode("  + output_hidden_states", lambda b: base_fwd(b, use_cache=False, output_hidden_states=True), ab,
                 plain_params, plain_opt, cfg_plain),
            Mode("  + alarm hook (no heads)", hooked_fwd, ab, at_params, at_opt, cfg_at),
        ]

    nb = len(pb)
    for i in range(args.warmup):
        for m in modes:
            make_step(m, m.batches[i % nb])
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(args.steps):
            order = modes if i % 2 == 0 else modes[::-1]
            for m in order:
                wall, cpu = make_step(m, m.batches[i % nb])
                m.times.append(wall)
                m.cpu.append(cpu)
    finally:
        if gc_was:
            gc.enable()

    # Matmul/attention FLOPs of a step (torch's FlopCounterMode, over every batch once): a
    # count, unlike times not moved by other load on the machine. Elementwise ops not counted.
    flops = {}
    for m in (modes[0], modes[-1]):
        with FlopCounterMode(display=False) as counter:
            for p in m.batches:
                make_step(m, p)
        flops[m.name] = counter.get_total_flops() / len(m.batches)

    lens_plain = [x.batch.tensors["input_ids"].shape[1] for x in pb]
    lens_at = [x.batch.tensors["input_ids"].shape[1] for x in ab]
    real_plain = sum(int(x.batch.tensors["attention_mask"].sum()) for x in pb) / sum(x.n_samples for x in pb)
    real_at = sum(int(x.batch.tensors["attention_mask"].sum()) for x in ab) / sum(x.n_samples for x in ab)
    n_params = sum(p.numel() for p in plain_model.parameters())
    result = {
        "family": family, "params": n_params, "llm_params": g_plain["llm"],
        "extra_trainable": g_at.get("alarm", 0) + g_at.get("heads", 0),
        "seq_plain": statistics.mean(lens_plain), "seq_at": statistics.mean(lens_at),
        "tok_plain": real_plain, "tok_at": real_at, "sup_tokens": statistics.mean(x.n_tokens for x in pb),
        "flops_plain": flops[modes[0].name], "flops_at": flops[modes[-1].name],
        # per mode: median and p90 wall, median CPU, and the median of the per-round ratios to
        # plain SFT (each round's steps run back to back on the same batch: drift cancels)
        "modes": [(m.name, statistics.median(m.times), pct(m.times, 0.9), statistics.median(m.cpu),
                   statistics.median(a / b for a, b in zip(m.times, modes[0].times)),
                   statistics.median(a / b for a, b in zip(m.cpu, modes[0].cpu))) for m in modes],
    }
    del plain, at, modes, plain_opt, at_opt
    gc.collect()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="+", default=["qwen2_vl"], choices=FAMILIES)
    ap.add_argument("--hidden", type=int, default=256, help="text hidden size of the tiny model")
    ap.add_argument("--layers", type=int, default=4, help="text decoder layers")
    ap.add_argument("--heads", type=int, default=4, help="attention heads")
    ap.add_argument("--vision-hidden", type=int, default=32)
    ap.add_argument("--vision-depth", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4, help="per-device batch size (one micro-batch a step)")
    ap.add_argument("--batches", type=int, default=8, help="distinct batches, cycled over the steps")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per mode first")
    # One thread by default: on a small shared machine (2 cores here, other jobs running) two
    # OpenMP threads spend much of a step in barrier waits whenever a core is taken, which made
    # the p90 3x the median; one thread keeps the two modes comparable. Ratios, not absolute
    # times, are the result.
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (fixed for the run)")
    ap.add_argument("--breakdown", action="store_true", help="also time the intermediate variants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="folder for VSB-mini and models (reused)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    args.work = args.work or Path(tempfile.mkdtemp(prefix="vs-bench-atsft-"))
    args.work.mkdir(parents=True, exist_ok=True)

    mini = args.work / "vsb-mini"
    manifest = mini / "manifest.jsonl"
    if not manifest.exists():
        t0 = time.perf_counter()
        manifest = build_vsb_mini(mini, workers=2)
        print(f"built VSB-mini in {time.perf_counter() - t0:.0f} s")
    mixture = build_at_sft(manifest, split="train")
    rng = random.Random(args.seed)
    records = rng.sample(mixture, args.batch * args.batches)  # safety and general records mixed
    data = mini / "bench_at_sft.jsonl"
    write_records(records, data)
    n_video = sum(r.video is not None for r in records)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, "
          f"{args.batches} distinct batches ({len(records)} records, {n_video} with video), "
          f"{args.warmup} warm-up + {args.steps} timed steps per mode, interleaved")

    for family in args.families:
        r = bench_family(family, args, data, records)
        print(f"\n{family}: hidden {args.hidden}, {args.layers} layers, {r['params'] / 1e6:.2f} M parameters "
              f"({r['llm_params'] / 1e6:.2f} M trained as 'llm'; AT-SFT adds {r['extra_trainable']:,})")
        print(f"  tokens per sequence (mean, unpadded): plain {r['tok_plain']:.1f}, AT-SFT {r['tok_at']:.1f} "
              f"(+{r['tok_at'] - r['tok_plain']:.1f}); padded width {r['seq_plain']:.1f} -> {r['seq_at']:.1f}; "
              f"supervised tokens per batch {r['sup_tokens']:.0f}")
        print(f"  matmul FLOPs per step: plain {r['flops_plain'] / 1e9:.2f} G, AT-SFT {r['flops_at'] / 1e9:.2f} G "
              f"({r['flops_at'] / r['flops_plain']:.4f}x)")
        base_median = r["modes"][0][1]
        print(f"  {'mode':32s} {'median ms':>10s} {'p90 ms':>8s} {'vs plain':>9s} {'paired':>7s} "
              f"{'CPU ms':>8s} {'paired':>7s}")
        for name, med, p90, cpu, paired, paired_cpu in r["modes"]:
            print(f"  {name:32s} {med * 1e3:10.1f} {p90 * 1e3:8.1f} {med / base_median:8.3f}x {paired:6.3f}x "
                  f"{cpu * 1e3:8.1f} {paired_cpu:6.3f}x")
        _, med, _, cpu, paired, paired_cpu = r["modes"][-1]
        verdict = "met" if paired <= 1.05 else "NOT met"
        print(f"  AT-SFT / plain: {paired:.3f} (median of paired wall ratios; goal <= 1.05: {verdict}); "
              f"{med / base_median:.3f} (ratio of wall medians), {paired_cpu:.3f} (median of paired CPU ratios)")


if __name__ == "__main__":
    main()
