"""videosafety export: alarm-token checkpoint -> plain checkpoint (folded vectors, patched chat template,
heads aside), checked against the alarm model on the four tiny families."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from videosafety.models.alarm import (TEXTUAL_ALARM, VISUAL_ALARM, AlarmModel, embeddings_tied, is_alarm_checkpoint,
                                      prepare_alarm_batch, register_alarm_tokens)
from videosafety.models.base import GenerationSettings, ModelInput

FRAMES = np.random.default_rng(1).integers(0, 256, size=(4, 112, 112, 3), dtype=np.uint8)
INPUTS = [
    ModelInput("What happens in this video?", frames=FRAMES, video_fps=1.0),
    ModelInput("How do I bake bread?"),
    ModelInput("Describe it.", frames=FRAMES[:2], video_fps=1.0, system="Be careful."),
]
TEXT_ONLY = [ModelInput("Tell me how to fix a bicycle."), ModelInput("Is rice safe to eat?", system="Be brief.")]
# Qwen3-VL's processor closes every frame group with <|vision_end|>: the template cannot put the visual
# alarm before the last one (see videosafety.export); every other family is exact.
EXACT = {"qwen2_vl": True, "qwen2_5_vl": True, "qwen3_vl": False, "video_llama_3": True}


def _build_alarm_checkpoint(base_dir, out, *, seed: int, tie: bool = False):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(base_dir)
    model = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch.float32)
    if tie:
        model.config.tie_word_embeddings = model.config.get_text_config().tie_word_embeddings = True
        model.tie_weights()
        assert embeddings_tied(model)
    am = AlarmModel(model, register_alarm_tokens(proc, model))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-zero vectors and heads, so that folding is actually exercised
        for p in (am.alarm_vectors, *am.visual_head.parameters(), *am.textual_head.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen))
    am.save_pretrained(out, processor=proc)
    return out


@pytest.fixture(scope="module")
def exported(tiny_model_dirs, tmp_path_factory):
    """family -> (source HFVideoLLM with its AlarmModel, exported HFVideoLLM, ExportResult)."""
    from videosafety.export import export_alarm_checkpoint
    from videosafety.models.hf import HFVideoLLM

    root = tmp_path_factory.mktemp("export")
    cache: dict = {}

    def get(family):
        if family not in cache:
            src = _build_alarm_checkpoint(tiny_model_dirs[family], root / f"{family}-alarm", seed=7)
            result = export_alarm_checkpoint(src, root / f"{family}-plain")
            cache[family] = (HFVideoLLM(src, device="cpu", dtype="float32"),
                             HFVideoLLM(result.out, device="cpu", dtype="float32"), result)
        return cache[family]

    return get


def _alarm_batch(src):
    return prepare_alarm_batch(src, INPUTS)


# ============================================================================ the model


def test_exported_logits_equal_alarm_model(family, exported):
    import torch
    from transformers import AutoModelForImageTextToText

    src, exp, result = exported(family)
    assert src.alarm_model is not None and exp.alarm_model is None and not is_alarm_checkpoint(result.out)
    batch, pos = _alarm_batch(src)
    with torch.no_grad():
        want = src.alarm_model(pos, **batch).logits
        got = exp.model(**batch).logits
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # the alarm rows really changed (the source's plain rows would give other logits)
    plain = AutoModelForImageTextToText.from_pretrained(src.model_id, dtype=torch.float32)
    with torch.no_grad():
        assert not torch.allclose(plain(**batch).logits, want, atol=1e-3)
    alarm = src.alarm_model.alarm
    emb = exp.model.get_input_embeddings().weight
    assert torch.equal(emb[[alarm.visual, alarm.textual]], src.alarm_model.alarm_vectors.detach())
    assert {alarm.visual, alarm.textual} <= set(exp.model.generation_config.suppress_tokens)


def test_greedy_generation_matches(family, exported):
    src, exp, _ = exported(family)
    settings = GenerationSettings(max_new_tokens=5)
    batch, _ = _alarm_batch(src)
    # the same (alarm-placed) batch: plain generation with folded rows = generation with the hook
    assert exp.generate_from_batch(batch, settings) == src.generate_from_batch(batch, settings)
    # the whole plain path: HFVideoLLM renders with the exported template, no alarm code involved
    inputs = INPUTS[:2] + TEXT_ONLY[:2] if EXACT[family] else TEXT_ONLY  # one batch of at most 4
    assert exp.generate(inputs, settings) == src.generate(inputs, settings)


def test_tied_embeddings_are_untied(tiny_model_dirs, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText

    from videosafety.export import export_alarm_checkpoint
    from videosafety.models.hf import HFVideoLLM

    src_dir = _build_alarm_checkpoint(tiny_model_dirs["qwen2_vl"], tmp_path / "tied", seed=3, tie=True)
    src = HFVideoLLM(src_dir, device="cpu", dtype="float32")
    assert embeddings_tied(src.model)  # the saved checkpoint reloads tied
    original = src.model.get_input_embeddings().weight.detach().clone()
    result = export_alarm_checkpoint(src_dir, tmp_path / "plain")
    assert result.untied and result.card["untied"] is True
    cfg = json.loads((result.out / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is False and cfg["text_config"]["tie_word_embeddings"] is False
    exp = AutoModelForImageTextToText.from_pretrained(result.out, dtype=torch.float32)
    assert not embeddings_tied(exp)
    alarm = src.alarm_model.alarm
    ids = [alarm.visual, alarm.textual]
    assert torch.equal(exp.get_output_embeddings().weight, original)  # every lm_head row, alarm rows included
    assert torch.equal(exp.get_input_embeddings().weight[ids], src.alarm_model.alarm_vectors.detach())
    rest = [i for i in range(original.shape[0]) if i not in ids]
    assert torch.equal(exp.get_input_embeddings().weight[rest], original[rest])
    batch, pos = _alarm_batch(src)
    with torch.no_grad():
        torch.testing.assert_close(exp(**batch).logits, src.alarm_model(pos, **batch).logits, rtol=1e-6, atol=1e-6)
    # the source model object was untied by the export's own copy only, never this one
    assert embeddings_tied(AlarmModel.from_pretrained(src_dir).base)


# ============================================================================ the chat template


def test_patched_template_reproduces_alarm_placement(family, exported):
    import torch

    src, exp, result = exported(family)
    want, _ = _alarm_batch(src)
    got = exp.prepare_batch(INPUTS)  # plain: no alarm insertion anywhere
    alarm = src.alarm_model.alarm
    assert result.card["chat_template"]["patched"] is True
    assert result.template.exact is EXACT[family]
    assert result.card["chat_template"]["matches_training_placement"] is EXACT[family]
    if EXACT[family]:
        assert got.keys() == want.keys()
        for key in want:
            assert torch.equal(got[key], want[key]), key
        return
    # Qwen3-VL: text-only rows exact; video rows: the same tokens, the visual alarm one token later
    # (after the last frame's <|vision_end|> instead of before it)
    tok = exp.processor.tokenizer
    end = tok.convert_tokens_to_ids("<|vision_end|>")
    for r, inp in enumerate(INPUTS):
        a = want["input_ids"][r][want["attention_mask"][r].bool()].tolist()
        b = got["input_ids"][r][got["attention_mask"][r].bool()].tolist()
        if not inp.has_video:
            assert a == b
            continue
        v = a.index(alarm.visual)
        assert a[v + 1] == end and b[v] == end and b[v + 1] == alarm.visual
        assert a[:v] + [end, alarm.visual] + a[v + 2:] == b
    assert len(result.template.mismatches) == 2 and all("<|vision_end|>" in m for m in result.template.mismatches)


def _strip_alarms(s: str) -> str:
    return s.replace(VISUAL_ALARM, "").replace(TEXTUAL_ALARM, "")


CONVERSATIONS = [
    [{"role": "user", "content": "plain string"}],
    [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "q"}]}],
    [{"role": "user", "content": [{"type": "text", "text": "text first"}, {"type": "video"}]}],
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "a"}, {"type": "video"},
                                  {"type": "text", "text": "b"}]}],
    [{"role": "system", "content": [{"type": "text", "text": "sys"}]},
     {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "first"}]},
     {"role": "assistant", "content": [{"type": "text", "text": "answer"}]},
     {"role": "user", "content": [{"type": "text", "text": "second"}]}],
    [{"role": "system", "content": "only a system turn"}],
]


def test_template_renders_the_original_plus_alarms_only(family, exported):
    """Any conversation: removing the two alarm strings gives the original rendering back; each alarm
    appears once, the textual one right before the last user turn's end of turn."""
    from transformers import AutoProcessor

    from videosafety.export import TEMPLATE_MARKER, is_patched_template

    src, _, result = exported(family)
    proc = AutoProcessor.from_pretrained(result.out)
    assert is_patched_template(proc.chat_template) and proc.tokenizer.chat_template == proc.chat_template
    for conv in CONVERSATIONS:
        for gen in (True, False):
            original = src.processor.apply_chat_template(conv, add_generation_prompt=gen, tokenize=False)
            patched = proc.apply_chat_template(conv, add_generation_prompt=gen, tokenize=False)
            assert TEMPLATE_MARKER not in patched
            assert _strip_alarms(patched) == original, (conv, patched)
            if not any(m["role"] == "user" for m in conv):
                assert patched == original
                continue
            assert patched.count(VISUAL_ALARM) == 1 and patched.count(TEXTUAL_ALARM) == 1
            assert f"{TEXTUAL_ALARM}<|im_end|>" in patched
            if not any(p.get("type") in ("video", "image") for m in conv if isinstance(m["content"], list)
                       for p in m["content"]):
                assert f"{VISUAL_ALARM}{TEXTUAL_ALARM}<|im_end|>" in patched


