"""Alarm tokens: placement (pure, hand-computed), registration, insertion into real processed
batches of the four tiny families, AlarmModel forward / generate / gradients / save-load."""

from __future__ import annotations

import numpy as np
import pytest

from videosafety.models.alarm import (IGNORE_INDEX, TEXTUAL_ALARM, VISUAL_ALARM, AlarmModel, AlarmTokenIds,
                                      alarm_ids_of, alarm_positions_of, embeddings_tied, end_of_turn_id_of,
                                      insert_alarm_tokens, is_alarm_checkpoint, language_parameters, place_alarms,
                                      prepare_alarm_batch, register_alarm_tokens, vision_parameters,
                                      visual_token_ids_of)
from videosafety.models.base import ModelInput

A = AlarmTokenIds(visual=100, textual=101)
VIS = {9}
EOT = 7


def place(ids, *, has_video=True, prompt_len=None, vis=VIS):
    return place_alarms(ids, prompt_len=len(ids) if prompt_len is None else prompt_len,
                        visual_token_ids=vis, end_of_turn_id=EOT, alarm=A, has_video=has_video)


# ============================================================================ pure placement


def test_video_alarm_after_last_visual_textual_before_end_of_turn():
    # <s> sys 7 | user <v> 9 9 </v> q q 7 | asst
    ids = [1, 2, 7, 3, 4, 9, 9, 5, 6, 6, 7, 8]
    assert place(ids) == ([1, 2, 7, 3, 4, 9, 9, 100, 5, 6, 6, 101, 7, 8], 7, 11)


def test_last_visual_of_several_groups_and_image_ids():
    ids = [3, 9, 9, 5, 8, 8, 4, 7, 2]  # two groups, ids 9 (video) and 8 (image)
    assert place(ids, vis={8, 9}) == ([3, 9, 9, 5, 8, 8, 100, 4, 101, 7, 2], 6, 8)


def test_visual_right_before_end_of_turn():
    assert place([3, 9, 7]) == ([3, 9, 100, 101, 7], 2, 3)


def test_text_only_both_before_end_of_turn_visual_first():
    assert place([1, 2, 3, 7, 8], has_video=False) == ([1, 2, 3, 100, 101, 7, 8], 3, 4)


def test_training_sequence_uses_the_prompt_end_of_turn_not_the_response_one():
    ids = [1, 9, 2, 7, 8, 5, 6, 7]  # prompt = first 5 tokens, response "5 6 <eot>"
    assert place(ids, prompt_len=5) == ([1, 9, 100, 2, 101, 7, 8, 5, 6, 7], 2, 4)
    assert place([1, 2, 7, 8, 5, 7], has_video=False, prompt_len=4) == ([1, 2, 100, 101, 7, 8, 5, 7], 2, 3)


@pytest.mark.parametrize("ids, kw, match", [
    ([1, 2, 7], {}, "no visual token"),
    ([1, 9, 7], {"has_video": False}, "text-only"),
    ([1, 9, 2, 8, 5, 7], {"prompt_len": 4}, "no end-of-turn"),
    ([1, 9, 2, 7, 9, 8], {}, "after the user turn"),
    ([1, 9, 7, 8, 9, 7], {"prompt_len": 4}, "after the user turn"),
    ([1, 9, 100, 2, 7], {}, "already holds an alarm"),
    ([1, 9, 2, 101, 7], {}, "already holds an alarm"),
    ([1, 9, 7], {"prompt_len": 4}, "prompt_len"),
])
def test_placement_errors(ids, kw, match):
    with pytest.raises(ValueError, match=match):
        place(ids, **kw)


def test_placing_twice_is_refused():
    new, _, _ = place([1, 9, 2, 7])
    with pytest.raises(ValueError, match="already holds"):
        place(new)


