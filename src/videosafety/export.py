"""Export an alarm-token checkpoint (VideoSafety-R1, spec 3.1-3.4) as a plain checkpoint.

``export_alarm_checkpoint(MODEL, OUT)`` (CLI: ``videosafety export MODEL OUT``) writes a checkpoint that
``AutoModelForImageTextToText`` + ``AutoProcessor`` load and serve with no custom code (plain
transformers, vLLM, lmms-eval's HF models), and whose next-token logits equal the alarm model's on the
same token sequence:

1. **Fold.** The two learnable alarm vectors (``AlarmModel.alarm_vectors``, substituted for the input
   embeddings of ``<|visual_alarm|>`` / ``<|textual_alarm|>`` by a forward hook) are written into those
   two rows of the input embedding matrix, cast to its dtype exactly as the hook casts them. Where the
   input and output embeddings are tied (``embeddings_tied``: e.g. Qwen2-VL-2B, Qwen2.5-VL-3B), writing
   the rows would also change the lm_head rows of the two tokens, so the model is untied first: the
   output head gets its own copy of the original matrix and ``tie_word_embeddings`` is set to False in
   the config *and* its text sub-config (some configs re-tie when only the text config says so, and
   engines such as vLLM read the text config). Every logit is then unchanged.
2. **Never generated.** The alarm ids stay in ``generation_config.suppress_tokens``, which
   ``transformers``' ``generate`` applies in greedy, sampling and beam search. ``bad_words_ids`` is not
   written: for single tokens it does the same thing in ``generate``, and vLLM honours neither (it
   takes only repetition_penalty, temperature, top_k, top_p, min_p and max_new_tokens from
   ``generation_config.json``); with vLLM pass ``bad_words`` (the two token strings) or ``logit_bias``
   per request. ``export_card.json`` lists both. Without them the logits are still the alarm model's,
   whose lm_head rows for the alarm tokens were trained only as softmax negatives.
3. **Heads aside.** The two harm heads go to ``alarm_heads/alarm_heads.safetensors`` with
   ``alarm_heads/alarm_heads.json`` (which hidden state and positions they read, the token ids). They
   are not needed for generation. They sit in a sub-folder on purpose: vLLM loads *every* top-level
   ``*.safetensors`` of a checkpoint without an index file (a single-file checkpoint) and would fail on
   unknown tensor names. ``AlarmHeads`` reads them back and scores a batch from the exported model's
   hidden states.
4. **Alarm placement by the chat template.** Engines render prompts with the checkpoint's chat
   template and then let the processor expand media placeholders. The exported template is the
   original wrapped in a preamble and a postamble (``patch_chat_template``), generic over families:

   - the preamble rebuilds ``messages``: the *last user message* gets a marker string appended to the
     end of its content (to its last text item when the content ends with text, else as a new text
     item; appended to string content);
   - the original template renders unchanged into a variable (``{% set %}...{% endset %}``);
   - the postamble replaces the marker with ``<|textual_alarm|>`` and puts ``<|visual_alarm|>``
     immediately after the last visual placeholder (``<|video_pad|>`` / ``<|image_pad|>``: the strings of
     ``visual_token_ids_of``) rendered before it; with no visual placeholder both tokens go at the
     marker, visual first.

   After the processor expands a placeholder into n visual tokens, the visual alarm follows the last of
   them, which is ``place_alarms``' rule, and the textual alarm sits at the end of the user content,
   right before the end-of-turn token. Nothing is added between items, so the adjacency is exactly
   ``place_alarms``'. Multi-turn: only the last user turn gets a textual alarm, and the visual alarm
   follows the last visual placeholder anywhere before it (an earlier turn's video included), which is
   what ``place_alarms`` does on a whole prompt ending in a user turn. Conversations without a user
   message render unchanged. The template uses only standard Jinja (namespaces, ``dict``, string
   ``rfind`` and slices) that transformers' sandbox allows, never assigns from ``messages`` to a
   non-name target (vLLM's content-format detection asserts plain names), and loops over
   ``message.content`` exactly where the original did, so vLLM still picks the "openai" content format.

   The export checks the patch on probe inputs (video, text-only, video with a system prompt) through
   the real processor: the exported ``prepare_batch`` must give exactly the ids that
   ``prepare_alarm_batch`` gives on the source. Where it does not, the mismatch is described in the card
   and returned (``strict=True`` refuses instead). Known case: Qwen3-VL's processor expands one
   ``<|video_pad|>`` into per-frame groups that each end with ``<|vision_end|>``, so the training rule's
   position (between the last frame's visual tokens and that frame's ``<|vision_end|>``) cannot be
   produced by a template: the exported template puts the visual alarm one token later (after that
   ``<|vision_end|>``, before the template's own). Text-only prompts are exact for every family.
   Like every special token in a chat template, a user text containing the literal alarm strings is
   tokenized as those tokens. The marker is appended to the last text item rather than added as an
   item of its own because many templates put separators between items (e.g. ``'\\n' + text``); the
   price is that a template which trims text items (``text | trim``) keeps the trailing whitespace of
   a query before the textual alarm (none of the four families here trims).

5. **Saved** with ``save_pretrained`` (safetensors) plus the processor (the template is written where
   the processor and tokenizer keep it, checked by reloading), no ``alarm_config.json`` /
   ``alarm.safetensors``: ``is_alarm_checkpoint`` is False, and ``HFVideoLLM`` loads it as a plain model.
   ``export_card.json`` records the source path and digest, the alarm ids, the untying, the template
   check and the serving notes. The folder is written next to OUT and moved into place at the end.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from videosafety import __version__
from videosafety.models.alarm import (
    ALARM_CONFIG_FILE,
    ALARM_WEIGHTS_FILE,
    AlarmTokenIds,
    TEXTUAL_ALARM,
    VISUAL_ALARM,
    alarm_ids_of,
    alarm_positions_of,
    embeddings_tied,
    is_alarm_checkpoint,
    prepare_alarm_batch,
    suppress_alarm_generation,
    tokenizer_of,
    visual_token_ids_of,
)
from videosafety.models.base import ModelInput
from videosafety.models.hf import HFVideoLLM, weights_digest

# transformers and safetensors are imported where used: transformers alone takes seconds to import.

EXPORT_CARD_FILE = "export_card.json"
HEADS_DIR = "alarm_heads"
HEADS_WEIGHTS_FILE = "alarm_heads.safetensors"
HEADS_CONFIG_FILE = "alarm_heads.json"
EXPORT_FORMAT_VERSION = 1

# Appended to the last user message by the template preamble and replaced by the alarm tokens in the
# postamble; never survives rendering.
TEMPLATE_MARKER = "[[videosafety:alarm-slot]]"
_TEMPLATE_TAG = "{#- videosafety: alarm tokens placed by this template (videosafety export) -#}"


class ExportError(ValueError):
    """The export was refused (bad input, occupied output, a check that failed)."""


# ============================================================================ chat template


def _strip_one_trailing_newline(src: str) -> str:
    # Jinja drops one trailing newline of a template (keep_trailing_newline=False); the wrapped template
    # is no longer at the end of the source, so drop it here to render the same.
    for nl in ("\r\n", "\n", "\r"):
        if src.endswith(nl):
            return src[: -len(nl)]
    return src


def is_patched_template(template: str | None) -> bool:
    return isinstance(template, str) and template.startswith(_TEMPLATE_TAG)


def patch_chat_template(template: str, visual_tokens: Sequence[str], *, visual_alarm: str | None = None,
                        textual_alarm: str | None = None) -> str:
    """``template`` wrapped so that rendering places the alarm tokens (see the module docstring).

    ``visual_tokens``: the placeholder strings the template emits for images / videos (the visual
    alarm goes right after the last one before the marker). Idempotent: a patched template is
    returned as it is."""
    if is_patched_template(template):
        return template
    if not isinstance(template, str) or not template:
        raise ExportError("no chat template to patch")
    va, ta = visual_alarm or VISUAL_ALARM, textual_alarm or TEXTUAL_ALARM
    visual = sorted({str(v) for v in visual_tokens if v})
    if not visual:
        raise ExportError("no visual placeholder strings given")
    j = json.dumps
    mark = j(TEMPLATE_MARKER)
    pre = (
        _TEMPLATE_TAG
        # the index of the last user message
        + "{%- set vs_alarm = namespace(last=-1, msgs=[], end=-1) -%}"
        "{%- for vs_m in messages -%}{%- if vs_m.role == 'user' -%}"
        "{%- set vs_alarm.last = loop.index0 -%}{%- endif -%}{%- endfor -%}"
        # rebuild messages: the marker at the end of that message's content
        "{%- for vs_m in messages -%}"
        "{%- if loop.index0 == vs_alarm.last -%}"
        "{%- if vs_m.content is string -%}{%- set vs_c = vs_m.content + " + mark + " -%}"
        "{%- elif vs_m.content and vs_m.content[-1] is mapping"
        " and vs_m.content[-1].get('type', 'text') == 'text' and vs_m.content[-1].text is string -%}"
        "{%- set vs_c = vs_m.content[:-1] + [dict(vs_m.content[-1], text=vs_m.content[-1].text + " + mark + ")] -%}"
        "{%- else -%}{%- set vs_c = (vs_m.content or []) | list + [{'type': 'text', 'text': " + mark + "}] -%}"
        "{%- endif -%}"
        "{%- set vs_alarm.msgs = vs_alarm.msgs + [dict(vs_m, content=vs_c)] -%}"
        "{%- else -%}{%- set vs_alarm.msgs = vs_alarm.msgs + [vs_m] -%}{%- endif -%}"
        "{%- endfor -%}"
        "{%- set messages = vs_alarm.msgs -%}"
        # the original template, unchanged, rendered into vs_text (the newline is eaten by trim_blocks,
        # so the original starts at a line start as before)
        "{%- set vs_text %}\n"
    )
    post = (
        "{% endset -%}"
        "{%- set vs_i = vs_text.rfind(" + mark + ") -%}"
        "{%- if vs_i < 0 -%}{{- vs_text -}}{%- else -%}"
        "{%- set vs_head = vs_text[:vs_i] | replace(" + mark + ", '') -%}"
        "{%- set vs_tail = vs_text[vs_i + " + str(len(TEMPLATE_MARKER)) + ":] -%}"
        "{%- for vs_v in " + j(visual) + " -%}{%- set vs_j = vs_head.rfind(vs_v) -%}"
        "{%- if vs_j >= 0 and vs_j + vs_v | length > vs_alarm.end -%}"
        "{%- set vs_alarm.end = vs_j + vs_v | length -%}{%- endif -%}{%- endfor -%}"
        "{%- if vs_alarm.end < 0 -%}{{- vs_head + " + j(va + ta) + " + vs_tail -}}"
        "{%- else -%}{{- vs_head[:vs_alarm.end] + " + j(va) + " + vs_head[vs_alarm.end:] + " + j(ta)
        + " + vs_tail -}}{%- endif -%}"
        "{%- endif -%}"
    )
    return pre + _strip_one_trailing_newline(template) + post


def _visual_token_strings(processor, config) -> list[str]:
    tok = tokenizer_of(processor)
    return sorted({str(tok.convert_ids_to_tokens(int(i))) for i in visual_token_ids_of(processor, config)})


def _templates_of(processor) -> list[tuple[Any, Any]]:
    """(object, template) for the processor and its tokenizer, where each has one."""
    objs = {id(o): o for o in (processor, tokenizer_of(processor))}.values()
    return [(o, getattr(o, "chat_template", None)) for o in objs if getattr(o, "chat_template", None)]


def patch_processor_template(processor, config=None) -> str | dict:
    """Patch the chat template of ``processor`` and of its tokenizer in place; returns the template the
    processor renders with. Both get the same template (they share ``chat_template.jinja`` on save).
    A dict of named templates is patched name by name."""
    found = _templates_of(processor)
    if not found:
        raise ExportError(f"{type(processor).__name__} has no chat template: engines could not place the alarm "
                          "tokens (export with --no-template and place them yourself)")
    visual = _visual_token_strings(processor, config)
    source = found[0][1]  # the processor's own template wins where both exist (as in vLLM and transformers)

    def patch(t):
        if isinstance(t, Mapping):
            return {k: patch(v) for k, v in t.items()}
        return patch_chat_template(t, visual)

    patched = patch(source)

    for obj in {id(o): o for o in (processor, tokenizer_of(processor))}.values():
        obj.chat_template = patched
    return patched


@dataclass
class TemplateCheck:
    """Does the patched template reproduce ``prepare_alarm_batch``'s ids on the probe inputs?"""

    patched: bool
    rows: dict[str, bool] = field(default_factory=dict)  # probe name -> ids identical
    same_without_alarms: dict[str, bool] = field(default_factory=dict)  # identical once alarms are removed
    mismatches: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool | None:
        return all(self.rows.values()) if self.patched else None

    def as_dict(self) -> dict[str, Any]:
        return {"patched": self.patched, "matches_training_placement": self.exact, "probes": self.rows,
                "same_tokens_without_alarms": self.same_without_alarms, "mismatches": self.mismatches}


