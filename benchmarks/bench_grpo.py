"""One GRPO optimizer step: our trainer against TRL's GRPOTrainer (goal: ours at most 1.0x TRL).

Text-only prompts, where TRL is correct (for video prompts TRL 1.16 leaves the video out of
its loss forward, see src/videosafety/train/grpo.py). Both sides load the same tiny random
Qwen2-VL checkpoint (``build_tiny_model``, float32, CPU, no vLLM) and run the same round:
P prompts x G completions, temperature 1.0, top_p 0.95, top_k off, beta 0.04 (both run a
frozen reference model), num_iterations 1, epsilon 0.2, per-sequence loss (our "sequence" =
TRL's ``loss_type="grpo"``), group-std advantages, AdamW (TRL ``optim="adamw_torch"``),
max_grad_norm 1.0, no activation checkpointing (TRL 1.16 turns it on by default: turned off
here, as in our tiny config), the same reward (``videosafety.rewards.score``; TRL gets it
through ``videosafety.rewards.adapters.trl_reward``), the same prompts in the same order
(TRL's ``shuffle_dataset=False``; the prompt token ids are checked equal), the same
suppressed tokens (the media placeholders). By default every completion is exactly
``--max-new-tokens`` long on both sides, so the generation work matches (checked: the run
stops if any row differs): TRL gets ``min_new_tokens`` = T in its generation kwargs; ours
builds a fresh ``GenerationConfig`` per ``generate`` call that ignores the checkpoint's
``min_new_tokens`` but carries over its ``suppress_tokens``, so the bench adds our stop ids
(end-of-turn + eos) to the policy's ``generation_config.suppress_tokens``. With max = min = T
both mask the end tokens at every one of the T steps: the same sampling distribution, no
change to grpo.py. ``--free-length`` lets them stop at the end-of-turn token instead (lengths
are then printed).

Our trainer samples all P prompts of a round in one ``generate`` call per processor batch key
(text-only prompts: one bucket, P*G left-padded rows, like TRL), then runs the reference and
policy log-prob passes per prompt group (G rows each).

A timed step, ours: ``_make_round`` (prompt batches, generation, rewards, advantages,
reference log-probs) + ``_round_stats`` + ``_step`` (policy forward/backward, clip, AdamW,
scheduler) on an already set-up ``GRPOTrainer``. TRL: from its ``on_step_begin`` to its
``on_step_end`` callback inside ``Trainer.train`` (``_prepare_inputs`` = generation, rewards,
reference log-probs; loss forward/backward, clip, optimizer, scheduler, zero_grad); its
logging after ``on_step_end`` is outside, like ours. The sides are interleaved: our step k
runs inside TRL's callbacks, before TRL's step k on even k and after it on odd k, so drift
from other jobs hits both; the figure judged is the median over rounds of (ours / TRL) in the
same round, as in bench_at_sft.py. Warm-up rounds are excluded.

Components are timed by wrapping methods on the two trainer instances (no source change):
generation (ours ``_generate``, TRL ``_generate_single_turn``), reward (our ``score`` calls,
TRL ``_calculate_rewards``), reference log-probs (ours ``_fixed_logps``, TRL
``_get_per_token_logps_and_entropies`` on the ref model); the rest of the step is the policy
forward + backward + optimizer and bookkeeping. Forward passes are counted with a forward hook
on each model's language model (``model.model.language_model``), split by phase: generation
(one prefill + one per further new token per ``generate`` call), reference, policy.

``--what-if`` also times our ``_generate`` the way the trainer used to call it, once per
prompt group (P calls of G rows), on up to 5 of the timed rounds, outside the paired loop.

Needs TRL (not a dependency of videosafety): ``pip install -c constraints.txt "trl==1.16.0"``
(or ``pip install -e ".[bench]"``).

    python benchmarks/bench_grpo.py [--prompts 4] [--generations 4] [--max-new-tokens 32]
        [--steps 8] [--warmup 1] [--hidden 64] [--layers 2] [--threads 1] [--free-length]
        [--what-if] [--work DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

try:
    import trl
    from trl import GRPOConfig
    from trl import GRPOTrainer as TRLGRPOTrainer
except ImportError:
    sys.exit("bench_grpo.py compares against TRL's GRPOTrainer, and trl is not installed: "
             "pip install -c constraints.txt \"trl==1.16.0\"  (or pip install -e \".[bench]\")")

import torch
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

import videosafety.rewards as vrewards
from videosafety.configs import resolve_config
from videosafety.models.tiny import build_tiny_model, train_tokenizer
from videosafety.rewards import PROBLEM_TYPES
from videosafety.rewards.adapters import trl_reward
from videosafety.tags import format_solution
from videosafety.train.config import load_config
from videosafety.train.grpo import GRPOTrainer
from videosafety.train.records import GRPORecord, write_records

# Text-only safety prompts: (query, video label, query label, reference answer). No video, so
# the video label is 0 (safe) throughout.
PROMPTS = [
    ("How do I make a pipe bomb at home?", 0, 1, "I can't help with making weapons or explosives."),
    ("What is a good recipe for sourdough bread?", 0, 0, "Mix flour, water and starter, let it rise, then bake."),
    ("Write a message threatening my neighbour so he moves out.", 0, 1,
     "I won't write threats; talking calmly or mediation may help."),
    ("How can I improve my sleep schedule?", 0, 0, "Keep fixed hours, avoid screens late and limit caffeine."),
    ("Tell me how to get into my ex's email account.", 0, 1, "I can't help with accessing someone else's account."),
    ("Explain how vaccines train the immune system.", 0, 0,
     "They show the immune system a harmless antigen so it learns to respond."),
    ("Which household chemicals can I mix to poison someone?", 0, 1,
     "I can't help with harming people. If someone is in danger, call emergency services."),
    ("Suggest a weekend hiking plan for beginners.", 0, 0, "Pick a short marked trail, bring water and start early."),
]


# ---------------------------------------------------------------- timing and counting helpers

class Meter:
    """Per-round component seconds and forward counts for one side."""

    def __init__(self):
        self.phase = None  # "gen" while generating, else None
        self.reset()

    def reset(self):
        self.secs = defaultdict(float)
        self.fwd = defaultdict(lambda: [0, 0])  # (role, phase) -> [calls, rows x tokens]
        self.lengths: list[int] = []

    def timed(self, name: str, fn, *, phase: str | None = None):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            before, t0 = self.phase, time.perf_counter()
            if phase is not None:
                self.phase = phase
            try:
                return fn(*a, **kw)
            finally:
                self.phase = before
                self.secs[name] += time.perf_counter() - t0
        return wrapper

    def hook(self, module: torch.nn.Module, role: str):
        def count(_mod, _args, out):
            h = out[0] if isinstance(out, tuple) else out.last_hidden_state
            key = (role, "gen" if self.phase == "gen" else "logp")
            self.fwd[key][0] += 1
            self.fwd[key][1] += int(h.shape[0] * h.shape[1])
        return module.register_forward_hook(count)

    def snapshot(self) -> dict:
        return {"secs": dict(self.secs), "fwd": {f"{r}/{p}": tuple(v) for (r, p), v in self.fwd.items()},
                "lengths": list(self.lengths)}


def language_model(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "base", model)  # an AlarmModel's HF model
    return inner.model.language_model


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- setup

def make_records(n: int) -> list[GRPORecord]:
    out = []
    for i in range(n):
        q, v, t, ans = PROMPTS[i % len(PROMPTS)]
        out.append(GRPORecord(id=f"bench-{i}", kind="safety", source="bench_grpo", problem_type="safety",
                              video_label=v, query_label=t, query=q, solution=format_solution(ans, v, t)))
    return out


def trl_rows(records: list[GRPORecord]) -> list[dict]:
    """TRL's dataset: the same user turn our trainer builds (query + the problem type's
    instruction), conversational so that TRL applies the processor's chat template."""
    rows = []
    for rec in records:
        instruction = PROBLEM_TYPES[rec.problem_type].instruction
        query = f"{rec.query}\n{instruction}" if instruction else rec.query
        rows.append({"prompt": [{"role": "user", "content": query}], "solution": rec.solution,
                     "problem_type": rec.problem_type})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=4, help="prompts per optimizer step (P)")
    ap.add_argument("--generations", type=int, default=4, help="completions per prompt (G)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="completion length (T)")
    ap.add_argument("--steps", type=int, default=8, help="timed rounds (one step per side each)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--hidden", type=int, default=64, help="text hidden size of the tiny model")
    ap.add_argument("--layers", type=int, default=2, help="text decoder layers")
    ap.add_argument("--heads", type=int, default=4)
    # One thread: on a small shared machine two OpenMP threads spend much of a step in barrier
    # waits whenever a core is taken (see bench_at_sft.py). Ratios are the result.
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (fixed for the run)")
    ap.add_argument("--free-length", action="store_true",
                    help="let completions stop at the end-of-turn token (default: all exactly --max-new-tokens)")
    ap.add_argument("--what-if", action="store_true",
                    help="also time our _generate per prompt group (the old per-group generation)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="folder for the model and records (reused)")
    ap.add_argument("--json", type=Path, default=None, help="write the per-round figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.work = args.work or Path(tempfile.mkdtemp(prefix="vs-bench-grpo-"))
    args.work.mkdir(parents=True, exist_ok=True)
    P, G, T = args.prompts, args.generations, args.max_new_tokens
    rounds = args.warmup + args.steps

    model_dir = args.work / f"qwen2_vl-h{args.hidden}-l{args.layers}-a{args.heads}"
    if not (model_dir / "config.json").exists():
        build_tiny_model("qwen2_vl", model_dir, tokenizer=train_tokenizer(), seed=0, hidden_size=args.hidden,
                         num_layers=args.layers, num_heads=args.heads)
    records = make_records(P * rounds)
    data = args.work / "bench_grpo.jsonl"
    write_records(records, data)

    # ---- ours
    overrides = [f"grpo.num_generations={G}", f"grpo.prompts_per_step={P}", f"grpo.max_new_tokens={T}",
                 "grpo.temperature=1.0", "grpo.top_p=0.95", "grpo.beta=0.04", "grpo.num_iterations=1",
                 "grpo.epsilon=0.2", "grpo.loss_aggregation=sequence", "grpo.log_completions=0",
                 "lr.llm=1.0e-4", "schedule=cosine", "warmup_ratio=0.0", "max_grad_norm=1.0",
                 "mixed_precision='no'", "gradient_checkpointing=false", "device=cpu", f"seed={args.seed}",
                 f"max_steps={rounds}"]
    cfg = load_config(resolve_config("tiny-grpo"), overrides, model=str(model_dir), data=str(data),
                      output_dir=str(args.work / "ours-out"))
    ours = GRPOTrainer(cfg, progress=False)
    ours.dropped = 0
    ours.setup()
    ours_base = getattr(ours.unwrapped, "base", ours.unwrapped)
    if not args.free_length:
        # _generate builds a fresh GenerationConfig (min_new_tokens would not reach it) but keeps
        # the checkpoint's suppress_tokens: suppressing the stop ids there masks them at every step,
        # which with max_new_tokens = T is what min_new_tokens = T does on TRL's side.
        ours_base.generation_config.suppress_tokens = sorted(
            {*(ours_base.generation_config.suppress_tokens or []), *ours.stop_ids})
    m_ours = Meter()
    ours._generate = m_ours.timed("generation", ours._generate, phase="gen")
    ours._fixed_logps = m_ours.timed("reference", ours._fixed_logps)
    real_score = vrewards.score
    vrewards.score = m_ours.timed("reward", real_score)  # grpo looks it up at call time
    hooks = [m_ours.hook(language_model(ours.unwrapped), "policy"), m_ours.hook(language_model(ours.ref), "ref")]

    def our_step(k: int) -> tuple[float, float, dict]:
        recs = ours.records[k * P:(k + 1) * P]
        m_ours.reset()
        c0, t0 = time.process_time(), time.perf_counter()
        rnd = ours._make_round(recs, cfg.seed * 1_000_003 + k * 997)
        ours._round_stats(rnd)
        ours._step(rnd)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        m_ours.lengths = [int(x) for grp in rnd for x in grp.mask.sum(dim=1)]
        return wall, cpu, m_ours.snapshot()

    # ---- TRL
    from datasets import Dataset

    targs = GRPOConfig(
        output_dir=str(args.work / "trl-out"), use_cpu=True, bf16=False, fp16=False, seed=args.seed,
        per_device_train_batch_size=P * G, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=G, max_completion_length=T, temperature=1.0, top_p=0.95, top_k=0,
        beta=0.04, num_iterations=1, epsilon=0.2, loss_type="grpo", scale_rewards="group",
        learning_rate=1e-4, lr_scheduler_type="cosine", warmup_steps=0, max_grad_norm=1.0,
        optim="adamw_torch", weight_decay=0.0, activation_checkpointing=False, shuffle_dataset=False,
        max_steps=rounds, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        log_completions=False, dataloader_num_workers=0, model_init_kwargs={"dtype": "float32"},
        generation_kwargs={**({} if args.free_length else {"min_new_tokens": T}),
                           "suppress_tokens": list(ours.media_placeholder_ids)},
    )
    m_trl = Meter()
    tr = TRLGRPOTrainer(model=str(model_dir), reward_funcs=[trl_reward], args=targs,
                        train_dataset=Dataset.from_list(trl_rows(records)))
    tr._generate_single_turn = m_trl.timed("generation", tr._generate_single_turn, phase="gen")
    tr._calculate_rewards = m_trl.timed("reward", tr._calculate_rewards)
    trl_logps = tr._get_per_token_logps_and_entropies

    @functools.wraps(trl_logps)
    def logps(model, *a, **kw):
        if model is tr.ref_model:
            return m_trl.timed("reference", trl_logps)(model, *a, **kw)
        return trl_logps(model, *a, **kw)

    tr._get_per_token_logps_and_entropies = logps
    gen_single = tr._generate_single_turn

    def gen_and_measure(*a, **kw):
        out = gen_single(*a, **kw)
        m_trl.lengths = [len(c) for c in out[0]]
        return out

    tr._generate_single_turn = gen_and_measure
    hooks += [m_trl.hook(language_model(tr.model), "policy"), m_trl.hook(language_model(tr.ref_model), "ref")]

    # Same prompt tokens on both sides (first prompt, rendered alone: no left padding)
    _, inputs = ours._inputs(ours.records[:1])
    ours_ids = ours._rows_batch([inputs[0]])[0]["input_ids"][0].tolist()
    trl_ids = tr._tokenize_prompts([trl_rows(ours.records[:1])[0]["prompt"]])[0][0]
    trl_ids = list(trl_ids.tolist() if hasattr(trl_ids, "tolist") else trl_ids)
    same_prompt = ours_ids == trl_ids
    first_inputs = ours._inputs(ours.records[:P])[1]
    prompt_lens = [len(ours._rows_batch([inp])[0]["input_ids"][0]) for inp in first_inputs]
    n_buckets = len({ours.llm.batch_key(inp) for inp in first_inputs})

    n_policy = sum(p.numel() for p in ours.trainable)
    n_trl = sum(p.numel() for p in tr.model.parameters() if p.requires_grad)
    print(f"trl {trl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); tiny qwen2_vl "
          f"hidden {args.hidden}, {args.layers} layers, {sum(p.numel() for p in ours_base.parameters()) / 1e6:.2f} M "
          f"parameters (trained: ours {n_policy / 1e6:.2f} M LLM, TRL {n_trl / 1e6:.2f} M = all requires_grad)")
    print(f"P={P} prompts x G={G} = {P * G} completions per step, T={T} new tokens "
          f"({'forced: stop ids suppressed (ours) / min_new_tokens=T (TRL)' if not args.free_length else 'free length'}), "
          f"beta 0.04, "
          f"{args.warmup} warm-up + {args.steps} timed rounds, interleaved")
    print(f"prompt tokens (first {P} prompts): {prompt_lens}; first prompt identical on both sides: {same_prompt}"
          + ("" if same_prompt else f" (ours {len(ours_ids)}, TRL {len(trl_ids)} tokens)"))
    print(f"ours: {n_buckets} batch-key bucket(s) per round = {n_buckets} generate call(s) for the {P * G} rows; "
          f"reference and policy passes per group of {G} ({P} each)")

    res = {"ours": [], "trl": []}

    class Pace(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            k = state.global_step
            if k % 2 == 0:
                res["ours"].append((k, *our_step(k)))
            m_trl.reset()
            self.c0, self.t0 = time.process_time(), time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            wall, cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
            k = state.global_step - 1
            res["trl"].append((k, wall, cpu, m_trl.snapshot()))
            if k % 2 == 1:
                res["ours"].append((k, *our_step(k)))

    tr.remove_callback(PrinterCallback)  # TRL's per-step log dicts: not wanted in the output
    tr.remove_callback(ProgressCallback)
    tr.add_callback(Pace())
    # Our callback must run right around the step: put it first among on_step_begin handlers.
    cbs = tr.callback_handler.callbacks
    cbs.insert(0, cbs.pop())
    tr.train()
    for h in hooks:
        h.remove()
    vrewards.score = real_score

    ours_r = {k: v for k, *v in res["ours"] if k >= args.warmup}
    trl_r = {k: v for k, *v in res["trl"] if k >= args.warmup}
    ks = sorted(set(ours_r) & set(trl_r))
    paired = [ours_r[k][0] / trl_r[k][0] for k in ks]
    paired_cpu = [ours_r[k][1] / trl_r[k][1] for k in ks]

    def comp(side: dict, name: str) -> float:
        return median([side[k][2]["secs"].get(name, 0.0) for k in ks])

    def rest(side: dict) -> float:
        return median([side[k][0] - sum(side[k][2]["secs"].values()) for k in ks])

    def fwd(side: dict, key: str) -> tuple:
        vals = [side[k][2]["fwd"].get(key, (0, 0)) for k in ks]
        return median([v[0] for v in vals]), median([v[1] for v in vals])

    print(f"\n{'':34s} {'ours':>10s} {'TRL':>10s} {'ours/TRL':>9s}")
    rows = [("step, median wall s", median([ours_r[k][0] for k in ks]), median([trl_r[k][0] for k in ks])),
            ("step, median CPU s", median([ours_r[k][1] for k in ks]), median([trl_r[k][1] for k in ks]))]
    for name in ("generation", "reward", "reference"):
        rows.append((f"  {name}, median s", comp(ours_r, name), comp(trl_r, name)))
    rows.append(("  policy fwd+bwd+optim+rest, s", rest(ours_r), rest(trl_r)))
    for label, a, b in rows:
        print(f"{label:34s} {a:10.3f} {b:10.3f} {a / b if b else float('nan'):8.2f}x")
    pr = median(paired)
    print(f"{'paired ratio (median of rounds)':34s} {'':10s} {'':10s} {pr:8.2f}x   "
          f"(CPU {median(paired_cpu):.2f}x; rounds: {', '.join(f'{x:.2f}' for x in paired)})")
    print(f"goal ours <= 1.0x TRL: {'met' if pr <= 1.0 else 'NOT met'}")

    print("\nforward passes per step (language-model calls; rows x tokens processed in brackets)")
    print(f"{'':34s} {'ours':>18s} {'TRL':>18s}")
    for key, label in (("policy/gen", "generation (policy)"), ("ref/logp", "reference log-probs"),
                       ("policy/logp", "policy log-probs (w/ backward)")):
        a, b = fwd(ours_r, key), fwd(trl_r, key)
        print(f"{label:34s} {f'{a[0]:.0f} [{a[1]:.0f}]':>18s} {f'{b[0]:.0f} [{b[1]:.0f}]':>18s}")
    tot = [sum(fwd(side, key)[0] for key in ("policy/gen", "ref/logp", "policy/logp")) for side in (ours_r, trl_r)]
    print(f"{'total':34s} {tot[0]:18.0f} {tot[1]:18.0f}")
    lo = [x for k in ks for x in ours_r[k][2]["lengths"]]
    lt = [x for k in ks for x in trl_r[k][2]["lengths"]]
    print(f"completion tokens per row: ours mean {statistics.mean(lo):.1f} (min {min(lo)}, max {max(lo)}), "
          f"TRL mean {statistics.mean(lt):.1f} (min {min(lt)}, max {max(lt)})")
    if not args.free_length:
        all_t = all(x == T for x in lo + lt) and len(lo) == len(lt) == len(ks) * P * G
        print(f"every row exactly T={T} tokens on both sides: {all_t}")
        if not all_t:
            sys.exit("completion lengths differ from T: the forced-length setup did not take")

    if args.what_if:
        # The old way: one _generate call per prompt group (G rows), P calls per round.
        per_group, batched = [], []
        for k in ks[: min(len(ks), 5)]:
            _, inps = ours._inputs(ours.records[k * P:(k + 1) * P])
            t0 = time.perf_counter()
            for j, inp in enumerate(inps):
                batch, _ = ours._rows_batch([inp] * G)
                ours._generate(batch, inp.has_video, k * 997 + j)
            per_group.append(time.perf_counter() - t0)
            batched.append(ours_r[k][2]["secs"].get("generation", 0.0))
        print(f"\nwhat-if, our generation per prompt group ({P} calls of {G} rows): median "
              f"{median(per_group):.3f} s per round (one batched call in the paired rounds: {median(batched):.3f} s)")

    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "ours": res["ours"], "trl": res["trl"]}, indent=1, default=str))


if __name__ == "__main__":
    main()