def test_insert_into_a_hand_made_batch():
    import torch

    pixels = torch.ones(2, 6)  # shaped like input_ids by coincidence: still not per-token
    batch = {
        "input_ids": torch.tensor([[0, 0, 5, 9, 6, 7], [5, 6, 6, 7, 8, 8]]),
        "attention_mask": torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]),
        "labels": torch.tensor([[-100] * 6, [-100, -100, -100, -100, 8, 8]]),
        "mm_token_type_ids": torch.tensor([[0, 0, 0, 2, 0, 0], [0] * 6]),
        "feats": torch.arange(24).reshape(2, 6, 2) + 1,
        "pixel_values_videos": pixels,
        "video_grid_thw": torch.tensor([[1, 2, 2]]),
    }
    out, pos = insert_alarm_tokens(batch, has_video=[True, False], visual_token_ids=VIS, end_of_turn_id=EOT,
                                   alarm=A, pad_token_id=0, prompt_lens=[4, 4])
    assert out["input_ids"].tolist() == [[0, 0, 5, 9, 100, 6, 101, 7], [5, 6, 6, 100, 101, 7, 8, 8]]
    assert pos.tolist() == [[4, 6], [3, 4]]
    assert torch.equal(alarm_positions_of(out["input_ids"], A), pos)
    assert out["attention_mask"].tolist() == [[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8]
    assert out["labels"].tolist() == [[-100] * 8, [-100] * 6 + [8, 8]]
    assert out["mm_token_type_ids"].tolist() == [[0, 0, 0, 2, 0, 0, 0, 0], [0] * 8]
    assert out["feats"][0].tolist() == [[0, 0], [0, 0], [5, 6], [7, 8], [0, 0], [9, 10], [0, 0], [11, 12]]
    assert out["pixel_values_videos"] is pixels and out["video_grid_thw"] is batch["video_grid_thw"]
    with pytest.raises(ValueError, match="has_video has 1"):
        insert_alarm_tokens(batch, has_video=[True], visual_token_ids=VIS, end_of_turn_id=EOT, alarm=A,
                            pad_token_id=0)
    with pytest.raises(ValueError, match="exactly once"):
        alarm_positions_of(batch["input_ids"], A)


# ============================================================================ tiny families

FRAMES = np.random.default_rng(0).integers(0, 256, size=(4, 112, 112, 3), dtype=np.uint8)
INPUTS = [
    ModelInput("What happens in this video?", frames=FRAMES, video_fps=1.0),
    ModelInput("How do I bake bread?"),
    ModelInput("Describe it.", frames=FRAMES[:2], video_fps=1.0, system="Be careful."),
]
RESPONSE = "I can't help with that."


@pytest.fixture(scope="module")
def alarm_llm(tiny_model_dirs):
    """family -> an HFVideoLLM of its own (not the shared conftest one) with alarms registered."""
    from videosafety.models.hf import HFVideoLLM

    cache: dict = {}

    def get(family):
        if family not in cache:
            llm = HFVideoLLM(tiny_model_dirs[family], device="cpu", dtype="float32")
            register_alarm_tokens(llm.processor, llm.model)
            cache[family] = llm
        return cache[family]

    return get


def facts(llm):
    return alarm_ids_of(llm.processor), visual_token_ids_of(llm.processor, llm.model.config), \
        end_of_turn_id_of(llm.processor)


def test_token_facts_found_generically(family, alarm_llm):
    llm = alarm_llm(family)
    tok = llm.processor.tokenizer
    alarm, vis, eot = facts(llm)
    assert vis == {tok.convert_tokens_to_ids("<|image_pad|>"), tok.convert_tokens_to_ids("<|video_pad|>")}
    assert eot == tok.convert_tokens_to_ids("<|im_end|>")
    assert (alarm.visual, alarm.textual) == (tok.convert_tokens_to_ids(VISUAL_ALARM),
                                             tok.convert_tokens_to_ids(TEXTUAL_ALARM))


def test_end_of_turn_needs_a_special_token(tiny_tokenizer):
    class Plain:
        tokenizer = tiny_tokenizer

        def apply_chat_template(self, conv, tokenize=False):
            return "User: " + conv[0]["content"][0]["text"] + "\n\nAssistant:"

    with pytest.raises(ValueError, match="no special token closes"):
        end_of_turn_id_of(Plain())


def _strip(row_ids, row_mask, drop=()):
    return [int(i) for i, m in zip(row_ids, row_mask) if m and int(i) not in drop]


def test_insertion_mixed_batch(family, alarm_llm):
    import torch

    llm = alarm_llm(family)
    alarm, vis, eot = facts(llm)
    before = llm.prepare_batch(INPUTS)
    batch, pos = prepare_alarm_batch(llm, INPUTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert pos.shape == (3, 2) and pos.dtype == torch.long
    assert ids.shape[1] == int(before["attention_mask"].sum(1).max()) + 2
    for r, inp in enumerate(INPUTS):
        v, t = pos[r].tolist()
        assert (ids[r] == alarm.visual).sum() == 1 and (ids[r] == alarm.textual).sum() == 1
        assert ids[r, v] == alarm.visual and ids[r, t] == alarm.textual and ids[r, t + 1] == eot
        if inp.has_video:
            assert int(ids[r, v - 1]) in vis and not any(int(i) in vis for i in ids[r, v:])
        else:
            assert t == v + 1 and not any(int(i) in vis for i in ids[r])
        n = int(mask[r].sum())
        assert mask[r].tolist() == [0] * (ids.shape[1] - n) + [1] * n  # left padded
        assert mask[r, v] == 1 and mask[r, t] == 1
        # Removing the alarms gives back the processor's tokens, per-token tensors included.
        assert _strip(ids[r], mask[r], {alarm.visual, alarm.textual}) == _strip(before["input_ids"][r],
                                                                               before["attention_mask"][r])
        for key in ("mm_token_type_ids", "token_type_ids"):
            if key in before:
                assert batch[key][r, v] == 0 and batch[key][r, t] == 0
                keep = mask[r].bool() & (ids[r] != alarm.visual) & (ids[r] != alarm.textual)
                assert batch[key][r][keep].tolist() == before[key][r][before["attention_mask"][r].bool()].tolist()
    assert batch.keys() == before.keys()
    for key, value in before.items():  # pixel values, grids, merge sizes, ...: unchanged
        if key not in ("input_ids", "attention_mask", "mm_token_type_ids"):
            assert torch.equal(batch[key], value), key


def test_insertion_with_prompt_lens_for_training(family, alarm_llm):
    import torch

    llm = alarm_llm(family)
    alarm, vis, eot = facts(llm)
    inputs = INPUTS[:2]
    full, plens = llm.prepare_training_batch(inputs, [RESPONSE] * 2)
    assert plens == llm.prepare_batch(inputs)["attention_mask"].sum(1).tolist()
    labels = full["input_ids"].clone()
    for r, p in enumerate(plens):
        start = full["input_ids"].shape[1] - int(full["attention_mask"][r].sum())
        labels[r, : start + p] = IGNORE_INDEX
    full["labels"] = labels
    batch, pos = insert_alarm_tokens(full, has_video=[i.has_video for i in inputs], visual_token_ids=vis,
                                     end_of_turn_id=eot, alarm=alarm, pad_token_id=llm.processor.tokenizer.pad_token_id,
                                     prompt_lens=plens)
    for key, value in full.items():  # non-per-token entries are passed through as they are
        if key not in ("input_ids", "attention_mask", "mm_token_type_ids", "labels"):
            assert batch[key] is value, key
    tok = llm.processor.tokenizer
    for r in range(2):
        v, t = pos[r].tolist()
        assert batch["labels"][r, v] == IGNORE_INDEX and batch["labels"][r, t] == IGNORE_INDEX
        supervised = [int(i) for i in batch["labels"][r] if i != IGNORE_INDEX]
        assert tok.decode(supervised).startswith(RESPONSE) and eot in supervised
        assert ids_after(batch, r, t) == eot and int((batch["input_ids"][r, t:] == eot).sum()) == 2
        if inputs[r].has_video:
            assert int(batch["input_ids"][r, v - 1]) in vis
    same, same_pos = prepare_alarm_batch(llm, inputs, responses=[RESPONSE] * 2)
    assert torch.equal(same["input_ids"], batch["input_ids"]) and torch.equal(same_pos, pos)
    with pytest.raises(ValueError, match="row 1"):  # the text-only row claimed to carry a video
        insert_alarm_tokens(full, has_video=[True, True], visual_token_ids=vis, end_of_turn_id=eot,
                            alarm=alarm, pad_token_id=0, prompt_lens=plens)


def ids_after(batch, r, t):
    return int(batch["input_ids"][r, t + 1])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])  # VideoLLaMA3: 1D rope