def _probe_inputs():
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 112, 112, 3), dtype=np.uint8)
    return {
        "video": ModelInput("Describe the video.", frames=frames, video_fps=1.0),
        "text": ModelInput("How do I bake bread?"),
        "video_with_system": ModelInput("What happens here?", frames=frames[:2], video_fps=1.0,
                                        system="You are careful."),
    }


def _row(batch, r) -> list[int]:
    return [int(i) for i in batch["input_ids"][r][batch["attention_mask"][r].bool()]]


def _describe(tok, want: list[int], got: list[int]) -> str:
    i = next((k for k, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))

    def show(ids: list[int]) -> str:
        lo, hi = max(0, i - 4), min(len(ids), i + 4)
        parts, prev, n = [], None, 0
        for t in ids[lo:hi] + [None]:
            if t == prev:
                n += 1
                continue
            if prev is not None:
                s = tok.convert_ids_to_tokens(prev)
                parts.append(s if n == 1 else f"{s}*{n}")
            prev, n = t, 1
        return ("... " if lo else "") + " ".join(parts) + (" ..." if hi < len(ids) else "")

    return f"training placement: {show(want)} | exported template: {show(got)}"


def check_template(llm, original) -> TemplateCheck:
    """Patch ``llm.processor``'s template and compare the exported path (``prepare_batch`` with the
    patched template) with the training path (``prepare_alarm_batch`` with ``original``)."""
    probes = _probe_inputs()
    names, inputs = list(probes), list(probes.values())
    alarm = alarm_ids_of(llm.processor)
    alarm_set = {alarm.visual, alarm.textual}
    patched = patch_processor_template(llm.processor, llm.model.config)
    check = TemplateCheck(patched=True)
    try:
        _set_template(llm.processor, original)
        want, _ = prepare_alarm_batch(llm, inputs)
    finally:
        _set_template(llm.processor, patched)
    got = llm.prepare_batch(inputs)
    tok = llm.processor.tokenizer
    for r, name in enumerate(names):
        a, b = _row(want, r), _row(got, r)
        check.rows[name] = a == b
        check.same_without_alarms[name] = [t for t in a if t not in alarm_set] == [t for t in b if t not in alarm_set]
        if a != b:
            check.mismatches.append(f"{name}: {_describe(tok, a, b)}")
    return check


