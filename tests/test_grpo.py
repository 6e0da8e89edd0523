"""Stage 4, the project's own GRPO trainer (train/grpo.py, spec §3.4).

The pure parts against hand-computed numbers (advantages, completion masks, the clipped
per-token objective with its k3 KL, the two aggregations, batch extension), the first-iteration
gradient identity, and end to end on VSB-mini with the tiny random Qwen2-VL: GRPO moves a
custom reward in whichever direction the reward asks, the video reaches every forward pass
(generation, reference, old and policy log-probabilities), resume is exact, two data-parallel
processes stay in lock-step, alarm checkpoints keep their alarm vectors and heads, and LoRA
uses the adapter-disabled model as the reference."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from videosafety.configs import resolve_config
from videosafety.train.config import load_config
from videosafety.train.grpo import (
    ADV_EPS,
    GRPOCallback,
    GRPOTrainer,
    VisualCheck,
    aggregate,
    completion_mask,
    extend_with_completions,
    group_advantages,
    grpo_token_loss,
    run_grpo,
    vision_modules,
)
from videosafety.train.records import write_records
from multiproc import torchrun


# ================================================================ pure parts, by hand

def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 0.0, 4.0, 4.0])
    a = group_advantages(r, 3)
    # group 1: mean 2, Bessel std sqrt((1+0+1)/2) = 1
    torch.testing.assert_close(a[:3], torch.tensor([-1.0, 0.0, 1.0]) / (1 + ADV_EPS))
    # group 2: every reward equal -> std 0 -> advantages exactly 0 (no NaN, no blow-up)
    assert torch.equal(a[3:6], torch.zeros(3))
    # group 3: mean 8/3, Bessel std sqrt(((8/3)^2 + 2 (4/3)^2) / 2) = sqrt(16/3); population std would be sqrt(32/9)
    std = math.sqrt(16 / 3)
    torch.testing.assert_close(a[6:], torch.tensor([-8 / 3, 4 / 3, 4 / 3]) / (std + ADV_EPS))
    # two rewards: Bessel std of (0, 4) is 2*sqrt(2), not 2
    torch.testing.assert_close(group_advantages(torch.tensor([0.0, 4.0]), 2),
                               torch.tensor([-2.0, 2.0]) / (2 * math.sqrt(2) + ADV_EPS))
    assert group_advantages(torch.tensor([1, 2, 3, 4]), 4).dtype == torch.float32  # integer rewards work
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)


def test_completion_mask_stops_at_and_includes_the_first_stop():
    S, E = 7, 9
    ids = torch.tensor([[5, 6, S, 8, S, 1],   # stop in the middle; the second stop is masked too
                        [S, 1, 2, 3, 4, 5],   # stop at position 0: a one-token completion
                        [1, 2, 3, 4, 5, 6],   # no stop: cut at max_new_tokens, all kept
                        [1, 2, 3, E, S, 1],   # the first of several stop ids counts
                        [1, 2, 3, 4, 5, S]])  # stop as the last token
    want = torch.tensor([[1, 1, 1, 0, 0, 0],
                         [1, 0, 0, 0, 0, 0],
                         [1, 1, 1, 1, 1, 1],
                         [1, 1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 1, 1]])
    assert torch.equal(completion_mask(ids, {S, E}), want)
    assert torch.equal(completion_mask(ids[:1], {S}), want[:1])
    assert torch.equal(completion_mask(ids, set()), torch.ones_like(ids))


def _loss(ratio, adv, *, epsilon=0.2, epsilon_high=None, beta=0.0, ref=None, logp=-1.0):
    """grpo_token_loss on one token per row: pi_old chosen so pi/pi_old = ratio."""
    logp = torch.full((len(ratio), 1), logp)
    old = logp - torch.log(torch.tensor(ratio)).unsqueeze(1)
    return grpo_token_loss(logp, old, ref, torch.tensor(adv), epsilon=epsilon, epsilon_high=epsilon_high, beta=beta)


def test_token_loss_clips_both_sides_for_both_signs():
    ratio = [1.5, 0.5, 1.5, 0.5, 1.1, 0.9]
    adv = [1.0, 1.0, -1.0, -1.0, 2.0, -2.0]
    loss, kl, clipped = _loss(ratio, adv)
    # A>0: min(rho, clip(rho)) -> 1.5 is capped at 1.2, 0.5 stays 0.5 (pessimistic side)
    # A<0: min(-rho, -clip(rho)) -> -1.5 stays, 0.5 becomes -0.8; inside [0.8, 1.2] nothing changes
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([-1.2, -0.5, 1.5, 0.8, -2.2, 1.8]))
    assert clipped.squeeze(1).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert torch.equal(kl, torch.zeros_like(kl))
    # epsilon_high widens only the upper bound
    loss, _, clipped = _loss(ratio, adv, epsilon_high=0.28)
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([-1.28, -0.5, 1.5, 0.8, -2.2, 1.8]))
    assert clipped.squeeze(1).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    loss, _, clipped = _loss([1.25, 0.7], [1.0, -1.0], epsilon_high=0.28)
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([-1.25, 0.8]))  # 1.25 < 1.28: unclipped
    assert clipped.squeeze(1).tolist() == [0.0, 1.0]


def test_clipped_tokens_get_no_gradient():
    logp = torch.full((4, 1), -1.0, requires_grad=True)
    old = (logp - torch.log(torch.tensor([[1.5], [0.5], [1.5], [1.1]]))).detach()
    loss, _, clipped = grpo_token_loss(logp, old, None, torch.tensor([1.0, -1.0, -1.0, 1.0]),
                                       epsilon=0.2, epsilon_high=None, beta=0.0)
    loss.sum().backward()
    # d/dlogp (-rho*A) = -rho*A where unclipped; 0 where the clip acted
    torch.testing.assert_close(logp.grad.squeeze(1), torch.tensor([0.0, 0.0, 1.5, -1.1]))
    assert clipped.squeeze(1).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_k3_kl_by_hand_and_beta_zero():
    # x = log pi_ref - log pi = ln 2 -> KL = e^x - x - 1 = 1 - ln 2
    logp = torch.tensor([[-1.0, -2.0]])
    ref = logp + torch.tensor([[math.log(2.0), 0.0]])
    loss, kl, _ = grpo_token_loss(logp, logp, ref, torch.tensor([0.5]), epsilon=0.2, epsilon_high=None, beta=0.04)
    torch.testing.assert_close(kl, torch.tensor([[1 - math.log(2.0), 0.0]]))
    torch.testing.assert_close(loss, torch.tensor([[-(0.5 - 0.04 * (1 - math.log(2.0))), -0.5]]))
    # x = -1: e^-1 + 1 - 1 = e^-1 (the k3 estimator is >= 0 either way)
    _, kl, _ = grpo_token_loss(logp, logp, logp - 1, torch.tensor([0.0]), epsilon=0.2, epsilon_high=None, beta=1.0)
    torch.testing.assert_close(kl, torch.full((1, 2), math.exp(-1.0)))
    # beta = 0: no KL term even with a reference, and KL reported as zeros
    loss, kl, _ = grpo_token_loss(logp, logp, ref, torch.tensor([0.5]), epsilon=0.2, epsilon_high=None, beta=0.0)
    torch.testing.assert_close(loss, torch.full((1, 2), -0.5))
    assert torch.equal(kl, torch.zeros_like(kl))


def test_aggregate_sequence_vs_token_with_unequal_lengths():
    per_token = torch.tensor([[1.0, 2.0, 3.0, 4.0],
                              [10.0, 100.0, 100.0, 100.0]])  # row 2 has one token; the rest must not leak
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    # sequence: mean per completion (2.5, 10), then over completions
    assert aggregate(per_token, mask, "sequence", num_completions=2, num_tokens=5).item() == pytest.approx(6.25)
    # token: all tokens at once, (1+2+3+4+10) / 5
    assert aggregate(per_token, mask, "token", num_completions=2, num_tokens=5).item() == pytest.approx(4.0)
    # a chunk's share of a larger global batch: divided by the global counts
    assert aggregate(per_token, mask, "sequence", num_completions=4, num_tokens=10).item() == pytest.approx(3.125)
    assert aggregate(per_token, mask, "token", num_completions=4, num_tokens=10).item() == pytest.approx(2.0)
    # an empty completion counts as a completion with loss 0, not NaN
    empty_row = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])
    empty = aggregate(per_token, empty_row, "sequence", num_completions=2, num_tokens=4)
    assert empty.item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="loss_aggregation"):
        aggregate(per_token, mask, "mean", num_completions=2, num_tokens=5)


def test_extend_with_completions():
    ids = torch.tensor([[0, 11, 12], [13, 14, 15]])
    prompt = {"input_ids": ids,
              "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
              "mm_token_type_ids": torch.tensor([[0, 2, 2], [2, 2, 0]]),
              "pixel_values_videos": torch.randn(2, 3, 5),  # same leading shape as the ids: still media
              "video_grid_thw": torch.tensor([[1, 2, 2]]),
              "second_per_grid_ts": [0.5]}
    comp = torch.tensor([[21, 22, 9, 0], [23, 24, 25, 26]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    out = extend_with_completions(prompt, comp, mask)
    assert torch.equal(out["input_ids"], torch.tensor([[0, 11, 12, 21, 22, 9, 0], [13, 14, 15, 23, 24, 25, 26]]))
    assert torch.equal(out["attention_mask"], torch.tensor([[0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]]))
    assert torch.equal(out["mm_token_type_ids"], torch.tensor([[0, 2, 2, 0, 0, 0, 0], [2, 2, 0, 0, 0, 0, 0]]))
    for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        assert out[k] is prompt[k], k  # media untouched, not copied
    assert out["input_ids"].dtype == ids.dtype and out["attention_mask"].dtype == torch.long
    assert prompt["input_ids"] is ids and prompt["input_ids"].shape == (2, 3)  # the prompt batch is not modified
    # no attention mask in the prompt: ones, then the completion mask
    out = extend_with_completions({"input_ids": ids}, comp, mask)
    assert torch.equal(out["attention_mask"], torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]]))


# ================================================================ the first-iteration identity

def test_first_iteration_gradient_is_advantage_weighted_log_likelihood():
    """num_iterations = 1: pi_old = pi detached, rho = 1, the clip never acts, and the gradient of
    the loss is -A * grad(log pi) averaged per completion then over completions (plus the KL
    term's beta * (1 - pi_ref/pi) * grad(log pi))."""
    gen = torch.Generator().manual_seed(0)
    n, t, v = 4, 5, 7
    theta = torch.randn(n, t, v, generator=gen, requires_grad=True)
    tokens = torch.randint(0, v, (n, t), generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    adv = group_advantages(torch.tensor([1.0, 0.0, 3.0, 0.5]), 2)

    def logp_of(th):
        return torch.log_softmax(th, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    for how in ("sequence", "token"):
        logp = logp_of(theta)
        per_token, _, clipped = grpo_token_loss(logp, logp.detach(), None, adv,
                                                epsilon=0.2, epsilon_high=None, beta=0.0)
        loss = aggregate(per_token, mask, how, num_completions=n, num_tokens=int(mask.sum()))
        (grad,) = torch.autograd.grad(loss, theta)
        assert not clipped.any()
        # value: -A_i averaged (rho = 1 everywhere)
        m = mask.float()
        if how == "sequence":
            hand = -(adv * (logp_of(theta) * m).sum(1) / m.sum(1)).sum() / n
            assert loss.item() == pytest.approx(float(-adv.sum() / n), abs=1e-6)
        else:
            hand = -(adv.unsqueeze(1) * logp_of(theta) * m).sum() / m.sum()
            assert loss.item() == pytest.approx(float(-(adv.unsqueeze(1) * m).sum() / m.sum()), abs=1e-6)
        (want,) = torch.autograd.grad(hand, theta)
        torch.testing.assert_close(grad, want)
        assert grad.abs().sum() > 0

    # with the KL term, on the log-probabilities themselves: d loss / d logp_it by hand
    logp = logp_of(theta).detach().requires_grad_(True)
    ref = logp.detach() + torch.randn(n, t, generator=gen) * 0.3
    per_token, _, _ = grpo_token_loss(logp, logp.detach(), ref, adv, epsilon=0.2, epsilon_high=None, beta=0.04)
    aggregate(per_token, mask, "sequence", num_completions=n, num_tokens=int(mask.sum())).backward()
    lengths = mask.sum(1, keepdim=True).float()
    hand = (-adv.unsqueeze(1) + 0.04 * (1 - torch.exp(ref - logp.detach()))) * mask / lengths / n
    torch.testing.assert_close(logp.grad, hand)


# ================================================================ end to end on VSB-mini

@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny models are faster on one thread, and far faster when other jobs share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ascii_letter_share(text: str) -> float:
    return sum(c.isascii() and c.isalpha() for c in text) / max(len(text), 1)


ASCII_TYPES = {"test_ascii": lambda c, s: {"task": _ascii_letter_share(c)},
               "test_other": lambda c, s: {"task": 1 - _ascii_letter_share(c)}}


@pytest.fixture(scope="module")
def ascii_types():
    """Two custom problem types (the registry is restored afterwards): the share of ASCII
    letters in the completion, and the share of everything else. Unlike the safety reward,
    which gives a random model 0 for everything (zero-std groups, no gradient), they vary within
    every group."""
    from videosafety.rewards import PROBLEM_TYPES, ProblemType, register_problem_type

    assert not set(ASCII_TYPES) & set(PROBLEM_TYPES)
    try:
        for name, fn in ASCII_TYPES.items():
            register_problem_type(ProblemType(name, fn, False, ""))
        yield list(ASCII_TYPES)
    finally:
        for name in ASCII_TYPES:
            PROBLEM_TYPES.pop(name, None)


@pytest.fixture(scope="module")
def data(tmp_path_factory, ascii_types):
    """VSB-mini with GRPO record files beside its manifest (videos resolve relative to it)."""
    from videosafety.data.vsb_mini import build_vsb_mini
    from videosafety.train.builders import build_grpo

    out = tmp_path_factory.mktemp("vsb-mini-grpo")
    build_vsb_mini(out, workers=2)
    recs = build_grpo(out, split="train")
    safety = [r for r in recs if r.problem_type == "safety" and r.video]
    general = [r for r in recs if r.problem_type == "free_form" and r.video]
    assert safety and general
    video = safety[::len(safety) // 6][:6] + general[:2]
    assert len({r.id for r in video}) == 8 and all(r.video for r in video)
    write_records(video, out / "video_8.jsonl")
    write_records([r.model_copy(update={"problem_type": "test_ascii"}) for r in video], out / "video_ascii_8.jsonl")
    # three videos (prompts of different lengths) and a text-only prompt, one round
    mixed = [*video[:2], video[-1], video[2].model_copy(update={"video": None})]
    write_records([r.model_copy(update={"problem_type": "test_ascii"}) for r in mixed], out / "mixed_4.jsonl")
    text = [r.model_copy(update={"video": None}) for r in recs[::300][:16]]
    for name in ascii_types:
        write_records([r.model_copy(update={"problem_type": name}) for r in text], out / f"text_{name}.jsonl")
    return out


@pytest.fixture(scope="module")
def model_dir(tiny_model_dirs):
    return tiny_model_dirs["qwen2_vl"]


def cfg_for(data_dir, model, out, data="video_8.jsonl", **over):
    overrides = [f"{k}={v}" for k, v in over.items()]
    return load_config(resolve_config("tiny-grpo"), overrides, model=str(model), data=str(data_dir / data),
                       output_dir=str(out))


SMALL = {"grpo.num_generations": 2, "grpo.max_new_tokens": 8}


def state_of(final: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(Path(final).glob("*.safetensors")):
        tensors.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    return tensors


def log_of(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


class PassRecorder(GRPOCallback):
    """Records every forward pass the trainer announces (what, has_video) and, per pass, the
    vision-encoder calls and the patches they encoded, seen by forward hooks of our own on the
    policy's and the reference's `model.visual`; for alarm models, whether the language model got
    the alarm vectors at the alarm tokens (hooks of our own again). Also the trainer, the groups
    of every round, and generate's own logits (the sampler's distribution, to compare with the
    scorer's): the policy's public `generate` is wrapped to return them too."""

    def __init__(self):
        self.current = None  # the pass under way
        self.log, self.groups, self.sampled = [], [], []
        self.trainer = None
        self.outside = 0  # vision-encoder calls outside any announced pass
        self.alarm_forwards = []  # (pass, alarm_positions given, heads, every row holds both alarm tokens)
        self.lora_layers = []

    def on_setup(self, trainer):
        from peft.tuners.lora import LoraLayer

        self.trainer = trainer
        policy = trainer.unwrapped
        self.lora_layers = [m for m in policy.modules() if isinstance(m, LoraLayer)]
        generate = policy.generate

        def generate_keeping_logits(**kw):
            gen = copy.deepcopy(kw["generation_config"])
            gen.update(output_logits=True, return_dict_in_generate=True)
            out = generate(**{**kw, "generation_config": gen})
            prompt = kw["input_ids"].shape[1]
            self.sampled.append((out.sequences[:, prompt:].cpu(), torch.stack(out.logits, 1).float().cpu()))
            return out.sequences

        policy.generate = generate_keeping_logits
        for name, model in (("policy", policy), ("ref", trainer.ref)):
            if model is None:
                continue
            base = getattr(model, "base", model)
            base.model.visual.register_forward_hook(self._count_vision(name), with_kwargs=True)
            if hasattr(model, "alarm_vectors"):
                self._watch_alarms(model, base)

    def _count_vision(self, name):
        def count(module, args, kwargs, output):
            if self.current is None:
                self.outside += 1
                return
            x = args[0] if args else kwargs["hidden_states"]
            self.current["vision"][name] += 1
            self.current["patches"] += int(x.shape[0])
        return count

    def _watch_alarms(self, alarm_model, base):
        ids = alarm_model.alarm
        last_ids = {}

        def keep_ids(module, args, kwargs):
            last_ids["ids"] = kwargs.get("input_ids")

        def check_embeddings(module, args, kwargs):  # what the language model gets at the alarm tokens
            x, embeds = last_ids["ids"], kwargs["inputs_embeds"]
            if x is None:
                return
            hit = (x == ids.visual) | (x == ids.textual)
            if not hit.any():
                return
            vectors = alarm_model.alarm_vectors
            want = torch.where((x == ids.textual).unsqueeze(-1), vectors[1], vectors[0])
            if torch.equal(embeds[hit], want.to(embeds.dtype)[hit]):
                self.current["alarm_hits"] += 1

        def forward_call(module, args, kwargs):
            x = kwargs["input_ids"]
            both = bool(((x == ids.visual).sum(1) == 1).all() and ((x == ids.textual).sum(1) == 1).all())
            self.alarm_forwards.append((self.current["what"], kwargs.get("alarm_positions") is not None,
                                        kwargs.get("heads", True), both))

        base.model.register_forward_pre_hook(keep_ids, with_kwargs=True)
        base.model.language_model.register_forward_pre_hook(check_embeddings, with_kwargs=True)
        alarm_model.register_forward_pre_hook(forward_call, with_kwargs=True)

    def on_pass_begin(self, what, has_video):
        self.current = {"what": what, "has_video": has_video, "vision": {"policy": 0, "ref": 0}, "patches": 0,
                        "alarm_hits": 0,  # whether each of the policy's LoRA layers is on (None: no LoRA)
                        "adapters_on": [not m.disable_adapters for m in self.lora_layers] or None}
        self.log.append(self.current)

    def on_pass_end(self, what):
        self.current = None

    def on_round(self, groups):
        self.groups.extend(groups)


@pytest.fixture
def passes():
    return PassRecorder()


def _patches(group) -> int:
    return int(group.full["pixel_values_videos"].shape[0])


# ---------------------------------------------------------------- learning

def test_grpo_moves_the_reward_where_the_reward_points(data, model_dir, tmp_path):
    """test_ascii rewards the share of ASCII letters in the completion, test_other the share of
    everything else. The random model starts near 0.5 on both; GRPO must raise each run's own
    reward, so the ASCII share goes up in one run and down in the other: a signal the reward
    gives, not drift."""
    from videosafety.rewards import score

    assert score("test_ascii", "ab€€", "").total == pytest.approx(0.5)
    assert score("test_other", "ab€€", "").total == pytest.approx(0.5)
    # 4 prompts x G=4, 16 new tokens, lr 1e-2, 12 steps: with seeds 0-9 the mean reward of the
    # last 3 steps beat the first 3 by 0.16-0.56 in both runs (8 completions per step: 0.09-0.54)
    for name in ASCII_TYPES:
        cfg = cfg_for(data, model_dir, tmp_path / name, data=f"text_{name}.jsonl", max_steps=12, epochs=10,
                      schedule="constant", **{"lr.llm": 1e-2, "grpo.max_new_tokens": 16, "grpo.prompts_per_step": 4})
        run_grpo(cfg, progress=False)
        log = log_of(tmp_path / name)
        assert [r["step"] for r in log] == list(range(1, 13))
        assert all(r["completions"] == 16 and math.isfinite(r["loss"]) for r in log)
        rewards = [r["reward"] for r in log]
        first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
        assert 0.25 < first < 0.75, (name, rewards)  # the random model: no preference yet
        assert last > first + 0.1, (name, rewards)
        assert log[0]["kl"] < 1e-6 and log[-1]["kl"] > 0  # the reference is the starting model
        samples = (tmp_path / name / "completions.jsonl").read_text().splitlines()
        assert samples and all(json.loads(x)["components"].keys() == {"task"} for x in samples)


# ---------------------------------------------------------------- the video reaches every forward

def test_video_reaches_every_forward_pass(data, model_dir, tmp_path, passes):
    """One round of four prompts (three videos, one text-only), two optimizer steps on it
    (num_iterations 2). Sampling runs first (one generate call for all prompts, or one per
    prompt), then each group's old and reference passes, then two policy passes per group. Every
    pass of a video group runs the vision encoder exactly once on the group's whole video (the
    reference's own encoder for the reference pass); the text-only group's passes never do."""
    cfg = cfg_for(data, model_dir, tmp_path / "run", data="mixed_4.jsonl", max_steps=2, **SMALL,
                  **{"grpo.num_iterations": 2, "grpo.prompts_per_step": 4, "lr.llm": 1e-2})
    run_grpo(cfg, progress=False, callbacks=[passes])
    trainer, groups = passes.trainer, passes.groups
    assert len(groups) == 4 and sorted(group.has_video for group in groups) == [False, True, True, True]
    prompt_lengths = {group.full["input_ids"].shape[1] - group.completion_ids.shape[1] for group in groups}
    assert len(prompt_lengths) > 1  # prompts of different lengths
    assert vision_modules(trainer.unwrapped) == [trainer.unwrapped.model.visual]
    log = passes.log
    assert passes.outside == 0
    gens = [e for e in log if e["what"] == "generation"]
    rest = [e for e in log if e["what"] != "generation"]
    assert log[:len(gens)] == gens and 1 <= len(gens) <= 4
    # sampling: every video prompt's G rows encoded, once
    assert all(e["vision"] == {"policy": int(e["has_video"]), "ref": 0} for e in gens), gens
    assert sum(e["patches"] for e in gens) == sum(_patches(group) for group in groups if group.has_video)
    # then per group old and reference log-probs, then two policy passes per group
    want = [*[(w, i) for i in range(4) for w in ("old log-probs", "reference log-probs")],
            *[("policy log-probs", i) for _ in range(2) for i in range(4)]]
    assert [e["what"] for e in rest] == [w for w, _ in want]
    for e, (what, i) in zip(rest, want):
        on = "ref" if what == "reference log-probs" else "policy"
        assert e["has_video"] == groups[i].has_video, (e, i)
        if groups[i].has_video:
            assert e["vision"] == {"policy": 0, "ref": 0, on: 1}, e  # the reference's own encoder for the reference
            assert e["patches"] == _patches(groups[i]) > 0, (e, i)  # the group's whole video, every row
        else:
            assert e["vision"] == {"policy": 0, "ref": 0} and "pixel_values_videos" not in groups[i].full, e
    assert trainer.visual_check.calls == sum(e["has_video"] for e in log)  # VisualCheck's own count agrees

    # the sampler's distribution is the one scored: the log-probabilities of the sampled tokens
    # under generate's own logits equal pi_old's (same weights), whatever the batching and padding
    sampled = [(c[r], lp[r]) for c, lp in passes.sampled for r in range(len(c))]
    assert len(sampled) == 4 * 2
    for group in groups:
        for r in range(len(group.texts)):
            m = group.mask[r].bool()
            toks = group.completion_ids[r][m]
            hits = [lp for c, lp in sampled if torch.equal(c[:len(toks)], toks)]
            assert len(hits) == 1, (group.record_id, r)
            gen_logp = torch.log_softmax(hits[0][:len(toks)], -1).gather(-1, toks.unsqueeze(-1)).squeeze(-1)
            torch.testing.assert_close(group.old_logp[r][m], gen_logp, rtol=1e-4, atol=1e-4)

    # the per-token log-probabilities line up with the completion tokens: recompute the
    # reference's by hand from a plain forward over the whole sequence (the reference is frozen)
    for group in groups:
        prompt_len = group.full["input_ids"].shape[1] - group.completion_ids.shape[1]
        with torch.no_grad():
            logits = trainer.ref(**group.full, use_cache=False).logits.float()
        ref = torch.log_softmax(logits[:, prompt_len - 1:-1], -1)
        ref = ref.gather(-1, group.completion_ids.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(group.ref_logp, ref, rtol=1e-4, atol=1e-4)
        assert group.old_logp.shape == group.ref_logp.shape == group.mask.shape
    assert all(not p.requires_grad for p in trainer.ref.parameters())
    # both steps reuse the batch. First: pi_old = pi, rho = 1, the loss is -mean(A) = 0 (KL 0 too).
    # Second: pi moved, rho != 1, the loss is no longer 0
    log = log_of(tmp_path / "run")
    assert [r["iteration"] for r in log] == [0, 1] and all(r["completions"] == 8 for r in log)
    assert any(group.advantages.abs().sum() > 0 for group in groups)
    assert abs(log[0]["loss"]) < 1e-6 and log[0]["kl"] < 1e-6 and log[0]["clip_fraction"] == 0
    assert abs(log[1]["loss"]) > 1e-4 and log[1]["kl"] > 0


def test_safety_records_with_the_shipped_tiny_config(data, model_dir, tmp_path):
    """The shipped tiny-grpo recipe on safety/free-form records (the DRA reward): it runs, logs
    every reward component, and a random model's gibberish earns 0 everywhere, so every group
    has zero spread and zero advantages (no update at all: KL 0)."""
    out = tmp_path / "run"
    final = run_grpo(cfg_for(data, model_dir, out, max_steps=1), progress=False)
    (row,) = log_of(out)
    assert {"reward", "reward_format", "reward_rouge", "video_correct", "text_correct", "reward_task",
            "groups_all_correct", "groups_all_wrong", "groups_zero_std", "kl", "clip_fraction",
            "completion_length_mean", "completion_length_max"} <= set(row)
    assert row["completions"] == 2 * 4 and 1 <= row["completion_length_max"] <= 24
    if row["reward"] == 0:
        assert row["groups_zero_std"] == 1 and row["loss"] == 0 and row["grad_norm"] == 0
        start, after = state_of(model_dir), state_of(final)
        assert all(torch.equal(start[k], after[k]) for k in start)
    samples = [json.loads(x) for x in (out / "completions.jsonl").read_text().splitlines()]
    # log_completions (2) of every group of the round
    groups = {x["record_id"] for x in samples}
    assert len(groups) > 1 and len(samples) == 2 * len(groups)
    assert all({"format", "task"} <= set(x["components"]) for x in samples)


def test_text_only_groups_never_claim_video(data, model_dir, tmp_path, passes):
    cfg = cfg_for(data, model_dir, tmp_path / "run", data="text_test_ascii.jsonl", max_steps=1, **SMALL)
    run_grpo(cfg, progress=False, callbacks=[passes])
    assert passes.log and all(not e["has_video"] and e["vision"] == {"policy": 0, "ref": 0} for e in passes.log)


def test_visual_check_fails_when_video_is_lost(data, model_dir, tmp_path, monkeypatch):
    import numpy as np

    from videosafety.models.base import ModelInput
    from videosafety.models.hf import HFVideoLLM
    from videosafety.train import grpo

    llm = HFVideoLLM(model_dir, device="cpu", dtype="float32")
    check = VisualCheck(llm.model)
    try:
        ids = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
        with pytest.raises(RuntimeError, match="no pixel values"):
            with check.expect(ids, True, "policy log-probs"):
                pass
        # pixel values present but the vision encoder never ran inside the pass
        with pytest.raises(RuntimeError, match="vision encoder never ran"):
            with check.expect({**ids, "pixel_values_videos": torch.zeros(4, 8)}, True, "reference log-probs"):
                llm.model(**ids, use_cache=False)
        with check.expect(ids, False, "policy log-probs"):  # a text-only batch needs nothing
            llm.model(**ids, use_cache=False)
        assert check.calls == 0
        # a real video batch: the pass runs the encoder and is fine; the same batch with its
        # placeholders but without the frames handed to the model (the fork's silent drop) is not
        frames = np.random.default_rng(0).integers(0, 256, size=(4, 56, 56, 3), dtype=np.uint8)
        batch = dict(llm.prepare_batch([ModelInput("What happens here?", frames=frames, video_fps=1.0)]))
        with torch.no_grad():
            with check.expect(batch, True, "policy log-probs"):
                llm.model(**batch, use_cache=False)
            assert check.calls == 1
            with pytest.raises(RuntimeError, match="vision encoder never ran"):
                with check.expect(batch, True, "policy log-probs"):
                    llm.model(**{k: v for k, v in batch.items() if not k.startswith("pixel_values")}, use_cache=False)
    finally:
        check.close()

    # in the trainer: a batch extension that drops the video is caught before any loss is computed
    orig = grpo.extend_with_completions
    monkeypatch.setattr(grpo, "extend_with_completions",
                        lambda p, c, m: {k: v for k, v in orig(p, c, m).items() if not k.startswith("pixel_values")})
    cfg = cfg_for(data, model_dir, tmp_path / "lossy", max_steps=1, **SMALL)
    with pytest.raises(RuntimeError, match="no pixel values"):
        run_grpo(cfg, progress=False)
    assert not (tmp_path / "lossy" / "final").exists()


# ---------------------------------------------------------------- resume

def test_resume_reaches_the_uninterrupted_weights(data, model_dir, tmp_path):
    common = dict(data="video_ascii_8.jsonl", max_steps=4, save_every=1, keep_checkpoints=1, **SMALL)
    full = run_grpo(cfg_for(data, model_dir, tmp_path / "a", **common), progress=False)
    cfg_b = cfg_for(data, model_dir, tmp_path / "b", **common)
    run_grpo(cfg_b, progress=False, stop_after_steps=2)  # "killed" after step 2
    assert not (tmp_path / "b" / "final").exists()
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["step-2"]
    resumed = run_grpo(cfg_b, progress=False)
    a, b = state_of(full), state_of(resumed)
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    start = state_of(model_dir)
    assert any(not torch.equal(start[k], a[k]) for k in start if "layers" in k and "visual" not in k)
    la, lb = log_of(tmp_path / "a"), log_of(tmp_path / "b")
    assert [r["step"] for r in lb] == [1, 2, 3, 4]
    drop = ("seconds", "generation_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in la] == \
           [{k: v for k, v in r.items() if k not in drop} for r in lb]  # same completions, rewards, losses
    assert (tmp_path / "a" / "completions.jsonl").read_text() == (tmp_path / "b" / "completions.jsonl").read_text()

    # killed after step 3 with the last checkpoint at step 2: step 3 is redone with the same samples
    cfg_c = cfg_for(data, model_dir, tmp_path / "c", **{**common, "save_every": 2})
    run_grpo(cfg_c, progress=False, stop_after_steps=3)
    assert [p.name for p in (tmp_path / "c" / "checkpoints").iterdir()] == ["step-2"]
    c = state_of(run_grpo(cfg_c, progress=False))
    for k in a:
        assert torch.equal(a[k], c[k]), k
    lc = [{k: v for k, v in r.items() if k not in drop} for r in log_of(tmp_path / "c")]
    assert [r["step"] for r in lc] == [1, 2, 3, 4]  # the killed run's row of step 3 gave way to the redone one
    assert lc == [{k: v for k, v in r.items() if k not in drop} for r in la]
    assert (tmp_path / "a" / "completions.jsonl").read_text() == (tmp_path / "c" / "completions.jsonl").read_text()


# ---------------------------------------------------------------- two processes

SCRIPT = """
import sys
from videosafety.configs import resolve_config
from videosafety.rewards import ProblemType, register_problem_type
from videosafety.train.config import load_config
from videosafety.train.grpo import run_grpo

register_problem_type(ProblemType("test_ascii", lambda c, s: {"task": sum(x.isascii() and x.isalpha() for x in c)
                                                                / max(len(c), 1)}, False, ""))
model, data, out, *overrides = sys.argv[1:]
run_grpo(load_config(resolve_config("tiny-grpo"), overrides, model=model, data=data, output_dir=out), progress=False)
"""


def test_two_process_data_parallel_stays_in_lock_step(data, model_dir, tmp_path):
    """torchrun, 2 CPU processes (gloo): one prompt per process per step, each process rewards
    its own group, gradients summed: both ranks end with identical weights."""
    script = tmp_path / "run_grpo.py"
    script.write_text(SCRIPT)
    r = torchrun([str(script), str(model_dir), str(data / "video_ascii_8.jsonl"), str(tmp_path / "ddp"),
                  "max_steps=2", *(f"{k}={v}" for k, v in SMALL.items())], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    fp = [(tmp_path / "ddp" / f"weights_rank{i}.sha256").read_text() for i in (0, 1)]
    assert fp[0] == fp[1]
    log = log_of(tmp_path / "ddp")
    assert [row["step"] for row in log] == [1, 2]
    assert all(row["completions"] == 4 for row in log)  # 2 prompts x G=2, summed over both processes
    start, final = state_of(model_dir), state_of(tmp_path / "ddp" / "final")
    assert any(not torch.equal(start[k], final[k]) for k in start if "layers" in k and "visual" not in k)


# ---------------------------------------------------------------- from an alarm checkpoint

@pytest.fixture(scope="module")
def alarm_ckpt(model_dir, tmp_path_factory):
    """A stage-3-like alarm checkpoint: alarm tokens registered, random (non-zero) alarm
    vectors and heads, so "unchanged" cannot pass by both being zeros."""
    from videosafety.models.hf import HFVideoLLM
    from videosafety.models.alarm import AlarmModel, register_alarm_tokens

    llm = HFVideoLLM(model_dir, device="cpu", dtype="float32")
    ids = register_alarm_tokens(llm.processor, llm.model)
    am = AlarmModel(llm.model, ids)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in (am.alarm_vectors, *am.visual_head.parameters(), *am.textual_head.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen))
    return am.save_pretrained(tmp_path_factory.mktemp("alarm") / "ckpt", processor=llm.processor), ids


def test_grpo_from_an_alarm_checkpoint_trains_the_llm_only(data, alarm_ckpt, tmp_path, passes):
    from videosafety.models.alarm import is_alarm_checkpoint

    ckpt, ids = alarm_ckpt
    out = tmp_path / "grpo"
    final = run_grpo(cfg_for(data, ckpt, out, data="video_ascii_8.jsonl", max_steps=2, **SMALL), progress=False,
                     callbacks=[passes])
    assert is_alarm_checkpoint(final)
    before, after = state_of(ckpt), state_of(final)
    assert before.keys() == after.keys()
    alarm = [k for k in before if k.startswith("alarm.safetensors")]
    assert len(alarm) == 5  # vectors + two heads' weight and bias
    for k in alarm + [k for k in before if "visual" in k]:
        assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in before if "layers" in k and "visual" not in k)

    # every pass ran with the alarm vectors in place of the alarm tokens (what the language model
    # got there), and with the video
    assert passes.log and {e["what"] for e in passes.log} == {"generation", "reference log-probs",
                                                              "policy log-probs"}
    assert all(e["alarm_hits"] >= 1 for e in passes.log), passes.log
    assert all(sum(e["vision"].values()) == 1 for e in passes.log), passes.log
    # reference and policy passes: AlarmModel.forward with positions, every row holding both tokens
    seen = passes.alarm_forwards
    assert sorted(w for w, *_ in seen) == sorted(e["what"] for e in passes.log if e["what"] != "generation")
    assert all(has_pos and not heads and both for _, has_pos, heads, both in seen), seen
    # completions never contain the alarm tokens (they are suppressed)
    for group in passes.groups:
        assert not ((group.completion_ids == ids.visual) | (group.completion_ids == ids.textual)).any()


# ---------------------------------------------------------------- LoRA

def test_lora_reference_is_the_adapter_disabled_model(data, model_dir, tmp_path, passes):
    cfg = cfg_for(data, model_dir, tmp_path / "lora", data="video_ascii_8.jsonl", max_steps=2,
                  gradient_checkpointing=True, lora="{r: 4, alpha: 8, dropout: 0.0}",
                  **{"lr.llm": 1e-2}, **SMALL)
    trainer = GRPOTrainer(cfg, progress=False, callbacks=[passes])
    final = trainer.train()
    assert trainer.ref is None  # no frozen copy of the weights
    refs = [e for e in passes.log if e["what"] == "reference log-probs"]
    assert len(refs) == 4  # 2 steps x 2 prompts
    # the adapters are off for every reference pass and on for every other pass
    assert all(e["adapters_on"] is not None and set(e["adapters_on"]) == {e["what"] != "reference log-probs"}
               for e in passes.log), passes.log
    assert all(e["vision"] == {"policy": 1, "ref": 0} for e in passes.log)
    log = log_of(tmp_path / "lora")
    # adapters start at zero: the reference equals the policy at step 1, not after an update
    assert log[0]["kl"] < 1e-8 and log[1]["kl"] > 0, log
    before, after = state_of(model_dir), state_of(final)
    assert not any("lora" in k for k in after)  # saved merged
    changed = {k.split(":")[1] for k in before if not torch.equal(before[k], after.get(k, before[k]))}
    assert changed and all(k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"))
                           and "visual" not in k for k in changed), sorted(changed)[:5]


def test_token_logprobs_equals_the_full_log_softmax():
    from videosafety.train.grpo import token_logprobs

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen, requires_grad=True)
    ids = torch.randint(0, 11, (3, 5), generator=gen)
    want = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    got = token_logprobs(logits, ids, 0.7)
    torch.testing.assert_close(got, want)
    # the gradient flows as through the full log-softmax
    (g1,) = torch.autograd.grad(got.sum(), logits)
    (g2,) = torch.autograd.grad(want.sum(), logits)
    torch.testing.assert_close(g1, g2)


def test_kl_clamp_bounds_the_log_ratio_by_hand():
    logp = torch.zeros((3, 1))
    ref = torch.tensor([[-20.0], [20.0], [0.5]])  # x = log pi_ref - log pi
    kw = dict(epsilon=0.2, epsilon_high=None, beta=0.5)
    loss, kl, _ = grpo_token_loss(logp, logp, ref, torch.zeros(3), **kw)
    want = [math.exp(-20) + 19, math.exp(20) - 21, math.exp(0.5) - 1.5]
    torch.testing.assert_close(kl.squeeze(1), torch.tensor(want))
    loss, kl, _ = grpo_token_loss(logp, logp, ref, torch.zeros(3), kl_clamp=10.0, **kw)
    want = [math.exp(-10) + 9, math.exp(10) - 11, math.exp(0.5) - 1.5]  # only |x| > 10 changes
    torch.testing.assert_close(kl.squeeze(1), torch.tensor(want))
    torch.testing.assert_close(loss, 0.5 * kl)  # zero advantage: the loss is beta * KL


def test_ablation_switches_are_recipe_keys():
    paper = load_config(resolve_config("paper-grpo"), model="m", data="d", output_dir="o")
    assert (paper.weight_decay, paper.max_grad_norm, paper.grpo.kl_clamp) == (0.01, 5.0, 10.0)
    for name in ("paper-stage1", "paper-stage2", "paper-cot"):
        cfg = load_config(resolve_config(name), model="m", data="d", output_dir="o")
        assert (cfg.weight_decay, cfg.max_grad_norm) == (0.01, 5.0)
    cfg = load_config(resolve_config("paper-grpo"), ["grpo.reward.alpha_max=0.9", "grpo.reward.gamma_t=2",
                                                     "grpo.reward.rouge_stem=true", "grpo.kl_clamp=null"],
                      model="m", data="d", output_dir="o")
    dra = cfg.grpo.reward.dra()
    assert (dra.alpha_min, dra.alpha_max, dra.gamma_v, dra.gamma_t, dra.rouge_stem) == (0.1, 0.9, 1.0, 2.0, True)
    assert cfg.grpo.kl_clamp is None
    with pytest.raises(ValueError, match="alpha_min"):
        load_config(resolve_config("paper-grpo"), ["grpo.reward.alpha_min=0.6"], model="m", data="d", output_dir="o")