def test_mrope_treats_alarms_as_text(family, alarm_llm):
    """Qwen families: the 3D positions of the original tokens only shift, by 1 after the visual
    alarm and by 2 after the textual one; the visual grid positions are untouched."""
    import inspect

    import torch

    llm = alarm_llm(family)
    inner = llm.model.model
    alarm, _, _ = facts(llm)
    accepted = inspect.signature(inner.get_rope_index).parameters

    def rope(b):
        return inner.get_rope_index(**{k: v for k, v in b.items() if k in accepted})[0]

    before = llm.prepare_batch(INPUTS)
    batch, pos = prepare_alarm_batch(llm, INPUTS)
    old, new = rope(before), rope(batch)
    for r in range(len(INPUTS)):
        o = old[:, r, before["attention_mask"][r].bool()]
        keep = batch["attention_mask"][r].bool()
        ids = batch["input_ids"][r][keep]
        n = new[:, r, keep]
        v, t = [int((ids == a).nonzero()) for a in (alarm.visual, alarm.textual)]
        j = torch.arange(o.shape[1])
        shift = (j >= v).long() + (j >= t - 1).long()
        others = (ids != alarm.visual) & (ids != alarm.textual)
        assert torch.equal(n[:, others], o + shift)
        assert torch.equal(n[:, v], o[:, v]) and torch.equal(n[:, t], o[:, t - 1] + 1)