def test_template_placement_rules_exactly():
    """The patch on a minimal template: where each alarm lands, for each content shape."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from videosafety.export import patch_chat_template

    base = ("{% for m in messages %}<{{ m.role }}>{% if m.content is string %}{{ m.content }}"
            "{% else %}{% for c in m.content %}{% if c.type == 'video' %}[V]{% elif c.type == 'image' %}[I]"
            "{% else %}{{ c.text }}{% endif %}{% endfor %}{% endif %}</>{% endfor %}\n")
    t = patch_chat_template(base, ["[V]", "[I]"], visual_alarm="(v)", textual_alarm="(t)")
    assert patch_chat_template(t, ["[V]"]) == t  # idempotent

    def render(*msgs):
        return render_jinja_template(conversations=[list(msgs)], chat_template=t)[0][0]

    u = lambda *c: {"role": "user", "content": list(c)}  # noqa: E731
    vid, img, txt = {"type": "video"}, {"type": "image"}, lambda s: {"type": "text", "text": s}
    assert render(u(vid, txt("q"))) == "<user>[V](v)q(t)</>"
    assert render(u(txt("q"), vid)) == "<user>q[V](v)(t)</>"
    assert render(u(img, txt("a"), vid, txt("b"))) == "<user>[I]a[V](v)b(t)</>"
    assert render(u(txt("q"))) == "<user>q(v)(t)</>"
    assert render({"role": "user", "content": "s"}) == "<user>s(v)(t)</>"
    assert render(u()) == "<user>(v)(t)</>"
    assert render(u(vid, txt("a")), {"role": "assistant", "content": "x"}, u(txt("b"))) == \
        "<user>[V](v)a</><assistant>x</><user>b(t)</>"
    assert render({"role": "system", "content": "s"}) == "<system>s</>"
    with pytest.raises(ValueError):
        patch_chat_template("", ["[V]"])


# ============================================================================ heads, card, files


def test_heads_side_file_round_trip(family, exported):
    import torch
    from safetensors.torch import load_file

    from videosafety.export import AlarmHeads

    src, exp, result = exported(family)
    alarm = src.alarm_model.alarm
    meta = json.loads((result.out / "alarm_heads" / "alarm_heads.json").read_text())
    assert meta["needed_for_generation"] is False and "hidden_states[-1]" in meta["input"]
    assert (meta["visual"]["token_id"], meta["textual"]["token_id"]) == (alarm.visual, alarm.textual)
    assert set(load_file(result.heads)) == {f"{h}_head.{p}" for h in ("visual", "textual") for p in ("weight", "bias")}
    assert not list(result.out.glob("*.safetensors"))[1:]  # one top-level weight file: engines glob them
    batch, pos = _alarm_batch(src)
    want = src.alarm_model.harm_probs(pos, **batch)
    got = AlarmHeads.load(result.out).harm_probs(exp.model, batch)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_export_card(exported):
    from videosafety.models.hf import weights_digest

    src, _, result = exported("qwen2_vl")
    card = json.loads((result.out / "export_card.json").read_text())
    alarm = src.alarm_model.alarm
    assert card["source"] == str(result.source.resolve())
    assert card["source_digest"] == weights_digest(src.model_id) == src.revision
    assert card["exported_digest"] == weights_digest(result.out)
    ids = card["alarm_tokens"]
    assert (ids["visual"]["id"], ids["textual"]["id"]) == (alarm.visual, alarm.textual)
    assert card["untied"] is False and card["chat_template"]["matches_training_placement"] is True
    assert card["generation"]["suppress_tokens"][-2:] == [alarm.visual, alarm.textual]
    assert set(card["generation"]["vllm"]["bad_words"]) == {VISUAL_ALARM, TEXTUAL_ALARM}


# ============================================================================ CLI and refusals


def test_cli_export_and_refusals(exported, tiny_model_dirs, tmp_path):
    from typer.testing import CliRunner

    from videosafety.cli import app
    from videosafety.export import ExportError, export_alarm_checkpoint
    from videosafety.models.hf import HFVideoLLM

    _, _, first = exported("video_llama_3")
    src_dir = first.source
    runner = CliRunner()
    out = tmp_path / "cli-out"
    res = runner.invoke(app, ["export", str(src_dir), str(out)])
    assert res.exit_code == 0, res.output
    assert "matches the training placement" in res.output and "alarm_heads" in res.output
    llm = HFVideoLLM(out, device="cpu", dtype="float32")
    assert llm.alarm_model is None
    assert llm.generate(TEXT_ONLY[:1], GenerationSettings(max_new_tokens=3)) == \
        HFVideoLLM(src_dir, device="cpu", dtype="float32").generate(TEXT_ONLY[:1], GenerationSettings(max_new_tokens=3))

    res = runner.invoke(app, ["export", str(src_dir), str(out)])
    assert res.exit_code == 2 and "not empty" in re.sub(r"\s+", " ", res.output)
    (out / "stale.safetensors").write_bytes(b"x")
    res = runner.invoke(app, ["export", str(src_dir), str(out), "--force", "--no-template"])
    assert res.exit_code == 0, res.output
    assert not (out / "stale.safetensors").exists() and "not patched" in res.output
    assert json.loads((out / "export_card.json").read_text())["chat_template"]["patched"] is False

    res = runner.invoke(app, ["export", str(tiny_model_dirs["video_llama_3"]), str(tmp_path / "x")])
    assert res.exit_code == 2 and "not an alarm-token checkpoint" in re.sub(r"\s+", " ", res.output)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ExportError, match="source checkpoint"):
        export_alarm_checkpoint(src_dir, src_dir, force=True)
    with pytest.raises(ExportError, match="not an alarm-token checkpoint"):
        export_alarm_checkpoint(out, tmp_path / "y")  # an exported checkpoint is plain
    with pytest.raises(ExportError, match="training placement"):  # Qwen3-VL under --strict
        export_alarm_checkpoint(exported("qwen3_vl")[2].source, tmp_path / "z", strict=True)
    assert not (tmp_path / "z").exists() and not list(tmp_path.glob(".z.partial*"))