def _set_template(processor, template) -> None:
    for obj in {id(o): o for o in (processor, tokenizer_of(processor))}.values():
        obj.chat_template = template


# ============================================================================ folding


def fold_alarm_vectors(alarm_model) -> bool:
    """Write ``alarm_model``'s vectors into its base model's input embedding rows (in place).

    Unties tied input/output embeddings first (the output head keeps the original rows) and sets
    ``tie_word_embeddings=False`` in the config and its text config. Returns whether the model was
    tied. Checked: the embedding module now outputs, for the alarm ids, exactly what the hook
    substituted (refused for embedding modules that transform their rows, e.g. scaled embeddings)."""

    base, alarm = alarm_model.base, alarm_model.alarm
    emb = base.get_input_embeddings()
    ids = torch.tensor([[alarm.visual, alarm.textual]], device=emb.weight.device)
    with torch.no_grad(), alarm_model.active():
        want = emb(ids).detach().clone()
    tied = embeddings_tied(base)
    with torch.no_grad():
        if tied:
            out = base.get_output_embeddings()
            out.weight = nn.Parameter(emb.weight.detach().clone(), requires_grad=emb.weight.requires_grad)
        w = emb.weight
        w[alarm.visual] = alarm_model.alarm_vectors[0].detach().to(device=w.device, dtype=w.dtype)
        w[alarm.textual] = alarm_model.alarm_vectors[1].detach().to(device=w.device, dtype=w.dtype)
        got = emb(ids)
    if not torch.equal(got, want):
        raise ExportError(f"{type(emb).__name__} does not output its weight rows as they are (a scaled "
                          "embedding?): folding the alarm vectors into the rows would change the model")
    if embeddings_tied(base):
        raise ExportError("the output embeddings are still the input embeddings after untying")
    _untie_config(base.config)
    return tied