def test_forward_and_generate_with_alarms(family, alarm_llm):
    import torch

    from videosafety.models.base import GenerationSettings

    llm = alarm_llm(family)
    am = AlarmModel(llm.model, facts(llm)[0]).eval()
    batch, pos = prepare_alarm_batch(llm, INPUTS)
    with torch.no_grad():
        out = am(pos, **batch)
        ref = llm.model(**batch, output_hidden_states=True)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.logits).all()
    assert out.video_logit.shape == (3,) and out.query_logit.shape == (3,)
    # hidden_states[-1] is what the lm_head reads (after the final norm)
    assert torch.allclose(llm.model.lm_head(ref.hidden_states[-1]), ref.logits, atol=1e-5)
    probs = am.harm_probs(pos, **batch)
    assert torch.allclose(probs, torch.sigmoid(torch.stack([out.video_logit, out.query_logit], 1)), atol=1e-6)
    assert am(None, **batch).video_logit.allclose(out.video_logit)  # positions located from input_ids
    with pytest.raises(ValueError, match="do not point"):
        am(pos.flip(1), **batch)

    n_in = batch["input_ids"].shape[1]
    gen = am.generate(**batch, max_new_tokens=3, do_sample=False)
    assert torch.equal(gen[:, :n_in], batch["input_ids"]) and gen.shape[1] > n_in
    assert not torch.isin(gen[:, n_in:], torch.tensor([am.alarm.visual, am.alarm.textual])).any()
    with am.active():  # the evaluation path: HFVideoLLM on the edited batch
        texts = llm.generate_from_batch(batch, GenerationSettings(max_new_tokens=3))
    assert len(texts) == 3 and not any(VISUAL_ALARM in s or TEXTUAL_ALARM in s for s in texts)


def test_hook_substitutes_only_alarm_rows(alarm_llm):
    import torch

    llm = alarm_llm("qwen2_vl")
    alarm = facts(llm)[0]
    am = AlarmModel(llm.model, alarm, init="copy", copy_from=(5, 6))
    emb = llm.model.get_input_embeddings()
    assert torch.equal(am.alarm_vectors, emb.weight[[5, 6]].detach())
    with torch.no_grad():
        am.alarm_vectors.copy_(torch.randn(2, am.hidden_size))
    ids = torch.tensor([[3, alarm.visual, 4, alarm.textual]])
    with torch.no_grad(), am.active():
        e = emb(ids)
        one = emb(torch.tensor([[3]]))  # a decoding step: untouched
    assert torch.equal(e[0, 1], am.alarm_vectors[0]) and torch.equal(e[0, 3], am.alarm_vectors[1])
    assert torch.equal(e[0, [0, 2]], emb.weight[[3, 4]]) and torch.equal(one[0, 0], emb.weight[3])
    assert torch.equal(emb(ids)[0, 1], emb.weight[alarm.visual])  # hook gone outside active()
    mean = AlarmModel(llm.model, alarm, init="copy").alarm_vectors
    rest = [i for i in range(emb.weight.shape[0]) if i not in (alarm.visual, alarm.textual)]
    assert torch.allclose(mean[0], emb.weight[rest].mean(0)) and torch.equal(mean[0], mean[1])
    with pytest.raises(ValueError, match="init"):
        AlarmModel(llm.model, alarm, init="random")


# ============================================================================ registration


def test_registration_padded_vocabulary_is_kept_and_idempotent(tiny_dir):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    tok = proc.tokenizer
    n0, w0 = len(tok), model.get_input_embeddings().weight.detach().clone()
    assert w0.shape[0] >= n0 + 2  # the tiny embedding is padded to a multiple of 64
    alarm = register_alarm_tokens(proc, model)
    assert (alarm.visual, alarm.textual) == (n0, n0 + 1) and len(tok) == n0 + 2
    assert torch.equal(model.get_input_embeddings().weight, w0)  # never shrunk, untouched
    assert tok(f"hi{VISUAL_ALARM}{TEXTUAL_ALARM}", add_special_tokens=False)["input_ids"][-2:] == [n0, n0 + 1]
    assert tok.decode([5, alarm.visual, alarm.textual], skip_special_tokens=True) == tok.decode([5])
    assert {alarm.visual, alarm.textual} <= set(model.generation_config.suppress_tokens)
    assert register_alarm_tokens(proc, model) == alarm and len(tok) == n0 + 2
    assert model.generation_config.suppress_tokens.count(alarm.visual) == 1


@pytest.mark.parametrize("tied", [False, True])
def test_registration_grows_with_mean_rows(tiny_model_dirs, tied):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    d = tiny_model_dirs["qwen2_vl"]
    proc = AutoProcessor.from_pretrained(d)
    model = AutoModelForImageTextToText.from_pretrained(d)
    n0 = len(proc.tokenizer)
    if tied:
        model.config.tie_word_embeddings = model.config.get_text_config().tie_word_embeddings = True
        model.tie_weights()
        assert embeddings_tied(model)
    model.resize_token_embeddings(n0, mean_resizing=False)  # an exact-size vocabulary
    w_in = model.get_input_embeddings().weight.detach().clone()
    w_out = model.get_output_embeddings().weight.detach().clone()
    rng = torch.get_rng_state()
    register_alarm_tokens(proc, model)
    assert torch.equal(torch.get_rng_state(), rng)
    new_in, new_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert new_in.shape[0] == new_out.shape[0] == n0 + 2 == model.config.get_text_config().vocab_size
    assert torch.equal(new_in[:n0], w_in) and torch.equal(new_out[:n0], w_out)
    assert torch.allclose(new_in[n0:], w_in.mean(0).expand(2, -1))
    assert torch.allclose(new_out[n0:], w_out.mean(0).expand(2, -1))
    assert embeddings_tied(model) == tied


# ============================================================================ training and checkpoints


def test_alarm_tokens_never_generated(tiny_model_dirs):
    """Rig the lm_head so that an alarm token wins every step, then check suppression holds."""
    import copy

    import torch

    from videosafety.models.hf import HFVideoLLM

    llm = HFVideoLLM(tiny_model_dirs["qwen2_vl"], device="cpu", dtype="float32")
    alarm = register_alarm_tokens(llm.processor, llm.model)
    am = AlarmModel(llm.model, alarm)
    batch, _ = prepare_alarm_batch(llm, INPUTS[:2])
    n_in = batch["input_ids"].shape[1]
    with torch.no_grad():
        h = llm.model(**batch, output_hidden_states=True).hidden_states[-1]
        # a direction every hidden state points along: the alarm rows become it, scaled up
        direction = torch.nn.functional.normalize(h.reshape(-1, h.shape[-1]).mean(0), dim=0)
        llm.model.lm_head.weight[[alarm.visual, alarm.textual]] = 1e4 * direction
    ids = torch.tensor([alarm.visual, alarm.textual])
    suppressed = llm.model.generation_config.suppress_tokens
    llm.model.generation_config.suppress_tokens = None  # generate fills unset fields from the model's config
    with am.active():
        for sample in (False, True):
            rigged = llm.model.generate(**batch, max_new_tokens=2, do_sample=sample)
            assert torch.isin(rigged[:, n_in:], ids).all()  # without suppression the rig works
    free = copy.deepcopy(llm.model.generation_config)
    free.update(max_new_tokens=2, do_sample=False)
    out = am.generate(**batch, generation_config=free)
    assert not torch.isin(out[:, n_in:], ids).any()  # a caller's config gets the suppression too
    llm.model.generation_config.suppress_tokens = suppressed
    for kw in ({"do_sample": False}, {"do_sample": True, "temperature": 1.0, "top_p": 1.0}):
        torch.manual_seed(0)
        out = am.generate(**batch, max_new_tokens=4, **kw)
        assert not torch.isin(out[:, n_in:], ids).any(), kw