def _untie_config(config) -> None:
    configs = [config]
    if hasattr(config, "get_text_config"):
        text = config.get_text_config()
        if text is not config:
            configs.append(text)
    for c in configs:
        c.tie_word_embeddings = False


# ============================================================================ heads


@dataclass
class AlarmHeads:
    """The two harm heads of an exported checkpoint, read from ``alarm_heads/``.

    ``harm_probs(model, batch)`` reproduces ``AlarmModel.harm_probs`` with the exported (plain) model:
    one forward pass, ``hidden_states[-1]`` (the final-norm output the lm_head reads) at the position
    of each alarm token, ``sigmoid(W h + b)`` in float32: [video harmful, query harmful]."""

    visual_token_id: int
    textual_token_id: int
    visual_weight: Any  # (1, H) float32
    visual_bias: Any  # (1,)
    textual_weight: Any
    textual_bias: Any

    @classmethod
    def load(cls, directory: str | os.PathLike) -> AlarmHeads:
        from safetensors.torch import load_file

        folder = Path(directory)
        if (folder / HEADS_DIR).is_dir():
            folder = folder / HEADS_DIR
        cfg = json.loads((folder / HEADS_CONFIG_FILE).read_text(encoding="utf-8"))
        if cfg.get("format_version") != EXPORT_FORMAT_VERSION:
            raise ValueError(f"{folder / HEADS_CONFIG_FILE}: format_version {cfg.get('format_version')!r}")
        state = load_file(str(folder / HEADS_WEIGHTS_FILE))
        return cls(int(cfg["visual"]["token_id"]), int(cfg["textual"]["token_id"]),
                   state["visual_head.weight"], state["visual_head.bias"],
                   state["textual_head.weight"], state["textual_head.bias"])

    def logits(self, hidden, input_ids):
        """(B, 2) head logits from final hidden states (B, L, H) and the ids that hold the alarms."""
        pos = alarm_positions_of(input_ids, AlarmTokenIds(self.visual_token_id, self.textual_token_id))
        pos = pos.to(hidden.device)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        out = []
        for col, (w, b) in enumerate(((self.visual_weight, self.visual_bias),
                                      (self.textual_weight, self.textual_bias))):
            h = hidden[rows, pos[:, col]].to(w.dtype)
            out.append(torch.nn.functional.linear(h, w.to(h.device), b.to(h.device)).squeeze(-1))
        return torch.stack(out, dim=1)

    def harm_probs(self, model, batch):
        """(B, 2) probabilities [video harmful, query harmful] from one forward pass of ``model``."""
        kw = dict(batch)
        kw.pop("labels", None)
        kw.pop("output_hidden_states", None)
        kw.pop("return_dict", None)
        kw.setdefault("use_cache", False)
        if "logits_to_keep" in inspect.signature(model.forward).parameters:
            kw["logits_to_keep"] = 1
        with torch.no_grad():
            out = model(**kw, output_hidden_states=True, return_dict=True)
            return torch.sigmoid(self.logits(out.hidden_states[-1], batch["input_ids"]).float())