def test_gradients_and_param_groups(family, alarm_llm):
    import torch
    from transformers import AutoModelForImageTextToText

    llm = alarm_llm(family)
    base = AutoModelForImageTextToText.from_pretrained(llm.model_id)
    am = AlarmModel(base, facts(llm)[0]).train()
    groups = am.param_groups()
    assert groups["llm"] == language_parameters(base) and groups["vision"] == vision_parameters(base)
    named = dict(am.named_parameters())
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(named)  # a partition of all parameters
    assert groups["alarm"] == [am.alarm_vectors] and len(groups["heads"]) == 4
    assert any(p is base.lm_head.weight for p in groups["llm"])
    vision_names = {n for n, p in named.items() if any(p is q for q in groups["vision"])}
    assert vision_names and all(".language_model." not in n and "lm_head" not in n for n in vision_names)
    assert am.freeze_vision() == sum(p.numel() for p in groups["vision"])

    batch, pos = prepare_alarm_batch(llm, INPUTS[:2])
    labels = batch["input_ids"].clone()
    labels[:, : pos[:, 1].max() + 2] = IGNORE_INDEX
    out = am(pos, **batch, labels=labels)
    y = torch.tensor([1.0, 0.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    loss = out.lm_loss + 0.1 * bce(out.video_logit, y) + 0.1 * bce(out.query_logit, y)
    loss.backward()
    g = am.alarm_vectors.grad
    assert g is not None and (g.abs().sum(1) > 0).all()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in groups["heads"])
    assert all(p.grad is None and not p.requires_grad for p in groups["vision"])
    emb_grad = base.get_input_embeddings().weight.grad
    assert emb_grad.abs().sum() > 0 and emb_grad[[am.alarm.visual, am.alarm.textual]].abs().sum() == 0


def test_save_load_round_trip(family, alarm_llm, tmp_path, tiny_dir):
    import torch
    from transformers import AutoProcessor

    from videosafety.models.hf import HFVideoLLM

    llm = alarm_llm(family)
    am = AlarmModel(llm.model, facts(llm)[0]).eval()
    with torch.no_grad():
        for p in (am.alarm_vectors, *am.visual_head.parameters(), *am.textual_head.parameters()):
            p.copy_(torch.randn_like(p))
    am.save_pretrained(tmp_path / "ckpt", processor=llm.processor)
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"model.safetensors", "alarm.safetensors", "alarm_config.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    assert is_alarm_checkpoint(tmp_path / "ckpt") and not is_alarm_checkpoint(tiny_dir)

    back = AlarmModel.from_pretrained(tmp_path / "ckpt", dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(tmp_path / "ckpt")
    assert back.alarm == am.alarm == alarm_ids_of(proc)
    n = len(proc.tokenizer)
    assert register_alarm_tokens(proc, back.base) == am.alarm and len(proc.tokenizer) == n  # idempotent
    assert {am.alarm.visual, am.alarm.textual} <= set(back.base.generation_config.suppress_tokens)
    batch, pos = prepare_alarm_batch(llm, INPUTS[:2])
    with torch.no_grad():
        a, b = am(pos, **batch), back(pos, **batch)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.video_logit, b.video_logit) and torch.equal(a.query_logit, b.query_logit)
    assert torch.equal(am.harm_probs(pos, **batch), back.harm_probs(pos, **batch))
    loaded = HFVideoLLM(tmp_path / "ckpt", device="cpu", dtype="float32")  # the trainer / evaluation path
    wrapped = AlarmModel.from_pretrained(tmp_path / "ckpt", base=loaded.model).eval()
    assert wrapped.base is loaded.model
    with torch.no_grad():
        assert torch.equal(wrapped(pos, **batch).video_logit, a.video_logit)
    with pytest.raises(ValueError, match="already loaded"):
        AlarmModel.from_pretrained(tmp_path / "ckpt", base=loaded.model, dtype=torch.float32)
    with pytest.raises(ValueError, match="not an alarm checkpoint"):
        AlarmModel.from_pretrained(tiny_dir)