def save_alarm_heads(alarm_model, directory: str | os.PathLike) -> Path:
    """Write the heads of ``alarm_model`` to ``directory/alarm_heads/``; returns that folder."""
    from safetensors.torch import save_file

    folder = Path(directory) / HEADS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for name in ("visual_head", "textual_head"):
        for k, v in getattr(alarm_model, name).state_dict().items():
            state[f"{name}.{k}"] = v.detach().cpu().contiguous()
    save_file(state, str(folder / HEADS_WEIGHTS_FILE), metadata={"format": "pt"})
    alarm = alarm_model.alarm
    cfg = {
        "format_version": EXPORT_FORMAT_VERSION,
        "needed_for_generation": False,
        "about": "Harm detector of VideoSafety-R1 (spec 3.2): two Linear(H, 1) heads. Not needed for "
                 "generation; read with videosafety.export.AlarmHeads.",
        "input": "hidden_states[-1] of the exported model (output_hidden_states=True): the final-norm "
                 "output that the lm_head reads, taken at the position of the alarm token itself",
        "output": "sigmoid(weight @ h + bias) in float32 = probability that the video (visual head) / the "
                  "query (textual head) is harmful",
        "hidden_size": int(alarm_model.hidden_size),
        "dtype": str(alarm_model.visual_head.weight.dtype).removeprefix("torch."),
        "visual": {"tensors": ["visual_head.weight", "visual_head.bias"], "token": VISUAL_ALARM,
                   "token_id": alarm.visual, "predicts": "video harmful"},
        "textual": {"tensors": ["textual_head.weight", "textual_head.bias"], "token": TEXTUAL_ALARM,
                    "token_id": alarm.textual, "predicts": "query harmful"},
    }
    (folder / HEADS_CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return folder


# ============================================================================ export


@dataclass
class ExportResult:
    out: Path
    source: Path
    source_digest: str
    alarm_ids: tuple[int, int]  # (visual, textual)
    untied: bool
    template: TemplateCheck
    heads: Path
    card: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        w = []
        if not self.template.patched:
            w.append("chat template not patched: engines will not place the alarm tokens; place them with "
                     "videosafety.models.alarm.place_alarms before generating")
        elif not self.template.exact:
            w.append("the patched chat template does not reproduce the training placement exactly: "
                     + "; ".join(self.template.mismatches))
        return w


def _resolve_dtype(model_dir: Path, dtype: str, trust_remote_code: bool) -> str:
    if dtype != "auto":
        return dtype
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    found = getattr(cfg, "dtype", None)
    if found is None and hasattr(cfg, "get_text_config"):
        found = getattr(cfg.get_text_config(), "dtype", None)
    name = str(found).removeprefix("torch.") if found is not None else "float32"
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def _check_paths(model: Path, out: Path, force: bool) -> None:
    if not model.is_dir():
        raise ExportError(f"{model} is not a folder: export needs a local alarm-token checkpoint")
    if not is_alarm_checkpoint(model):
        raise ExportError(f"{model} is not an alarm-token checkpoint (no {ALARM_CONFIG_FILE} + "
                          f"{ALARM_WEIGHTS_FILE}): nothing to export")
    src, dst = model.resolve(), out.resolve()
    if dst == src or dst in src.parents:
        raise ExportError(f"{out} is the source checkpoint or a folder that holds it")
    if dst in (Path.home().resolve(), Path.cwd().resolve(), Path(dst.anchor)):
        raise ExportError(f"{out} is the home, current or root folder: name a new folder")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty (pass --force to replace it)")


def export_alarm_checkpoint(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    force: bool = False,
    trust_remote_code: bool = False,
    dtype: str = "auto",
    device: str = "cpu",
    patch_template: bool = True,
    strict: bool = False,
) -> ExportResult:
    """Export the alarm-token checkpoint ``model`` as a plain checkpoint in ``out`` (module docstring).

    ``dtype`` "auto" keeps the checkpoint's dtype (its config's). ``patch_template`` False leaves the
    chat template as it is (engines then do not place the alarm tokens). ``strict`` refuses when the
    patched template does not reproduce the training placement exactly on the probe inputs.
    Raises ``ExportError`` for a source that is not an alarm checkpoint and a non-empty ``out``
    without ``force`` (with ``force`` it is replaced)."""
    model, out = Path(model), Path(out)
    _check_paths(model, out, force)
    out = out.resolve()
    dtype = _resolve_dtype(model, dtype, trust_remote_code)
    llm = HFVideoLLM(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, batch_size=4)
    am = llm.alarm_model
    if am is None:  # is_alarm_checkpoint said yes: HFVideoLLM wraps it
        raise ExportError(f"{model}: the alarm model did not load")
    alarm = am.alarm

    found = _templates_of(llm.processor)
    original = found[0][1] if found else None
    if is_patched_template(original if isinstance(original, str) else None):
        raise ExportError(f"{model}: its chat template already places alarm tokens (an exported checkpoint?)")
    if patch_template:
        template = check_template(llm, original)
        if strict and not template.exact:
            raise ExportError("the patched chat template does not reproduce the training placement: "
                              + "; ".join(template.mismatches))
    else:
        template = TemplateCheck(patched=False)

    untied = fold_alarm_vectors(am)
    base = am.base
    suppress_alarm_generation(base, alarm)

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        base.save_pretrained(staging)
        llm.processor.save_pretrained(staging)
        save_alarm_heads(am, staging)
        if patch_template:
            _check_saved_template(staging, llm.processor.chat_template, trust_remote_code)
        if is_alarm_checkpoint(staging):
            raise ExportError("the exported folder would be detected as an alarm checkpoint")
        suppressed = list(base.generation_config.suppress_tokens or [])
        card = {
            "format": "videosafety-export",
            "format_version": EXPORT_FORMAT_VERSION,
            "videosafety_version": __version__,
            "source": str(model.resolve()),
            "source_digest": llm.revision or weights_digest(model),
            "exported_digest": weights_digest(staging),
            "dtype": dtype,
            "alarm_tokens": {"visual": {"token": VISUAL_ALARM, "id": alarm.visual},
                             "textual": {"token": TEXTUAL_ALARM, "id": alarm.textual}},
            "folded": "alarm vectors written into the input embedding rows of the alarm tokens",
            "tied_in_source": untied,
            "untied": untied,
            "chat_template": {
                **template.as_dict(),
                "rule": "last user message: textual alarm at the end of its content (before the end-of-turn "
                        "token); visual alarm right after the last visual placeholder before it, or right "
                        "before the textual alarm when there is none",
                "multi_turn": "only the last user turn gets the textual alarm; earlier turns render unchanged",
            },
            "alarm_heads": f"{HEADS_DIR}/{HEADS_WEIGHTS_FILE}",
            "generation": {
                "suppress_tokens": suppressed,
                "transformers": "generation_config.suppress_tokens keeps generate() from emitting the alarm tokens",
                "vllm": {"note": "vLLM ignores suppress_tokens / bad_words_ids in generation_config.json; "
                                 "pass one of these per request",
                         "bad_words": [VISUAL_ALARM, TEXTUAL_ALARM],
                         "logit_bias": {str(alarm.visual): -100, str(alarm.textual): -100}},
            },
        }
        (staging / EXPORT_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if any(out.iterdir()) else out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out=out, source=model, source_digest=card["source_digest"],
                        alarm_ids=(alarm.visual, alarm.textual), untied=untied, template=template,
                        heads=out / HEADS_DIR / HEADS_WEIGHTS_FILE, card=card)


def _check_saved_template(directory: Path, expected, trust_remote_code: bool) -> None:
    """The saved processor and tokenizer both load the patched template."""
    from transformers import AutoProcessor, AutoTokenizer

    proc = AutoProcessor.from_pretrained(str(directory), trust_remote_code=trust_remote_code)
    got = {"AutoProcessor": getattr(proc, "chat_template", None)}
    try:
        got["AutoTokenizer"] = AutoTokenizer.from_pretrained(str(directory),
                                                             trust_remote_code=trust_remote_code).chat_template
    except Exception:  # noqa: BLE001 - a processor without a loadable tokenizer: the processor's counts
        pass
    bad = [k for k, v in got.items() if v != expected]
    if bad:
        raise ExportError(f"the patched chat template did not survive saving for {', '.join(bad)}")


__all__ = [
    "EXPORT_CARD_FILE", "HEADS_CONFIG_FILE", "HEADS_DIR", "HEADS_WEIGHTS_FILE", "TEMPLATE_MARKER", "AlarmHeads",
    "ExportError", "ExportResult", "TemplateCheck", "check_template", "export_alarm_checkpoint",
    "fold_alarm_vectors", "is_patched_template", "patch_chat_template", "patch_processor_template",
    "save_alarm_heads",
]
